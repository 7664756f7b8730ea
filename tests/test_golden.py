"""Golden files: the seed's setup.env renders to known artifacts.

tests/golden/ holds the inputs (the seed's setup.env with its placeholders
filled plus QUFABRIC_DOMAIN, fixed secrets, a PocketID discovery document)
and the expected management.json, turnserver.conf and dashboard.env. Each
rendered file is compared key by key with its golden file, and each golden
file is checked separately against the reference's list of keys, so that
neither can drift without a test saying so.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values

from qfstack.config import load_config
from qfstack.provider import Discovery
from qfstack.render import render
from qfstack.secrets import ensure_secrets

GOLDEN = Path(__file__).resolve().parent / "golden"
ISSUER = "https://pocketid.example.com"
DOMAIN = "qufabric.example.com"
CLIENT_ID = "3b8c1f0e-7d2a-4e59-9a61-0c5f2d8e4b17"
API_TOKEN = "golden-pocketid-api-key-0123456789"
TURN_PASSWORD = "golden-turn-password-0123456789abcdef"
RELAY_SECRET = "golden-relay-secret-0123456789abcdef"
DATASTORE_KEY = "jwfm56Ize4BUN+YewXDIHBbPpSAAibGV2YbMoLOrHEU="

# The keys of management.json as ../shared/reference/qufabric-stack.md lists
# them; `[]` marks the items of a list.
MANAGEMENT_REFERENCE = {
    "Stuns[].Proto",
    "Stuns[].URI",
    "TURNConfig.Turns[].Proto",
    "TURNConfig.Turns[].URI",
    "TURNConfig.Turns[].Username",
    "TURNConfig.Turns[].Password",
    "TURNConfig.CredentialsTTL",
    "TURNConfig.Secret",
    "TURNConfig.TimeBasedCredentials",
    "Relay.Addresses[]",
    "Relay.CredentialsTTL",
    "Relay.Secret",
    "Signal.Proto",
    "Signal.URI",
    "ReverseProxy.TrustedHTTPProxies",
    "ReverseProxy.TrustedHTTPProxiesCount",
    "ReverseProxy.TrustedPeers[]",
    "Datadir",
    "DataStoreEncryptionKey",
    "StoreConfig.Engine",
    "DisableDefaultPolicy",
    *(
        f"HttpConfig.{key}"
        for key in (
            "Address",
            "AuthIssuer",
            "AuthAudience",
            "AuthKeysLocation",
            "AuthUserIDClaim",
            "CertFile",
            "CertKey",
            "IdpSignKeyRefreshEnabled",
            "OIDCConfigEndpoint",
        )
    ),
    "IdpManagerConfig.ManagerType",
    *(
        f"IdpManagerConfig.ClientConfig.{key}"
        for key in ("Issuer", "TokenEndpoint", "ClientID", "ClientSecret", "GrantType")
    ),
    "IdpManagerConfig.ExtraConfig.ManagementEndpoint",
    "IdpManagerConfig.ExtraConfig.ApiToken",
    "DeviceAuthorizationFlow.Provider",
    *(
        f"DeviceAuthorizationFlow.ProviderConfig.{key}"
        for key in (
            "Audience",
            "AuthorizationEndpoint",
            "Domain",
            "ClientID",
            "ClientSecret",
            "TokenEndpoint",
            "DeviceAuthEndpoint",
            "Scope",
            "UseIDToken",
            "RedirectURLs",
        )
    ),
    *(
        f"PKCEAuthorizationFlow.ProviderConfig.{key}"
        for key in (
            "Audience",
            "ClientID",
            "ClientSecret",
            "Domain",
            "AuthorizationEndpoint",
            "TokenEndpoint",
            "Scope",
            "RedirectURLs[]",
            "UseIDToken",
            "DisablePromptLogin",
            "LoginFlag",
        )
    ),
}
# Keys beyond the reference's list that management's own template carries.
MANAGEMENT_EXTRA = {
    "Stuns[].Username",
    "Stuns[].Password",
    "Signal.Username",
    "Signal.Password",
}

DASHBOARD_REFERENCE = {
    "QUFABRIC_MGMT_API_ENDPOINT",
    "QUFABRIC_MGMT_GRPC_API_ENDPOINT",
    "AUTH_AUDIENCE",
    "AUTH_CLIENT_ID",
    "AUTH_CLIENT_SECRET",
    "AUTH_AUTHORITY",
    "USE_AUTH0",
    "AUTH_SUPPORTED_SCOPES",
    "AUTH_REDIRECT_URI",
    "AUTH_SILENT_REDIRECT_URI",
    "QUFABRIC_TOKEN_SOURCE",
    "NGINX_SSL_PORT",
    "LETSENCRYPT_DOMAIN",
    "LETSENCRYPT_EMAIL",
}
# The dashboard refuses to start without these.
DASHBOARD_REQUIRED = {
    "AUTH_AUTHORITY",
    "AUTH_CLIENT_ID",
    "AUTH_AUDIENCE",
    "AUTH_SUPPORTED_SCOPES",
    "USE_AUTH0",
    "QUFABRIC_MGMT_API_ENDPOINT",
}

# turnserver.conf: listening port 3478, TLS port 5349, relay port range,
# fingerprint, long-term credentials with user=self:<password>, a realm, logs
# to stdout, no CLI (external-ip only when known; the seed gives none).
TURN_REFERENCE = {
    "listening-port": "3478",
    "tls-listening-port": "5349",
    "min-port": "49152",
    "max-port": "65535",
    "fingerprint": None,
    "lt-cred-mech": None,
    "user": f"self:{TURN_PASSWORD}",
    "realm": DOMAIN,
    "log-file": "stdout",
    "no-cli": None,
}
TURN_EXTRA = {"no-software-attribute", "pidfile"}


def key_paths(value: Any, prefix: str = "") -> set[str]:
    """Leaf key paths of a JSON value; list items appear as `name[]`."""
    if isinstance(value, dict):
        paths: set[str] = set()
        for key, item in value.items():
            paths |= key_paths(item, f"{prefix}.{key}" if prefix else key)
        return paths
    if isinstance(value, list) and value:
        return set().union(*(key_paths(item, prefix + "[]") for item in value))
    return {prefix}


def leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a JSON value by its path, list items by index."""
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for key, item in value.items():
            result.update(leaves(item, f"{prefix}.{key}" if prefix else key))
        return result
    if isinstance(value, list) and value:
        result = {}
        for index, item in enumerate(value):
            result.update(leaves(item, f"{prefix}[{index}]"))
        return result
    return {prefix: value}


