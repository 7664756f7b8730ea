"""The PocketID emulator, run as a host process and spoken to over HTTP(S)."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.emulator import (
    Emulator,
    emulator_command,
    emulator_env,
    free_port,
    run_emulator,
)
from tests.support.tlsca import (
    CAFiles,
    issue_server_cert,
    make_ca,
    make_wrong_host_cert,
)

ADMIN_TOKEN = "admin-token-0123456789abcdef"
USER_TOKEN = "user-token-0123456789abcdef"
DISABLED_TOKEN = "disabled-token-0123456789abc"
EXPIRED_TOKEN = "expired-token-0123456789abcd"
STATIC_KEY = "static-api-key-0123456789"

SEED = {
    "users": [
        {
            "username": "admin",
            "email": "admin@qfstack.test",
            "isAdmin": True,
            "apiKeys": [
                {"token": ADMIN_TOKEN, "name": "QuFabric Management Token"},
                {
                    "token": EXPIRED_TOKEN,
                    "name": "Old token",
                    "expiresAt": "2020-01-01T00:00:00Z",
                },
            ],
        },
        {"username": "alice", "apiKeys": [{"token": USER_TOKEN, "name": "Alice"}]},
        {
            "username": "mallory",
            "disabled": True,
            "apiKeys": [{"token": DISABLED_TOKEN, "name": "Mallory"}],
        },
    ],
    "groups": [{"name": "admins", "friendlyName": "Admins", "members": ["admin"]}],
}

NOT_SIGNED_IN = {"error": "You are not signed in"}
NO_PERMISSION = {"error": "You don't have permission to perform this action"}


def seeded(version: str, **extra: str) -> dict[str, str]:
    return {"EMU_VERSION": version, "EMU_SEED": json.dumps(SEED), **extra}


class AdminApi:
    """One-shot requests to an emulator with the seeded admin's API key."""

    def __init__(self, emulator: Emulator) -> None:
        self.base_url = emulator.url

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-API-KEY": ADMIN_TOKEN}
        return httpx.request(method, self.base_url + path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)


def admin(emulator: Emulator) -> AdminApi:
    return AdminApi(emulator)


