"""The lifecycle on a real engine: converge, fail early, keep data, bounded cost."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.stack import (
    ROOT,
    STANDIN_IMAGES,
    free_ports,
    local_ports_env,
    project_containers,
    project_name,
    project_volumes,
    qfstack,
    start_qfstack,
)

pytestmark = pytest.mark.integration


def _bundled(directory: Path, extra: str = "") -> None:
    (port,) = free_ports(1)
    (directory / "setup.env").write_text(
        "QUFABRIC_DOMAIN=localhost\nQFSTACK_BUNDLED_POCKETID=true\n"
        f"QFSTACK_POCKETID_PORT={port}\n" + local_ports_env() + STANDIN_IMAGES + extra
    )


def _installation_id(project: str) -> str:
    done = subprocess.run(
        [
            "docker",
            "exec",
            f"{project}-management-1",
            "python3",
            "-c",
            "import sqlite3; print(sqlite3.connect('/var/lib/qufabric/store.db')"
            ".execute('select id from installation').fetchone()[0])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_down_keeps_volumes_and_down_volumes_removes_them(
    standin_images, stack_dir: Path
) -> None:
    _bundled(stack_dir)
    assert qfstack(stack_dir, "up", "--timeout", "180").returncode == 0
    project = project_name(stack_dir)

    refused = qfstack(stack_dir, "down", "--volumes")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert project_containers(project)

    assert qfstack(stack_dir, "down").returncode == 0
    assert project_containers(project) == []
    assert f"{project}_management" in project_volumes(project)

    gone = qfstack(stack_dir, "down", "--volumes", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert "volumes are removed" in gone.stderr
    assert project_volumes(project) == []


def test_backup_destroy_restore_brings_back_the_same_data(
    standin_images, stack_dir: Path
) -> None:
    _bundled(stack_dir)
    assert qfstack(stack_dir, "up", "--timeout", "180").returncode == 0
    project = project_name(stack_dir)
    original = _installation_id(project)
    secrets_before = (stack_dir / "secrets.env").read_text()

    backup = qfstack(stack_dir, "backup")
    assert backup.returncode == 0, backup.stderr
    archive = Path(backup.stdout.strip())
    assert archive.is_file() and oct(archive.stat().st_mode)[-3:] == "600"

    assert qfstack(stack_dir, "down", "--volumes", "--yes").returncode == 0
    (stack_dir / "secrets.env").unlink()
    restored = qfstack(stack_dir, "restore", "--yes", str(archive))
    assert restored.returncode == 0, restored.stderr
    assert _installation_id(project) == original
    assert (stack_dir / "secrets.env").read_text() == secrets_before


@pytest.mark.parametrize(
    ("service", "knob"),
    [
        pytest.param("signal", 'STANDIN_EXIT_AFTER: "1"', id="crash-loop"),
        pytest.param("relay", 'STANDIN_NO_LISTEN: "1"', id="unhealthy"),
    ],
)
def test_a_failing_service_is_named_within_seconds(
    standin_images, stack_dir: Path, service: str, knob: str
) -> None:
    _bundled(stack_dir, "QFSTACK_HEALTH_START_PERIOD=3\n")
    (stack_dir / "compose.override.yml").write_text(
        f"services:\n  {service}:\n    environment:\n      {knob}\n"
    )
    started = time.monotonic()
    result = qfstack(stack_dir, "up", "--timeout", "170")
    elapsed = time.monotonic() - started
    assert result.returncode == 3, result.stderr
    assert f"service {service}" in result.stderr
    assert "last log lines" in result.stderr
    assert elapsed < 60, f"took {elapsed:.0f}s, as long as a timeout"


def test_a_taken_port_is_reported_before_any_container_starts(
    standin_images, stack_dir: Path
) -> None:
    _bundled(stack_dir)
    port = int(
        next(
            line.split("=")[1]
            for line in (stack_dir / "setup.env").read_text().splitlines()
            if line.startswith("QUFABRIC_MGMT_API_PORT=")
        )
    )
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = qfstack(stack_dir, "up", "--timeout", "60")
    assert result.returncode == 1, result.stderr
    assert "QUFABRIC_MGMT_API_PORT" in result.stderr
    assert f"port {port}" in result.stderr and "pid" in result.stderr
    assert project_containers(project_name(stack_dir)) == []


def test_ctrl_c_during_up_exits_130_with_files_intact(
    standin_images, stack_dir: Path
) -> None:
    _bundled(stack_dir)
    (stack_dir / "compose.override.yml").write_text(
        'services:\n  pocketid:\n    environment:\n      EMU_START_DELAY: "30"\n'
    )
    process = start_qfstack(stack_dir, "up", "--timeout", "120")
    time.sleep(6)
    setup_before = (stack_dir / "setup.env").read_text()
    secrets_before = (stack_dir / "secrets.env").read_text()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "interrupted while" in stderr
    assert "Traceback" not in stderr
    assert (stack_dir / "setup.env").read_text() == setup_before
    assert (stack_dir / "secrets.env").read_text() == secrets_before
    for path in (stack_dir / "artifacts").iterdir():
        assert not path.name.endswith(".tmp"), path
    state = (
        json.loads((stack_dir / "artifacts" / "state.json").read_text())
        if (stack_dir / "artifacts" / "state.json").exists()
        else {"healthy": False}
    )
    assert state["healthy"] is False


def test_lost_secrets_are_not_regenerated_over_existing_data(
    standin_images, stack_dir: Path
) -> None:
    _bundled(stack_dir)
    assert qfstack(stack_dir, "up", "--timeout", "180").returncode == 0
    assert qfstack(stack_dir, "down").returncode == 0
    (stack_dir / "secrets.env").unlink()

    again = qfstack(stack_dir, "up", "--timeout", "60")
    assert again.returncode == 2, again.stderr
    assert "QFSTACK_POCKETID_ENCRYPTION_KEY" in again.stderr
    assert "restore secrets.env" in again.stderr
    assert not (stack_dir / "secrets.env").exists()
    assert project_containers(project_name(stack_dir)) == []


def test_a_crashing_bundled_pocketid_is_named_at_once(
    standin_images, stack_dir: Path
) -> None:
    _bundled(stack_dir)
    assert qfstack(stack_dir, "up", "--timeout", "180").returncode == 0
    with (stack_dir / "setup.env").open("a") as handle:
        handle.write("QFSTACK_POCKETID_ENCRYPTION_KEY=a-different-key-0123456789\n")
    started = time.monotonic()
    result = qfstack(stack_dir, "up", "--timeout", "170")
    assert result.returncode == 3, result.stderr
    assert "service pocketid" in result.stderr
    assert "ENCRYPTION_KEY differs" in result.stderr
    assert time.monotonic() - started < 60


def test_logs_stream_container_output_verbatim_and_restart_waits(
    standin_images, stack_dir: Path
) -> None:
    _bundled(stack_dir)
    marker = "[bold red]not markup[/] \x1b[31mraw escape\x1b[0m"
    # printf turns \033 into ESC: the YAML itself may not hold control bytes.
    (stack_dir / "compose.override.yml").write_text(
        "services:\n  signal:\n    entrypoint: [bash, -c]\n    command:\n"
        "      - |\n"
        "        printf '[bold red]not markup[/] \\033[31mraw escape\\033[0m\\n'\n"
        "        exec /opt/qufabric-standin/run.py\n"
    )
    assert qfstack(stack_dir, "up", "--timeout", "180").returncode == 0

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "qfstack",
            "--dir",
            str(stack_dir),
            "logs",
            "--tail",
            "50",
            "signal",
        ],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert marker.encode() in done.stdout

    restarted = qfstack(stack_dir, "restart", "signal", "--timeout", "120")
    assert restarted.returncode == 0, restarted.stderr
    assert "Restarted signal" in restarted.stderr
    assert done.stdout.count(marker.encode()) == 1
    again = subprocess.run(
        [sys.executable, "-m", "qfstack", "--dir", str(stack_dir), "logs", "signal"],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert again.stdout.count(marker.encode()) == 2


def test_a_project_started_from_another_directory_is_refused(
    standin_images, stack_dir: Path, tmp_path: Path
) -> None:
    _bundled(stack_dir, f"QFSTACK_PROJECT={stack_dir.name}\n")
    assert qfstack(stack_dir, "up", "--timeout", "180").returncode == 0
    other = tmp_path / "other"
    other.mkdir()
    _bundled(other, f"QFSTACK_PROJECT={stack_dir.name}\n")
    before = sorted(project_containers(project_name(stack_dir)))

    for args in (
        ["up", "--timeout", "60"],
        ["down", "--volumes", "--yes"],
        ["status", "--json"],
    ):
        result = qfstack(other, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "QFSTACK_PROJECT" in result.stderr
        assert str(stack_dir) in result.stderr
    assert sorted(project_containers(project_name(stack_dir))) == before
    assert project_volumes(project_name(stack_dir))


def test_init_does_not_generate_a_key_over_existing_data(
    standin_images, stack_dir: Path
) -> None:
    _bundled(stack_dir)
    assert qfstack(stack_dir, "up", "--timeout", "180").returncode == 0
    assert qfstack(stack_dir, "down").returncode == 0
    (stack_dir / "secrets.env").unlink()
    setup_before = (stack_dir / "setup.env").read_text()

    result = qfstack(stack_dir, "init", "--non-interactive")
    assert result.returncode == 2, result.stderr
    assert "QFSTACK_POCKETID_ENCRYPTION_KEY" in result.stderr
    assert not (stack_dir / "secrets.env").exists()
    assert (stack_dir / "setup.env").read_text() == setup_before


def test_a_broken_override_is_invalid_configuration(
    standin_images, stack_dir: Path
) -> None:
    _bundled(stack_dir)
    (stack_dir / "compose.override.yml").write_text("services:\n  signal: [unclosed\n")
    result = qfstack(stack_dir, "up", "--timeout", "60")
    assert result.returncode == 2, result.stderr
    assert "compose.override.yml" in result.stderr
    assert project_containers(project_name(stack_dir)) == []


def test_unknown_services_are_usage_errors_naming_the_valid_ones(
    standin_images, stack_dir: Path
) -> None:
    _bundled(stack_dir)
    never = qfstack(stack_dir, "logs", "signal")
    assert never.returncode == 1 and "qfstack up" in never.stderr
    assert qfstack(stack_dir, "up", "--timeout", "180").returncode == 0
    for args in (["logs", "nosuch"], ["restart", "bogus"]):
        result = qfstack(stack_dir, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "management" in result.stderr and "signal" in result.stderr


def test_two_changing_commands_do_not_run_at_once(
    standin_images, stack_dir: Path
) -> None:
    _bundled(stack_dir)
    first = start_qfstack(stack_dir, "up", "--timeout", "180")
    time.sleep(1.5)
    second = qfstack(stack_dir, "up", "--timeout", "60")
    _, stderr = first.communicate(timeout=200)
    assert first.returncode == 0, stderr
    assert second.returncode == 1
    assert "another qfstack command is changing" in second.stderr


def test_a_taken_relay_port_is_reported_before_any_container_starts(
    standin_images, stack_dir: Path
) -> None:
    _bundled(stack_dir)
    relay = int(
        next(
            line.split("=")[1]
            for line in (stack_dir / "setup.env").read_text().splitlines()
            if line.startswith("QUFABRIC_TURN_MIN_PORT=")
        )
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", relay))
        result = qfstack(stack_dir, "up", "--timeout", "60")
    assert result.returncode == 1, result.stderr
    assert f"UDP port {relay}" in result.stderr
    assert "QUFABRIC_TURN_MIN_PORT" in result.stderr
    assert project_containers(project_name(stack_dir)) == []


def test_up_starts_a_stopped_container_and_says_so_and_backup_leaves_it_healthy(
    standin_images, stack_dir: Path
) -> None:
    _bundled(stack_dir)
    assert qfstack(stack_dir, "up", "--timeout", "180").returncode == 0
    project = project_name(stack_dir)
    subprocess.run(
        ["docker", "stop", f"{project}-signal-1"], check=True, capture_output=True
    )
    again = qfstack(stack_dir, "up", "--timeout", "120")
    assert again.returncode == 0, again.stderr
    assert "started (was stopped): signal" in again.stderr
    assert "No change" not in again.stderr

    assert qfstack(stack_dir, "backup").returncode == 0
    status = qfstack(stack_dir, "status", "--json")
    assert status.returncode == 0, status.stdout
