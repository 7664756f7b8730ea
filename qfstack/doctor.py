"""The operations behind `wait` and `doctor`.

`wait` polls the same readiness checks `up` uses until the stack is ready.
`diagnose` runs every check once, the failed ones included, and returns a
`DoctorReport`: the configuration's warnings, the Docker engine and Compose,
the ports the stack publishes, the identity provider's documents and TLS,
PocketID's API key and QuFabric's OIDC client. Each is a `Verdict` with
its evidence and fix; the CLI shows them, or prints them as JSON.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from qfstack.checks import Level, Verdict, worst
from qfstack.clientspec import check_client, client_spec
from qfstack.config import Config
from qfstack.errors import EXIT_FAILED, EXIT_OK, ComposeError, Finding
from qfstack.oidc import HttpSettings, effective_settings, http_client, origin
from qfstack.pocketid import ApiKey, PocketIdClient, PocketIdError
from qfstack.preflight import (
    disk_findings,
    engine_findings,
    port_findings,
    published_ports,
)
from qfstack.provider import Expectations, ProviderReport, inspect_provider
from qfstack.readiness import (
    Check,
    CheckResult,
    IdentityProviderCheck,
    Progress,
    ServicesCheck,
    wait_until_ready,
)
from qfstack.secrets import read_stored
from qfstack.stack import Stack

logger = logging.getLogger(__name__)

# How long one doctor call may wait for the provider's rate limit.
MAX_WAIT = 15.0
STATIC_KEY = "QFSTACK_POCKETID_STATIC_API_KEY"
API_TOKEN = "QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN"
# An API key that expires sooner than this is reported as a warning.
KEY_EXPIRY_WARNING_DAYS = 30


@dataclass
class WaitResult:
    """The checks that passed and how long the wait took."""

    checks: list[CheckResult]
    seconds: float


def wait(
    config: Config,
    settings: HttpSettings,
    *,
    timeout: float,
    services: bool = True,
    on_progress: Progress | None = None,
) -> WaitResult:
    """Wait until the identity provider (and the services) are ready.

    Raises NotReadyError (exit 3) at the deadline, or at once on a fault that
    waiting cannot heal.
    """
    start = time.monotonic()
    with http_client(effective_settings(config, settings)) as client:
        checks: list[Check] = [IdentityProviderCheck(config, client)]
        if services:
            stack = Stack(config)
            checks.append(ServicesCheck(stack, stack.services()))
        results = wait_until_ready(checks, timeout, on_progress=on_progress)
    return WaitResult(results, time.monotonic() - start)


@dataclass
class DoctorReport:
    """Every verdict, and the checks that could not run and why."""

    project: str
    verdicts: list[Verdict]
    skipped: list[str] = field(default_factory=list)

    @property
    def level(self) -> Level:
        return worst(self.verdicts)

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if self.level == "fail" else EXIT_OK

    def counts(self) -> dict[str, int]:
        levels: tuple[Level, ...] = ("pass", "warn", "fail")
        return {lv: sum(v.level == lv for v in self.verdicts) for lv in levels}

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "ok": self.level != "fail",
            "level": self.level,
            "counts": self.counts(),
            "checks": [v.as_dict() for v in self.verdicts],
            "skipped": list(self.skipped),
        }


def diagnose(
    config: Config, settings: HttpSettings, *, docker: bool = True
) -> DoctorReport:
    """Run every check once; never raises for a failed check."""
    report = DoctorReport(config.project, config_verdicts(config))
    if docker:
        report.verdicts += engine_verdicts()
        report.verdicts += port_verdicts(config)
    else:
        report.skipped.append("docker and ports: not asked (docker=False).")

    with http_client(effective_settings(config, settings)) as client:
        provider = inspect_provider(
            client, Expectations.from_config(config), max_wait=MAX_WAIT
        )
        report.verdicts += provider.verdicts
        verdicts, skipped = pocketid_verdicts(config, client, provider)
        report.verdicts += verdicts
        report.skipped += skipped
    return report


# --- configuration, engine and ports ---------------------------------------


def config_verdicts(config: Config) -> list[Verdict]:
    """setup.env's warnings (its errors stop qfstack before any check)."""
    warnings = [f for f in config.findings if f.level != "info"]
    if not warnings:
        return [Verdict("config", "setup.env", "pass", "valid, no warnings.")]
    return [_from_finding("config", f) for f in warnings]


def _from_finding(group: str, finding: Finding) -> Verdict:
    level: Level = {"error": "fail", "warning": "warn"}.get(  # type: ignore[assignment]
        finding.level, "pass"
    )
    return Verdict(group, finding.variable, level, finding.message, (), finding.fix)


