"""`qfstack pocketid provision` and `sign-in-link` through click's CliRunner:
exit codes, what goes to stdout and stderr, and no key in any of it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from qfstack.cli import cli
from tests.support.emulator import Emulator, run_emulator
from tests.support.provider import (
    ADMIN_TOKEN,
    TOKENS,
    USER_TOKEN,
    good_client,
    seed,
    setup_values,
    write_setup_env,
)
from tests.support.tlsca import CAFiles, make_ca


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CAFiles:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def emulator(ca: CAFiles) -> Iterator[Emulator]:
    data = seed()
    data["clients"] = [good_client(name="old", isPublic=False, pkceEnabled=False)]
    env = {
        "EMU_TLS_CERT": str(ca.server_cert),
        "EMU_TLS_KEY": str(ca.server_key),
        "EMU_SEED": json.dumps(data),
    }
    with run_emulator(env) as running:
        yield running


def qfstack(directory: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--dir", str(directory), *args], input=stdin)


def stack(directory: Path, emulator: Emulator, ca: CAFiles, **values: str) -> Path:
    write_setup_env(
        directory, setup_values(emulator.url, ca_bundle=ca.ca_cert, **values)
    )
    return directory


def no_secret(result: Result) -> None:
    for token in TOKENS:
        assert token not in result.stdout + result.stderr


def test_provision_then_nothing_to_change(
    tmp_path: Path, emulator: Emulator, ca: CAFiles
) -> None:
    directory = stack(tmp_path, emulator, ca)
    first = qfstack(directory, "pocketid", "provision", "--user", "alice")
    assert first.exit_code == 0, first.output
    assert "changed: client qufabric: name: 'old' -> 'QuFabric'" in first.stdout
    assert "changed: client qufabric: isPublic: false -> true" in first.stdout
    assert "Provisioned client qufabric" in first.stderr
    again = qfstack(directory, "pocketid", "provision", "--user", "alice")
    assert again.exit_code == 0, again.output
    assert "changed:" not in again.stdout
    assert "Nothing to change: client qufabric is as QuFabric needs it." in (
        again.stderr
    )
    no_secret(first)
    no_secret(again)


def test_dry_run_json(tmp_path: Path, emulator: Emulator, ca: CAFiles) -> None:
    directory = stack(tmp_path, emulator, ca)
    result = qfstack(directory, "pocketid", "provision", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dry_run"] is True and report["changed"] is True
    assert report["pocketid_version"] == "2.x"
    assert {c["field"] for c in report["changes"]} >= {"name", "isPublic"}
    assert "nothing was changed" in result.stderr
    no_secret(result)


def test_a_key_from_stdin(tmp_path: Path, emulator: Emulator, ca: CAFiles) -> None:
    directory = stack(tmp_path, emulator, ca, token="<API_TOKEN>")
    result = qfstack(
        directory, "pocketid", "provision", "--api-token-file", "-",
        stdin=ADMIN_TOKEN + "\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert ADMIN_TOKEN not in (directory / "setup.env").read_text()
    no_secret(result)


def test_a_non_admin_key_fails_with_exit_1(
    tmp_path: Path, emulator: Emulator, ca: CAFiles
) -> None:
    result = qfstack(stack(tmp_path, emulator, ca, token=USER_TOKEN), "pocketid",
                     "provision")  # fmt: skip
    assert result.exit_code == 1
    assert "not an admin" in result.stderr and "Fix:" in result.stderr
    no_secret(result)


def test_open_access_with_users_is_a_usage_error(
    tmp_path: Path, emulator: Emulator, ca: CAFiles
) -> None:
    directory = stack(tmp_path, emulator, ca)
    result = qfstack(
        directory, "pocketid", "provision", "--open-access", "--user", "alice"
    )
    assert result.exit_code == 2
    assert "--open-access" in result.stderr


def test_sign_in_links_need_the_bundled_pocketid(
    tmp_path: Path, emulator: Emulator, ca: CAFiles
) -> None:
    result = qfstack(stack(tmp_path, emulator, ca), "pocketid", "sign-in-link")
    assert result.exit_code == 2
    assert "pocket-id one-time-access-token" in result.stderr
