"""PocketID's REST API through `PocketIdClient`, against the emulator (1.16 and
2.x) over TLS: keys, admins, clients, pagination, 429, and no key in output."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import httpx
import pytest

from qfstack.oidc import HttpSettings, http_client
from qfstack.pocketid import ApiKey, PocketIdClient, PocketIdError
from tests.support.emulator import Emulator, run_emulator
from tests.support.provider import (
    ADMIN_TOKEN,
    DISABLED_TOKEN,
    EXPIRED_TOKEN,
    TOKENS,
    USER_TOKEN,
    VERSIONS,
    seed,
)
from tests.support.tlsca import CAFiles, make_ca

EXTRA_CLIENTS = 130


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CAFiles:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module", params=VERSIONS)
def emulator(request: pytest.FixtureRequest, ca: CAFiles) -> Iterator[Emulator]:
    env = {
        "EMU_VERSION": request.param,
        "EMU_TLS_CERT": str(ca.server_cert),
        "EMU_TLS_KEY": str(ca.server_key),
        "EMU_SEED": json.dumps(seed(extra_clients=EXTRA_CLIENTS)),
    }
    with run_emulator(env) as running:
        yield running


@pytest.fixture
def http(ca: CAFiles) -> Iterator[httpx.Client]:
    with http_client(HttpSettings(ca_bundle=ca.ca_cert)) as client:
        yield client


def api(emulator: Emulator, http: httpx.Client, token: str) -> PocketIdClient:
    return PocketIdClient(http, emulator.url, token)


def assert_no_secret(text: str) -> None:
    for token in TOKENS:
        assert token not in text


def test_an_admin_key(emulator: Emulator, http: httpx.Client) -> None:
    user = api(emulator, http, ADMIN_TOKEN).require_admin()
    assert (user.username, user.is_admin) == ("admin", True)


@pytest.mark.parametrize(
    "token", [pytest.param("not-a-key-0123456789", id="unknown"), EXPIRED_TOKEN]
)
def test_a_refused_key_is_invalid_or_expired_with_how_to_make_one(
    emulator: Emulator,
    http: httpx.Client,
    token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    client = api(emulator, http, token)
    with pytest.raises(PocketIdError) as caught:
        client.me()
    error = caught.value
    assert error.status == 401 and error.permanent
    assert "invalid or expired" in error.detail
    assert "Administration -> API Keys" in error.fix
    assert "QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN" in error.fix
    text = f"{error} {error!r} {error.details} {client.api_key} {client.api_key!r}"
    assert token not in text and token not in caplog.text


def test_a_non_admin_key_is_named(emulator: Emulator, http: httpx.Client) -> None:
    client = api(emulator, http, USER_TOKEN)
    assert client.me().username == "alice"
    with pytest.raises(PocketIdError, match="not an admin") as caught:
        client.require_admin()
    assert "Administration -> Users" in caught.value.fix
    # An admin route says the same through its 403.
    with pytest.raises(PocketIdError, match="not an admin"):
        client.list_clients()


def test_a_disabled_owner(emulator: Emulator, http: httpx.Client) -> None:
    with pytest.raises(PocketIdError, match="disabled"):
        api(emulator, http, DISABLED_TOKEN).me()


def test_clients_one_and_all_pages(emulator: Emulator, http: httpx.Client) -> None:
    client = api(emulator, http, ADMIN_TOKEN)
    found = client.get_client("qufabric")
    assert found is not None
    assert found.is_public and found.pkce_enabled
    assert "https://qf.example.test/auth" in found.callback_urls
    assert client.get_client("no-such-client") is None

    clients = client.list_clients()
    assert len(clients) == 9 + EXTRA_CLIENTS  # more than one page of 100
    assert len({c.id for c in clients}) == len(clients)
    assert [c.id for c in client.list_clients(search="confidential")] == [
        "confidential"
    ]


def test_the_major_version_is_learnt(
    emulator: Emulator, http: httpx.Client, request: pytest.FixtureRequest
) -> None:
    client = api(emulator, http, ADMIN_TOKEN)
    assert client.major is None
    found = client.get_client("nogroups")
    assert found is not None
    if request.node.callspec.params["emulator"].startswith("2."):
        assert client.major == 2 and client.group_restricted_by_default
        assert found.is_group_restricted is True
    else:
        assert client.major == 1 and not client.group_restricted_by_default
        assert found.is_group_restricted is None


def test_groups_with_member_counts(emulator: Emulator, http: httpx.Client) -> None:
    groups = {g.name: g for g in api(emulator, http, ADMIN_TOKEN).list_groups()}
    assert groups["qufabric-users"].user_count == 1
    assert groups["empty"].user_count == 0


def test_429_bursts_are_waited_out(
    ca: CAFiles, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env = {
        "EMU_TLS_CERT": str(ca.server_cert),
        "EMU_TLS_KEY": str(ca.server_key),
        "EMU_RATE_LIMIT_LOCALHOST": "1",
        "EMU_SEED": json.dumps(seed()),
    }
    with (
        run_emulator(env) as running,
        http_client(HttpSettings(ca_bundle=ca.ca_cert)) as http,
    ):
        client = PocketIdClient(http, running.url, ADMIN_TOKEN, max_wait=5)
        started = time.monotonic()
        names = [client.me().username for _ in range(62)]
        elapsed = time.monotonic() - started
        log = running.log()

        impatient = PocketIdClient(http, running.url, ADMIN_TOKEN, max_wait=0)
        with pytest.raises(PocketIdError, match="429") as caught:
            for _ in range(3):
                impatient.me()
    assert names == ["admin"] * 62
    # The burst of 60 passes at once; the rest wait for Retry-After (1 s).
    assert " 429 " in log
    assert elapsed >= 0.9
    assert caught.value.retry_after == 1.0
    assert ADMIN_TOKEN not in caplog.text


def test_the_key_is_masked() -> None:
    key = ApiKey(ADMIN_TOKEN)
    assert ADMIN_TOKEN not in f"{key} {key!r}"
    assert key.redact(f"echo {ADMIN_TOKEN}") == "echo ********"
    assert key.reveal() == ADMIN_TOKEN
    with httpx.Client() as plain:
        client = PocketIdClient(plain, "https://x", key)
        assert_no_secret(repr(client.__dict__))
