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
from urllib.parse import urlsplit

import httpx

from qfstack.config import Config
from qfstack.errors import ComposeError, IdentityProviderError, NotReadyError, Pending
from qfstack.oidc import Discovery, fetch_discovery, fetch_jwks, origin
from qfstack.stack import Stack

logger = logging.getLogger(__name__)

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
    """The discovery document answers with the right issuer and a usable JWKS."""

    name = "identity provider"

    def __init__(self, config: Config, client: httpx.Client) -> None:
        self.config = config
        self.client = client
        self.discovery: Discovery | None = None
        self._last_full = 0.0
        host = urlsplit(config.configuration_endpoint).hostname or ""
        # PocketID limits other hosts to 1 request/s (burst 60); stay well under.
        self._min_gap = 0.0 if host in ("localhost", "127.0.0.1", "::1") else 2.0

    def check(self) -> CheckResult:
        health = self._healthz()
        if health is not None:
            return health
        wait = self._last_full + self._min_gap - time.monotonic()
        if wait > 0:
            return CheckResult(self.name, False, "waiting to ask again (rate limit)")
        self._last_full = time.monotonic()
        try:
            discovery = fetch_discovery(
                self.client, self.config.configuration_endpoint, self.config.authority
            )
            keys = fetch_jwks(self.client, discovery.jwks_uri)
        except IdentityProviderError as exc:
            detail = exc.detail + (f" Fix: {exc.fix}" if exc.fix else "")
            return CheckResult(
                f"{self.name} ({exc.check})", False, detail, permanent=exc.permanent
            )
        self.discovery = discovery
        return CheckResult(
            self.name, True, f"issuer {discovery.issuer}, {len(keys)} signing key(s)"
        )

    def _healthz(self) -> CheckResult | None:
        """PocketID's /healthz is cheap and not rate limited: ask it first."""
        if not self.config.bundled_pocketid:
            return None
        url = origin(self.config.configuration_endpoint) + "/healthz"
        try:
            response = self.client.get(url)
        except httpx.HTTPError as exc:
            return CheckResult(
                f"{self.name} (health)", False, f"GET {url} failed: {exc}"
            )
        if response.status_code not in (200, 204):
            return CheckResult(
                f"{self.name} (health)",
                False,
                f"GET {url} answered {response.status_code}",
            )
        return None


class ServicesCheck:
    """Every service of the project runs and reports healthy."""

    name = "services"

    def __init__(self, stack: Stack, services: Sequence[str]) -> None:
        self.stack = stack
        self.services = list(services)

    def check(self) -> CheckResult:
        try:
            states = {state.service: state for state in self.stack.ps()}
        except ComposeError as exc:
            return CheckResult(self.name, False, exc.message)
        pending: list[str] = []
        for service in self.services:
            state = states.get(service)
            if state is None:
                pending.append(f"{service}: no container")
            elif state.state in FAILED_STATES:
                return CheckResult(
                    f"service {service}",
                    False,
                    f"{state.state} ({state.status}), exit code {state.exit_code}",
                    permanent=True,
                    evidence=self.stack.logs(service),
                )
            elif state.health == "unhealthy":
                return CheckResult(
                    f"service {service}",
                    False,
                    f"unhealthy ({state.status})",
                    permanent=True,
                    evidence=self.stack.logs(service),
                )
            elif not state.ready:
                pending.append(f"{service}: {state.state}, health {state.health}")
        if pending:
            return CheckResult(self.name, False, "; ".join(pending))
        return CheckResult(self.name, True, f"{len(self.services)} healthy")

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
    """Poll `checks` until all pass; raise NotReadyError otherwise."""
    start = time.monotonic()
    deadline = start + timeout
    passed: dict[str, CheckResult] = {}
    while True:
        results = []
        for check in checks:
            result = check.check()
            results.append(result)
            if result.permanent:
                raise NotReadyError(
                    f"{result.name} failed and will not recover by waiting",
                    [Pending(result.name, result.detail, result.evidence)],
                )
            if result.ok:
                passed[check.name] = result
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
        time.sleep(min(interval, max(0.0, deadline - now)))


def _pending(check: Check, result: CheckResult) -> Pending:
    evidence = list(result.evidence)
    if isinstance(check, ServicesCheck) and not evidence:
        evidence = check.evidence(result.detail)
    return Pending(result.name, result.detail, evidence)
