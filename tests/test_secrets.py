"""Secrets: generated once, kept for ever, never shown.

The identity provider is a real HTTP server on 127.0.0.1 (tests/support/
oidc_server.py); everything but the `config` test runs without Docker.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from dotenv import dotenv_values

from qfstack.cli import cli
from qfstack.secrets import MASK, redact
from tests.support.oidc_server import PROXY_VARIABLES, OidcServer, oidc_server
from tests.support.stack import qfstack

CLIENT_ID = "client-123"
API_TOKEN = "pocketid-api-token-0123456789"
GENERATED = (
    "QUFABRIC_TURN_PASSWORD",
    "QUFABRIC_RELAY_AUTH_SECRET",
    "QUFABRIC_DATASTORE_ENCRYPTION_KEY",
)


@pytest.fixture
def idp(monkeypatch: pytest.MonkeyPatch) -> Iterator[OidcServer]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith(("QUFABRIC_", "QFSTACK_")):
            monkeypatch.delenv(name)
    with oidc_server() as server:
        yield server


def run(directory: Path, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--dir", str(directory), *args])
    assert result.exit_code == 0, result.output
    return result


def env_file(path: Path) -> dict[str, str]:
    return {k: v or "" for k, v in dotenv_values(path, interpolate=False).items()}


def in_use(directory: Path) -> dict[str, str]:
    """The secrets the rendered files hand to the services."""
    artifacts = directory / "artifacts"
    management = json.loads((artifacts / "management.json").read_text())
    turn = management["TURNConfig"]["Turns"][0]["Password"]
    relay = management["Relay"]["Secret"]
    assert f"user=self:{turn}\n" in (artifacts / "turnserver.conf").read_text()
    assert env_file(artifacts / "relay.env")["QF_AUTH_SECRET"] == relay
    return {
        "QUFABRIC_TURN_PASSWORD": turn,
        "QUFABRIC_RELAY_AUTH_SECRET": relay,
        "QUFABRIC_DATASTORE_ENCRYPTION_KEY": management["DataStoreEncryptionKey"],
    }


def write_key_as_management_does(directory: Path, key: str) -> None:
    """Management rewrites its mounted management.json in place."""
    path = directory / "artifacts" / "management.json"
    document = json.loads(path.read_text())
    document["DataStoreEncryptionKey"] = key
    with open(path, "w") as handle:
        handle.write(json.dumps(document, indent=4) + "\n")


def init_stack(directory: Path, idp: OidcServer, *extra: str) -> Result:
    token = directory.parent / "api-token.txt"
    token.write_text(API_TOKEN + "\n")
    return run(
        directory, "init", "--non-interactive", "--domain", "qf.example.com",
        "--pocketid-url", idp.base, "--client-id", CLIENT_ID,
        "--api-token-file", str(token), *extra,
    )  # fmt: skip


def test_secrets_survive_init_render_and_a_key_management_wrote(
    tmp_path: Path, idp: OidcServer
) -> None:
    stack = tmp_path / "stack"
    init_stack(stack, idp)
    stored = env_file(stack / "secrets.env")
    assert sorted(stored) == sorted(GENERATED)
    assert stat.S_IMODE((stack / "secrets.env").stat().st_mode) == 0o600

    run(stack, "render")
    first = in_use(stack)
    assert first == stored

    # Management wrote a key of its own (as after an upgrade from a stack the
    # reference scripts set up): that key encrypts the data from now on.
    management_key = base64.b64encode(os.urandom(32)).decode()
    write_key_as_management_does(stack, management_key)

    init_stack(stack, idp, "--set", "QUFABRIC_SIGNAL_PORT=10001")
    run(stack, "render")
    second = in_use(stack)
    assert second == {**first, "QUFABRIC_DATASTORE_ENCRYPTION_KEY": management_key}
    assert env_file(stack / "secrets.env") == second

    # Nothing changes on later runs.
    again = run(stack, "render")
    assert "0 of" in again.output
    init_stack(stack, idp)
    assert in_use(stack) == second == env_file(stack / "secrets.env")
    assert "QUFABRIC_TURN_PASSWORD" not in env_file(stack / "setup.env")


def test_a_key_in_setup_env_differing_from_managements_is_refused(
    tmp_path: Path, idp: OidcServer
) -> None:
    init_stack(tmp_path / "stack", idp)
    stack = tmp_path / "stack"
    run(stack, "render")
    management_key = in_use(stack)["QUFABRIC_DATASTORE_ENCRYPTION_KEY"]
    another = base64.b64encode(b"y" * 32).decode()
    with open(stack / "setup.env", "a") as handle:
        handle.write(f'QUFABRIC_DATASTORE_ENCRYPTION_KEY="{another}"\n')
    before = {p: p.read_bytes() for p in stack.rglob("*") if p.is_file()}

    for command in ("validate", "render"):
        result = CliRunner().invoke(cli, ["--dir", str(stack), command])
        assert result.exit_code == 2, result.output
        assert "QUFABRIC_DATASTORE_ENCRYPTION_KEY" in result.output
        assert "lost" in result.output
        assert another not in result.output and management_key not in result.output
    assert {p: p.read_bytes() for p in stack.rglob("*") if p.is_file()} == before


def test_rendered_secret_files_are_private(tmp_path: Path, idp: OidcServer) -> None:
    stack = tmp_path / "stack"
    init_stack(stack, idp)
    run(stack, "render")
    for name in ("setup.env", "secrets.env", "artifacts/management.json",
                 "artifacts/turnserver.conf", "artifacts/dashboard.env",
                 "artifacts/relay.env", "artifacts/management.env"):
        assert stat.S_IMODE((stack / name).stat().st_mode) == 0o600, name
    for name in ("artifacts/compose.env", "artifacts/discovery.json"):
        text = (stack / name).read_text()
        assert not any(value in text for value in in_use(stack).values()), name
        assert API_TOKEN not in text, name


def test_debug_logs_show_no_secret(tmp_path: Path, idp: OidcServer) -> None:
    stack = tmp_path / "stack"
    token = tmp_path / "api-token.txt"
    token.write_text(API_TOKEN)
    outputs = []
    for args in (
        ["init", "--non-interactive", "--domain", "qf.example.com",
         "--pocketid-url", idp.base, "--client-id", CLIENT_ID,
         "--api-token-file", str(token)],
        ["validate"],
        ["render"],
        ["init", "--set", "QUFABRIC_RELAY_PORT=33081"],
        ["render"],
    ):  # fmt: skip
        result = qfstack(stack, "-vv", *args, timeout=60)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)
    text = "\n".join(outputs)
    assert "DEBUG" in text and "INFO" in text
    secrets = [API_TOKEN, *in_use(stack).values()]
    assert all(secret not in text for secret in secrets)


def test_redact_masks_values_and_secret_keys_of_any_length() -> None:
    text = (
        "    environment:\n"
        "      AUTH_CLIENT_SECRET: abc\n"
        "      AUTH_CLIENT_ID: client-123\n"
        "      QF_AUTH_SECRET: \"\"\n"
        "      NOTE: the relay-secret-0001 is here\n"
    )
    masked = redact(text, {"X": "relay-secret-0001", "Y": "abc"},
                    keys=("AUTH_CLIENT_SECRET", "QF_AUTH_SECRET"))
    assert masked == (
        "    environment:\n"
        f"      AUTH_CLIENT_SECRET: {MASK}\n"
        "      AUTH_CLIENT_ID: client-123\n"
        "      QF_AUTH_SECRET: \"\"\n"
        f"      NOTE: the {MASK} is here\n"
    )


@pytest.mark.integration
def test_config_masks_secrets_unless_asked(tmp_path: Path, idp: OidcServer) -> None:
    stack = tmp_path / "stack"
    dsn = "postgres://qufabric:pg-password-0123@db:5432/qufabric"
    init_stack(stack, idp, "--set", "QUFABRIC_AUTH_CLIENT_SECRET=Zq9xK",
               "--set", "QUFABRIC_STORE_CONFIG_ENGINE=postgres",
               "--set", f"QUFABRIC_STORE_ENGINE_POSTGRES_DSN={dsn}")
    run(stack, "render")
    relay = in_use(stack)["QUFABRIC_RELAY_AUTH_SECRET"]

    masked = qfstack(stack, "-vv", "config", timeout=120)
    assert masked.returncode == 0, masked.stderr
    assert "services:" in masked.stdout
    assert f"QF_AUTH_SECRET: {MASK}" in masked.stdout
    assert f"AUTH_CLIENT_SECRET: {MASK}" in masked.stdout
    assert f"QF_STORE_ENGINE_POSTGRES_DSN: {MASK}" in masked.stdout
    # Each compose command is logged at debug level, argv only.
    assert any("DEBUG" in line and "compose" in line and line.endswith(" config")
               for line in masked.stderr.splitlines()), masked.stderr
    for secret in (relay, "Zq9xK", "pg-password-0123", API_TOKEN):
        assert secret not in masked.stdout + masked.stderr

    shown = qfstack(stack, "config", "--show-secrets", timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert relay in shown.stdout and dsn in shown.stdout
    assert "unmasked" in shown.stderr
