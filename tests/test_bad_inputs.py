"""Bad inputs, one per row: the exit code, the name in the message, no change.

Every row is a small setup.env (the seed's, filled in, with one thing wrong)
or a discovery document served by a real HTTP server on 127.0.0.1. Each runs
through the real command line and checks that the variable (or the
discovery field) is named, that the exit code is right, that no secret is
shown, and that no file in the stack directory changed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from qfstack.cli import cli
from tests.support.oidc_server import (
    JWKS_PATH,
    PROXY_VARIABLES,
    WELL_KNOWN,
    Answer,
    OidcServer,
    json_answer,
    oidc_server,
)
from tests.support.stack import seed_setup_env

CLIENT_ID = "client-123"
API_TOKEN = "api-token-0123456789abcdef"
SECRETS = (API_TOKEN, "stored-turn-password-0123", "stored-relay-secret-0123")
SECRETS_ENV = (
    "QUFABRIC_TURN_PASSWORD='stored-turn-password-0123'\n"
    "QUFABRIC_RELAY_AUTH_SECRET='stored-relay-secret-0123'\n"
)
BASE = (
    seed_setup_env("pocketid.example.com", CLIENT_ID, API_TOKEN)
    + 'QUFABRIC_DOMAIN="qf.example.com"\n'
    + 'QUFABRIC_LETSENCRYPT_EMAIL="admin@example.com"\n'
)
ENDPOINT = "QUFABRIC_AUTH_OIDC_CONFIGURATION_ENDPOINT"
MGMT_ENDPOINT = "QUFABRIC_IDP_MGMT_EXTRA_MANAGEMENT_ENDPOINT"
WELL_KNOWN_URL = "https://pocketid.example.com/.well-known/openid-configuration"

Snapshot = dict[str, tuple[bytes, int]]


def snapshot(directory: Path) -> Snapshot:
    """Every file and directory below `directory`: content and mode."""
    return {
        str(path.relative_to(directory)): (
            path.read_bytes() if path.is_file() else b"",
            path.stat().st_mode,
        )
        for path in sorted(directory.rglob("*"))
    }


def edit(text: str, changes: Mapping[str, str | None]) -> str:
    """`text` with each variable of `changes` replaced, removed (None) or added."""
    lines, left = [], dict(changes)
    for line in text.splitlines():
        name = line.partition("=")[0].strip()
        if name in changes:
            value = left.pop(name, None)
            if value is not None:
                lines.append(f"{name}={value}")
            continue
        lines.append(line)
    lines += [f"{name}={value}" for name, value in left.items() if value is not None]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Bad:
    """One bad setup.env: what to change, and what validate must say."""

    name: str
    changes: Mapping[str, str | None] = field(default_factory=dict)
    named: str = ""
    level: str = "error"
    extra: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    mode: int = 0o600
    # Words the message must hold besides the name (the reason, the fix).
    says: str = ""

    @property
    def code(self) -> int:
        return 2 if self.level == "error" else 0

    def text(self) -> str:
        return edit(BASE, self.changes) + self.extra


def bad(name: str, named: str, value: str | None = None, **kwargs: Any) -> Any:
    """A row that sets the variable `named` to `value` (None removes it)."""
    changes = kwargs.pop("changes", {named: value})
    return pytest.param(Bad(name, changes, named, **kwargs), id=name)


SETUP_ENV_CASES = [
    # Required values.
    bad("domain-missing", "QUFABRIC_DOMAIN", None, says="required"),
    bad("domain-empty", "QUFABRIC_DOMAIN", '""', says="required"),
    bad("endpoint-missing", ENDPOINT, None, says="required"),
    bad("client-id-missing", "QUFABRIC_AUTH_CLIENT_ID", None,
        changes={"QUFABRIC_AUTH_CLIENT_ID": None, "QUFABRIC_AUTH_AUDIENCE": None}),
    bad("api-token-missing", "QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN", None),
    bad("management-endpoint-missing", MGMT_ENDPOINT, None),
    bad("placeholder-left-in-endpoint", ENDPOINT,
        '"https://<YOUR_POCKETID_HOST_AND_PORT>/.well-known/openid-configuration"',
        says="placeholder"),
    bad("placeholder-left-in-client-id", "QUFABRIC_AUTH_CLIENT_ID", "<CLIENT_ID>",
        changes={"QUFABRIC_AUTH_CLIENT_ID": "<CLIENT_ID>",
                 "QUFABRIC_AUTH_AUDIENCE": "<CLIENT_ID>"}, says="<CLIENT_ID>"),
    bad("placeholder-left-in-api-token", "QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN",
        "<API_TOKEN>", says="placeholder"),
    # Malformed values.
    bad("domain-with-scheme", "QUFABRIC_DOMAIN", "https://qf.example.com",
        says="without scheme"),
    bad("domain-with-port", "QUFABRIC_DOMAIN", "qf.example.com:443"),
    bad("endpoint-without-scheme", ENDPOINT,
        "pocketid.example.com/.well-known/openid-configuration", says="http(s) URL"),
    bad("endpoint-bad-port", ENDPOINT,
        "https://pocketid.example.com:99999/.well-known/openid-configuration",
        says="port"),
    bad("endpoint-bad-host", ENDPOINT,
        "https://pocket id.example.com/.well-known/openid-configuration"),
    bad("endpoint-with-credentials", ENDPOINT,
        "https://admin:hunter2-password@pocketid.example.com"
        "/.well-known/openid-configuration", says="password"),
    bad("endpoint-without-well-known", ENDPOINT, "https://pocketid.example.com",
        says="/.well-known/openid-configuration"),
    bad("endpoint-trailing-slash", ENDPOINT, WELL_KNOWN_URL + "/",
        says="must end with"),
    bad("endpoint-double-slash", ENDPOINT,
        "https://pocketid.example.com//.well-known/openid-configuration",
        says="double slash"),
    bad("endpoint-with-query", ENDPOINT, WELL_KNOWN_URL + "?x=1"),
    bad("endpoint-http-non-local", ENDPOINT,
        "http://pocketid.example.com/.well-known/openid-configuration",
        says="https"),
    bad("management-endpoint-with-path", MGMT_ENDPOINT,
        "https://pocketid.example.com/api", says="path"),
    bad("management-endpoint-http-non-local", MGMT_ENDPOINT,
        "http://pocketid.example.com", says="unencrypted"),
    bad("management-endpoint-not-url", MGMT_ENDPOINT, "pocketid.example.com"),
    bad("api-port-out-of-range", "QUFABRIC_MGMT_API_PORT", "99999",
        says="1 to 65535"),
    bad("signal-port-not-a-number", "QUFABRIC_SIGNAL_PORT", "ten"),
    bad("relay-port-zero", "QUFABRIC_RELAY_PORT", "0"),
    bad("dashboard-port-negative", "QFSTACK_DASHBOARD_HTTPS_PORT", "-443"),
    bad("ports-clash", "QUFABRIC_SIGNAL_PORT", "33073", says="QUFABRIC_MGMT_API_PORT"),
    bad("turn-port-range-reversed", "QUFABRIC_TURN_MIN_PORT", "60000",
        changes={"QUFABRIC_TURN_MIN_PORT": "60000", "QUFABRIC_TURN_MAX_PORT": "50000"},
        says="swap"),
    bad("pkce-ports-not-numbers", "QUFABRIC_AUTH_PKCE_REDIRECT_URL_PORTS",
        "53000,abc"),
    bad("use-auth0-not-boolean", "QUFABRIC_USE_AUTH0", "maybe", says="true or false"),
    bad("letsencrypt-flag-not-boolean", "QUFABRIC_DISABLE_LETSENCRYPT", '"yes please"'),
    bad("dash-audience-flag-typo", "QUFABRIC_DASH_AUTH_USE_AUDIENCE", "treu"),
    bad("device-id-token-not-boolean", "QUFABRIC_AUTH_DEVICE_AUTH_USE_ID_TOKEN", "2"),
    bad("bind-address-not-ip", "QFSTACK_BIND_ADDRESS", "localhost"),
    bad("turn-domain-not-a-host", "QUFABRIC_TURN_DOMAIN", '"turn example.com"'),
    bad("dns-domain-not-a-host", "QUFABRIC_MGMT_DNS_DOMAIN", "-bad-.selfhosted"),
    bad("letsencrypt-email-malformed", "QUFABRIC_LETSENCRYPT_EMAIL", "admin"),
    bad("turn-user-with-colon", "QUFABRIC_TURN_USER", "self:x", says="':'"),
    bad("datastore-key-not-base64", "QUFABRIC_DATASTORE_ENCRYPTION_KEY",
        "not-a-real-key", says="base64"),
    bad("datastore-key-too-short", "QUFABRIC_DATASTORE_ENCRYPTION_KEY",
        "c2hvcnQ=", says="32 byte"),
    bad("quote-in-client-secret", "QUFABRIC_AUTH_CLIENT_SECRET", '"it\'s-secret"',
        says="single quote"),
    bad("ca-bundle-missing", "QFSTACK_CA_BUNDLE", "/nonexistent/ca.pem",
        says="not a file"),
    bad("project-name-unusable", "QFSTACK_PROJECT", '"---"'),
    bad("coturn-network-unknown", "QFSTACK_COTURN_NETWORK", "overlay"),
    # QuFabric settings that cannot work with PocketID.
    bad("use-auth0-with-pocketid", "QUFABRIC_USE_AUTH0", "true", says="PocketID"),
    bad("audience-differs-from-client-id", "QUFABRIC_AUTH_AUDIENCE", "other-api",
        says=CLIENT_ID),
    bad("scopes-without-openid", "QUFABRIC_AUTH_SUPPORTED_SCOPES",
        '"profile email groups"', says="openid"),
    bad("redirect-not-a-path", "QUFABRIC_AUTH_REDIRECT_URI", "auth", says="'/'"),
    bad("redirect-full-url", "QUFABRIC_AUTH_REDIRECT_URI",
        "https://qf.example.com/auth", says="'/'"),
    bad("silent-redirect-not-a-path", "QUFABRIC_AUTH_SILENT_REDIRECT_URI",
        "silent-auth", says="'/'"),
    bad("token-source-unknown", "QUFABRIC_TOKEN_SOURCE", "id_token",
        says="accessToken, idToken"),
    bad("device-provider-unknown", "QUFABRIC_AUTH_DEVICE_AUTH_PROVIDER", "pkce"),
    bad("device-scope-without-openid", "QUFABRIC_AUTH_DEVICE_AUTH_SCOPE", "profile",
        changes={"QUFABRIC_AUTH_DEVICE_AUTH_PROVIDER": "hosted",
                 "QUFABRIC_AUTH_DEVICE_AUTH_SCOPE": "profile"}),
    bad("idp-manager-unsupported", "QUFABRIC_MGMT_IDP", "zitadel", says="pocketid"),
    bad("postgres-without-dsn", "QUFABRIC_STORE_ENGINE_POSTGRES_DSN", None,
        changes={"QUFABRIC_STORE_CONFIG_ENGINE": "postgres"}, says="postgres"),
    bad("mysql-without-dsn", "QUFABRIC_STORE_ENGINE_MYSQL_DSN", None,
        changes={"QUFABRIC_STORE_CONFIG_ENGINE": "mysql"}, says="mysql"),
    bad("store-engine-unknown", "QUFABRIC_STORE_CONFIG_ENGINE", "mongodb"),
    bad("bundled-with-another-endpoint", ENDPOINT, WELL_KNOWN_URL,
        changes={"QFSTACK_BUNDLED_POCKETID": "true"}, says="bundled"),
    # An invalid TURN external IP, with the reason.
    bad("turn-ip-host-name", "QUFABRIC_TURN_EXTERNAL_IP", "turn.example.com",
        says="not an IP address"),
    bad("turn-ip-out-of-range", "QUFABRIC_TURN_EXTERNAL_IP", "300.1.2.3",
        says="not an IP address"),
    bad("turn-ip-unspecified", "QUFABRIC_TURN_EXTERNAL_IP", "0.0.0.0",
        says="cannot reach"),
    bad("turn-ip-loopback", "QUFABRIC_TURN_EXTERNAL_IP", "127.0.0.1",
        says="cannot reach"),
    bad("turn-ip-with-port", "QUFABRIC_TURN_EXTERNAL_IP", "203.0.113.7:3478",
        says="not an IP address"),
    # The file itself.
    bad("unknown-qufabric-variable", "QUFABRIC_AUTH_CLIENTID",
        changes={"QUFABRIC_AUTH_CLIENTID": "x"}, says="QUFABRIC_AUTH_CLIENT_ID"),
    bad("unclosed-quote", "QUFABRIC_AUTH_CLIENT_ID", changes={},
        extra='QUFABRIC_AUTH_CLIENT_ID="client-123\n', says="line"),
    bad("line-without-equals", "setup.env line 22", changes={},
        extra="QUFABRIC DOMAIN qf.example.com\n"),
    # Warnings: reported by name, exit 0.
    bad("scopes-without-groups", "QUFABRIC_AUTH_SUPPORTED_SCOPES",
        '"openid profile email"', level="warning", says="group claims"),
    bad("device-none-with-client-id", "QUFABRIC_AUTH_DEVICE_AUTH_PROVIDER",
        changes={}, level="warning", says='honours "none"'),
    bad("management-endpoint-not-the-idp", MGMT_ENDPOINT,
        "https://other.example.com", level="warning"),
    bad("turn-ip-private", "QUFABRIC_TURN_EXTERNAL_IP", "10.0.0.5",
        level="warning", says="private"),
    bad("idp-on-loopback", ENDPOINT,
        "http://127.0.0.1:1411/.well-known/openid-configuration",
        changes={ENDPOINT: "http://127.0.0.1:1411/.well-known/openid-configuration",
                 MGMT_ENDPOINT: "http://127.0.0.1:1411"},
        level="warning", says="container"),
    bad("variable-set-twice", "QUFABRIC_SIGNAL_PORT", changes={},
        extra="QUFABRIC_SIGNAL_PORT=10000\nQUFABRIC_SIGNAL_PORT=10001\n",
        level="warning", says="last one wins"),
    bad("unknown-other-variable", "MY_NOTE", changes={"MY_NOTE": "x"},
        level="warning"),
    bad("setup-env-readable-by-others", "setup.env", changes={}, mode=0o644,
        level="warning", says="chmod 600"),
    bad("letsencrypt-email-missing", "QUFABRIC_LETSENCRYPT_EMAIL", None,
        level="warning"),
    bad("shell-exports-another-domain", "QUFABRIC_DOMAIN", changes={},
        env={"QUFABRIC_DOMAIN": "old.example.com"}, level="warning",
        says="old.example.com"),
    bad("shell-exports-an-unset-port", "QUFABRIC_RELAY_PORT", changes={},
        env={"QUFABRIC_RELAY_PORT": "1234"}, level="warning", says="33080"),
    bad("shell-exports-another-api-token", "QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN",
        changes={}, env={"QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN": "stale-token-0123456"},
        level="warning", says="different value"),
]


def _clean_env(extra: Mapping[str, str]) -> dict[str, str | None]:
    """The runner's environment: no QUFABRIC_* or QFSTACK_* of this shell."""
    env: dict[str, str | None] = {
        name: None for name in os.environ if name.startswith(("QUFABRIC_", "QFSTACK_"))
    }
    env.update(extra)
    return env


