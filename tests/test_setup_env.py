"""`qfstack init`: writes what was asked, keeps everything else, secrets once."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from dotenv import dotenv_values

from qfstack.cli import cli
from qfstack.files import write_atomic
from qfstack.setup_env import update_text

SECRETS = ("QUFABRIC_TURN_PASSWORD", "QUFABRIC_RELAY_AUTH_SECRET",
           "QUFABRIC_DATASTORE_ENCRYPTION_KEY")


def _init(directory: Path, *args: str, token: str | None = None):
    runner = CliRunner()
    argv = ["--dir", str(directory), "init", "--non-interactive", *args]
    if token is not None:
        argv += ["--api-token-file", "-"]
    return runner.invoke(cli, argv, input=token)


def _values(directory: Path) -> dict[str, str]:
    return {k: v or "" for k, v in dotenv_values(directory / "setup.env").items()}


def test_init_writes_a_valid_private_setup_env(tmp_path: Path) -> None:
    result = _init(tmp_path, "--domain", "qf.example.com", "--pocketid-url",
                   "https://id.example.com/", "--client-id", "c-1",
                   token="secret-api-token\n")
    assert result.exit_code == 0, result.output
    values = _values(tmp_path)
    assert values["QUFABRIC_AUTH_OIDC_CONFIGURATION_ENDPOINT"] == (
        "https://id.example.com/.well-known/openid-configuration")
    assert values["QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN"] == "secret-api-token"
    assert values["QUFABRIC_AUTH_AUDIENCE"] == "c-1"
    assert all(values[name] for name in SECRETS)
    assert stat.S_IMODE((tmp_path / "setup.env").stat().st_mode) == 0o600
    assert "secret-api-token" not in result.output
    validate = CliRunner().invoke(cli, ["--dir", str(tmp_path), "validate"])
    assert validate.exit_code == 0, validate.output


def test_init_refuses_an_incomplete_file_and_writes_nothing(tmp_path: Path) -> None:
    result = _init(tmp_path, "--domain", "qf.example.com")
    assert result.exit_code == 2
    assert "QUFABRIC_AUTH_CLIENT_ID" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_second_init_changes_only_what_was_asked(tmp_path: Path) -> None:
    _init(tmp_path, "--bundled-pocketid")
    path = tmp_path / "setup.env"
    path.write_text(path.read_text() + "# my own note\nQUFABRIC_MGMT_API_PORT=33999\n")
    before = _values(tmp_path)

    result = _init(tmp_path, "--set", "QUFABRIC_SIGNAL_PORT=10001")
    assert result.exit_code == 0, result.output
    after = _values(tmp_path)
    assert after == {**before, "QUFABRIC_SIGNAL_PORT": "10001"}
    assert "# my own note" in path.read_text()
    backups = list(tmp_path.glob("setup.env.*.bak"))
    assert len(backups) == 1
    assert "QUFABRIC_SIGNAL_PORT" not in backups[0].read_text()


def test_secrets_survive_init_and_a_key_written_by_management(tmp_path: Path) -> None:
    # A stack whose management wrote its own key before qfstack managed it.
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "management.json").write_text(
        json.dumps({"DataStoreEncryptionKey": "key-written-by-management"}))
    (tmp_path / "secrets.env").write_text("QUFABRIC_TURN_PASSWORD='turn-pw-from-up'\n")

    assert _init(tmp_path, "--bundled-pocketid").exit_code == 0
    first = _values(tmp_path)
    assert first["QUFABRIC_DATASTORE_ENCRYPTION_KEY"] == "key-written-by-management"
    assert first["QUFABRIC_TURN_PASSWORD"] == "turn-pw-from-up"

    assert _init(tmp_path, "--set", "QUFABRIC_SIGNAL_PORT=10002").exit_code == 0
    second = _values(tmp_path)
    assert {n: second[n] for n in SECRETS} == {n: first[n] for n in SECRETS}


def test_an_encryption_key_differing_from_managements_is_refused(
    tmp_path: Path,
) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "management.json").write_text(
        json.dumps({"DataStoreEncryptionKey": "the-key-in-use"}))
    result = _init(tmp_path, "--bundled-pocketid", "--set",
                   "QUFABRIC_DATASTORE_ENCRYPTION_KEY=another-key")
    # init writes it; using it would lose data, so render/up refuse it.
    assert result.exit_code == 0
    from qfstack.config import load_config
    from qfstack.errors import ConfigError
    from qfstack.secrets import ensure_secrets

    with pytest.raises(ConfigError) as caught:
        ensure_secrets(load_config(tmp_path, environ={}))
    assert caught.value.findings[0].variable == "QUFABRIC_DATASTORE_ENCRYPTION_KEY"
    assert "the-key-in-use" not in str(caught.value.findings[0])


def test_update_text_rewrites_in_place_and_appends() -> None:
    text = "# head\nA=1\nexport B='2'\n"
    assert update_text(text, {"B": 'x"y', "C": "3"}) == (
        '# head\nA=1\nB="x\\"y"\n\nC="3"\n')


def test_an_interrupted_write_leaves_the_previous_file(tmp_path: Path,
                                                       monkeypatch) -> None:
    path = tmp_path / "setup.env"
    path.write_text("OLD=1\n")

    def crash(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, "NEW=2\n")
    assert path.read_text() == "OLD=1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["setup.env"]
