#!/usr/bin/env python3
"""Detection latency of `qfstack wait`: provider up -> wait returns.

Each run starts the PocketID emulator (tests/images/pocketid/emulator.py) over
TLS with a start delay, while qfstack waits for it with the same check `wait`
and `up` use (IdentityProviderCheck through wait_until_ready). The latency is
the time from the emulator listening (it prints "listening on" right after it
binds, so this is when it can first answer) to the wait returning.

Two scenarios: the provider on 127.0.0.1 (not rate-limited), and the same
emulator under a host name (resolved to 127.0.0.1, with PocketID's rate limit
applied to it), which qfstack treats as a remote PocketID.

Besides latency it reports the requests: the attempts qfstack made while the
provider was down (refused connections), and what the provider saw once up,
with the rate of its rate-limited requests (/.well-known, /api).

    python3 benchmarks/detection.py [--runs 20]
"""

from __future__ import annotations

import argparse
import math
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from qfstack.config import build_config  # noqa: E402
from qfstack.oidc import HttpSettings, http_client  # noqa: E402
from qfstack.readiness import IdentityProviderCheck, wait_until_ready  # noqa: E402
from tests.support.emulator import free_port, run_emulator  # noqa: E402
from tests.support.provider import setup_values  # noqa: E402
from tests.support.tlsca import make_ca  # noqa: E402

REMOTE_NAME = "pocketid.bench.test"
REQUEST_LINE = re.compile(r" (GET|HEAD) (\S+) (\d{3}) ")


@dataclass
class Run:
    latency: float
    attempts_down: int
    seconds_down: float
    seconds_total: float
    attempts_total: int
    seen: dict[str, int] = field(default_factory=dict)

    @property
    def limited(self) -> int:
        return sum(n for p, n in self.seen.items() if p.startswith(("/api", "/.well")))


@contextmanager
def emulator_later(env: dict[str, str], port: int) -> Iterator[dict[str, object]]:
    """The emulator in a thread; the dict gets `listening` and `log` entries."""
    state: dict[str, object] = {}
    stop = threading.Event()

    def serve() -> None:
        with run_emulator(env, port=port) as running:
            state["listening"] = time.monotonic()
            stop.wait(60)
            state["log"] = running.log()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        thread.join(15)


def one_run(folder: Path, ca_dir: Path, remote: bool) -> Run:
    ca = make_ca(ca_dir, ["localhost", "127.0.0.1", REMOTE_NAME])
    port = free_port()
    host = REMOTE_NAME if remote else "127.0.0.1"
    url = f"https://{host}:{port}"
    env = {
        "EMU_TLS_CERT": str(ca.server_cert),
        "EMU_TLS_KEY": str(ca.server_key),
        "APP_URL": url,
        "EMU_START_DELAY": f"{random.uniform(0.3, 0.8):.3f}",
    }
    if remote:
        env["EMU_RATE_LIMIT_LOCALHOST"] = "1"
    config = build_config(folder, setup_values(url), {})
    settings = HttpSettings(
        ca_bundle=ca.ca_cert,
        resolve={f"{REMOTE_NAME}:{port}": "127.0.0.1"} if remote else {},
    )
    attempts: list[float] = []

    def count(request: httpx.Request) -> None:
        attempts.append(time.monotonic())

    started = time.monotonic()
    with emulator_later(env, port) as state, http_client(settings) as client:
        client.event_hooks["request"].append(count)
        wait_until_ready([IdentityProviderCheck(config, client)], timeout=30)
        ready = time.monotonic()
    listening = float(state["listening"])  # type: ignore[arg-type]
    seen: dict[str, int] = {}
    for match in REQUEST_LINE.finditer(str(state.get("log", ""))):
        seen[match.group(2)] = seen.get(match.group(2), 0) + 1
    return Run(
        latency=ready - listening,
        attempts_down=sum(1 for moment in attempts if moment < listening),
        seconds_down=listening - started,
        seconds_total=ready - started,
        attempts_total=len(attempts),
        seen=seen,
    )


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def report(name: str, runs: list[Run]) -> None:
    latencies = [r.latency * 1000 for r in runs]
    print(f"\n{name}: {len(runs)} runs")
    print(
        f"  detection latency (provider listening -> wait returns): "
        f"median {statistics.median(latencies):.0f} ms, "
        f"p95 {percentile(latencies, 0.95):.0f} ms, "
        f"max {max(latencies):.0f} ms"
    )
    down = sum(r.attempts_down for r in runs) / sum(r.seconds_down for r in runs)
    print(f"  while the provider was down: {down:.1f} connection attempts/s (/healthz)")
    overall = sum(r.attempts_total for r in runs) / sum(r.seconds_total for r in runs)
    print(f"  all requests over the whole wait: {overall:.1f}/s")
    paths: dict[str, int] = {}
    for run in runs:
        for path, count in run.seen.items():
            paths[path] = paths.get(path, 0) + count
    per_run = ", ".join(
        f"{path} {n / len(runs):.1f}" for path, n in sorted(paths.items())
    )
    print(f"  requests the provider answered per wait: {per_run}")
    limited = sum(r.limited for r in runs)
    print(
        f"  rate-limited requests (/.well-known, /api): {limited / len(runs):.1f} "
        "per wait; PocketID allows 1/s with a burst of 60"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per scenario")
    args = parser.parse_args(argv)
    random.seed(1411)
    print("detection benchmark: qfstack wait against the PocketID emulator (TLS)")
    with tempfile.TemporaryDirectory(prefix="qfstack-bench-") as scratch:
        root = Path(scratch)
        for name, remote in (
            ("local provider (127.0.0.1)", False),
            (f"remote-named provider ({REMOTE_NAME}, rate-limited)", True),
        ):
            runs = []
            for index in range(args.runs):
                folder = root / f"{int(remote)}-{index}"
                folder.mkdir()
                runs.append(one_run(folder, folder / "ca", remote))
            report(name, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