def run(directory: Path, *args: str, env: Mapping[str, str] | None = None) -> Result:
    return CliRunner().invoke(
        cli, ["--dir", str(directory), *args], env=_clean_env(env or {})
    )


def line_naming(output: str, level: str, name: str) -> str:
    prefix = f"{level}: {name}"
    lines = [line for line in output.splitlines() if line.strip().startswith(prefix)]
    assert lines, f"no {prefix!r} line in:\n{output}"
    return lines[0]


@pytest.mark.parametrize("case", SETUP_ENV_CASES)
def test_a_bad_setup_env_is_named_and_changes_nothing(
    tmp_path: Path, case: Bad
) -> None:
    (tmp_path / "setup.env").write_text(case.text())
    (tmp_path / "setup.env").chmod(case.mode)
    (tmp_path / "secrets.env").write_text(SECRETS_ENV)
    (tmp_path / "secrets.env").chmod(0o600)
    before = snapshot(tmp_path)

    result = run(tmp_path, "validate", env=case.env)
    assert result.exit_code == case.code, result.output
    line = line_naming(result.output, case.level, case.named)
    assert "Fix:" in line, line
    assert case.says in line, line
    if case.level == "error":
        # render refuses the same file before it fetches or writes anything.
        rendered = run(tmp_path, "render", env=case.env)
        assert rendered.exit_code == 2, rendered.output
        line_naming(rendered.output, case.level, case.named)
    for secret in (*SECRETS, "hunter2-password", "stale-token-0123456"):
        assert secret not in result.output
    assert snapshot(tmp_path) == before


