"""Helpers for the identity provider tests: seeds, setup.env values, configs.

The emulator (tests/support/emulator.py) is seeded with users whose API keys
are known, and with OIDC clients that are right or wrong in one way each, so
one running emulator serves many checks: the test picks the client by id.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from qfstack.config import Config, build_config

ADMIN_TOKEN = "admin-key-0123456789abcdef"
USER_TOKEN = "user-key-0123456789abcdef"
EXPIRED_TOKEN = "expired-key-0123456789abcdef"
DISABLED_TOKEN = "disabled-key-0123456789abcdef"
TOKENS = (ADMIN_TOKEN, USER_TOKEN, EXPIRED_TOKEN, DISABLED_TOKEN)
DOMAIN = "qf.example.test"
WELL_KNOWN = "/.well-known/openid-configuration"
VERSIONS = ("1.16.0", "2.14.0")


def callbacks(domain: str = DOMAIN) -> list[str]:
    return [
        "http://localhost:53000",
        f"https://{domain}/auth",
        f"https://{domain}/silent-auth",
    ]


def good_client(client_id: str = "qufabric", **changes: Any) -> dict[str, Any]:
    """A client as QuFabric needs it, with `changes` applied."""
    client: dict[str, Any] = {
        "id": client_id,
        "name": client_id,
        "callbackURLs": callbacks(),
        "logoutCallbackURLs": [f"https://{DOMAIN}/"],
        "isPublic": True,
        "pkceEnabled": True,
        "isGroupRestricted": True,
        "allowedUserGroups": ["qufabric-users"],
    }
    client.update(changes)
    return client


def seed(extra_clients: int = 0) -> dict[str, Any]:
    """Users with known keys, a group, and one client per fault."""
    return {
        "users": [
            {"username": "admin", "isAdmin": True, "apiKeys": [{"token": ADMIN_TOKEN}]},
            {"username": "alice", "apiKeys": [{"token": USER_TOKEN}]},
            {
                "username": "old",
                "isAdmin": True,
                "apiKeys": [
                    {"token": EXPIRED_TOKEN, "expiresAt": "2020-01-01T00:00:00Z"}
                ],
            },
            {
                "username": "gone",
                "isAdmin": True,
                "disabled": True,
                "apiKeys": [{"token": DISABLED_TOKEN}],
            },
        ],
        "groups": [
            {"name": "qufabric-users", "friendlyName": "QuFabric",
             "members": ["alice"]},
            {"name": "empty", "friendlyName": "Empty"},
        ],
        "clients": [
            good_client(),
            good_client("confidential", isPublic=False, pkceEnabled=False,
                        secret="client-secret-0123456789"),
            good_client("nopkce", isPublic=False, pkceEnabled=False),
            good_client(
                "slash",
                callbackURLs=[url + "/" for url in callbacks()],
            ),
            good_client("nologout", logoutCallbackURLs=[f"https://{DOMAIN}"]),
            good_client("nogroups", allowedUserGroups=[]),
            good_client("emptygroup", allowedUserGroups=["empty"]),
            good_client("open", isGroupRestricted=False, allowedUserGroups=[]),
            good_client("wild", callbackURLs=["http://localhost:53000",
                                              f"https://{DOMAIN}/*"]),
            *(
                {"id": f"other-{n:03d}", "name": f"other {n:03d}"}
                for n in range(extra_clients)
            ),
        ],
    }  # fmt: skip


def setup_values(
    url: str,
    *,
    token: str = ADMIN_TOKEN,
    client_id: str = "qufabric",
    ca_bundle: Path | None = None,
    **extra: str,
) -> dict[str, str]:
    """setup.env values for an external PocketID at `url` (scheme://host:port)."""
    values = {
        "QUFABRIC_DOMAIN": DOMAIN,
        "QUFABRIC_AUTH_OIDC_CONFIGURATION_ENDPOINT": url + WELL_KNOWN,
        "QUFABRIC_AUTH_CLIENT_ID": client_id,
        "QUFABRIC_AUTH_SUPPORTED_SCOPES": "openid profile email groups",
        "QUFABRIC_TOKEN_SOURCE": "idToken",
        "QUFABRIC_MGMT_IDP": "pocketid",
        "QUFABRIC_IDP_MGMT_EXTRA_MANAGEMENT_ENDPOINT": url,
        "QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN": token,
        "QUFABRIC_LETSENCRYPT_EMAIL": "ops@example.test",
    }
    if ca_bundle is not None:
        values["QFSTACK_CA_BUNDLE"] = str(ca_bundle)
    values.update(extra)
    return values


def make_config(directory: Path, values: Mapping[str, str]) -> Config:
    directory.mkdir(parents=True, exist_ok=True)
    return build_config(directory, values, {})


def write_setup_env(directory: Path, values: Mapping[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "setup.env"
    path.write_text("".join(f'{k}="{v}"\n' for k, v in values.items()))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def third_party_provider(timeout: float = 20.0) -> Iterator[str]:
    """oidc-provider-mock (from PyPI) on 127.0.0.1 in a subprocess; yields its URL.

    A subprocess keeps its import-time deprecation warnings out of pytest's
    warnings-as-errors.
    """
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-W", "ignore", "-m", "oidc_provider_mock", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("oidc-provider-mock did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
