"""The checks against an OpenID provider nobody here wrote: `oidc-provider-mock`
from PyPI, run on loopback. Discovery and JWKS must pass; it has no /healthz,
so waiting falls back to its discovery document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qfstack.config import Config
from qfstack.oidc import HttpSettings, http_client
from qfstack.provider import Expectations, inspect_provider
from qfstack.readiness import IdentityProviderCheck, wait_until_ready
from tests.support.provider import WELL_KNOWN, make_config, third_party_provider


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    with third_party_provider() as url:
        yield url


def config_for(directory: Path, url: str) -> Config:
    values = {
        "QUFABRIC_DOMAIN": "qf.example.test",
        "QUFABRIC_AUTH_OIDC_CONFIGURATION_ENDPOINT": url + WELL_KNOWN,
        "QUFABRIC_AUTH_CLIENT_ID": "qufabric",
        "QUFABRIC_AUTH_SUPPORTED_SCOPES": "openid profile email",
        "QUFABRIC_MGMT_IDP": "none",
        "QUFABRIC_LETSENCRYPT_EMAIL": "ops@example.test",
    }
    return make_config(directory, values)


def test_discovery_and_jwks_pass(tmp_path: Path, provider: str) -> None:
    expect = Expectations.from_config(config_for(tmp_path, provider))
    with http_client(HttpSettings()) as client:
        report = inspect_provider(client, expect)
    levels = {v.name: v.level for v in report.verdicts}
    assert levels == {
        "tls": "pass",
        "discovery": "pass",
        "issuer": "pass",
        "endpoints": "pass",
        # It does not announce code_challenge_methods_supported.
        "pkce": "warn",
        "scopes": "pass",
        "jwks": "pass",
    }
    assert report.ok and len(report.keys) == 1


def test_waiting_falls_back_to_discovery(tmp_path: Path, provider: str) -> None:
    with http_client(HttpSettings()) as client:
        check = IdentityProviderCheck(config_for(tmp_path, provider), client)
        results = wait_until_ready([check], timeout=10)
    assert results[0].ok
    assert check.discovery is not None and check.discovery.issuer == provider
    assert "1 warning" in results[0].detail
