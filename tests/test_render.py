"""Rendering the seed's configuration into artifacts/."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from dotenv import dotenv_values

from qfstack.config import build_config
from qfstack.errors import IdentityProviderError
from qfstack.provider import Discovery
from qfstack.render import management_document, render, turnserver_conf
from qfstack.secrets import ensure_secrets
from tests.support.stack import seed_setup_env

ISSUER = "https://pocketid.example.com"
DISCOVERY = Discovery(
    url=f"{ISSUER}/.well-known/openid-configuration",
    document={
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/api/oidc/token",
        "device_authorization_endpoint": f"{ISSUER}/api/oidc/device/authorize",
        "jwks_uri": f"{ISSUER}/.well-known/jwks.json",
    },
)


@pytest.fixture
def config(tmp_path: Path):
    text = seed_setup_env("pocketid.example.com", "client-123", "api-token-xyz")
    (tmp_path / "setup.env").write_text(text)
    from dotenv import dotenv_values as read

    values = {k: v or "" for k, v in read(tmp_path / "setup.env").items()}
    values["QUFABRIC_DOMAIN"] = "qf.example.com"
    return ensure_secrets(build_config(tmp_path, values, {}))


def test_management_json_holds_the_discovered_values(config) -> None:
    doc = management_document(config, DISCOVERY)
    http = doc["HttpConfig"]
    assert http["AuthIssuer"] == ISSUER
    assert http["AuthKeysLocation"] == f"{ISSUER}/.well-known/jwks.json"
    assert http["AuthAudience"] == "client-123"
    assert http["OIDCConfigEndpoint"] == DISCOVERY.url
    assert http["Address"] == "0.0.0.0:33073"
    pkce = doc["PKCEAuthorizationFlow"]["ProviderConfig"]
    assert pkce["AuthorizationEndpoint"] == f"{ISSUER}/authorize"
    assert pkce["TokenEndpoint"] == f"{ISSUER}/api/oidc/token"
    assert pkce["RedirectURLs"] == ["http://localhost:53000"]
    assert pkce["UseIDToken"] is True
    device = doc["DeviceAuthorizationFlow"]
    assert device["Provider"] == "none"
    assert device["ProviderConfig"]["DeviceAuthEndpoint"] == (
        f"{ISSUER}/api/oidc/device/authorize"
    )
    idp = doc["IdpManagerConfig"]
    assert idp["ManagerType"] == "pocketid"
    assert idp["ClientConfig"]["TokenEndpoint"] == f"{ISSUER}/api/oidc/token"
    assert idp["ExtraConfig"] == {
        "ManagementEndpoint": ISSUER,
        "ApiToken": "api-token-xyz",
    }
    assert doc["Relay"]["Addresses"] == ["rel://qf.example.com:33080"]
    assert doc["Signal"] == {
        "Proto": "http",
        "URI": "qf.example.com:10000",
        "Username": "",
        "Password": "",
    }
    assert doc["TURNConfig"]["Turns"][0]["URI"] == "turn:qf.example.com:3478"
    assert doc["Stuns"][0]["URI"] == "stun:qf.example.com:3478"
    assert "null" not in json.dumps(doc).replace('"RedirectURLs": null', "")


def test_a_missing_discovery_field_is_an_error_not_null(config) -> None:
    document = {k: v for k, v in DISCOVERY.document.items() if k != "token_endpoint"}
    with pytest.raises(IdentityProviderError, match="token_endpoint"):
        management_document(config, Discovery(DISCOVERY.url, document))


def test_render_writes_secret_files_private_and_is_stable(config) -> None:
    first = render(config, DISCOVERY)
    assert {p.name for p in first.paths} >= {
        "management.json",
        "turnserver.conf",
        "dashboard.env",
        "discovery.json",
    }
    for name in ("management.json", "turnserver.conf", "dashboard.env", "relay.env"):
        mode = stat.S_IMODE((config.artifacts / name).stat().st_mode)
        assert mode == 0o600, name
    dashboard = dotenv_values(config.artifacts / "dashboard.env")
    assert dashboard["AUTH_AUTHORITY"] == ISSUER
    assert dashboard["AUTH_SUPPORTED_SCOPES"] == "openid profile email groups"
    turn = (config.artifacts / "turnserver.conf").read_text()
    assert f"user=self:{config.get('QUFABRIC_TURN_PASSWORD')}" in turn

    again = render(ensure_secrets(config), DISCOVERY)
    assert again.changed == []


def test_a_known_turn_external_ip_is_written(config) -> None:
    values = {**config.values, "QUFABRIC_TURN_EXTERNAL_IP": "203.0.113.7"}
    with_ip = build_config(config.directory, values, {}).with_secrets(config.secrets)
    lines = turnserver_conf(with_ip).splitlines()
    assert "external-ip=203.0.113.7" in lines
    assert "external-ip" not in turnserver_conf(config)


def test_an_unusable_device_endpoint_is_left_out_when_the_flow_is_off(
    config,
) -> None:
    document = {**DISCOVERY.document, "device_authorization_endpoint": "null"}
    doc = management_document(config, Discovery(DISCOVERY.url, document))
    assert doc["DeviceAuthorizationFlow"]["Provider"] == "none"
    assert doc["DeviceAuthorizationFlow"]["ProviderConfig"]["DeviceAuthEndpoint"] == ""


def test_a_bad_discovery_field_raises_before_any_file_is_written(config) -> None:
    document = {**DISCOVERY.document, "jwks_uri": "null"}
    with pytest.raises(IdentityProviderError, match="jwks_uri"):
        render(config, Discovery(DISCOVERY.url, document))
    assert not config.artifacts.exists()
