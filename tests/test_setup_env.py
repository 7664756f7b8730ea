"""`qfstack init`: writes what was asked, keeps everything else, secrets once."""

from __future__ import annotations

import base64
import json
import os
import pty
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from dotenv import dotenv_values

from qfstack.cli import cli
from qfstack.files import write_atomic
from qfstack.setup_env import init_values, update_text

ROOT = Path(__file__).resolve().parent.parent
SECRETS = (
    "QUFABRIC_TURN_PASSWORD",
    "QUFABRIC_RELAY_AUTH_SECRET",
    "QUFABRIC_DATASTORE_ENCRYPTION_KEY",
)
MANAGEMENT_KEY = base64.b64encode(b"k" * 32).decode()


def _init(directory: Path, *args: str, token: str | None = None) -> Result:
    runner = CliRunner()
    argv = ["--dir", str(directory), "init", "--non-interactive", *args]
    if token is not None:
        argv += ["--api-token-file", "-"]
    return runner.invoke(cli, argv, input=token, env={"QUFABRIC_DOMAIN": None})


def _values(directory: Path, name: str = "setup.env") -> dict[str, str]:
    return {k: v or "" for k, v in dotenv_values(directory / name).items()}


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(path.relative_to(directory)): (path.read_bytes(), path.stat().st_mode)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def test_init_writes_a_valid_private_setup_env(tmp_path: Path) -> None:
    result = _init(
        tmp_path,
        "--domain",
        "qf.example.com",
        "--pocketid-url",
        "https://id.example.com/",
        "--client-id",
        "c-1",
        token="secret-api-token\n",
    )
    assert result.exit_code == 0, result.output
    values = _values(tmp_path)
    assert values["QUFABRIC_AUTH_OIDC_CONFIGURATION_ENDPOINT"] == (
        "https://id.example.com/.well-known/openid-configuration"
    )
    assert values["QUFABRIC_IDP_MGMT_EXTRA_MANAGEMENT_ENDPOINT"] == (
        "https://id.example.com"
    )
    assert values["QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN"] == "secret-api-token"
    assert values["QUFABRIC_AUTH_AUDIENCE"] == "c-1"
    assert values["QUFABRIC_TOKEN_SOURCE"] == "idToken"
    # Generated secrets live in secrets.env, not in the operator's file.
    assert not any(name in values for name in SECRETS)
    stored = _values(tmp_path, "secrets.env")
    assert all(stored[name] for name in SECRETS)
    for name in ("setup.env", "secrets.env"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert "secret-api-token" not in result.output
    assert not any(value in result.output for value in stored.values())
    validate = CliRunner().invoke(cli, ["--dir", str(tmp_path), "validate"])
    assert validate.exit_code == 0, validate.output


def test_init_refuses_an_incomplete_file_and_writes_nothing(tmp_path: Path) -> None:
    result = _init(tmp_path, "--domain", "qf.example.com")
    assert result.exit_code == 2
    assert "QUFABRIC_AUTH_CLIENT_ID" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_second_init_changes_only_what_was_asked(tmp_path: Path) -> None:
    assert _init(tmp_path, "--bundled-pocketid").exit_code == 0
    path = tmp_path / "setup.env"
    path.write_text(path.read_text() + "# my own note\nQUFABRIC_MGMT_API_PORT=33999\n")
    before, secrets = _values(tmp_path), _snapshot(tmp_path)["secrets.env"]

    result = _init(tmp_path, "--set", "QUFABRIC_SIGNAL_PORT=10001")
    assert result.exit_code == 0, result.output
    assert _values(tmp_path) == {**before, "QUFABRIC_SIGNAL_PORT": "10001"}
    assert "# my own note" in path.read_text()
    assert _snapshot(tmp_path)["secrets.env"] == secrets
    backups = list(tmp_path.glob("setup.env.*.bak"))
    assert len(backups) == 1
    assert "QUFABRIC_SIGNAL_PORT" not in backups[0].read_text()
    assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600


def test_an_init_that_changes_nothing_writes_nothing(tmp_path: Path) -> None:
    assert _init(tmp_path, "--bundled-pocketid").exit_code == 0
    before = _snapshot(tmp_path)
    result = _init(tmp_path, "--bundled-pocketid")
    assert result.exit_code == 0, result.output
    assert "nothing changed" in result.output
    assert _snapshot(tmp_path) == before


def test_every_backup_is_kept_even_within_one_second(tmp_path: Path) -> None:
    assert _init(tmp_path, "--bundled-pocketid").exit_code == 0
    for port in ("10001", "10002", "10003"):
        assert _init(tmp_path, "--set", f"QUFABRIC_SIGNAL_PORT={port}").exit_code == 0
    backups = sorted(tmp_path.glob("setup.env.*.bak"))
    assert len(backups) == 3
    kept = {_values(tmp_path, b.name).get("QUFABRIC_SIGNAL_PORT") for b in backups}
    assert kept == {None, "10001", "10002"}


def test_bundled_again_keeps_the_domain(tmp_path: Path) -> None:
    assert _init(tmp_path, "--bundled-pocketid", "--domain", "qf.lan").exit_code == 0
    assert _init(tmp_path, "--bundled-pocketid").exit_code == 0
    assert _values(tmp_path)["QUFABRIC_DOMAIN"] == "qf.lan"


def test_secrets_survive_init_and_a_key_written_by_management(tmp_path: Path) -> None:
    # A stack whose management wrote its own key before qfstack managed it.
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "management.json").write_text(
        json.dumps({"DataStoreEncryptionKey": MANAGEMENT_KEY})
    )
    (tmp_path / "secrets.env").write_text("QUFABRIC_TURN_PASSWORD='turn-pw-from-up'\n")

    assert _init(tmp_path, "--bundled-pocketid").exit_code == 0
    first = _values(tmp_path, "secrets.env")
    assert first["QUFABRIC_DATASTORE_ENCRYPTION_KEY"] == MANAGEMENT_KEY
    assert first["QUFABRIC_TURN_PASSWORD"] == "turn-pw-from-up"

    assert _init(tmp_path, "--set", "QUFABRIC_SIGNAL_PORT=10002").exit_code == 0
    second = _values(tmp_path, "secrets.env")
    assert {n: second[n] for n in SECRETS} == {n: first[n] for n in SECRETS}


