"""Waiting until the stack is ready: small checks, one deadline.

A check has a `name` and a `check()` that returns a `CheckResult`; `up`,
`wait` and `status` run the same ones. `wait_until_ready` polls them until all
pass, one reports a fault that waiting cannot heal, or the deadline passes.
It never prints: progress goes to the `on_progress` callback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from qfstack.config import Config
from qfstack.errors import ComposeError, NotReadyError, Pending
from qfstack.oidc import is_local_url, origin, rate_limit_delay
from qfstack.provider import (
    Discovery,
    Expectations,
    ProviderReport,
    connection_verdict,
    inspect_provider,
)
from qfstack.stack import ServiceState, Stack

logger = logging.getLogger(__name__)

# PocketID's /healthz is not rate-limited: ask it often while waiting, so
# that readiness is seen within a quarter of a second.
HEALTH_POLL_LOCAL = 0.05
HEALTH_POLL_REMOTE = 0.1
HEALTH_TIMEOUT = 2.0

# States from which a container does not become healthy by waiting.
FAILED_STATES = ("exited", "dead", "restarting", "removing")


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str
    permanent: bool = False
    evidence: list[str] = field(default_factory=list)


class Check(Protocol):
    name: str

    def check(self) -> CheckResult: ...


class IdentityProviderCheck:
    """The provider is up, and its discovery document and JWKS pass every check.

    While the provider is down only its `/healthz` is asked, every
    `poll_interval` seconds (PocketID does not rate-limit it), so readiness is
    seen quickly; discovery and JWKS are fetched once it answers, within the
    provider's rate limit (see `oidc.send`). A provider without `/healthz`
    (404: not PocketID) is polled through its discovery document instead, at
    a pace its rate limit allows. Once ready, the documents are checked again
    every `recheck` seconds; `/healthz` still on every poll.
    """

    name = "identity provider"

    def __init__(
        self, config: Config, client: httpx.Client, *, recheck: float = 15.0
    ) -> None:
        self.config = config
        self.client = client
        self.expect = Expectations.from_config(config)
        self.health_url = origin(config.configuration_endpoint) + "/healthz"
        local = is_local_url(config.configuration_endpoint)
        self.poll_interval = HEALTH_POLL_LOCAL if local else HEALTH_POLL_REMOTE
        # Between two inspections that failed; 2 requests each keep a remote
        # provider at 1 request/s at most.
        self._gap = 0.25 if local else 2.0
        self._recheck = recheck
        self._has_healthz: bool | None = None
        self._next_inspection = 0.0
        self._warned: tuple[str, ...] = ()
        self.discovery: Discovery | None = None
        self.report: ProviderReport | None = None

    def check(self) -> CheckResult:
        if self._has_healthz is not False:
            down = self._health()
            if down is not None:
                if self.report is not None and self.report.ok:
                    self._next_inspection = 0.0
                return down

        now = time.monotonic()
        delay = max(
            self._next_inspection - now,
            rate_limit_delay(self.client, self.expect.configuration_endpoint),
        )
        if delay > 0:
            if self.report is not None and self.report.ok:
                return self._ready(self.report)
            previous = self._failure_detail() if self.report else "not asked yet"
            return CheckResult(
                self.name, False, f"{previous} (asking again in {delay:.1f}s)"
            )

        report = inspect_provider(self.client, self.expect)
        self.report = report
        if report.ok:
            self.discovery = report.discovery
            self._next_inspection = time.monotonic() + self._recheck
            return self._ready(report)
        failure = report.failures[0]
        pause = max(self._gap, failure.retry_after or 0.0)
        self._next_inspection = time.monotonic() + pause
        return CheckResult(
            f"{self.name} ({failure.name})",
            False,
            failure.line() if failure.permanent else failure.summary,
            permanent=failure.permanent,
            evidence=list(failure.evidence),
        )

    def _ready(self, report: ProviderReport) -> CheckResult:
        warnings = tuple(v.line() for v in report.verdicts if v.level == "warn")
        if warnings != self._warned:
            for line in warnings:
                logger.warning("%s", line)
            self._warned = warnings
        issuer = report.discovery.issuer if report.discovery else "?"
        keys = len(report.keys)
        detail = f"issuer {issuer}, {keys} signing key(s)"
        if warnings:
            detail += f", {len(warnings)} warning(s)"
        return CheckResult(self.name, True, detail, evidence=list(warnings))

    def _failure_detail(self) -> str:
        assert self.report is not None
        failures = self.report.failures
        return failures[0].summary if failures else "checked"

    def _health(self) -> CheckResult | None:
        """None when /healthz answers (or does not exist); else why not."""
        url = self.health_url
        try:
            response = self.client.get(
                url, timeout=min(HEALTH_TIMEOUT, self.client.timeout.connect or 5.0)
            )
        except httpx.HTTPError as exc:
            verdict = connection_verdict(self.client, url, exc, name="health")
            detail = verdict.line() if verdict.permanent else verdict.summary
            return CheckResult(
                f"{self.name} ({verdict.name})",
                False,
                detail,
                permanent=verdict.permanent,
            )
        status = response.status_code
        if status == 404 and self._has_healthz is None:
            logger.info("%s answers 404: polling the discovery document instead", url)
            self._has_healthz = False
            return None
        if 200 <= status < 300:
            self._has_healthz = True
            return None
        return CheckResult(
            f"{self.name} (health)", False, f"GET {url} answered {status}"
        )


class ServicesCheck:
    """Every service of the project runs and reports healthy."""

    name = "services"

    def __init__(self, stack: Stack, services: Sequence[str]) -> None:
        self.stack = stack
        self.services = list(services)
        self._last: CheckResult | None = None
        self._last_at = 0.0

    def check(self) -> CheckResult:
        # `docker compose ps` costs a process and ~0.1 s of CPU: once a second.
        if self._last is not None and time.monotonic() - self._last_at < 1.0:
            return self._last
        self._last = self._check()
        self._last_at = time.monotonic()
        return self._last

    def _check(self) -> CheckResult:
        try:
            states = {state.service: state for state in self.stack.ps()}
        except ComposeError as exc:
            return CheckResult(self.name, False, exc.message)
        pending: list[str] = []
        for service in self.services:
            state = states.get(service)
            if state is None:
                pending.append(f"{service}: no container")
                continue
            failure = self._failure(state)
            if failure is not None:
                return failure
            if not state.ready:
                pending.append(f"{service}: {state.state}, health {state.health}")
        if pending:
            return CheckResult(self.name, False, "; ".join(pending))
        return CheckResult(self.name, True, f"{len(self.services)} healthy")

    def _failure(self, state: ServiceState) -> CheckResult | None:
        """A state that waiting will not heal, with its evidence."""
        name = f"service {state.service}"
        if state.state == "restarting":
            detail = f"crash loop: it keeps exiting and restarting ({state.status})"
        elif state.state in FAILED_STATES:
            detail = f"{state.state} ({state.status}), exit code {state.exit_code}"
        elif state.health == "unhealthy":
            detail = f"unhealthy ({state.status})"
        elif (
            state.state == "running"
            and state.health == "none"
            and state.service in self.stack.without_healthcheck()
        ):
            return CheckResult(
                name,
                False,
                "has no healthcheck, so qfstack cannot tell that it is ready; "
                "give it one in compose.override.yml.",
                permanent=True,
            )
        else:
            return None
        evidence = [
            f"health check: {line}"
            for line in self.stack.health_log(state.container_id)
        ]
        evidence.append("last log lines:")
        evidence += [f"  {line}" for line in self.stack.logs(state.service)] or [
            "  (no output)"
        ]
        return CheckResult(name, False, detail, permanent=True, evidence=evidence)

    def evidence(self, detail: str) -> list[str]:
        """The last log lines of the services still pending in `detail`."""
        lines: list[str] = []
        for item in detail.split("; "):
            service = item.split(":", 1)[0]
            if service in self.services:
                lines.append(f"last log lines of {service}:")
                lines.extend(
                    f"  {line}" for line in self.stack.logs(service) or ["(no output)"]
                )
        return lines


Progress = Callable[[float, Sequence[CheckResult]], None]


def wait_until_ready(
    checks: Sequence[Check],
    timeout: float,
    *,
    interval: float = 0.25,
    on_progress: Progress | None = None,
) -> list[CheckResult]:
    """Poll `checks` until all pass; raise NotReadyError otherwise.

    A check with a `poll_interval` attribute is asked that often; the others
    every `interval` seconds. Between two asks a check's last result stands.
    """
    start = time.monotonic()
    deadline = start + timeout
    due = [start] * len(checks)
    latest: list[CheckResult | None] = [None] * len(checks)
    while True:
        for index, check in enumerate(checks):
            if latest[index] is not None and time.monotonic() < due[index]:
                continue
            result = check.check()
            latest[index] = result
            due[index] = time.monotonic() + getattr(check, "poll_interval", interval)
            if result.permanent:
                raise NotReadyError(
                    f"{result.name} failed and will not recover by waiting",
                    [Pending(result.name, result.detail, result.evidence)],
                )
        results = [r for r in latest if r is not None]
        if all(r.ok for r in results):
            return results
        now = time.monotonic()
        if on_progress is not None:
            on_progress(now - start, results)
        if now >= deadline:
            raise NotReadyError(
                f"not ready after {timeout:.0f}s",
                [
                    _pending(check, r)
                    for check, r in zip(checks, results, strict=True)
                    if not r.ok
                ],
            )
        time.sleep(max(0.0, min(min(due), deadline) - time.monotonic()))


def _pending(check: Check, result: CheckResult) -> Pending:
    evidence = list(result.evidence)
    if isinstance(check, ServicesCheck) and not evidence:
        evidence = check.evidence(result.detail)
    return Pending(result.name, result.detail, evidence)
