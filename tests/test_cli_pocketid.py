"""`qfstack pocketid provision` and `sign-in-link` through click's CliRunner:
exit codes, what goes to stdout and stderr, and no key in any of it."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from qfstack.cli import cli
from qfstack.errors import ComposeError
from qfstack.stack import Stack
from tests.support.emulator import (
    Emulator,
    emulator_command,
    emulator_env,
    run_emulator,
)
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


def test_a_dry_run_that_cannot_tell_the_version_says_so(
    tmp_path: Path, ca: CAFiles
) -> None:
    data = seed()
    data["clients"] = []
    env = {
        "EMU_VERSION": "1.16.0",
        "EMU_TLS_CERT": str(ca.server_cert),
        "EMU_TLS_KEY": str(ca.server_key),
        "EMU_SEED": json.dumps(data),
    }
    with run_emulator(env) as emulator:
        directory = stack(tmp_path, emulator, ca)
        result = qfstack(directory, "pocketid", "provision", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        "PocketID version unknown; assuming 2.x, client qufabric\n"
    )
    assert "note: version unknown; assuming 2.x" in result.stdout


def test_a_placeholder_key_is_the_next_step_and_init_fills_it(
    tmp_path: Path, emulator: Emulator, ca: CAFiles
) -> None:
    directory = stack(tmp_path, emulator, ca, token="<API_TOKEN>")
    key_file = tmp_path / "token.txt"
    key_file.write_text(ADMIN_TOKEN + "\n")
    provisioned = qfstack(
        directory, "pocketid", "provision", "--api-token-file", str(key_file)
    )
    assert provisioned.exit_code == 0, provisioned.output
    assert provisioned.stderr.rstrip().endswith(
        "Next: setup.env still has a placeholder in "
        "QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN: put the management API key there "
        "(qfstack init --api-token-file FILE does it); `qfstack validate` and "
        "`qfstack up` need it."
    )
    assert qfstack(directory, "validate").exit_code == 2

    # The step it names does it.
    init = qfstack(directory, "init", "--api-token-file", str(key_file))
    assert init.exit_code == 0, init.output
    assert "QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN" in init.stderr
    validated = qfstack(directory, "validate")
    assert validated.exit_code == 0, validated.output
    again = qfstack(directory, "pocketid", "provision")
    assert again.exit_code == 0, again.output
    assert "Next:" not in again.stderr
    for result in (provisioned, init, validated, again):
        no_secret(result)


def test_provision_warns_as_validate_does_of_an_empty_device_client(
    tmp_path: Path, emulator: Emulator, ca: CAFiles
) -> None:
    values = {"QUFABRIC_AUTH_DEVICE_AUTH_CLIENT_ID": ""}
    directory = stack(tmp_path, emulator, ca, **values)

    def warnings(result: Result) -> list[str]:
        return [line for line in result.stderr.splitlines() if "warning:" in line]

    validated = qfstack(directory, "validate")
    assert validated.exit_code == 0, validated.output
    result = qfstack(directory, "pocketid", "provision")
    assert result.exit_code == 0, result.output
    assert warnings(result) == warnings(validated)
    assert "QUFABRIC_AUTH_DEVICE_AUTH" not in result.stderr


# --- sign-in links from the bundled PocketID ------------------------------------

STATIC_KEY = "static-api-key-0123456789abcdef"


@pytest.fixture
def bundled_env() -> dict[str, str]:
    """The bundled PocketID: a static key, and the users admin and alice."""
    users = [user for user in seed()["users"] if user["username"] in (
        "admin", "alice")]  # fmt: skip
    return {"STATIC_API_KEY": STATIC_KEY, "EMU_SEED": json.dumps({"users": users})}


@pytest.fixture
def bundled(bundled_env: dict[str, str]) -> Iterator[Emulator]:
    with run_emulator(bundled_env) as running:
        yield running


@pytest.fixture
def commands(
    monkeypatch: pytest.MonkeyPatch, bundled: Emulator, bundled_env: dict[str, str]
) -> list[str]:
    """`compose exec pocketid pocket-id one-time-access-token USER`, run as the
    emulator's own command on the host; records the users asked for."""
    asked: list[str] = []
    env = emulator_env(bundled_env, bundled.port, bundled.data_dir)

    def one_time_access_token(self: Stack, user: str) -> str:
        asked.append(user)
        argv = emulator_command("one-time-access-token", user)
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise ComposeError(
                "docker compose could not create a PocketID sign-in link "
                f"(exit {done.returncode})",
                argv=argv,
                returncode=done.returncode,
                stderr=done.stderr,
            )
        return done.stdout

    monkeypatch.setattr(Stack, "pocketid_one_time_access_token", one_time_access_token)
    return asked