def test_an_encryption_key_differing_from_managements_is_refused(
    tmp_path: Path,
) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "management.json").write_text(
        json.dumps({"DataStoreEncryptionKey": MANAGEMENT_KEY})
    )
    before = _snapshot(tmp_path)
    another = base64.b64encode(b"x" * 32).decode()
    result = _init(
        tmp_path,
        "--bundled-pocketid",
        "--set",
        f"QUFABRIC_DATASTORE_ENCRYPTION_KEY={another}",
    )
    assert result.exit_code == 2
    assert "QUFABRIC_DATASTORE_ENCRYPTION_KEY" in result.output
    assert MANAGEMENT_KEY not in result.output and another not in result.output
    assert _snapshot(tmp_path) == before


def test_a_set_without_a_name_does_not_echo_the_value(tmp_path: Path) -> None:
    result = _init(tmp_path, "--bundled-pocketid", "--set", "s3cr3t-value-no-name")
    assert result.exit_code == 2
    assert "--set" in result.output
    assert "s3cr3t-value-no-name" not in result.output


def test_update_text_rewrites_in_place_and_appends() -> None:
    text = "# head\nA=1\nexport B='2'\n"
    assert update_text(text, {"B": 'x"y', "C": "3"}) == (
        '# head\nA=1\nB="x\\"y"\n\nC="3"\n'
    )


def test_update_text_rewrites_every_line_of_a_repeated_variable() -> None:
    # python-dotenv keeps the last one: changing only the first would not count.
    assert update_text("A=1\nB=2\nA=3\n", {"A": "9"}) == 'A="9"\nB=2\nA="9"\n'


def test_init_prompts_for_what_flags_left_out() -> None:
    asked: list[tuple[str, bool]] = []

    def prompt(name: str, text: str, secret: bool) -> str:
        asked.append((name, secret))
        return {
            "QUFABRIC_DOMAIN": "qf.example.com",
            "QUFABRIC_AUTH_OIDC_CONFIGURATION_ENDPOINT": "https://id.example.com",
            "QUFABRIC_AUTH_CLIENT_ID": "c-9",
            "QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN": "tok",
        }[name]

    values = init_values({}, client_id="c-1", prompt=prompt)
    assert asked == [
        ("QUFABRIC_DOMAIN", False),
        ("QUFABRIC_AUTH_OIDC_CONFIGURATION_ENDPOINT", False),
        ("QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN", True),
    ]
    assert values["QUFABRIC_AUTH_CLIENT_ID"] == "c-1"
    assert values["QUFABRIC_IDP_MGMT_EXTRA_MANAGEMENT_ENDPOINT"] == (
        "https://id.example.com"
    )


