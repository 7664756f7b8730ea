"""Shared fixtures.

Integration tests (marked `integration`) need a Docker engine with Compose v2.
Outside CI they are skipped when none answers; in CI (CI=true) a missing
engine fails the run instead, so nothing is silently left untested.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _engine_problem() -> str:
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    for argv in (["docker", "info"], ["docker", "compose", "version"]):
        try:
            done = subprocess.run(argv, capture_output=True, timeout=30)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(argv)}` timed out"
        if done.returncode != 0:
            return f"`{' '.join(argv)}` failed: {done.stderr.decode()[-300:]}"
    return ""


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    wanted = [item for item in items if item.get_closest_marker("integration")]
    if not wanted:
        return
    problem = _engine_problem()
    if not problem:
        return
    if IN_CI:
        raise pytest.UsageError(
            f"CI needs a Docker engine for the integration tests: {problem}. "
            "Run `make docker` (scripts/ensure-docker.sh) first."
        )
    skip = pytest.mark.skip(reason=f"no Docker engine outside CI: {problem}")
    for item in wanted:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def standin_images() -> dict[str, str]:
    """The stand-in images, built once per run (reused by tag and hash)."""
    from tests.images.build import ensure_images

    return ensure_images()


@pytest.fixture
def stack_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty stack directory whose Compose project is always removed."""
    directory = tmp_path / f"qfs{os.getpid()}{tmp_path.name[-6:]}".replace("_", "")
    directory.mkdir()
    yield directory
    from tests.support.stack import remove_project

    remove_project(directory)