@pytest.fixture
def idp(monkeypatch: pytest.MonkeyPatch) -> Iterator[OidcServer]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with oidc_server() as server:
        yield server


@dataclass(frozen=True)
class BadDocument:
    """One bad answer of the identity provider: what render must name."""

    name: str
    named: str
    document: Mapping[str, Any] = field(default_factory=dict)
    answers: Mapping[str, Answer] = field(default_factory=dict)
    jwks: Any = None
    changes: Mapping[str, str | None] = field(default_factory=dict)


def doc(name: str, named: str, **kwargs: Any) -> Any:
    return pytest.param(BadDocument(name, named, **kwargs), id=name)


HTML = Answer(200, b"<html><body>Welcome</body></html>", "text/html")

DISCOVERY_CASES = [
    doc("issuer-missing", "issuer", document={"issuer": ...}),
    doc("issuer-null", "issuer", document={"issuer": None}),
    doc("issuer-string-null", "issuer 'null'", document={"issuer": "null"}),
    doc("issuer-with-trailing-slash", "trailing slash", document={"issuer": "{base}/"}),
    doc("issuer-of-another-host", "issuer",
        document={"issuer": "https://elsewhere.example.com"}),
    doc("jwks-uri-missing", "jwks_uri", document={"jwks_uri": ...}),
    doc("jwks-uri-null", "jwks_uri", document={"jwks_uri": None}),
    doc("jwks-not-found", "jwks.json answered 404",
        answers={JWKS_PATH: Answer(404, b"", "text/plain")}),
    doc("jwks-without-keys", "jwks", jwks={"keys": []}),
    doc("jwks-keys-not-a-list", "keys", jwks={"keys": "none"}),
    doc("token-endpoint-missing", "token_endpoint", document={"token_endpoint": ...}),
    doc("token-endpoint-null", "token_endpoint", document={"token_endpoint": None}),
    doc("token-endpoint-string-null", 'token_endpoint = "null"',
        document={"token_endpoint": "null"}),
    doc("token-endpoint-empty", "token_endpoint", document={"token_endpoint": ""}),
    doc("token-endpoint-a-number", "token_endpoint", document={"token_endpoint": 42}),
    doc("authorization-endpoint-missing", "authorization_endpoint",
        document={"authorization_endpoint": ...}),
    doc("authorization-endpoint-string-null", "authorization_endpoint",
        document={"authorization_endpoint": "null"}),
    doc("authorization-endpoint-relative", "authorization_endpoint",
        document={"authorization_endpoint": "/authorize"}),
    doc("device-endpoint-missing-with-hosted", "device_authorization_endpoint",
        document={"device_authorization_endpoint": ...},
        changes={"QUFABRIC_AUTH_DEVICE_AUTH_PROVIDER": "hosted"}),
    doc("device-endpoint-string-null-with-hosted", "device_authorization_endpoint",
        document={"device_authorization_endpoint": "null"},
        changes={"QUFABRIC_AUTH_DEVICE_AUTH_PROVIDER": "hosted"}),
    doc("document-not-an-object", "discovery",
        answers={WELL_KNOWN: json_answer(["issuer"])}),
    doc("document-a-web-page", "discovery", answers={WELL_KNOWN: HTML}),
    doc("discovery-not-found", "404",
        answers={WELL_KNOWN: Answer(404, b"404 page not found", "text/plain")}),
    doc("discovery-server-error", "500",
        answers={WELL_KNOWN: json_answer({"error": "boom"}, 500)}),
]


