"""Benchmark: the cost of qfstack's lifecycle commands against plain Compose.

Prints, for the bundled demo stack on the stand-in images:
- `qfstack up` wall time against `docker compose up -d --wait` on the same
  rendered files, each from a stopped stack, as a ratio;
- `qfstack status --json` against `docker compose ps --format json`;
- `qfstack --version` start-up time.

Not a test: it measures and prints. Run it with `make bench`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.stack import (  # noqa: E402
    STANDIN_IMAGES,
    free_ports,
    local_ports_env,
    remove_project,
)

RUNS = 5


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _run(argv: list[str], **kwargs: object) -> None:
    subprocess.run(argv, check=True, capture_output=True, **kwargs)  # type: ignore[call-overload]


def _summary(name: str, samples: list[float]) -> str:
    return (
        f"{name:<34} median {statistics.median(samples) * 1000:8.1f} ms   "
        f"min {min(samples) * 1000:8.1f} ms   runs {len(samples)}"
    )


def main(argv: list[str] | None = None) -> int:
    from tests.images.build import ensure_images

    ensure_images()
    qfstack = [sys.executable, "-m", "qfstack"]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "qfsbench"
        directory.mkdir()
        (port,) = free_ports(1)
        (directory / "setup.env").write_text(
            "QUFABRIC_DOMAIN=localhost\nQFSTACK_BUNDLED_POCKETID=true\n"
            f"QFSTACK_POCKETID_PORT={port}\n" + local_ports_env() + STANDIN_IMAGES
        )
        os.chmod(directory / "setup.env", 0o600)
        dir_args = [*qfstack, "--dir", str(directory)]
        try:
            # Warm up: render everything and pull nothing later.
            _run([*dir_args, "up", "--timeout", "180"])
            from qfstack.config import load_config
            from qfstack.stack import Stack

            stack = Stack(load_config(directory))
            compose = [str(c) for c in stack.docker.compose.docker_compose_cmd]

            ours, theirs = [], []
            for _ in range(RUNS):
                _run([*dir_args, "down"])
                ours.append(_timed(lambda: _run([*dir_args, "up", "--timeout", "180"])))
                _run([*dir_args, "down"])
                theirs.append(_timed(lambda: _run([*compose, "up", "-d", "--wait"])))
            _run([*dir_args, "up", "--timeout", "180"])

            status = [
                _timed(lambda: _run([*dir_args, "status", "--json"]))
                for _ in range(RUNS * 2)
            ]
            ps = [
                _timed(
                    lambda: _run(
                        [
                            "docker",
                            "compose",
                            "-p",
                            stack.project,
                            "ps",
                            "--all",
                            "--format",
                            "json",
                        ]
                    )
                )
                for _ in range(RUNS * 2)
            ]
        finally:
            remove_project(directory)

    version = [_timed(lambda: _run([*qfstack, "--version"])) for _ in range(RUNS * 2)]

    print("qfstack lifecycle benchmark (bundled demo stack, stand-in images)")
    print(_summary("qfstack up (from stopped)", ours))
    print(_summary("docker compose up -d --wait", theirs))
    print(
        f"{'ratio up/compose (median)':<34} "
        f"{statistics.median(ours) / statistics.median(theirs):8.2f}"
    )
    print(_summary("qfstack status --json", status))
    print(_summary("docker compose ps --format json", ps))
    print(
        f"{'ratio status/ps (median)':<34} "
        f"{statistics.median(status) / statistics.median(ps):8.2f}"
    )
    print(_summary("qfstack --version", version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
