"""The command line's contract: exit codes, streams, colours, completion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from qfstack import __version__
from qfstack.cli import cli
from qfstack.stack import compress_ports

ROOT = Path(__file__).resolve().parent.parent


def _run(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qfstack", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_version_prints_on_stdout() -> None:
    done = _run("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"qfstack, version {__version__}"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        pytest.param(["no-such-command"], 2, id="unknown-command"),
        pytest.param(["up", "--timeout", "0"], 2, id="timeout-below-one"),
        pytest.param(["--resolve", "not-a-mapping", "status"], 2, id="bad-resolve"),
    ],
)
def test_usage_errors_exit_2_without_a_traceback(
    tmp_path: Path, args: list[str], code: int
) -> None:
    done = _run("--dir", str(tmp_path), *args)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_a_missing_setup_env_names_the_file_and_the_fix(tmp_path: Path) -> None:
    done = _run("--dir", str(tmp_path), "status", "--json")
    assert done.returncode == 2
    assert "setup.env" in done.stderr and "qfstack init" in done.stderr
    assert done.stdout == ""


def test_verbose_shows_the_traceback_only_when_asked(tmp_path: Path) -> None:
    quiet = _run("--dir", str(tmp_path), "validate")
    loud = _run("-v", "--dir", str(tmp_path), "validate")
    assert "Traceback" not in quiet.stderr
    assert quiet.returncode == loud.returncode == 2


def test_no_color_and_a_pipe_mean_no_escape_codes(tmp_path: Path) -> None:
    (tmp_path / "setup.env").write_text("QUFABRIC_DOMAIN=bad domain\n")
    done = _run("--dir", str(tmp_path), "validate", env={"NO_COLOR": "1"})
    assert done.returncode == 2
    assert "\x1b[" not in done.stderr


def test_insecure_warns_every_time(tmp_path: Path) -> None:
    done = _run("--insecure", "--dir", str(tmp_path), "validate")
    assert "NOT verified" in done.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_name_the_program(shell: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0
    assert "_QFSTACK_COMPLETE" in result.output


def test_completion_lists_the_commands() -> None:
    done = _run(
        env={
            "_QFSTACK_COMPLETE": "bash_complete",
            "COMP_WORDS": "qfstack ",
            "COMP_CWORD": "1",
        }
    )
    words = {line.split(",", 1)[-1] for line in done.stdout.splitlines()}
    assert {"up", "down", "status", "logs", "doctor", "backup"} <= words


def test_port_runs_are_compressed_for_the_status_table() -> None:
    ports = [f"127.0.0.1:{p}->{p}/udp" for p in range(49152, 49156)]
    ports += ["127.0.0.1:3478->3478/udp", "127.0.0.1:8080->80/tcp"]
    assert compress_ports(ports) == (
        "127.0.0.1:8080->80/tcp",
        "127.0.0.1:3478->3478/udp",
        "127.0.0.1:49152-49155->49152-49155/udp",
    )


def test_render_refuses_what_wait_refuses(tmp_path: Path) -> None:
    from tests.support.oidc_server import oidc_server

    with oidc_server() as server:
        server.serve(server.document(code_challenge_methods_supported=["plain"]))
        (tmp_path / "setup.env").write_text(server.setup_env("client-1", "token-12345"))
        result = CliRunner().invoke(cli, ["--dir", str(tmp_path), "render"])
    assert result.exit_code == 1, result.output
    assert "S256" in result.output
    assert not (tmp_path / "artifacts").exists()