@pytest.mark.parametrize("case", DISCOVERY_CASES)
def test_a_bad_discovery_answer_is_named_and_changes_nothing(
    tmp_path: Path, idp: OidcServer, case: BadDocument
) -> None:
    text = edit(idp.setup_env(CLIENT_ID, API_TOKEN), case.changes)
    (tmp_path / "setup.env").write_text(text)
    (tmp_path / "setup.env").chmod(0o600)
    first = run(tmp_path, "render")
    assert first.exit_code == 0, first.output
    before = snapshot(tmp_path)

    changes = {
        key: value.format(base=idp.base) if isinstance(value, str) else value
        for key, value in case.document.items()
    }
    idp.serve(idp.document(**changes), jwks=case.jwks, answers=case.answers)
    result = run(tmp_path, "render")
    assert result.exit_code == 1, result.output
    assert case.named in result.output
    assert "error:" in result.output
    assert API_TOKEN not in result.output
    assert snapshot(tmp_path) == before


def test_a_bad_discovery_answer_on_a_fresh_stack_writes_nothing(
    tmp_path: Path, idp: OidcServer
) -> None:
    (tmp_path / "setup.env").write_text(idp.setup_env(CLIENT_ID, API_TOKEN))
    (tmp_path / "setup.env").chmod(0o600)
    before = snapshot(tmp_path)
    idp.serve(idp.document(token_endpoint="null"))
    result = run(tmp_path, "render")
    assert result.exit_code == 1, result.output
    assert "token_endpoint" in result.output
    # Not even the secrets a successful render would have generated.
    assert snapshot(tmp_path) == before


def test_the_table_is_long_enough() -> None:
    assert len(SETUP_ENV_CASES) + len(DISCOVERY_CASES) >= 40
    errors = [c for c in SETUP_ENV_CASES if c.values[0].level == "error"]
    assert len(errors) + len(DISCOVERY_CASES) >= 40
    assert all(stat.S_IMODE(c.values[0].mode) in (0o600, 0o644)
               for c in SETUP_ENV_CASES)
