"""The identity provider checks: pure verdicts, pacing, and the PocketID emulator
(1.16 and 2.x) over TLS, each check passing on a right setup and failing with
the right message on its fault."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey, OKPKey, RSAKey

from qfstack.checks import Verdict
from qfstack.oidc import (
    HttpSettings,
    ProviderClient,
    RateLimit,
    RateLimits,
    http_client,
    retry_after,
    send,
)
from qfstack.provider import (
    Discovery,
    Expectations,
    endpoints_verdict,
    inspect_provider,
    issuer_verdict,
    jwks_verdict,
    pkce_verdict,
    scopes_verdict,
)
from tests.support.emulator import Emulator, free_port, run_emulator
from tests.support.provider import VERSIONS, WELL_KNOWN
from tests.support.tlsca import (
    CAFiles,
    issue_server_cert,
    make_ca,
    make_wrong_host_cert,
)

AUTHORITY = "https://id.example.test"


def by_name(verdicts: list[Verdict]) -> dict[str, Verdict]:
    return {v.name: v for v in verdicts}


# --- issuer ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("issuer", "cause"),
    [
        pytest.param(AUTHORITY + "/", "trailing slash, which the provider", id="slash"),
        pytest.param(AUTHORITY + WELL_KNOWN, "/.well-known suffix", id="well-known"),
        pytest.param("https://ID.example.test", "letter case", id="case"),
        pytest.param("http://id.example.test", "scheme differs", id="scheme"),
        pytest.param("https://other.example.test", "not the one", id="other-host"),
        pytest.param("", "no issuer", id="missing"),
    ],
)
def test_issuer_mismatch_names_the_cause(issuer: str, cause: str) -> None:
    verdict = issuer_verdict(issuer, AUTHORITY)
    assert verdict.level == "fail"
    assert verdict.permanent
    assert cause in verdict.summary
    assert verdict.fix


def test_issuer_configured_with_a_slash_or_suffix() -> None:
    slash = issuer_verdict(AUTHORITY, AUTHORITY + "/")
    assert "trailing slash in the configuration" in slash.summary
    suffix = issuer_verdict(AUTHORITY, AUTHORITY + WELL_KNOWN)
    assert "configured authority carries a /.well-known suffix" in suffix.summary


def test_issuer_exact_match_passes() -> None:
    assert issuer_verdict(AUTHORITY, AUTHORITY).level == "pass"


# --- endpoints, PKCE, scopes ----------------------------------------------


def discovery(**fields: Any) -> Discovery:
    document = {
        "issuer": AUTHORITY,
        "authorization_endpoint": f"{AUTHORITY}/authorize",
        "token_endpoint": f"{AUTHORITY}/api/oidc/token",
        "jwks_uri": f"{AUTHORITY}/.well-known/jwks.json",
        "device_authorization_endpoint": f"{AUTHORITY}/api/oidc/device/authorize",
        "code_challenge_methods_supported": ["plain", "S256"],
        "scopes_supported": ["openid", "profile", "email", "groups"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }
    document.update(fields)
    return Discovery(AUTHORITY + WELL_KNOWN, {k: v for k, v in document.items() if v})


EXPECT = Expectations(
    AUTHORITY + WELL_KNOWN, AUTHORITY, ("openid", "profile", "email", "groups")
)


@pytest.mark.parametrize(
    ("fields", "device", "level", "text"),
    [
        pytest.param({}, False, "pass", "present and absolute", id="complete"),
        pytest.param({"token_endpoint": None}, False, "fail", "lacks token_endpoint",
                     id="no-token"),
        pytest.param({"jwks_uri": "/keys"}, False, "fail", "not absolute",
                     id="relative"),
        pytest.param({"device_authorization_endpoint": None}, False, "pass", "present",
                     id="no-device-needed"),
        pytest.param({"device_authorization_endpoint": None}, True, "fail",
                     "device flow is on", id="no-device"),
        pytest.param({"token_endpoint": "http://id.example.test/token"}, False, "warn",
                     "plain http", id="plain-http"),
        pytest.param({"token_endpoint": "http://pocketid:1411/api/oidc/token"}, False,
                     "pass", "present", id="container-name"),
    ],
)  # fmt: skip
def test_endpoints(fields: dict[str, Any], device: bool, level: str, text: str) -> None:
    expect = Expectations(EXPECT.configuration_endpoint, AUTHORITY, device_flow=device)
    verdict = endpoints_verdict(discovery(**fields), expect)
    assert (verdict.level, text in verdict.summary) == (level, True), verdict.summary


@pytest.mark.parametrize(
    ("methods", "level"),
    [
        pytest.param(["plain", "S256"], "pass", id="s256"),
        pytest.param(["plain"], "fail", id="plain-only"),
        pytest.param(None, "warn", id="absent"),
        pytest.param("S256", "fail", id="not-a-list"),
    ],
)
def test_pkce(methods: Any, level: str) -> None:
    document = dict(discovery().document)
    document["code_challenge_methods_supported"] = methods
    if methods is None:
        del document["code_challenge_methods_supported"]
    verdict = pkce_verdict(Discovery("u", document))
    assert verdict.level == level
    if level == "fail":
        assert "S256" in verdict.summary and verdict.permanent


@pytest.mark.parametrize(
    ("supported", "level", "text"),
    [
        pytest.param(["openid", "profile", "email", "groups"], "pass", "supported",
                     id="all"),
        pytest.param(["openid", "profile", "email"], "warn", "no group claims",
                     id="no-groups"),
        pytest.param(["profile", "email", "groups"], "fail", "openid", id="no-openid"),
        pytest.param(None, "warn", "does not announce", id="absent"),
    ],
)  # fmt: skip
def test_scopes(supported: Any, level: str, text: str) -> None:
    document = dict(discovery().document)
    document.pop("scopes_supported")
    if supported is not None:
        document["scopes_supported"] = supported
    verdict = scopes_verdict(Discovery("u", document), EXPECT)
    assert verdict.level == level
    assert text in verdict.summary


# --- JWKS -----------------------------------------------------------------


def rsa(**extra: Any) -> dict[str, Any]:
    key = RSAKey.generate_key(2048).as_dict(private=False)
    return {**key, "kid": "rsa", "use": "sig", **extra}


def ec(curve: str = "P-256") -> dict[str, Any]:
    return {**ECKey.generate_key(curve).as_dict(private=False), "kid": "ec"}


JWKS_CASES = [
    pytest.param([rsa(alg="RS256")], ["RS256"], "pass", "RS256 can be verified",
                 id="rsa"),
    pytest.param([rsa()], ["RS256"], "pass", "RS256", id="rsa-without-alg"),
    pytest.param([ec("P-384")], ["ES384"], "pass", "ES384", id="ec-p384"),
    pytest.param([{**OKPKey.generate_key("Ed25519").as_dict(private=False)}],
                 ["EdDSA"], "pass", "EdDSA", id="eddsa"),
    pytest.param([ec()], ["RS256"], "fail", "no key in", id="alg-mismatch"),
    pytest.param([rsa(alg="ES256")], ["ES256"], "fail", "no usable", id="alg-vs-kty"),
    pytest.param([], ["RS256"], "fail", "holds no keys", id="empty"),
    pytest.param([{"kty": "RSA", "kid": "x", "n": "%%not-base64%%", "e": "AQAB"}],
                 ["RS256"], "fail", "malformed", id="garbage-key"),
    pytest.param([{"kty": "RSA", "kid": "x"}], ["RS256"], "fail", "malformed",
                 id="missing-n"),
    pytest.param([rsa(use="enc")], ["RS256"], "fail", "no usable", id="enc-only"),
    pytest.param([rsa(), {"kty": "RSA", "n": "!!"}], ["RS256"], "warn", "malformed",
                 id="one-broken"),
    pytest.param([rsa()], None, "warn", "announces no", id="no-announced-algs"),
    pytest.param([{**RSAKey.generate_key(2048).as_dict(private=True)}], ["RS256"],
                 "fail", "private key material", id="private"),
    pytest.param([{"kty": "oct", "k": "c2VjcmV0"}], ["HS256"], "fail",
                 "private key material", id="symmetric-secret"),
]  # fmt: skip


@pytest.mark.parametrize(("keys", "algs", "level", "text"), JWKS_CASES)
def test_jwks(keys: list[Any], algs: list[str] | None, level: str, text: str) -> None:
    found = discovery(id_token_signing_alg_values_supported=algs)
    verdict, usable = jwks_verdict("https://id/jwks", {"keys": keys}, found)
    assert verdict.level == level, verdict
    assert text in verdict.summary
    assert bool(usable) == (level != "fail" or "no key in" in verdict.summary)


def test_jwks_without_a_keys_list() -> None:
    verdict, _ = jwks_verdict("https://id/jwks", ["no"], discovery())
    assert verdict.level == "fail" and '"keys"' in verdict.summary


# --- Retry-After and pacing -------------------------------------------------


def answer(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers)


def test_retry_after_seconds_date_and_default() -> None:
    assert retry_after(answer(429, **{"Retry-After": "3"})) == 3.0
    later = datetime.now(timezone.utc) + timedelta(seconds=30)
    seconds = retry_after(answer(429, **{"Retry-After": format_datetime(later, True)}))
    assert 25 <= seconds <= 30
    assert retry_after(answer(429)) == 1.0
    assert retry_after(answer(429, **{"Retry-After": "86400"})) == 300.0


def test_rate_limit_paces_after_the_burst_and_honours_holds() -> None:
    limit = RateLimit(paced=True, rate=10.0, burst=2)
    for _ in range(2):
        assert limit.delay() == 0.0
        limit.spend()
    assert 0.05 < limit.delay() <= 0.1
    local = RateLimit(paced=False)
    for _ in range(100):
        local.spend()
    assert local.delay() == 0.0
    local.hold(5)
    assert 4.5 < local.delay() <= 5.0


def mock_client(handler: Any, limits: RateLimits | None = None) -> ProviderClient:
    client = ProviderClient(HttpSettings(), transport=httpx.MockTransport(handler))
    if limits is not None:
        client.rate_limits = limits
    return client


def test_send_keeps_a_remote_host_under_its_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stamps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        stamps.append(time.monotonic())
        return httpx.Response(200, json={})

    client = mock_client(handler, RateLimits(rate=20.0, burst=3))
    url = "https://pocketid.example.test/api/users/me"
    for _ in range(7):
        send(client, "GET", url, max_wait=5)
    # 3 at once, then one per 1/20 s: 4 more take 0.2 s at least.
    assert stamps[-1] - stamps[0] >= 0.18
    for earlier, later in itertools.pairwise(stamps[3:]):
        assert later - earlier >= 0.04
    # Loopback is not rate-limited by PocketID: no pacing, so no sleeping
    # (counted rather than timed, which a loaded machine would make flaky).
    pauses: list[float] = []
    monkeypatch.setattr(time, "sleep", pauses.append)
    for _ in range(7):
        send(client, "GET", "http://127.0.0.1:1/api/users/me")
    assert pauses == []


def test_send_default_pace_is_one_per_second_after_a_burst_of_30() -> None:
    count = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        return httpx.Response(200, json={})

    client = mock_client(handler)
    url = "https://pocketid.example.test/.well-known/openid-configuration"
    for _ in range(30):
        send(client, "GET", url)
    # The 31st would break the pace: with no time to wait it is not sent.
    refused = send(client, "GET", url)
    assert refused.status_code == 429 and count == 30
    assert 0.5 < retry_after(refused) <= 1.0
    # /healthz is not rate-limited.
    send(client, "GET", "https://pocketid.example.test/healthz")
    assert count == 31


def test_send_honours_retry_after_then_retries() -> None:
    stamps: list[float] = []
    statuses = [429, 200, 429]

    def handler(request: httpx.Request) -> httpx.Response:
        stamps.append(time.monotonic())
        return httpx.Response(statuses.pop(0), headers={"Retry-After": "1"})

    client = mock_client(handler)
    url = "http://localhost:1411/api/users/me"
    assert send(client, "GET", url, max_wait=3).status_code == 200
    assert stamps[1] - stamps[0] >= 0.95
    # Without time to wait, the 429 comes back and the pause is remembered:
    # the next request is not even sent.
    assert send(client, "GET", url).status_code == 429
    again = send(client, "GET", url)
    assert again.status_code == 429 and "X-Qfstack-Paced" in again.headers
    assert len(stamps) == 3


# --- against the emulator, over TLS ---------------------------------------


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CAFiles:
    return make_ca(tmp_path_factory.mktemp("ca"))


def tls_env(ca: CAFiles, **extra: str) -> dict[str, str]:
    return {
        "EMU_TLS_CERT": str(ca.server_cert),
        "EMU_TLS_KEY": str(ca.server_key),
        **extra,
    }


@pytest.fixture(scope="module", params=VERSIONS)
def emulator(request: pytest.FixtureRequest, ca: CAFiles) -> Iterator[Emulator]:
    with run_emulator(tls_env(ca, EMU_VERSION=request.param)) as running:
        yield running


def expectations(url: str, *, device: bool = False) -> Expectations:
    return Expectations(
        url + WELL_KNOWN, url, ("openid", "profile", "email", "groups"), device
    )


def inspect(url: str, ca: Path | None, **settings: Any) -> dict[str, Verdict]:
    with http_client(HttpSettings(ca_bundle=ca, **settings)) as client:
        report = inspect_provider(client, expectations(url))
    return by_name(report.verdicts)


def test_a_right_setup_passes_every_check(emulator: Emulator, ca: CAFiles) -> None:
    verdicts = inspect(emulator.url, ca.ca_cert)
    assert list(verdicts) == [
        "tls", "discovery", "issuer", "endpoints", "pkce", "scopes", "jwks"
    ]  # fmt: skip
    assert {v.level for v in verdicts.values()} == {"pass"}, verdicts
    assert "verified against the CA bundle" in verdicts["tls"].summary
    assert any(line.startswith("expires:") for line in verdicts["tls"].evidence)


def test_the_device_endpoint_is_checked_when_the_device_flow_is_on(
    emulator: Emulator, ca: CAFiles
) -> None:
    with http_client(HttpSettings(ca_bundle=ca.ca_cert)) as client:
        report = inspect_provider(client, expectations(emulator.url, device=True))
    endpoints = by_name(report.verdicts)["endpoints"]
    assert endpoints.level == "pass"
    assert "device_authorization_endpoint" in endpoints.summary


FAULTS = [
    pytest.param({"EMU_ISSUER": "https://elsewhere.example.test"}, "issuer",
                 "not the one this configuration uses", id="wrong-issuer"),
    pytest.param({"EMU_ISSUER": "{url}/"}, "issuer", "trailing slash", id="slash"),
    pytest.param({"EMU_ISSUER": "{url}" + WELL_KNOWN}, "issuer", "/.well-known suffix",
                 id="well-known"),
    pytest.param({"EMU_HTML_DISCOVERY": "1"}, "discovery", "HTML page", id="html-200"),
    pytest.param({"EMU_DISCOVERY_OMIT": "token_endpoint"}, "endpoints",
                 "lacks token_endpoint", id="no-token-endpoint"),
    pytest.param({"EMU_DISCOVERY_OMIT": "jwks_uri"}, "endpoints", "lacks jwks_uri",
                 id="no-jwks-uri"),
    pytest.param({"EMU_NO_S256": "1"}, "pkce", "S256", id="no-s256"),
    pytest.param({"EMU_EMPTY_JWKS": "1"}, "jwks", "holds no keys", id="empty-jwks"),
    pytest.param({"EMU_MALFORMED_JWKS": "1"}, "jwks", "not valid JSON",
                 id="malformed-json"),
    pytest.param({"EMU_MALFORMED_JWKS": "key"}, "jwks", "malformed", id="garbage-key"),
]  # fmt: skip


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("env", "check", "text"), FAULTS)
def test_each_fault_fails_its_check(
    version: str, env: dict[str, str], check: str, text: str, ca: CAFiles
) -> None:
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    fault = {k: v.replace("{url}", url) for k, v in env.items()}
    with run_emulator(tls_env(ca, EMU_VERSION=version, **fault), port=port):
        verdicts = inspect(url, ca.ca_cert)
    failed = [v for v in verdicts.values() if v.level == "fail"]
    assert [v.name for v in failed] == [check], failed
    assert text in failed[0].summary
    assert failed[0].fix
    assert failed[0].permanent


@pytest.fixture(scope="module")
def bad_certs(ca: CAFiles, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("bad")
    return {
        "expired": issue_server_cert(
            ca, folder, ["localhost", "127.0.0.1"], name="expired", expired=True
        ),
        "wrong-host": make_wrong_host_cert(ca, folder),
    }


@pytest.mark.parametrize(
    ("case", "text", "fix"),
    [
        pytest.param("untrusted", "is not trusted", "--ca-bundle", id="untrusted"),
        pytest.param("expired", "has expired", "renew", id="expired"),
        pytest.param("wrong-host", "wrong host name", "host name", id="wrong-host"),
    ],
)
def test_certificate_faults_are_named_with_their_fix(
    case: str, text: str, fix: str, ca: CAFiles, bad_certs: dict[str, Any]
) -> None:
    cert, key = bad_certs.get(case, (ca.server_cert, ca.server_key))
    env = {"EMU_TLS_CERT": str(cert), "EMU_TLS_KEY": str(key)}
    trusted = None if case == "untrusted" else ca.ca_cert
    with run_emulator(env) as running:
        verdicts = inspect(running.url, trusted)
    assert list(verdicts) == ["tls"]
    tls = verdicts["tls"]
    assert tls.level == "fail" and tls.permanent
    assert text in tls.summary
    assert fix in tls.fix


def test_ssl_cert_file_is_trusted(
    emulator: Emulator, ca: CAFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_cert))
    verdicts = inspect(emulator.url, None)
    assert verdicts["tls"].level == "pass"
    assert "SSL_CERT_FILE" in verdicts["tls"].summary


def test_insecure_connects_but_warns(emulator: Emulator) -> None:
    verdicts = inspect(emulator.url, None, insecure=True)
    assert verdicts["tls"].level == "warn"
    assert "NOT verified" in verdicts["tls"].summary
    assert verdicts["jwks"].level == "pass"


def test_rate_limited_discovery_is_reported_with_its_pause(ca: CAFiles) -> None:
    env = tls_env(ca, EMU_RATE_LIMIT_LOCALHOST="1")
    with (
        run_emulator(env) as running,
        http_client(HttpSettings(ca_bundle=ca.ca_cert)) as client,
    ):
        url = running.url + WELL_KNOWN
        statuses = [client.get(url).status_code for _ in range(61)]
        assert statuses[-1] == 429
        report = inspect_provider(client, expectations(running.url))
    failure = report.failures[0]
    assert failure.name == "discovery" and not failure.permanent
    assert failure.retry_after == 1.0
    assert "429" in failure.summary