def engine_verdicts() -> list[Verdict]:
    """The Docker engine and Compose plugin: present, answering, recent."""
    try:
        findings = engine_findings()
    except OSError as exc:
        return [
            Verdict(
                "docker",
                "engine",
                "fail",
                f"cannot run docker: {exc.strerror or exc}.",
                (),
                "install Docker Engine and the Compose plugin (or run "
                "scripts/ensure-docker.sh as root).",
            )
        ]
    verdicts = [_from_finding("docker", f) for f in findings]
    if any(f.level == "error" for f in findings):
        return verdicts
    engine, compose = _versions()
    if not any(f.variable == "docker" for f in findings):
        verdicts.insert(
            0, Verdict("docker", "engine", "pass", f"Docker Engine {engine}.")
        )
    if not any(f.variable == "docker compose" for f in findings):
        verdicts.append(Verdict("docker", "compose", "pass", f"Compose {compose}."))
    verdicts += [_from_finding("docker", f) for f in disk_findings()]
    return verdicts


def _versions() -> tuple[str, str]:
    """The engine's and the Compose plugin's versions, as they print them."""
    engine = _run(["docker", "version", "--format", "{{.Server.Version}}"])
    compose = _run(["docker", "compose", "version", "--short"])
    return engine or "(unknown version)", compose or "(unknown version)"


def _run(argv: Sequence[str]) -> str:
    logger.debug("running %s", " ".join(argv))
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def port_verdicts(config: Config) -> list[Verdict]:
    """Each port the stack publishes is free, or held by this stack."""
    owners: dict[tuple[int, str], str] = {}
    try:
        for state in Stack(config).ps():
            for published in state.published:
                owners[published] = state.service
    except ComposeError as exc:
        logger.info("cannot list the project's containers: %s", exc.message)
    ports = published_ports(config)
    try:
        problems = port_findings(ports, set(owners))
    except OSError as exc:  # a port is busy and no docker CLI names its holder
        return [
            Verdict(
                "ports",
                "published",
                "warn",
                f"could not check every port: {exc.strerror or exc}.",
                (),
                "install Docker, then run `qfstack doctor` again.",
            )
        ]
    busy = {(f.variable, _port_in(f.message)) for f in problems}
    verdicts = [_from_finding("ports", f) for f in problems]
    evidence = []
    for port in ports:
        if (port.variable, port.number) in busy:
            continue
        owner = owners.get((port.number, port.protocol))
        holder = f"held by this stack's {owner}" if owner else "free"
        evidence.append(
            f"{port.protocol}/{port.number} on {port.address} ({port.variable}): "
            f"{holder}"
        )
    if evidence:
        verdicts.insert(
            0,
            Verdict(
                "ports",
                "published",
                "pass",
                f"{len(evidence)} of {len(ports)} ports are free or this stack's.",
                tuple(evidence),
            ),
        )
    return verdicts


def _port_in(message: str) -> int:
    """The port number a preflight port finding names."""
    for word in message.split():
        if word.isdigit():
            return int(word)
    return 0


# --- PocketID's API --------------------------------------------------------


def pocketid_verdicts(
    config: Config,
    client: httpx.Client,
    provider: ProviderReport | None,
    *,
    thorough: bool = True,
) -> tuple[list[Verdict], list[str]]:
    """The API key and QuFabric's OIDC client, through PocketID's REST API.

    Two calls (who am I, the client), and with `thorough` two more: the
    key's expiry and PocketID's version; `up` asks only the first two.
    """
    if config.idp_manager != "pocketid" and not config.bundled_pocketid:
        return [], [
            f"PocketID API: the identity provider is {config.idp_manager!r}, "
            "not PocketID."
        ]
    unreachable = [
        v
        for v in (provider.failures if provider else [])
        if v.name in ("connection", "tls") or v.retry_after is not None
    ]
    if unreachable:
        return [], [f"PocketID API: not asked, since {unreachable[0].title} failed."]
    key, source = api_key(config)
    if not key:
        return [], [
            f"PocketID API: no API key yet ({source} is empty; `qfstack up` "
            "creates the bundled PocketID's key)."
        ]

    base = config.pocketid_url if config.bundled_pocketid else origin(config.authority)
    api = PocketIdClient(client, base, key, key_source=source, max_wait=MAX_WAIT)
    try:
        user = api.me()
    except PocketIdError as exc:
        return [_from_error("pocketid api", "api key", exc)], [
            "OIDC client: not checked without a working API key."
        ]
    if not user.is_admin:
        return [
            Verdict(
                "pocketid api",
                "api key",
                "fail",
                f"the API key belongs to {user.username!r}, who is not an admin; "
                "management cannot read users and groups with it.",
                (f"owner: {user.username} ({user.email or 'no email'})",),
                "use a key created by an admin (Administration -> API Keys), or "
                "make the key's owner an admin (Administration -> Users).",
            )
        ], ["OIDC client: not checked without an admin's key."]
    verdicts = [
        Verdict(
            "pocketid api",
            "api key",
            "pass",
            f"valid; it belongs to the admin {user.username!r}.",
        )
    ]
    if thorough:
        verdicts.append(expiry_verdict(api, source))

    spec = client_spec(config)
    try:
        found = api.get_client(spec.client_id)
        others = api.list_clients() if found is None else []
    except PocketIdError as exc:
        client_verdicts = [_from_error("oidc client", "exists", exc)]
    else:
        client_verdicts = check_client(spec, found, others=others)
    if thorough:
        # Last, so that the answers so far have shown what they can.
        verdicts.append(version_verdict(api))
    return verdicts + client_verdicts, []


