"""Waiting for the identity provider: quick detection, /healthz first, faults
that end the wait at once, the deadline, and the provider's rate limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from qfstack.errors import EXIT_NOT_READY, NotReadyError
from qfstack.oidc import HttpSettings, ProviderClient, http_client
from qfstack.readiness import IdentityProviderCheck, wait_until_ready
from tests.support.emulator import free_port, run_emulator
from tests.support.provider import WELL_KNOWN, make_config, setup_values
from tests.support.tlsca import CAFiles, make_ca

REMOTE = "https://pocketid.example.test"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CAFiles:
    return make_ca(tmp_path_factory.mktemp("ca"))


def tls(ca: CAFiles, **extra: str) -> dict[str, str]:
    return {
        "EMU_TLS_CERT": str(ca.server_cert),
        "EMU_TLS_KEY": str(ca.server_key),
    } | extra


@contextmanager
def emulator_later(env: dict[str, str], port: int) -> Iterator[list[float]]:
    """Run the emulator in a thread; yields [moment it started listening]."""
    listening: list[float] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def serve() -> None:
        try:
            with run_emulator(env, port=port):
                listening.append(time.monotonic())
                stop.wait(30)
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listening
    finally:
        stop.set()
        thread.join(10)
    if failures:
        raise failures[0]


@pytest.mark.parametrize("version", ["1.16.0", "2.14.0"])
def test_readiness_is_seen_within_a_quarter_second(
    tmp_path: Path, ca: CAFiles, version: str
) -> None:
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    config = make_config(tmp_path, setup_values(url))
    env = tls(ca, EMU_VERSION=version, EMU_START_DELAY="1.0")
    with (
        emulator_later(env, port) as listening,
        http_client(HttpSettings(ca_bundle=ca.ca_cert)) as client,
    ):
        check = IdentityProviderCheck(config, client)
        results = wait_until_ready([check], timeout=15)
        ready = time.monotonic()
        assert listening, "the emulator never listened"
    assert results[0].ok and check.discovery is not None
    # The emulator prints "listening" after it listens: detection may even
    # come first. The bound leaves room for a busy machine; the benchmark
    # (benchmarks/detection.py) measures the real figures.
    assert ready - listening[0] < 0.5


def test_a_wrong_issuer_ends_the_wait_at_once(tmp_path: Path, ca: CAFiles) -> None:
    env = tls(ca, EMU_ISSUER="https://elsewhere.example.test")
    with (
        run_emulator(env) as running,
        http_client(HttpSettings(ca_bundle=ca.ca_cert)) as client,
    ):
        check = IdentityProviderCheck(
            make_config(tmp_path, setup_values(running.url)), client
        )
        started = time.monotonic()
        with pytest.raises(NotReadyError) as caught:
            wait_until_ready([check], timeout=60)
    assert time.monotonic() - started < 2
    assert caught.value.exit_code == EXIT_NOT_READY
    assert "will not recover" in caught.value.message
    detail = caught.value.pending[0].detail
    assert "elsewhere.example.test" in detail and "Fix:" in detail


def test_an_untrusted_certificate_ends_the_wait_at_once(
    tmp_path: Path, ca: CAFiles
) -> None:
    with run_emulator(tls(ca)) as running, http_client(HttpSettings()) as client:
        check = IdentityProviderCheck(
            make_config(tmp_path, setup_values(running.url)), client
        )
        with pytest.raises(NotReadyError) as caught:
            wait_until_ready([check], timeout=60)
    pending = caught.value.pending[0]
    assert "not trusted" in pending.detail and "--ca-bundle" in pending.detail


def test_the_wait_ends_at_its_deadline(tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    with http_client(HttpSettings()) as client:
        check = IdentityProviderCheck(make_config(tmp_path, setup_values(url)), client)
        started = time.monotonic()
        with pytest.raises(NotReadyError) as caught:
            wait_until_ready([check], timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 1.5
    assert "not ready after" in caught.value.message
    assert "connection refused" in caught.value.pending[0].detail.lower()


# --- a remote provider, through a mock transport -----------------------------

KEY = RSAKey.generate_key(2048).as_dict(private=False)


def documents(url: str) -> dict[str, Any]:
    return {
        url + WELL_KNOWN: {
            "issuer": url,
            "authorization_endpoint": f"{url}/authorize",
            "token_endpoint": f"{url}/api/oidc/token",
            "jwks_uri": f"{url}/.well-known/jwks.json",
            "code_challenge_methods_supported": ["plain", "S256"],
            "scopes_supported": ["openid", "profile", "email", "groups"],
            "id_token_signing_alg_values_supported": ["RS256"],
        },
        url + "/.well-known/jwks.json": {"keys": [{**KEY, "use": "sig"}]},
    }


Handler = Callable[[httpx.Request, list[tuple[float, str]]], httpx.Response | None]


def remote_check(
    tmp_path: Path, handler: Handler
) -> tuple[IdentityProviderCheck, list[tuple[float, str]]]:
    """A check of a provider on another host, answered by `handler` (or the
    documents when it returns None); records (moment, path) of each request."""
    seen: list[tuple[float, str]] = []
    docs = documents(REMOTE)

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append((time.monotonic(), request.url.path))
        response = handler(request, seen)
        if response is not None:
            return response
        return httpx.Response(200, json=docs[str(request.url)])

    client = ProviderClient(HttpSettings(), transport=httpx.MockTransport(answer))
    config = make_config(tmp_path, setup_values(REMOTE))
    return IdentityProviderCheck(config, client), seen


def limited(seen: list[tuple[float, str]]) -> list[float]:
    return [moment for moment, path in seen if path.startswith("/.well-known")]


def test_while_down_only_healthz_is_asked_and_often(tmp_path: Path) -> None:
    up_at = time.monotonic() + 0.8

    def handler(request: httpx.Request, seen: Any) -> httpx.Response | None:
        if time.monotonic() < up_at:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(204) if request.url.path == "/healthz" else None

    check, seen = remote_check(tmp_path, handler)
    wait_until_ready([check], timeout=5)
    before = [path for moment, path in seen if moment < up_at]
    assert set(before) == {"/healthz"}
    assert len(before) >= 6  # every 0.1 s
    assert limited(seen)[0] - up_at < 0.3
    assert len(limited(seen)) == 2  # discovery and JWKS, once


def test_a_remote_provider_is_asked_at_most_once_a_second(tmp_path: Path) -> None:
    def handler(request: httpx.Request, seen: Any) -> httpx.Response | None:
        if request.url.path == "/healthz":
            return httpx.Response(204)
        return httpx.Response(503, json={"error": "starting"})

    check, seen = remote_check(tmp_path, handler)
    with pytest.raises(NotReadyError):
        wait_until_ready([check], timeout=3)
    moments = limited(seen)
    assert 1 <= len(moments) <= 2
    assert len(seen) - len(moments) >= 20  # /healthz is not limited


def test_retry_after_is_honoured_while_waiting(tmp_path: Path) -> None:
    def handler(request: httpx.Request, seen: Any) -> httpx.Response | None:
        if request.url.path == "/healthz":
            return httpx.Response(204)
        if len(limited(seen)) == 1:
            return httpx.Response(429, headers={"Retry-After": "2"})
        return None

    check, seen = remote_check(tmp_path, handler)
    results = wait_until_ready([check], timeout=10)
    moments = limited(seen)
    assert results[0].ok
    assert len(moments) == 3  # the refused discovery, then discovery and JWKS
    assert moments[1] - moments[0] >= 1.95


def test_a_provider_without_healthz_is_polled_through_discovery(
    tmp_path: Path,
) -> None:
    up_at = time.monotonic() + 1.0

    def handler(request: httpx.Request, seen: Any) -> httpx.Response | None:
        if request.url.path == "/healthz":
            return httpx.Response(404)
        if time.monotonic() < up_at:
            return httpx.Response(503)
        return None

    check, seen = remote_check(tmp_path, handler)
    wait_until_ready([check], timeout=10)
    assert [path for _, path in seen].count("/healthz") == 1
    moments = limited(seen)
    # A remote provider is asked every 2 s: at 0, then at 2 (discovery + JWKS).
    assert len(moments) == 3
    assert moments[1] - moments[0] >= 1.9
