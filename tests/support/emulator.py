"""Run the PocketID emulator as a host process on 127.0.0.1 for a test.

    with run_emulator({"EMU_VERSION": "1.16.0"}) as emulator:
        httpx.get(f"{emulator.url}/.well-known/openid-configuration")

The emulator gets a clean environment: only PATH, what ``emulator_env`` adds
(HOST, PORT, APP_URL, EMU_DATA_DIR, an ENCRYPTION_KEY) and what the test passes.
Pass ``ENCRYPTION_KEY=""`` to run without one.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

EMULATOR_SCRIPT = (
    Path(__file__).resolve().parents[1] / "images" / "pocketid" / "emulator.py"
)
TEST_ENCRYPTION_KEY = "qfstack-test-encryption-key-0001"
READY_PREFIX = "listening on "


class EmulatorError(RuntimeError):
    """The emulator did not come up; the message carries its stderr."""


@dataclass
class Emulator:
    """A running emulator: where to reach it and what it logged so far."""

    url: str
    port: int
    process: subprocess.Popen[str]
    data_dir: Path
    log_path: Path

    def log(self) -> str:
        """Everything the emulator wrote to stderr (its request log)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def emulator_env(
    env: Mapping[str, str] | None, port: int, data_dir: Path
) -> dict[str, str]:
    """The environment ``run_emulator`` starts the emulator with."""
    given = dict(env or {})
    scheme = "https" if given.get("EMU_TLS_CERT") else "http"
    result = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "APP_URL": f"{scheme}://127.0.0.1:{port}",
        "EMU_DATA_DIR": str(data_dir),
    }
    if "ENCRYPTION_KEY" not in given and "ENCRYPTION_KEY_FILE" not in given:
        result["ENCRYPTION_KEY"] = TEST_ENCRYPTION_KEY
    result.update(given)
    return result


def emulator_command(*arguments: str) -> list[str]:
    """argv that runs the emulator script (or one of its commands) on the host."""
    return [sys.executable, str(EMULATOR_SCRIPT), *arguments]


@contextmanager
def run_emulator(
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    *,
    data_dir: Path | None = None,
    timeout: float = 15.0,
) -> Iterator[Emulator]:
    """Start the emulator, wait for ``listening on``, always stop it afterwards.

    ``data_dir`` keeps state across runs (a restart); by default a temporary
    directory is used and removed. Raise EmulatorError when it exits or stays
    silent for ``timeout`` seconds.
    """
    with tempfile.TemporaryDirectory(prefix="qfstack-emulator-") as scratch:
        chosen_port = port or free_port()
        state_dir = data_dir or Path(scratch) / "data"
        log_path = Path(scratch) / "emulator.log"
        with open(log_path, "w", encoding="utf-8") as log_file:
            process = subprocess.Popen(
                emulator_command(),
                env=emulator_env(env, chosen_port, state_dir),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
            )
        try:
            url = _wait_until_listening(process, log_path, timeout)
            yield Emulator(url, chosen_port, process, state_dir, log_path)
        finally:
            _stop(process)


def _wait_until_listening(
    process: subprocess.Popen[str], log_path: Path, timeout: float
) -> str:
    if process.stdout is None:
        raise EmulatorError("the emulator was started without a stdout pipe")
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(
        target=_pump_lines, args=(process.stdout, lines), daemon=True
    ).start()

    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise EmulatorError(
                f"the emulator did not listen within {timeout:g} s; its log:\n"
                + log_path.read_text(errors="replace")
            )
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            continue
        if line is None:
            process.wait(timeout=5)
            raise EmulatorError(
                f"the emulator exited with {process.returncode}; its log:\n"
                + log_path.read_text(errors="replace")
            )
        if line.startswith(READY_PREFIX):
            return line.removeprefix(READY_PREFIX).strip()


def _pump_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    if process.stdout is not None:
        process.stdout.close()
