"""Convergence and cost on one running stack (a module of its own, so that
its stack is gone before other modules start theirs)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_lifecycle import _bundled
from tests.support.stack import (
    ROOT,
    free_ports,
    project_containers,
    project_name,
    qfstack,
    remove_project,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def running(standin_images, tmp_path_factory) -> Iterator[Path]:
    """One bundled stack shared by the tests that only look at or restart it."""
    directory = tmp_path_factory.mktemp("lifecycle") / "qfslife"
    directory.mkdir()
    _bundled(directory)
    up = qfstack(directory, "up", "--timeout", "180")
    assert up.returncode == 0, up.stderr
    yield directory
    remove_project(directory)


def test_a_second_up_changes_nothing_and_says_so(running: Path) -> None:
    before = project_containers(project_name(running))
    again = qfstack(running, "up", "--timeout", "120")
    assert again.returncode == 0, again.stderr
    assert "No change" in again.stderr
    assert sorted(project_containers(project_name(running))) == sorted(before)


def test_changing_one_variable_recreates_only_the_affected_service(
    running: Path,
) -> None:
    (port,) = free_ports(1)
    with (running / "setup.env").open("a") as handle:
        handle.write(f"QFSTACK_DASHBOARD_HTTP_PORT={port}\n")
    result = qfstack(running, "up", "--timeout", "120")
    assert result.returncode == 0, result.stderr
    assert "recreated: dashboard\n" in result.stderr
    assert "created: " not in result.stderr.replace("recreated: ", "")


def test_status_costs_one_compose_call_whatever_the_number_of_services(
    running: Path, tmp_path: Path
) -> None:
    def calls(directory: Path) -> tuple[int, dict[str, object]]:
        probe = (
            "import json, subprocess, sys\n"
            "count = 0\n"
            "real = subprocess.Popen.__init__\n"
            "def counting(self, *a, **k):\n"
            "    global count\n"
            "    argv = a[0] if a else k['args']\n"
            "    count += str(argv[0]).endswith('docker')\n"
            "    real(self, *a, **k)\n"
            "subprocess.Popen.__init__ = counting\n"
            "from qfstack.cli import main\n"
            "try:\n"
            f"    main(['--dir', {str(directory)!r}, 'status', '--json'])\n"
            "except SystemExit:\n"
            "    pass\n"
            "print(count, file=sys.stderr)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT
        )
        report = json.loads(done.stdout)
        return int(done.stderr.strip().splitlines()[-1]), report

    few, report = calls(running)
    assert report["healthy"] is True
    extra = "services:\n" + "".join(
        f"  extra{i}:\n    image: qfstack-standin/signal:dev\n"
        "    healthcheck:\n"
        "      test: [CMD, bash, -c, '</dev/tcp/127.0.0.1/80']\n"
        "      interval: 2s\n"
        for i in range(4)
    )
    (running / "compose.override.yml").write_text(extra)
    try:
        up = qfstack(running, "up", "--timeout", "120")
        assert up.returncode == 0, up.stderr
        many, report = calls(running)
        assert len(report["services"]) == 10
    finally:
        (running / "compose.override.yml").unlink()
        qfstack(running, "up", "--timeout", "120")
    assert few == many == 1