def turn_directives(text: str) -> dict[str, str | None]:
    directives: dict[str, str | None] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert key not in directives, f"{key} is set twice"
        directives[key] = value if sep else None
    return directives


def env_file(path: Path) -> dict[str, str]:
    return {k: v or "" for k, v in dotenv_values(path, interpolate=False).items()}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The golden inputs rendered into a fresh stack directory."""
    directory = tmp_path_factory.mktemp("golden")
    for name in ("setup.env", "secrets.env"):
        shutil.copy(GOLDEN / name, directory / name)
    config = load_config(directory, environ={})
    document = json.loads((GOLDEN / "discovery.json").read_text())
    config = ensure_secrets(config)
    render(config, Discovery(config.configuration_endpoint, document))
    # The pre-seeded secrets were used as they are, not replaced.
    assert (directory / "secrets.env").read_bytes() == (
        GOLDEN / "secrets.env"
    ).read_bytes()
    yield directory / "artifacts"


def test_management_json_matches_its_golden_file_key_by_key(rendered: Path) -> None:
    actual = leaves(json.loads((rendered / "management.json").read_text()))
    golden = leaves(json.loads((GOLDEN / "management.json").read_text()))
    assert sorted(actual) == sorted(golden)
    for key, value in golden.items():
        assert actual[key] == value, key


def test_turnserver_conf_matches_its_golden_file_line_by_line(rendered: Path) -> None:
    actual = turn_directives((rendered / "turnserver.conf").read_text())
    golden = turn_directives((GOLDEN / "turnserver.conf").read_text())
    assert list(actual) == list(golden)
    for key, value in golden.items():
        assert actual[key] == value, key


def test_dashboard_env_matches_its_golden_file_key_by_key(rendered: Path) -> None:
    actual = env_file(rendered / "dashboard.env")
    golden = env_file(GOLDEN / "dashboard.env")
    assert list(actual) == list(golden)
    for key, value in golden.items():
        assert actual[key] == value, key


def test_golden_management_json_has_exactly_the_reference_keys() -> None:
    document = json.loads((GOLDEN / "management.json").read_text())
    paths = key_paths(document)
    assert MANAGEMENT_REFERENCE - paths == set(), "keys the reference lists"
    assert paths - MANAGEMENT_REFERENCE == MANAGEMENT_EXTRA, "keys beyond it"


def test_golden_management_json_holds_the_reference_values() -> None:
    doc = json.loads((GOLDEN / "management.json").read_text())
    discovery = json.loads((GOLDEN / "discovery.json").read_text())
    turn = f"{DOMAIN}:3478"

    assert doc["Stuns"] == [
        {"Proto": "udp", "URI": f"stun:{turn}", "Username": "", "Password": ""}
    ]
    assert doc["TURNConfig"] == {
        "Turns": [
            {
                "Proto": "udp",
                "URI": f"turn:{turn}",
                "Username": "self",
                "Password": TURN_PASSWORD,
            }
        ],
        "CredentialsTTL": "12h",
        "Secret": TURN_PASSWORD,
        "TimeBasedCredentials": False,
    }
    assert doc["Relay"] == {
        "Addresses": [f"rel://{DOMAIN}:33080"],
        "CredentialsTTL": "24h",
        "Secret": RELAY_SECRET,
    }
    assert doc["Signal"]["Proto"] == "http"
    assert doc["Signal"]["URI"] == f"{DOMAIN}:10000"
    assert doc["ReverseProxy"] == {
        "TrustedHTTPProxies": [],
        "TrustedHTTPProxiesCount": 0,
        "TrustedPeers": ["0.0.0.0/0"],
    }
    assert doc["DataStoreEncryptionKey"] == DATASTORE_KEY
    assert doc["StoreConfig"] == {"Engine": "sqlite"}
    assert doc["DisableDefaultPolicy"] is False

    http = doc["HttpConfig"]
    assert http["Address"] == "0.0.0.0:33073"
    assert http["AuthIssuer"] == discovery["issuer"] == ISSUER
    assert http["AuthAudience"] == CLIENT_ID
    assert http["AuthKeysLocation"] == discovery["jwks_uri"]
    assert http["OIDCConfigEndpoint"] == f"{ISSUER}/.well-known/openid-configuration"

    idp = doc["IdpManagerConfig"]
    assert idp["ManagerType"] == "pocketid"
    assert idp["ClientConfig"]["Issuer"] == discovery["issuer"]
    assert idp["ClientConfig"]["TokenEndpoint"] == discovery["token_endpoint"]
    assert idp["ClientConfig"]["ClientID"] == "qufabric"
    assert idp["ClientConfig"]["GrantType"] == "client_credentials"
    # QUFABRIC_IDP_MGMT_EXTRA_MANAGEMENT_ENDPOINT -> ManagementEndpoint, ...
    assert idp["ExtraConfig"] == {"ManagementEndpoint": ISSUER, "ApiToken": API_TOKEN}

    # The seed's PROVIDER="none" is honoured although it sets a client id.
    device = doc["DeviceAuthorizationFlow"]
    assert device["Provider"] == "none"
    assert device["ProviderConfig"]["TokenEndpoint"] == discovery["token_endpoint"]
    assert (
        device["ProviderConfig"]["DeviceAuthEndpoint"]
        == discovery["device_authorization_endpoint"]
    )
    assert device["ProviderConfig"]["UseIDToken"] is True

    pkce = doc["PKCEAuthorizationFlow"]["ProviderConfig"]
    assert pkce["AuthorizationEndpoint"] == discovery["authorization_endpoint"]
    assert pkce["TokenEndpoint"] == discovery["token_endpoint"]
    assert pkce["ClientID"] == pkce["Audience"] == CLIENT_ID
    assert pkce["Scope"] == "openid profile email groups"
    assert pkce["RedirectURLs"] == ["http://localhost:53000"]
    # QUFABRIC_TOKEN_SOURCE="idToken" -> the PKCE flow uses the ID token.
    assert pkce["UseIDToken"] is True

    # Nothing is rendered as null, neither as JSON null nor as a string.
    assert all(value is not None for value in leaves(doc).values())
    assert "null" not in json.dumps(doc)


def test_golden_dashboard_env_has_exactly_the_reference_keys() -> None:
    env = env_file(GOLDEN / "dashboard.env")
    assert set(env) == DASHBOARD_REFERENCE
    assert all(env[key] for key in DASHBOARD_REQUIRED)
    assert env["AUTH_AUTHORITY"] == ISSUER
    assert env["AUTH_CLIENT_ID"] == env["AUTH_AUDIENCE"] == CLIENT_ID
    assert env["USE_AUTH0"] == "false"
    assert env["AUTH_SUPPORTED_SCOPES"] == "openid profile email groups"
    assert env["AUTH_REDIRECT_URI"] == "/auth"
    assert env["AUTH_SILENT_REDIRECT_URI"] == "/silent-auth"
    assert env["QUFABRIC_TOKEN_SOURCE"] == "idToken"
    assert env["QUFABRIC_MGMT_API_ENDPOINT"] == f"https://{DOMAIN}:33073"
    assert env["QUFABRIC_MGMT_GRPC_API_ENDPOINT"] == f"https://{DOMAIN}:33073"
    assert env["NGINX_SSL_PORT"] == "443"
    assert env["LETSENCRYPT_DOMAIN"] == DOMAIN


def test_golden_turnserver_conf_has_exactly_the_reference_directives() -> None:
    directives = turn_directives((GOLDEN / "turnserver.conf").read_text())
    assert set(directives) - set(TURN_REFERENCE) == TURN_EXTRA
    for key, value in TURN_REFERENCE.items():
        assert directives[key] == value, key
    assert "external-ip" not in directives