def session(response: httpx.Response) -> dict[str, str]:
    """A Cookie header carrying the session a response signed in."""
    return {"Cookie": f"access_token={response.cookies['access_token']}"}


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The error body without the 2.13+ request id (it differs per request)."""
    body: dict[str, Any] = response.json()
    body.pop("request_id", None)
    return body


@pytest.fixture(scope="module")
def v2() -> Iterator[Emulator]:
    with run_emulator(seeded("2.14.0", STATIC_API_KEY=STATIC_KEY)) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def v1() -> Iterator[Emulator]:
    with run_emulator(seeded("1.16.0", ENCRYPTION_KEY="")) as emulator:
        yield emulator


def run_to_exit(
    env: dict[str, str], *arguments: str
) -> subprocess.CompletedProcess[str]:
    """Run the emulator (or one of its commands) expecting it to end by itself."""
    return subprocess.run(
        emulator_command(*arguments),
        env=emulator_env(env, free_port(), Path("/nonexistent/qfstack-emulator")),
        capture_output=True,
        text=True,
        timeout=20,
    )


# --- discovery and keys -----------------------------------------------------------


def test_discovery_v2_lists_exactly_the_documented_fields(v2: Emulator) -> None:
    a = v2.url
    assert httpx.get(f"{a}/.well-known/openid-configuration").json() == {
        "issuer": a,
        "authorization_endpoint": f"{a}/authorize",
        "token_endpoint": f"{a}/api/oidc/token",
        "userinfo_endpoint": f"{a}/api/oidc/userinfo",
        "end_session_endpoint": f"{a}/api/oidc/end-session",
        "introspection_endpoint": f"{a}/api/oidc/introspect",
        "device_authorization_endpoint": f"{a}/api/oidc/device/authorize",
        "jwks_uri": f"{a}/.well-known/jwks.json",
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code",
            "client_credentials",
        ],
        "scopes_supported": ["openid", "profile", "email", "groups", "offline_access"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code"],
    }


def test_discovery_v1_differs_in_scopes_and_response_types(v1: Emulator) -> None:
    document = httpx.get(f"{v1.url}/.well-known/openid-configuration").json()
    assert document["scopes_supported"] == ["openid", "profile", "email", "groups"]
    assert document["response_types_supported"] == ["code", "id_token"]


def test_internal_app_url_is_used_for_back_channel_endpoints() -> None:
    env = {
        "APP_URL": "HTTPS://ID.Example.TEST/",
        "INTERNAL_APP_URL": "http://pocketid:1411",
    }
    with run_emulator(env) as emulator:
        document = httpx.get(f"{emulator.url}/.well-known/openid-configuration").json()
    public, internal = "https://id.example.test", "http://pocketid:1411"
    assert document["issuer"] == public
    assert document["authorization_endpoint"] == f"{public}/authorize"
    assert document["end_session_endpoint"] == f"{public}/api/oidc/end-session"
    assert document["device_authorization_endpoint"].startswith(public)
    assert document["token_endpoint"] == f"{internal}/api/oidc/token"
    assert document["userinfo_endpoint"] == f"{internal}/api/oidc/userinfo"
    assert document["introspection_endpoint"] == f"{internal}/api/oidc/introspect"
    assert document["jwks_uri"] == f"{internal}/.well-known/jwks.json"


def test_jwks_has_one_rs256_signing_key(v2: Emulator) -> None:
    (key,) = httpx.get(f"{v2.url}/.well-known/jwks.json").json()["keys"]
    assert key["kty"] == "RSA"
    assert key["alg"] == "RS256"
    assert key["use"] == "sig"
    assert key["kid"]
    modulus = int.from_bytes(base64.urlsafe_b64decode(key["n"] + "=="), "big")
    assert modulus.bit_length() == 2048


def test_session_token_verifies_with_the_published_key() -> None:
    with run_emulator({}) as emulator:
        setup = httpx.post(
            f"{emulator.url}/api/signup/setup",
            json={"username": "admin", "firstName": "Ada"},
        )
        (key,) = httpx.get(f"{emulator.url}/.well-known/jwks.json").json()["keys"]
    assert setup.status_code == 200
    token = setup.cookies["access_token"]
    header, payload, signature = token.split(".")

    def number(text: str) -> int:
        padded = text + "=" * (-len(text) % 4)
        return int.from_bytes(base64.urlsafe_b64decode(padded), "big")

    public = rsa.RSAPublicNumbers(number(key["e"]), number(key["n"])).public_key()
    public.verify(
        base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
        f"{header}.{payload}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )


def test_health_answers_204_to_get_and_head(v2: Emulator) -> None:
    assert httpx.get(f"{v2.url}/healthz").status_code == 204
    assert httpx.head(f"{v2.url}/healthz").status_code == 204


# --- test knobs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("knobs", "check"),
    [
        pytest.param(
            {"EMU_ISSUER": "http://127.0.0.1:1/"},
            lambda d: d["issuer"] == "http://127.0.0.1:1/",
            id="issuer",
        ),
        pytest.param(
            {"EMU_DISCOVERY_OMIT": "jwks_uri,token_endpoint"},
            lambda d: "jwks_uri" not in d and "token_endpoint" not in d,
            id="omit",
        ),
        pytest.param(
            {"EMU_NO_S256": "1"},
            lambda d: d["code_challenge_methods_supported"] == ["plain"],
            id="no-s256",
        ),
    ],
)
def test_discovery_knobs(knobs: dict[str, str], check: Any) -> None:
    with run_emulator(knobs) as emulator:
        document = httpx.get(f"{emulator.url}/.well-known/openid-configuration").json()
    assert check(document)


def test_html_discovery_answers_200_with_a_page() -> None:
    with run_emulator({"EMU_HTML_DISCOVERY": "1"}) as emulator:
        response = httpx.get(f"{emulator.url}/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        response.json()


@pytest.mark.parametrize(
    ("knobs", "expected"),
    [
        pytest.param({"EMU_EMPTY_JWKS": "1"}, "empty", id="empty"),
        pytest.param({"EMU_MALFORMED_JWKS": "1"}, "not-json", id="malformed-json"),
        pytest.param({"EMU_MALFORMED_JWKS": "key"}, "garbage-key", id="garbage-key"),
    ],
)
def test_jwks_knobs(knobs: dict[str, str], expected: str) -> None:
    with run_emulator(knobs) as emulator:
        response = httpx.get(f"{emulator.url}/.well-known/jwks.json")
    assert response.status_code == 200
    if expected == "not-json":
        with pytest.raises(json.JSONDecodeError):
            response.json()
    elif expected == "empty":
        assert response.json() == {"keys": []}
    else:
        (key,) = response.json()["keys"]
        assert "e" not in key
        with pytest.raises(ValueError):
            base64.urlsafe_b64decode(key["n"])


def test_start_delay_postpones_listening() -> None:
    started = time.monotonic()
    with run_emulator({"EMU_START_DELAY": "1.5"}) as emulator:
        elapsed = time.monotonic() - started
        assert httpx.get(f"{emulator.url}/healthz").status_code == 204
    assert elapsed >= 1.5


def test_nothing_listens_during_the_start_delay(tmp_path: Path) -> None:
    port = free_port()
    env = emulator_env({"EMU_START_DELAY": "30"}, port, tmp_path)
    process = subprocess.Popen(
        emulator_command(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        time.sleep(1.0)
        assert process.poll() is None
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        process.terminate()
        process.wait(timeout=5)
        if process.stderr is not None:
            process.stderr.close()


# --- start-up configuration ---------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"APP_URL": "https://id.example.test/pocket"},
            "must not contain a path",
            id="app-url-path",
        ),
        pytest.param({"ENCRYPTION_KEY": ""}, "ENCRYPTION_KEY is required", id="no-key"),
        pytest.param(
            {"ENCRYPTION_KEY": "too-short"}, "at least 16 bytes", id="short-key"
        ),
        pytest.param(
            {"STATIC_API_KEY": "short"}, "at least 16 characters", id="short-static"
        ),
        pytest.param({"EMU_VERSION": "3.0.0"}, "1.x and 2.x", id="unknown-major"),
        pytest.param({"EMU_SEED": "{not json"}, "EMU_SEED", id="bad-seed"),
    ],
)
def test_refused_configurations_exit_1(env: dict[str, str], message: str) -> None:
    done = run_to_exit(env)
    assert done.returncode == 1
    assert message in done.stderr


def test_v1_needs_no_encryption_key(v1: Emulator) -> None:
    assert httpx.get(f"{v1.url}/healthz").status_code == 204


def test_v1_ignores_the_static_api_key() -> None:
    with run_emulator({"EMU_VERSION": "1.16.0", "STATIC_API_KEY": "x" * 20}) as emu:
        response = httpx.get(f"{emu.url}/api/users/me", headers={"X-API-KEY": "x" * 20})
    assert response.status_code == 401


# --- authentication and errors ------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-key"),
        pytest.param({"X-API-KEY": "wrong-token-0123456789"}, id="unknown-key"),
        pytest.param({"X-API-KEY": EXPIRED_TOKEN}, id="expired-key"),
    ],
)
def test_v1_401_bodies(v1: Emulator, headers: dict[str, str]) -> None:
    response = httpx.get(f"{v1.url}/api/users/me", headers=headers)
    assert response.status_code == 401
    assert response.json() == NOT_SIGNED_IN


def test_v2_errors_add_code_and_request_id(v2: Emulator) -> None:
    response = httpx.get(f"{v2.url}/api/users/me", headers={"X-API-KEY": EXPIRED_TOKEN})
    assert response.status_code == 401
    body = response.json()
    assert body["request_id"] == response.headers["x-request-id"]
    assert error_of(response) == {**NOT_SIGNED_IN, "code": "not_signed_in"}


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_403_for_non_admin_and_disabled_users(
    version: str, request: pytest.FixtureRequest
) -> None:
    emulator: Emulator = request.getfixturevalue(version)
    non_admin = httpx.get(
        f"{emulator.url}/api/oidc/clients", headers={"X-API-KEY": USER_TOKEN}
    )
    disabled = httpx.get(
        f"{emulator.url}/api/users/me", headers={"X-API-KEY": DISABLED_TOKEN}
    )
    assert non_admin.status_code == 403
    assert error_of(non_admin)["error"] == NO_PERMISSION["error"]
    assert disabled.status_code == 403
    assert error_of(disabled)["error"] == "User account is disabled"


def test_api_key_header_name_is_case_insensitive(v2: Emulator) -> None:
    for name in ("X-API-KEY", "x-api-key", "X-Api-Key"):
        response = httpx.get(f"{v2.url}/api/users/me", headers={name: ADMIN_TOKEN})
        assert response.status_code == 200
        assert response.json()["username"] == "admin"
        assert response.json()["isAdmin"] is True


def test_static_api_key_is_a_hidden_admin(v2: Emulator) -> None:
    me = httpx.get(f"{v2.url}/api/users/me", headers={"X-API-KEY": STATIC_KEY})
    users = admin(v2).get("/api/users").json()["data"]
    assert me.status_code == 200
    assert me.json()["displayName"] == "Static API User"
    assert me.json()["isAdmin"] is True
    assert me.json()["id"] not in {user["id"] for user in users}


def test_requests_never_log_api_keys(v2: Emulator) -> None:
    admin(v2).get("/api/users/me")
    log = v2.log()
    assert "GET /api/users/me 200" in log
    assert ADMIN_TOKEN not in log
    assert STATIC_KEY not in log


# --- first admin, one-time links, API keys -----------------------------------------


def test_setup_only_while_no_real_user_exists() -> None:
    with run_emulator({"STATIC_API_KEY": STATIC_KEY}) as emulator:
        first = httpx.post(
            f"{emulator.url}/api/signup/setup",
            json={"username": "admin", "firstName": "Ada", "email": "a@x.test"},
        )
        second = httpx.post(
            f"{emulator.url}/api/signup/setup",
            json={"username": "other", "firstName": "Bob"},
        )
    assert first.status_code == 200
    assert first.json()["isAdmin"] is True
    assert second.status_code == 400
    assert error_of(second)["error"] == "Setup already completed"


def test_setup_validates_the_body() -> None:
    with run_emulator({"EMU_VERSION": "1.16.0"}) as emulator:
        response = httpx.post(f"{emulator.url}/api/signup/setup", json={})
    assert response.status_code == 400
    assert response.json() == {"error": "Username is required, FirstName is required"}


def test_one_time_access_token_signs_in_once(tmp_path: Path) -> None:
    env = seeded("2.14.0")
    with run_emulator(env, data_dir=tmp_path) as emulator:
        command_env = emulator_env(env, emulator.port, tmp_path)
        done = subprocess.run(
            emulator_command("one-time-access-token", "admin@qfstack.test"),
            env=command_env,
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        link = done.stdout.strip()
        assert link.startswith(f"{emulator.url}/lc/")

        first = httpx.get(link)
        second = httpx.get(link)
        me = httpx.get(f"{emulator.url}/api/users/me", headers=session(first))
        log = emulator.log()
    assert first.status_code == 302
    assert second.status_code == 400
    assert me.json()["username"] == "admin"
    assert link.rsplit("/", 1)[1] not in log


def test_one_time_access_token_for_an_unknown_user_fails(tmp_path: Path) -> None:
    done = run_to_exit({"EMU_DATA_DIR": str(tmp_path)}, "one-time-access-token", "x")
    assert done.returncode == 1
    assert "not found" in done.stderr


def test_v2_refuses_to_create_api_keys_with_an_api_key(v2: Emulator) -> None:
    body = {"name": "New key", "expiresAt": "2099-01-01T00:00:00Z"}
    response = admin(v2).post("/api/api-keys", json=body)
    assert response.status_code == 403
    assert error_of(response) == {
        "error": "API key authentication is not allowed for this endpoint",
        "code": "api_key_auth_not_allowed",
    }


def test_v2_creates_api_keys_with_a_session() -> None:
    with run_emulator({}) as emulator:
        setup = httpx.post(
            f"{emulator.url}/api/signup/setup",
            json={"username": "admin", "firstName": "Ada"},
        )
        created = httpx.post(
            f"{emulator.url}/api/api-keys",
            json={"name": "QuFabric", "expiresAt": "2099-01-01T00:00:00Z"},
            headers=session(setup),
        )
        token = created.json()["token"]
        me = httpx.get(f"{emulator.url}/api/users/me", headers={"X-API-KEY": token})
    assert created.status_code == 201
    assert created.json()["apiKey"]["name"] == "QuFabric"
    assert me.json()["username"] == "admin"


def test_v1_creates_api_keys_with_an_api_key(v1: Emulator) -> None:
    body = {"name": "New key", "expiresAt": "2099-01-01T00:00:00Z"}
    created = admin(v1).post("/api/api-keys", json=body)
    listed = admin(v1).get("/api/api-keys").json()
    assert created.status_code == 201
    assert "New key" in {key["name"] for key in listed["data"]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({"name": "ab", "expiresAt": "2099-01-01T00:00:00Z"},
                     "Name must be at least 3 characters long", id="short-name"),
        pytest.param({"name": "Past", "expiresAt": "2001-01-01T00:00:00Z"},
                     "Expiration date must be in the future", id="past"),
    ],
)  # fmt: skip
def test_api_key_validation(v1: Emulator, body: dict[str, str], message: str) -> None:
    response = admin(v1).post("/api/api-keys", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": message}


# --- OIDC clients -----------------------------------------------------------------


def test_client_create_get_put_delete(v2: Emulator) -> None:
    api = admin(v2)
    created = api.post(
        "/api/oidc/clients",
        json={
            "name": "QuFabric",
            "callbackURLs": ["https://qf.example.test/auth"],
            "isPublic": True,
            "pkceEnabled": False,
            "description": "dashboard",
        },
    )
    assert created.status_code == 201
    client = created.json()
    assert client["pkceEnabled"] is True
    assert client["isGroupRestricted"] is True
    assert client["description"] == "dashboard"
    assert api.get(f"/api/oidc/clients/{client['id']}").json() == client

    replaced = api.put(f"/api/oidc/clients/{client['id']}", json={"name": "QF"})
    assert replaced.status_code == 200
    assert replaced.json()["callbackURLs"] == []
    assert replaced.json()["isPublic"] is False
    assert replaced.json()["description"] == ""

    assert api.delete(f"/api/oidc/clients/{client['id']}").status_code == 204
    gone = api.get(f"/api/oidc/clients/{client['id']}")
    assert gone.status_code == 404


def test_client_with_a_chosen_id(v2: Emulator) -> None:
    api = admin(v2)
    first = api.post("/api/oidc/clients", json={"id": "qufabric", "name": "QuFabric"})
    again = api.post("/api/oidc/clients", json={"id": "qufabric", "name": "Again"})
    assert first.json()["id"] == "qufabric"
    assert again.status_code == 400


def test_v1_drops_v2_only_client_fields(v1: Emulator) -> None:
    created = admin(v1).post(
        "/api/oidc/clients",
        json={"name": "QuFabric", "description": "x", "isGroupRestricted": False},
    )
    assert created.status_code == 201
    assert "description" not in created.json()
    assert "isGroupRestricted" not in created.json()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param({}, "Name is required", id="missing-name"),
        pytest.param({"name": "x" * 51}, "Name must be at most 50 characters long",
                     id="long-name"),
        pytest.param({"name": "ok", "callbackURLs": ["not a url"]},
                     "CallbackURLs[0] is invalid", id="bad-callback"),
        pytest.param({"name": 5}, "Invalid request body", id="wrong-type"),
    ],
)  # fmt: skip
def test_client_validation(v1: Emulator, body: dict[str, Any], message: str) -> None:
    response = admin(v1).post("/api/oidc/clients", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": message}


def test_client_list_pagination_and_search() -> None:
    with run_emulator(seeded("2.14.0")) as emulator:
        api = admin(emulator)
        empty = api.get("/api/oidc/clients").json()
        for number in range(25):
            api.post("/api/oidc/clients", json={"name": f"client-{number:02}"})
        first = api.get("/api/oidc/clients").json()
        second = api.get(
            "/api/oidc/clients",
            params={"pagination[page]": "2", "sort[column]": "name"},
        ).json()
        past_end = api.get(
            "/api/oidc/clients",
            params={"pagination[page]": "9", "pagination[limit]": "10"},
        ).json()
        capped = api.get("/api/oidc/clients", params={"pagination[limit]": "500"})
        found = api.get("/api/oidc/clients", params={"search": "CLIENT-1"}).json()

    assert empty == {
        "data": [],
        "pagination": {
            "totalPages": 1,
            "totalItems": 0,
            "currentPage": 1,
            "itemsPerPage": 20,
        },
    }
    assert len(first["data"]) == 20
    assert first["pagination"] == {
        "totalPages": 2,
        "totalItems": 25,
        "currentPage": 1,
        "itemsPerPage": 20,
    }
    assert [c["name"] for c in second["data"]] == [f"client-{n}" for n in range(20, 25)]
    assert past_end["pagination"]["currentPage"] == 3
    assert len(past_end["data"]) == 5
    assert capped.json()["pagination"]["itemsPerPage"] == 100
    assert found["pagination"]["totalItems"] == 10


def test_secret_endpoints_by_version(v1: Emulator, v2: Emulator) -> None:
    old, new = admin(v1), admin(v2)
    old_id = old.post("/api/oidc/clients", json={"name": "c"}).json()["id"]
    new_id = new.post("/api/oidc/clients", json={"name": "c"}).json()["id"]

    assert old.post(f"/api/oidc/clients/{old_id}/secret").json()["secret"]
    assert old.get(f"/api/oidc/clients/{old_id}/secrets").status_code == 404
    assert new.post(f"/api/oidc/clients/{new_id}/secret").status_code == 404

    added = new.post(f"/api/oidc/clients/{new_id}/secrets")
    assert added.status_code == 201
    assert added.json()["secret"]
    listed = new.get(f"/api/oidc/clients/{new_id}/secrets").json()
    assert [s["id"] for s in listed] == [added.json()["id"]]
    removed = new.delete(f"/api/oidc/clients/{new_id}/secrets/{added.json()['id']}")
    assert removed.status_code == 204


def test_groups_and_allowed_groups(v2: Emulator) -> None:
    api = admin(v2)
    group = api.post(
        "/api/user-groups", json={"name": "qufabric", "friendlyName": "QuFabric"}
    ).json()
    alice = next(
        user
        for user in api.get("/api/users", params={"search": "alice"}).json()["data"]
    )
    members = api.put(
        f"/api/user-groups/{group['id']}/users", json={"userIds": [alice["id"]]}
    )
    client = api.post("/api/oidc/clients", json={"name": "restricted"}).json()
    allowed = api.put(
        f"/api/oidc/clients/{client['id']}/allowed-user-groups",
        json={"userGroupIds": [group["id"]]},
    )
    assert [user["username"] for user in members.json()["users"]] == ["alice"]
    assert [g["name"] for g in allowed.json()["allowedUserGroups"]] == ["qufabric"]
    assert allowed.json()["allowedUserGroups"][0]["userCount"] == 1


# --- rate limit -------------------------------------------------------------------


def test_rate_limit_applies_to_loopback_only_with_the_knob() -> None:
    env = {"EMU_RATE_LIMIT_LOCALHOST": "1"}
    with run_emulator(env) as emulator, httpx.Client(base_url=emulator.url) as client:
        statuses = [
            client.get("/.well-known/openid-configuration").status_code
            for _ in range(70)
        ]
        limited = client.get("/api/users/me")
        health = client.get("/healthz")
    # A burst of 60, then about one a second: a slow machine may earn a few more.
    assert statuses[:60] == [200] * 60
    assert 429 in statuses[60:]
    assert limited.status_code == 429
    assert error_of(limited) == {"error": "Too many requests", "code": "rate_limited"}
    assert health.status_code == 204


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="loopback-exempt"),
        pytest.param(
            {"EMU_RATE_LIMIT_LOCALHOST": "1", "DISABLE_RATE_LIMITING": "true"},
            id="disabled",
        ),
    ],
)
def test_no_rate_limit(env: dict[str, str]) -> None:
    with run_emulator(env) as emulator, httpx.Client(base_url=emulator.url) as client:
        statuses = {client.get("/api/users/me").status_code for _ in range(70)}
    assert statuses == {401}


# --- persistence ------------------------------------------------------------------


def test_restart_keeps_key_users_and_clients(tmp_path: Path) -> None:
    env = seeded("2.14.0")
    with run_emulator(env, data_dir=tmp_path) as emulator:
        jwks = httpx.get(f"{emulator.url}/.well-known/jwks.json").json()
        client = admin(emulator).post("/api/oidc/clients", json={"name": "kept"})
    with run_emulator(env, data_dir=tmp_path) as emulator:
        assert httpx.get(f"{emulator.url}/.well-known/jwks.json").json() == jwks
        kept = admin(emulator).get(f"/api/oidc/clients/{client.json()['id']}")
        users = admin(emulator).get("/api/users").json()
    assert kept.status_code == 200
    assert users["pagination"]["totalItems"] == 3


def test_v2_refuses_a_different_encryption_key(tmp_path: Path) -> None:
    with run_emulator({"ENCRYPTION_KEY": "first-key-0123456789"}, data_dir=tmp_path):
        pass
    done = run_to_exit(
        {"ENCRYPTION_KEY": "other-key-0123456789", "EMU_DATA_DIR": str(tmp_path)}
    )
    assert done.returncode == 1
    assert "ENCRYPTION_KEY differs" in done.stderr


def test_v1_cannot_open_data_migrated_by_v2(tmp_path: Path) -> None:
    with run_emulator({}, data_dir=tmp_path):
        pass
    done = run_to_exit({"EMU_VERSION": "1.16.0", "EMU_DATA_DIR": str(tmp_path)})
    assert done.returncode == 1
    assert "downgrades are not supported" in done.stderr


# --- healthcheck command ---------------------------------------------------------


class _NotFound(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.mark.parametrize(
    ("version", "answering", "expected"),
    [
        pytest.param("1.16.0", False, 1, id="1.16-refused"),
        pytest.param("1.16.0", True, 0, id="1.16-404-passes"),
        pytest.param("2.14.0", False, 1, id="2.14-refused"),
        pytest.param("2.14.0", True, 1, id="2.14-404-fails"),
    ],
)
def test_healthcheck_semantics(version: str, answering: bool, expected: int) -> None:
    server = HTTPServer(("127.0.0.1", 0), _NotFound)
    port = server.server_port
    if answering:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    else:
        server.server_close()
    try:
        env = {"EMU_VERSION": version, "PORT": str(port), "ENCRYPTION_KEY": "k" * 16}
        done = run_to_exit(env, "healthcheck")
    finally:
        if answering:
            server.shutdown()
            server.server_close()
    assert done.returncode == expected


def test_healthcheck_passes_against_the_emulator(v2: Emulator) -> None:
    env = {"PORT": str(v2.port)}
    assert run_to_exit(env, "healthcheck").returncode == 0


# --- TLS --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CAFiles:
    return make_ca(tmp_path_factory.mktemp("ca"), ["localhost", "127.0.0.1"])


def _tls_env(cert: Path, key: Path) -> dict[str, str]:
    return {"EMU_TLS_CERT": str(cert), "EMU_TLS_KEY": str(key)}


def test_https_with_the_test_ca(ca: CAFiles) -> None:
    with run_emulator(_tls_env(ca.server_cert, ca.server_key)) as emulator:
        assert emulator.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(ca.ca_cert))
        document = httpx.get(
            f"{emulator.url}/.well-known/openid-configuration", verify=context
        ).json()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{emulator.url}/healthz")
    assert document["issuer"] == emulator.url


@pytest.mark.parametrize("problem", ["expired", "wrong-host"])
def test_https_failures_with_bad_certificates(
    ca: CAFiles, tmp_path: Path, problem: str
) -> None:
    if problem == "expired":
        cert, key = issue_server_cert(
            ca, tmp_path, ["127.0.0.1"], name="expired", expired=True
        )
    else:
        cert, key = make_wrong_host_cert(ca, tmp_path)
    context = ssl.create_default_context(cafile=str(ca.ca_cert))
    with (
        run_emulator(_tls_env(cert, key)) as emulator,
        pytest.raises(httpx.ConnectError) as caught,
    ):
        httpx.get(f"{emulator.url}/healthz", verify=context)
    reason = "expired" if problem == "expired" else "mismatch"
    assert reason in str(caught.value)