def bundled_stack(directory: Path, emulator: Emulator, **values: str) -> Path:
    write_setup_env(directory, {
        "QUFABRIC_DOMAIN": "localhost",
        "QFSTACK_BUNDLED_POCKETID": "true",
        "QFSTACK_POCKETID_URL": emulator.url,
        "QFSTACK_POCKETID_STATIC_API_KEY": STATIC_KEY,
        "QFSTACK_DASHBOARD_HTTP_PORT": "8080",
        **values,
    }).chmod(0o600)  # fmt: skip
    return directory


def test_the_sign_in_link_is_the_data_on_stdout(
    tmp_path: Path, bundled: Emulator, commands: list[str]
) -> None:
    result = qfstack(bundled_stack(tmp_path, bundled), "pocketid", "sign-in-link")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(re.escape(bundled.url) + r"/lc/\S+\n", result.stdout)
    assert "/lc/" not in result.stderr
    assert "One-time sign-in link for admin (valid for 1 hour)" in result.stderr
    assert commands == ["admin"]
    assert STATIC_KEY not in result.stderr


def test_an_unknown_user_is_named_with_exit_2(
    tmp_path: Path, bundled: Emulator, commands: list[str]
) -> None:
    directory = bundled_stack(tmp_path, bundled)
    result = qfstack(directory, "pocketid", "sign-in-link", "nosuchuser")
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and commands == []
    assert result.stderr == (
        "error: USER: is 'nosuchuser', but the bundled PocketID has no user with "
        "that user name or e-mail address (its users: admin, alice). Fix: pass "
        "one of its users (`qfstack pocketid sign-in-link USER`), or none for "
        "the first admin, QFSTACK_POCKETID_ADMIN ('admin').\n"
    )


def test_an_unknown_first_admin_names_its_setting(
    tmp_path: Path, bundled: Emulator, commands: list[str]
) -> None:
    directory = bundled_stack(tmp_path, bundled, QFSTACK_POCKETID_ADMIN="root")
    result = qfstack(directory, "pocketid", "sign-in-link")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: QFSTACK_POCKETID_ADMIN: is 'root'")
    assert "set QFSTACK_POCKETID_ADMIN to one of its users" in result.stderr
    assert commands == []


def test_a_user_the_api_cannot_check_is_left_to_pocketid(
    tmp_path: Path, bundled: Emulator, commands: list[str]
) -> None:
    # A key PocketID refuses: the command itself says the user is unknown.
    wrong_key = "wrong-static-key-0123456789abcdef"
    directory = bundled_stack(
        tmp_path, bundled, QFSTACK_POCKETID_STATIC_API_KEY=wrong_key
    )
    result = qfstack(directory, "pocketid", "sign-in-link", "nosuchuser")
    assert result.exit_code == 1, result.output
    assert commands == ["nosuchuser"]
    assert result.stderr.startswith(
        "error: PocketID could not create a sign-in link for 'nosuchuser' "
        "(`pocket-id one-time-access-token` exited 1)\n"
        "  user 'nosuchuser' not found\n"
    )
    assert "docker compose" not in result.stderr
    assert wrong_key not in result.stderr