def version_verdict(api: PocketIdClient) -> Verdict:
    """PocketID's version, as far as it tells; a fail for one qfstack does
    not know (0.x, 3.x)."""
    try:
        text = api.detect_version()
    except PocketIdError as exc:
        return _from_error("pocketid api", "version", exc)
    how = "" if api.version else " (from its answers; it does not announce one)"
    return Verdict("pocketid api", "version", "pass", f"PocketID {text}{how}.")


def api_key(config: Config) -> tuple[ApiKey, str]:
    """The PocketID API key and the variable it comes from.

    The bundled PocketID's is the static key qfstack generated, unless
    setup.env names an API key (PocketID 1.x has no static key).
    """
    token = config.idp_extra.get("ApiToken", "")
    if config.bundled_pocketid and not token:
        value = (
            config.values.get(STATIC_KEY)
            or config.secrets.get(STATIC_KEY)
            or read_stored(config.directory).get(STATIC_KEY, "")
        )
        return ApiKey(value), STATIC_KEY
    return ApiKey(token), API_TOKEN


def expiry_verdict(
    api: PocketIdClient, source: str, now: datetime | None = None
) -> Verdict:
    """When the API key in use expires; a warning within 30 days.

    `GET /api/api-keys` lists the owner's keys but not which one is asking;
    PocketID stamps `lastUsedAt` on each use, so the key used last is this one.
    """
    name = "api key expiry"
    try:
        keys = api.list_api_keys()
    except PocketIdError as exc:
        return Verdict(
            "pocketid api", name, "warn", f"could not list the keys: {exc.detail}"
        )
    if not keys:
        if source == STATIC_KEY:
            return Verdict(
                "pocketid api", name, "pass", "the static API key does not expire."
            )
        return Verdict(
            "pocketid api",
            name,
            "warn",
            "the key's owner lists no API keys, so its expiry is unknown.",
        )

    never = datetime.min.replace(tzinfo=timezone.utc)
    last = max(k.last_used_at or never for k in keys)
    recent = [
        k for k in keys if last - (k.last_used_at or never) <= timedelta(seconds=5)
    ]
    key = min(
        recent, key=lambda k: k.expires_at or datetime.max.replace(tzinfo=timezone.utc)
    )
    evidence = [f"key {key.name!r}"]
    if len(recent) > 1:
        evidence.append(
            f"{len(recent)} keys of this owner were used just now; the one "
            "expiring first is shown"
        )
    if key.expires_at is None:
        return Verdict("pocketid api", name, "pass", "no expiry date.", tuple(evidence))
    now = now or datetime.now(timezone.utc)
    days = (key.expires_at - now).total_seconds() / 86400
    when = key.expires_at.strftime("%Y-%m-%d")
    if days < KEY_EXPIRY_WARNING_DAYS:
        return Verdict(
            "pocketid api",
            name,
            "warn",
            f"the API key expires on {when}, in {max(days, 0):.0f} day(s); "
            "management cannot reach PocketID after that.",
            tuple(evidence),
            "create a new key before then (Administration -> API Keys -> Add "
            f"API Key, with a later expiry), put it in {source} and run "
            "`qfstack up`.",
        )
    return Verdict(
        "pocketid api",
        name,
        "pass",
        f"expires on {when}, in {days:.0f} days.",
        tuple(evidence),
    )


def _from_error(group: str, name: str, exc: PocketIdError) -> Verdict:
    return Verdict(group, name, "fail", exc.detail, (), exc.fix, exc.permanent)


__all__ = [
    "DoctorReport",
    "WaitResult",
    "api_key",
    "diagnose",
    "expiry_verdict",
    "pocketid_verdicts",
    "version_verdict",
    "wait",
]
