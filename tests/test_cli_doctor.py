"""`qfstack wait` and `qfstack doctor` through click's CliRunner: exit codes,
the JSON shape, and no secret in anything they print."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from qfstack.cli import cli
from tests.support.emulator import Emulator, run_emulator
from tests.support.provider import (
    ADMIN_TOKEN,
    TOKENS,
    free_port,
    seed,
    setup_values,
    write_setup_env,
)
from tests.support.tlsca import CAFiles, make_ca


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CAFiles:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def emulator(ca: CAFiles) -> Iterator[Emulator]:
    env = {
        "EMU_TLS_CERT": str(ca.server_cert),
        "EMU_TLS_KEY": str(ca.server_key),
        "EMU_SEED": json.dumps(seed()),
    }
    with run_emulator(env) as running:
        yield running


def qfstack(directory: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--dir", str(directory), *args])


def no_secret(result: Result) -> None:
    for token in TOKENS:
        assert token not in result.stdout
        assert token not in result.stderr


def stack(tmp_path: Path, url: str, ca: CAFiles | None, **values: str) -> Path:
    bundle = ca.ca_cert if ca else None
    write_setup_env(tmp_path, setup_values(url, ca_bundle=bundle, **values))
    return tmp_path


def test_doctor_json(tmp_path: Path, emulator: Emulator, ca: CAFiles) -> None:
    result = qfstack(
        stack(tmp_path, emulator.url, ca), "doctor", "--json", "--no-docker"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"project", "ok", "level", "counts", "checks", "skipped"}
    assert report["ok"] is True and report["counts"]["fail"] == 0
    for check in report["checks"]:
        assert set(check) == {"group", "name", "level", "summary", "evidence", "fix"}
        assert check["level"] in ("pass", "warn", "fail")
    titles = {(c["group"], c["name"]) for c in report["checks"]}
    assert ("identity provider", "jwks") in titles
    assert ("pocketid api", "api key") in titles
    assert ("oidc client", "callback urls") in titles
    no_secret(result)


def test_doctor_fails_with_the_fix(
    tmp_path: Path, emulator: Emulator, ca: CAFiles
) -> None:
    directory = stack(
        tmp_path, emulator.url, ca, QUFABRIC_AUTH_CLIENT_ID="confidential"
    )
    result = qfstack(directory, "doctor", "--no-docker")
    assert result.exit_code == 1
    assert "FAIL oidc client: public: the client is confidential" in result.stdout
    assert "fix: Administration -> OIDC Clients -> confidential" in result.stdout
    assert "PASS identity provider: issuer" in result.stdout
    no_secret(result)


def test_doctor_with_a_refused_key(
    tmp_path: Path, emulator: Emulator, ca: CAFiles
) -> None:
    directory = stack(
        tmp_path, emulator.url, ca, QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN="x" * 24
    )
    result = qfstack(directory, "doctor", "--json", "--no-docker")
    assert result.exit_code == 1
    checks = json.loads(result.stdout)["checks"]
    key = next(c for c in checks if c["name"] == "api key")
    assert "invalid or expired" in key["summary"]
    assert "x" * 24 not in result.output


def test_doctor_on_an_invalid_config(tmp_path: Path) -> None:
    write_setup_env(tmp_path, {"QUFABRIC_AUTH_CLIENT_ID": "qufabric"})
    result = qfstack(tmp_path, "doctor")
    assert result.exit_code == 2
    assert "QUFABRIC_DOMAIN" in result.stderr
    as_json = qfstack(tmp_path, "doctor", "--json")
    assert as_json.exit_code == 2
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert any(f["variable"] == "QUFABRIC_DOMAIN" for f in report["config"])


def test_doctor_insecure_warns_each_time(tmp_path: Path, emulator: Emulator) -> None:
    directory = stack(tmp_path, emulator.url, None)
    for _ in range(2):
        result = qfstack(directory, "--insecure", "doctor", "--json", "--no-docker")
        assert result.exit_code == 0, result.output
        assert "WARNING:" in result.stderr and "--insecure" in result.stderr
        tls = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "tls")
        assert tls["level"] == "warn"


def test_doctor_ca_bundle_option(
    tmp_path: Path, emulator: Emulator, ca: CAFiles
) -> None:
    directory = stack(tmp_path, emulator.url, None)
    untrusted = qfstack(directory, "doctor", "--json", "--no-docker")
    assert untrusted.exit_code == 1
    tls = json.loads(untrusted.stdout)["checks"][-1]
    assert (tls["name"], tls["level"]) == ("tls", "fail")
    assert "--ca-bundle" in tls["fix"]
    trusted = qfstack(
        directory, "--ca-bundle", str(ca.ca_cert), "doctor", "--json", "--no-docker"
    )
    assert trusted.exit_code == 0, trusted.output


def test_wait_ready(tmp_path: Path, emulator: Emulator, ca: CAFiles) -> None:
    result = qfstack(stack(tmp_path, emulator.url, ca), "wait", "--idp-only")
    assert result.exit_code == 0, result.output
    assert "ok identity provider" in result.stderr and "Ready after" in result.stderr
    no_secret(result)


def test_wait_ends_at_once_on_a_wrong_issuer(tmp_path: Path, ca: CAFiles) -> None:
    env = {
        "EMU_TLS_CERT": str(ca.server_cert),
        "EMU_TLS_KEY": str(ca.server_key),
        "EMU_ISSUER": "https://elsewhere.example.test",
    }
    with run_emulator(env) as running:
        directory = stack(tmp_path, running.url, ca)
        started = time.monotonic()
        result = qfstack(directory, "wait", "--idp-only", "--timeout", "60")
    assert result.exit_code == 3
    assert time.monotonic() - started < 3
    assert "will not recover by waiting" in result.stderr
    assert "elsewhere.example.test" in result.stderr


def test_wait_times_out_with_exit_3(tmp_path: Path) -> None:
    directory = stack(tmp_path, f"https://127.0.0.1:{free_port()}", None)
    result = qfstack(directory, "wait", "--idp-only", "--timeout", "0.5")
    assert result.exit_code == 3
    assert "not ready after" in result.stderr
    assert ADMIN_TOKEN not in result.output
