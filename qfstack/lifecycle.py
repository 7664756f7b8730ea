"""The operations behind `up`, `status` and `down`, as plain functions.

They take a Config and HttpSettings, return results and raise qfstack errors;
the CLI decides how to show them.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from qfstack.config import SERVICES, VARIABLES, Config, is_secret
from qfstack.errors import IdentityProviderError
from qfstack.files import write_atomic
from qfstack.oidc import HttpSettings, fetch_discovery, fetch_jwks, http_client
from qfstack.readiness import (
    CheckResult,
    IdentityProviderCheck,
    Progress,
    ServicesCheck,
    wait_until_ready,
)
from qfstack.render import Rendered, render, render_bootstrap
from qfstack.secrets import ensure_secrets, read_stored
from qfstack.stack import ServiceState, Stack

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"


def effective_settings(config: Config, settings: HttpSettings) -> HttpSettings:
    """Add what the configuration implies: its CA bundle, the bundled aliases."""
    if settings.ca_bundle is None and config.ca_bundle is not None:
        settings = replace(settings, ca_bundle=config.ca_bundle)
    if config.bundled_pocketid:
        aliases = {
            config.pocketid_internal_url: config.pocketid_url,
            **settings.aliases,
        }
        settings = replace(settings, aliases=aliases)
    return settings


@dataclass
class UpResult:
    project: str
    rendered: Rendered
    checks: list[CheckResult]
    seconds: float


def up(
    config: Config,
    settings: HttpSettings,
    *,
    timeout: float,
    on_progress: Progress | None = None,
) -> UpResult:
    """Render, start, and wait until the identity provider and every service
    are ready; only then mark the stack healthy."""
    start = time.monotonic()
    deadline = start + timeout
    config = ensure_secrets(config)
    stack = Stack(config)
    _clear_state(config)

    with http_client(effective_settings(config, settings)) as client:
        idp = IdentityProviderCheck(config, client)
        if config.bundled_pocketid:
            render_bootstrap(config)
            stack.up(["pocketid"], no_deps=True)
        wait_until_ready([idp], _left(deadline), on_progress=on_progress)
        assert idp.discovery is not None
        rendered = render(config, idp.discovery)

        stack.up()
        services = ServicesCheck(stack, stack.services())
        checks = wait_until_ready(
            [idp, services], _left(deadline), on_progress=on_progress
        )

    seconds = time.monotonic() - start
    _write_state(config, {"healthy": True, "since": _now(), "seconds": seconds})
    return UpResult(config.project, rendered, checks, seconds)


def render_stack(config: Config, settings: HttpSettings) -> Rendered:
    """Fetch and check the discovery document once, then write artifacts/."""
    config = ensure_secrets(config)
    with http_client(effective_settings(config, settings)) as client:
        try:
            discovery = fetch_discovery(
                client, config.configuration_endpoint, config.authority
            )
            fetch_jwks(client, discovery.jwks_uri)
        except IdentityProviderError as exc:
            if config.bundled_pocketid:
                exc.details.append(
                    "The bundled PocketID answers only while the stack runs: "
                    "`qfstack up` renders and starts it."
                )
            raise
    return render(config, discovery)


def compose_config(config: Config) -> str:
    """The merged Compose configuration, as `docker compose config` prints it."""
    return Stack(config).config_yaml()


def secret_values(config: Config) -> dict[str, str]:
    """Every secret value the configuration knows, for masking output."""
    known = {**config.values, **config.secrets}
    known.update(read_stored(config.directory))
    return {
        name: value
        for name, value in known.items()
        if value
        and (
            is_secret(name)
            or (
                name not in VARIABLES
                and name.endswith(("TOKEN", "SECRET", "PASSWORD", "KEY"))
            )
        )
    }


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


@dataclass
class Status:
    project: str
    services: list[ServiceState]
    missing: list[str]
    identity_provider: CheckResult
    issuer: str
    urls: dict[str, str] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return (
            bool(self.services)
            and not self.missing
            and all(s.ready for s in self.services)
            and self.identity_provider.ok
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "healthy": self.healthy,
            "services": [s.as_dict() for s in self.services]
            + [
                {
                    "service": name,
                    "state": "missing",
                    "health": "none",
                    "status": "",
                    "ports": [],
                }
                for name in self.missing
            ],
            "identity_provider": {
                "ready": self.identity_provider.ok,
                "issuer": self.issuer,
                "detail": self.identity_provider.detail,
            },
            "urls": self.urls,
        }


def expected_services(config: Config) -> list[str]:
    return [*SERVICES, *(["pocketid"] if config.bundled_pocketid else [])]


def status(config: Config, settings: HttpSettings) -> Status:
    """The stack's state now: one `docker compose ps`, one provider check."""
    stack = Stack(config)
    states = sorted(stack.ps(), key=lambda s: s.service)
    present = {s.service for s in states}
    missing = [name for name in expected_services(config) if name not in present]
    with http_client(effective_settings(config, settings)) as client:
        idp = IdentityProviderCheck(config, client)
        result = idp.check()
    issuer = idp.discovery.issuer if idp.discovery else config.authority
    return Status(config.project, states, missing, result, issuer, urls(config))


def urls(config: Config) -> dict[str, str]:
    scheme = "http" if config.local else "https"
    port = config.dashboard_http_port if config.local else config.dashboard_https_port
    default = 80 if config.local else 443
    dashboard = f"{scheme}://{config.domain}" + ("" if port == default else f":{port}")
    result = {
        "dashboard": dashboard,
        "management": config.mgmt_endpoint,
        "identity_provider": config.authority,
    }
    return result


def down(config: Config, *, volumes: bool = False) -> None:
    """Stop and remove the containers; volumes only when asked."""
    Stack(config).down(volumes=volumes)
    _clear_state(config)


def _write_state(config: Config, state: dict[str, Any]) -> None:
    state = {"project": config.project, **state}
    write_atomic(config.artifacts / STATE_FILE, json.dumps(state, indent=2) + "\n")


def _clear_state(config: Config) -> None:
    path = config.artifacts / STATE_FILE
    if path.exists():
        write_atomic(
            path, json.dumps({"project": config.project, "healthy": False}) + "\n"
        )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
