"""What QuFabric needs of its OIDC client in PocketID, and checking a client.

`client_spec(config)` derives the client QuFabric's dashboard and CLI log in
with; `check_client` compares what PocketID reports against it. Provisioning
creates clients from the same spec, so the two never disagree.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

from qfstack.checks import Level, Verdict
from qfstack.config import Config
from qfstack.pocketid import OidcClient

GROUP = "oidc client"
# The name the guide gives the client in PocketID.
CLIENT_NAME = "QuFabric"


@dataclass(frozen=True)
class ClientSpec:
    """The OIDC client QuFabric needs: public, with PKCE, these exact URLs."""

    client_id: str
    callback_urls: tuple[str, ...]
    logout_callback_urls: tuple[str, ...]
    public: bool = True
    pkce: bool = True
    name: str = CLIENT_NAME
    # Where PocketID's own dashboard sends users to open QuFabric.
    launch_url: str = ""


def dashboard_origin(config: Config) -> str:
    """The scheme, host and port browsers open the dashboard at.

    A local stack (QUFABRIC_DOMAIN localhost or 127.0.0.1) serves plain http
    on QFSTACK_DASHBOARD_HTTP_PORT; any other domain https on
    QFSTACK_DASHBOARD_HTTPS_PORT. A port is written only when it is not the
    scheme's default (80, 443). With Let's Encrypt disabled a reverse proxy
    answers for the stack on the standard https port, so no port is written.
    """
    if config.local:
        scheme, port, default = "http", config.dashboard_http_port, 80
    else:
        scheme, port, default = "https", config.dashboard_https_port, 443
        if config.letsencrypt_domain == "none":
            port = default
    suffix = "" if port == default else f":{port}"
    return f"{scheme}://{config.domain}{suffix}"


def client_spec(config: Config) -> ClientSpec:
    """The client `config` needs, with every URL PocketID must match exactly.

    Callback URLs: `http://localhost:<port>` for each PKCE port (the CLI's
    loopback redirect), then the dashboard origin joined with
    QUFABRIC_AUTH_REDIRECT_URI and QUFABRIC_AUTH_SILENT_REDIRECT_URI
    (by default `https://<domain>/auth` and `https://<domain>/silent-auth`).
    Logout callback: the dashboard origin with a trailing slash; launch URL:
    the dashboard origin.
    """
    dashboard = dashboard_origin(config)
    callbacks = [
        *config.pkce_redirect_urls,
        dashboard + config.redirect_uri,
        dashboard + config.silent_redirect_uri,
    ]
    return ClientSpec(
        client_id=config.client_id,
        callback_urls=tuple(dict.fromkeys(callbacks)),
        logout_callback_urls=(dashboard + "/",),
        launch_url=dashboard,
    )


def check_client(
    spec: ClientSpec,
    client: OidcClient | None,
    *,
    others: Sequence[OidcClient] = (),
) -> list[Verdict]:
    """Verdicts on `client` against `spec`; `others` help name a near miss."""
    if client is None:
        evidence = tuple(f"existing client: {c.id} ({c.name})" for c in others)
        return [
            _verdict(
                "exists",
                "fail",
                f"PocketID has no OIDC client with the id {spec.client_id!r}.",
                evidence=evidence or ("PocketID has no OIDC clients at all.",),
                fix="run `qfstack pocketid provision` to create it (or create it "
                "in PocketID: Administration -> OIDC Clients -> Add OIDC Client, "
                "a public client with PKCE), or set QUFABRIC_AUTH_CLIENT_ID to "
                "the id of the existing one.",
            )
        ]

    where = f"Administration -> OIDC Clients -> {client.name}"
    verdicts = [_verdict("exists", "pass", f"{client.id} ({client.name}).")]
    if client.is_public:
        verdicts.append(_verdict("public", "pass", "public client."))
    else:
        verdicts.append(
            _verdict(
                "public",
                "fail",
                "the client is confidential; QuFabric's dashboard and CLI are "
                "public clients that hold no secret, so PocketID refuses their "
                "token requests.",
                fix=f"{where}: turn on 'Public Client'.",
            )
        )
    if client.pkce_enabled:
        verdicts.append(_verdict("pkce", "pass", "PKCE is on."))
    else:
        verdicts.append(
            _verdict(
                "pkce",
                "fail",
                "PKCE is off for the client; QuFabric logs in with PKCE (S256).",
                fix=f"{where}: turn on 'PKCE' (a public client has it on).",
            )
        )
    verdicts.append(
        _urls_verdict(
            "callback urls",
            spec.callback_urls,
            client.callback_urls,
            where,
            "Callback URLs",
        )
    )
    verdicts.append(
        _urls_verdict(
            "logout url",
            spec.logout_callback_urls,
            client.logout_callback_urls,
            where,
            "Logout Callback URLs",
        )
    )
    verdicts.append(_groups_verdict(client, where))
    return verdicts


def _urls_verdict(
    name: str,
    expected: Sequence[str],
    actual: Sequence[str],
    where: str,
    field: str,
) -> Verdict:
    """Each expected URL must be listed exactly, as PocketID compares them."""
    missing: list[str] = []
    by_pattern: list[str] = []
    evidence = [f"configured in PocketID: {', '.join(actual) or '(none)'}"]
    for url in expected:
        if url in actual:
            continue
        pattern = next((p for p in actual if "*" in p and _wildcard(p, url)), None)
        if pattern is not None:
            by_pattern.append(url)
            evidence.append(f"{url} matches only the pattern {pattern}")
            continue
        missing.append(url)
        near = [a for a in actual if _normal(a) == _normal(url)]
        for other in near:
            evidence.append(f"{other!r} is close to {url!r} but not equal")
    if missing:
        return _verdict(
            name,
            "fail",
            f"missing {', '.join(missing)}; PocketID compares them exactly "
            "(scheme, port, path and trailing slash), so logins there fail.",
            evidence=evidence,
            fix=f"{where}: add exactly {', '.join(missing)} to {field}.",
        )
    if by_pattern:
        return _verdict(
            name,
            "warn",
            f"{', '.join(by_pattern)} only match a wildcard pattern.",
            evidence=evidence,
            fix=f"{where}: list them exactly in {field}; a pattern admits more "
            "URLs than QuFabric needs.",
        )
    return _verdict(
        name, "pass", f"{', '.join(expected)} listed exactly.", evidence=evidence
    )


def _wildcard(pattern: str, url: str) -> bool:
    escaped = re.sub(r"([\[\]?])", r"[\1]", pattern)
    return fnmatch.fnmatchcase(url, escaped)


def _normal(url: str) -> str:
    """A URL with the differences PocketID does not forgive taken out."""
    url = url.lower().rstrip("/")
    return re.sub(r"^https?://", "", url)


def _groups_verdict(client: OidcClient, where: str) -> Verdict:
    """Whether users can reach the client (2.x restricts it to groups)."""
    restricted = client.is_group_restricted
    if restricted is None:
        # 1.x: an empty list lets every user in, a non-empty one its members.
        restricted = bool(client.allowed_groups)
    groups = client.allowed_groups
    names = ", ".join(f"{g.friendly_name} ({g.user_count} users)" for g in groups)
    evidence = (f"allowed user groups: {names or '(none)'}",)
    if not restricted:
        return _verdict(
            "user groups", "pass", "every user may log in.", evidence=evidence
        )
    if not groups:
        return _verdict(
            "user groups",
            "fail",
            "the client is restricted to user groups but allows none, so nobody "
            "can log in (PocketID answers 403 \"You're not allowed to access this "
            'service").',
            evidence=evidence,
            fix=f"{where}: add the groups of QuFabric's users under 'Allowed User "
            "Groups', or turn the group restriction off.",
        )
    if all(g.user_count == 0 for g in groups):
        return _verdict(
            "user groups",
            "warn",
            "the allowed user groups have no members yet, so nobody can log in.",
            evidence=evidence,
            fix="add QuFabric's users to one (Administration -> User Groups).",
        )
    return _verdict(
        "user groups",
        "pass",
        f"restricted to {', '.join(g.friendly_name for g in groups)}.",
        evidence=evidence,
    )


def _verdict(
    name: str,
    level: Level,
    summary: str,
    *,
    evidence: Sequence[str] = (),
    fix: str = "",
) -> Verdict:
    return Verdict(GROUP, name, level, summary, tuple(evidence), fix)
