"""The OIDC client QuFabric needs: derived URLs and the checks of a client."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from qfstack.checks import Verdict
from qfstack.clientspec import check_client, client_spec, dashboard_origin
from qfstack.pocketid import OidcClient, UserGroup
from tests.support.provider import make_config, setup_values

URL = "https://pocketid.example.test"


@pytest.mark.parametrize(
    ("extra", "origin"),
    [
        pytest.param({}, "https://qf.example.test", id="domain"),
        pytest.param(
            {"QFSTACK_DASHBOARD_HTTPS_PORT": "8443"},
            "https://qf.example.test:8443",
            id="domain-port",
        ),
        pytest.param(
            {
                "QFSTACK_DASHBOARD_HTTPS_PORT": "8443",
                "QUFABRIC_DISABLE_LETSENCRYPT": "true",
            },
            "https://qf.example.test",
            id="behind-proxy",
        ),
        pytest.param({"QUFABRIC_DOMAIN": "localhost"}, "http://localhost", id="local"),
        pytest.param(
            {"QUFABRIC_DOMAIN": "127.0.0.1", "QFSTACK_DASHBOARD_HTTP_PORT": "8080"},
            "http://127.0.0.1:8080",
            id="local-port",
        ),
    ],
)
def test_dashboard_origin(tmp_path: Path, extra: dict[str, str], origin: str) -> None:
    config = make_config(tmp_path, setup_values(URL, **extra))
    assert dashboard_origin(config) == origin


def test_the_spec_uses_the_configured_paths_and_ports(tmp_path: Path) -> None:
    values = setup_values(
        URL,
        QUFABRIC_AUTH_PKCE_REDIRECT_URL_PORTS="53000,54000",
        QUFABRIC_AUTH_REDIRECT_URI="/login",
        QUFABRIC_AUTH_SILENT_REDIRECT_URI="/silent",
    )
    spec = client_spec(make_config(tmp_path, values))
    assert spec.client_id == "qufabric"
    assert spec.callback_urls == (
        "http://localhost:53000",
        "http://localhost:54000",
        "https://qf.example.test/login",
        "https://qf.example.test/silent",
    )
    assert spec.logout_callback_urls == ("https://qf.example.test/",)


def good(**changes: object) -> OidcClient:
    client = OidcClient(
        id="qufabric",
        name="QuFabric",
        callback_urls=(
            "http://localhost:53000",
            "https://qf.example.test/auth",
            "https://qf.example.test/silent-auth",
            "https://other.example.test/callback",
        ),
        logout_callback_urls=("https://qf.example.test/",),
        is_public=True,
        pkce_enabled=True,
        is_group_restricted=True,
        allowed_groups=(UserGroup("g", "users", "Users", 3),),
    )
    return replace(client, **changes)  # type: ignore[arg-type]


def verdicts(tmp_path: Path, client: OidcClient | None) -> dict[str, Verdict]:
    spec = client_spec(make_config(tmp_path, setup_values(URL)))
    return {v.name: v for v in check_client(spec, client, others=[good(id="x")])}


def test_a_right_client_passes(tmp_path: Path) -> None:
    found = verdicts(tmp_path, good())
    assert {v.level for v in found.values()} == {"pass"}, found
    assert list(found) == [
        "exists", "public", "pkce", "callback urls", "logout url", "user groups"
    ]  # fmt: skip


CASES = [
    pytest.param(None, "exists", "fail", "no OIDC client", id="missing"),
    pytest.param(good(is_public=False), "public", "fail", "confidential",
                 id="confidential"),
    pytest.param(good(pkce_enabled=False), "pkce", "fail", "PKCE is off",
                 id="pkce-off"),
    pytest.param(good(callback_urls=("http://localhost:53000",
                                     "https://qf.example.test/auth/",
                                     "https://qf.example.test/silent-auth")),
                 "callback urls", "fail", "missing https://qf.example.test/auth;",
                 id="trailing-slash"),
    pytest.param(good(callback_urls=("https://qf.example.test/auth",
                                     "https://qf.example.test/silent-auth")),
                 "callback urls", "fail", "http://localhost:53000", id="no-pkce-port"),
    pytest.param(good(callback_urls=("http://localhost:53000",
                                     "https://qf.example.test/*")),
                 "callback urls", "warn", "wildcard", id="wildcard"),
    pytest.param(good(logout_callback_urls=("https://qf.example.test",)),
                 "logout url", "fail", "missing https://qf.example.test/",
                 id="logout-without-slash"),
    pytest.param(good(allowed_groups=()), "user groups", "fail", "nobody can log in",
                 id="restricted-to-nothing"),
    pytest.param(good(allowed_groups=(UserGroup("g", "e", "Empty", 0),)),
                 "user groups", "warn", "no members", id="empty-groups"),
    pytest.param(good(is_group_restricted=False, allowed_groups=()), "user groups",
                 "pass", "every user", id="unrestricted"),
    pytest.param(good(is_group_restricted=None, allowed_groups=()), "user groups",
                 "pass", "every user", id="1.x-no-groups"),
]  # fmt: skip


@pytest.mark.parametrize(("client", "name", "level", "text"), CASES)
def test_client_faults(
    tmp_path: Path, client: OidcClient | None, name: str, level: str, text: str
) -> None:
    found = verdicts(tmp_path, client)
    assert found[name].level == level
    assert text in found[name].summary
    if level == "fail":
        assert found[name].fix


def test_a_near_miss_is_shown_as_evidence(tmp_path: Path) -> None:
    client = good(
        callback_urls=("http://localhost:53000/", "HTTPS://qf.example.test/auth")
    )
    evidence = " ".join(verdicts(tmp_path, client)["callback urls"].evidence)
    assert "'http://localhost:53000/' is close to 'http://localhost:53000'" in evidence
    assert "'HTTPS://qf.example.test/auth' is close to" in evidence


def test_a_missing_client_lists_the_others(tmp_path: Path) -> None:
    found = verdicts(tmp_path, None)["exists"]
    assert found.evidence == ("existing client: x (QuFabric)",)
