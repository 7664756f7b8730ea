"""Relay stand-in: configured only by environment, listens on QF_LISTEN_ADDRESS."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from .common import (
    Logger,
    StandinError,
    missing_variables,
    parse_listen_address,
    run_service,
    serve_http,
)

REQUIRED = ("QF_LISTEN_ADDRESS", "QF_EXPOSED_ADDRESS", "QF_AUTH_SECRET")


def route(method: str, path: str) -> tuple[int, str, bytes]:
    if path.startswith("/relay"):
        return 426, "text/plain", b"websocket upgrade required\n"
    return 404, "text/plain", b"404 page not found\n"


def start(argv: Sequence[str]) -> int:
    def starter(log: Logger, listen: bool) -> Iterable[str]:
        missing = missing_variables(REQUIRED)
        if missing:
            raise StandinError(
                "missing required environment variables: " + ", ".join(missing)
            )
        exposed = os.environ["QF_EXPOSED_ADDRESS"]
        if not exposed.startswith(("rel://", "rels://")):
            raise StandinError(
                f"QF_EXPOSED_ADDRESS {exposed!r} must start with rel:// or rels://"
            )
        host, port = parse_listen_address(os.environ["QF_LISTEN_ADDRESS"])
        log.info(f"exposed address {exposed}")
        if not listen:
            return []
        return [serve_http(log, host, port, route)]

    return run_service("relay", starter)
