"""The bundled stack with zero clicks, on a real engine: from an empty
directory, `qfstack init --bundled-pocketid` and `qfstack up` bring it up
healthy with QuFabric's client provisioned, the first admin created and a
one-time sign-in link printed; a second `up` keeps every secret and the
client id and prints no new link."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest
from dotenv import dotenv_values

from tests.support.stack import (
    STANDIN_IMAGES,
    free_ports,
    local_ports_env,
    qfstack,
)

pytestmark = pytest.mark.integration

LINK = re.compile(r"http://localhost:\d+/lc/\S+")


def _settings() -> list[str]:
    """`--set` arguments: ports of its own and the stand-in images."""
    (pocketid,) = free_ports(1)
    lines = local_ports_env() + STANDIN_IMAGES + f"QFSTACK_POCKETID_PORT={pocketid}"
    return [arg for line in lines.splitlines() for arg in ("--set", line)]


def test_the_bundled_stack_comes_up_from_an_empty_directory_with_no_clicks(
    standin_images, stack_dir: Path
) -> None:
    assert list(stack_dir.iterdir()) == []
    init = qfstack(stack_dir, "init", "--bundled-pocketid", *_settings())
    assert init.returncode == 0, init.stderr

    started = time.monotonic()
    up = qfstack(stack_dir, "-vv", "up", "--timeout", "180")
    seconds = time.monotonic() - started
    assert up.returncode == 0, up.stderr
    print(f"zero-touch up from an empty directory: {seconds:.1f}s")
    assert "Stack " in up.stderr and "is healthy" in up.stderr
    assert "ok pocketid api" in up.stderr
    assert "PocketID: client qufabric: created as 'QuFabric'" in up.stderr
    assert "PocketID: created the first admin 'admin'" in up.stderr

    # The sign-in link is shown once, and in no log line (-vv logs to stderr).
    links = LINK.findall(up.stderr)
    assert len(links) == 1, up.stderr
    assert "Sign in to PocketID as admin" in up.stderr
    secrets = {k: v or "" for k, v in dotenv_values(stack_dir / "secrets.env").items()}
    static_key = secrets["QFSTACK_POCKETID_STATIC_API_KEY"]
    assert static_key and static_key not in up.stdout + up.stderr

    # The management API token is the static key; issuer for the browser,
    # endpoints for the containers.
    management = json.loads((stack_dir / "artifacts/management.json").read_text())
    assert management["IdpManagerConfig"]["ExtraConfig"]["ApiToken"] == static_key
    port = dotenv_values(stack_dir / "setup.env")["QFSTACK_POCKETID_PORT"]
    assert management["HttpConfig"]["AuthIssuer"] == f"http://localhost:{port}"
    assert management["HttpConfig"]["OIDCConfigEndpoint"] == (
        "http://pocketid:1411/.well-known/openid-configuration"
    )

    doctor = qfstack(stack_dir, "doctor", "--json", "--no-docker")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    report = doctor.json()
    assert isinstance(report, dict)
    pocketid = [
        c for c in report["checks"] if c["group"] in ("pocketid api", "oidc client")
    ]
    assert len(pocketid) == 9 and {c["level"] for c in pocketid} == {"pass"}
    (version,) = [c for c in pocketid if c["name"] == "version"]
    assert version["summary"].startswith("PocketID 2.x")

    # The link signs the admin in (PocketID redeems it once).
    with httpx.Client() as client:
        answer = client.get(links[0])
        assert answer.status_code == 302 and answer.headers["location"] == "/settings"
        api = f"http://localhost:{port}/api"
        headers = {"X-API-KEY": static_key}
        found = client.get(f"{api}/oidc/clients/qufabric", headers=headers).json()
        group = found["allowedUserGroups"][0]
        members = client.get(f"{api}/user-groups/{group['id']}", headers=headers)
    assert [u["username"] for u in members.json()["users"]] == ["admin"]

    # Again: nothing changes, no new admin, no new link, every secret kept.
    setup_before = (stack_dir / "setup.env").read_bytes()
    secrets_before = (stack_dir / "secrets.env").read_bytes()
    again = qfstack(stack_dir, "up", "--timeout", "120")
    assert again.returncode == 0, again.stderr
    assert "No change" in again.stderr
    assert not LINK.search(again.stderr)
    assert (stack_dir / "secrets.env").read_bytes() == secrets_before
    assert (stack_dir / "setup.env").read_bytes() == setup_before
    with httpx.Client() as client:
        same = client.get(f"{api}/oidc/clients/qufabric", headers=headers)
    assert same.status_code == 200 and same.json()["id"] == "qufabric"

    # A new link on demand, for when the first one has expired: the link is
    # the command's data (LINK=$(qfstack pocketid sign-in-link)).
    link = qfstack(stack_dir, "pocketid", "sign-in-link")
    assert link.returncode == 0, link.stderr
    assert LINK.fullmatch(link.stdout.strip()) and not LINK.search(link.stderr)

    # An unknown user is named, from PocketID's user list, not from Compose.
    unknown = qfstack(stack_dir, "pocketid", "sign-in-link", "nosuchuser")
    assert unknown.returncode == 2, unknown.stderr
    assert "'nosuchuser'" in unknown.stderr and "its users: admin" in unknown.stderr
    assert "docker compose" not in unknown.stderr and unknown.stdout == ""