def _read_until(fd: int, text: str, seen: bytearray, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while text.encode() not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {text!r} in {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            assert chunk, f"output ended without {text!r}: {bytes(seen)!r}"
            seen += chunk


def test_init_in_a_terminal_prompts_and_hides_the_api_key(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUFABRIC_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "qfstack", "--dir", str(tmp_path), "init"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=ROOT,
        env={**env, "NO_COLOR": "1"},
    )
    os.close(slave)
    seen = bytearray()
    try:
        for question, answer in (
            ("Public host name", "qf.example.com"),
            ("PocketID base URL", "https://id.example.com"),
            ("client id", "c-7"),
            ("API key", "typed-api-key-123"),
        ):
            _read_until(master, question, seen)
            os.write(master, answer.encode() + b"\r")
        assert proc.wait(timeout=30) == 0, bytes(seen)
        _read_until(master, "Generated", seen)
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    assert b"typed-api-key-123" not in seen
    values = _values(tmp_path)
    assert values["QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN"] == "typed-api-key-123"
    assert values["QUFABRIC_AUTH_CLIENT_ID"] == "c-7"


def test_non_interactive_in_a_terminal_never_prompts(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUFABRIC_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qfstack",
            "--dir",
            str(tmp_path),
            "init",
            "--non-interactive",
            "--domain",
            "qf.example.com",
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=ROOT,
        env={**env, "NO_COLOR": "1"},
    )
    os.close(slave)
    seen = bytearray()
    try:
        assert proc.wait(timeout=30) == 2
        _read_until(master, "QUFABRIC_AUTH_CLIENT_ID", seen)
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    assert b"PocketID base URL" not in seen
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_leaves_the_previous_file(
    tmp_path: Path, monkeypatch
) -> None:
    path = tmp_path / "setup.env"
    path.write_text("OLD=1\n")

    def crash(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, "NEW=2\n")
    assert path.read_text() == "OLD=1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["setup.env"]


# A process that stops for good in the middle of writing setup.env.
_STALLED_WRITER = """
import os, sys, time
from pathlib import Path
from qfstack import files

def stall(fd):
    print("writing", flush=True)
    time.sleep(60)

files.os.fsync = stall
files.write_atomic(Path(sys.argv[1]), "NEW=2\\n" * 50000, mode=0o600)
"""


def test_a_writer_killed_mid_write_leaves_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "setup.env"
    path.write_text("OLD=1\n")
    path.chmod(0o600)
    proc = subprocess.Popen(
        [sys.executable, "-c", _STALLED_WRITER, str(path)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"writing\n"
        temporary = [p for p in tmp_path.iterdir() if p != path]
        assert len(temporary) == 1 and temporary[0].stat().st_size > 0
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert path.read_text() == "OLD=1\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The half-written temporary file holds nothing anyone else can read.
    leftover = [p for p in tmp_path.iterdir() if p != path]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in leftover)
    # The next write replaces the file whole.
    write_atomic(path, "NEW=3\n", mode=0o600)
    assert path.read_text() == "NEW=3\n"


@pytest.mark.parametrize(
    ("given", "base"),
    [
        pytest.param("id.example.com", "https://id.example.com", id="no-scheme"),
        pytest.param(
            "https://ID.Example.com/",
            "https://id.example.com",
            id="upper-case-and-slash",
        ),
        pytest.param(
            "https://id.example.com:8443/.well-known/openid-configuration",
            "https://id.example.com:8443",
            id="well-known-given",
        ),
        pytest.param("http://localhost:1411", "http://localhost:1411", id="local-http"),
    ],
)
def test_the_pocketid_url_is_written_as_its_issuer_spells_it(
    given: str, base: str
) -> None:
    values = init_values({"QUFABRIC_DOMAIN": "qf.example.com"}, pocketid_url=given)
    assert values["QUFABRIC_IDP_MGMT_EXTRA_MANAGEMENT_ENDPOINT"] == base
    assert values["QUFABRIC_AUTH_OIDC_CONFIGURATION_ENDPOINT"] == (
        base + "/.well-known/openid-configuration"
    )


def test_init_shows_the_warnings_of_the_file_it_wrote(tmp_path: Path) -> None:
    result = _init(
        tmp_path,
        "--domain",
        "qf.example.com",
        "--pocketid-url",
        "https://id.example.com",
        "--client-id",
        "c-1",
        "--set",
        "QUFABRIC_AUTH_SUPPORTED_SCOPES=openid profile",
        token="tok",
    )
    assert result.exit_code == 0, result.output
    assert "warning: QUFABRIC_AUTH_SUPPORTED_SCOPES" in result.output
