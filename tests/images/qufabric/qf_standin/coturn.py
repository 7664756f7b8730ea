"""Coturn stand-in: reads turnserver.conf, listens on TCP and UDP."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path

from .common import Logger, StandinError, run_service, serve_tcp, serve_udp

DEFAULT_CONFIG = "/etc/turnserver.conf"
DEFAULT_PORT = 3478


def read_config(path: Path) -> dict[str, list[str]]:
    """``name=value`` and bare ``name`` lines (``--name`` too); ``#`` lines are
    comments. A ``#`` later in a line is data: passwords may contain one."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise StandinError(
            f"cannot read the configuration file {path}: {error.strerror}"
        ) from None
    options: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            options.setdefault(name.strip().lstrip("-"), []).append(value.strip())
    return options


def start(argv: Sequence[str]) -> int:
    def starter(log: Logger, listen: bool) -> Iterable[str]:
        parser = argparse.ArgumentParser(prog="turnserver", add_help=False)
        parser.add_argument("-c", dest="config", default=DEFAULT_CONFIG)
        args, unknown = parser.parse_known_args(list(argv))
        if unknown:
            log.info(f"ignoring arguments: {' '.join(unknown)}")
        path = Path(args.config)
        options = read_config(path)
        for required in ("user", "realm"):
            if not any(options.get(required, [])):
                raise StandinError(f"{path} has no {required}= line")

        port_text = (options.get("listening-port") or [str(DEFAULT_PORT)])[-1]
        if not port_text.isdigit():
            raise StandinError(f"listening-port={port_text!r} is not a port number")
        port = int(port_text)
        log.info(f"realm {options['realm'][-1]}, {len(options['user'])} user(s)")
        if not listen:
            return []
        return [serve_tcp("0.0.0.0", port), serve_udp("0.0.0.0", port)]

    return run_service("coturn", starter)
