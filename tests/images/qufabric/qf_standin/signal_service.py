"""Signal stand-in: an HTTP listener on ``--port`` (80) with its state directory."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path

from .common import Logger, StandinError, run_service, serve_http

STATE_DIR = Path("/var/lib/qufabric")


def route(method: str, path: str) -> tuple[int, str, bytes]:
    if path.startswith("/signalexchange.SignalExchange/"):
        return 415, "text/plain", b"gRPC requests only\n"
    return 404, "text/plain", b"404 page not found\n"


def start(argv: Sequence[str]) -> int:
    def starter(log: Logger, listen: bool) -> Iterable[str]:
        parser = argparse.ArgumentParser(prog="signal", add_help=False)
        parser.add_argument("--port", type=int, default=80)
        args, unknown = parser.parse_known_args(list(argv))
        if unknown:
            log.info(f"ignoring arguments: {' '.join(unknown)}")
        try:
            STATE_DIR.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StandinError(f"cannot use {STATE_DIR}: {error.strerror}") from None
        if not listen:
            return []
        return [serve_http(log, "0.0.0.0", args.port, route)]

    return run_service("signal", starter)
