"""What every QuFabric stand-in shares: logging, failure knobs, listeners.

Knobs for every service:
    STANDIN_EXIT_AFTER=<seconds>  exit with status 1 after that long (a crash loop)
    STANDIN_NO_LISTEN=1           start, validate, but never listen (unhealthy)
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any


class StandinError(Exception):
    """A start-up failure: logged as one line, then the process exits 1."""


class Logger:
    """Line-buffered log lines on stderr in a Go-service style."""

    def __init__(self, service: str) -> None:
        self.service = service

    def _write(self, level: str, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        sys.stderr.write(f"{stamp} {level} {self.service}: {message}\n")
        sys.stderr.flush()

    def info(self, message: str) -> None:
        self._write("INFO", message)

    def warning(self, message: str) -> None:
        self._write("WARN", message)

    def error(self, message: str) -> None:
        self._write("ERRO", message)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def apply_exit_after(log: Logger) -> None:
    """Honour STANDIN_EXIT_AFTER: schedule a hard exit with status 1."""
    value = os.environ.get("STANDIN_EXIT_AFTER", "").strip()
    if not value:
        return
    try:
        seconds = float(value)
    except ValueError:
        raise StandinError(f"STANDIN_EXIT_AFTER={value!r} is not a number") from None

    def crash() -> None:
        log.error(f"exiting with status 1 after {seconds:g} s (STANDIN_EXIT_AFTER)")
        os._exit(1)

    timer = threading.Timer(seconds, crash)
    timer.daemon = True
    timer.start()


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def run_service(service: str, start: Callable[[Logger, bool], Iterable[str]]) -> int:
    """Run ``start(log, listen)`` and then wait for SIGTERM.

    ``start`` validates its configuration (raising StandinError), opens its
    listeners unless ``listen`` is false, and returns what it listens on.
    """
    log = Logger(service)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        apply_exit_after(log)
        listen = not env_flag("STANDIN_NO_LISTEN")
        endpoints = list(start(log, listen))
    except StandinError as error:
        log.error(str(error))
        return 1

    if listen:
        log.info(f"listening on {', '.join(endpoints)}")
    else:
        log.warning("started but not listening (STANDIN_NO_LISTEN)")
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        log.info("stopping")
    return 0


def parse_listen_address(address: str) -> tuple[str, int]:
    """``:33080``, ``0.0.0.0:33080`` or ``[::]:33080`` -> (host, port)."""
    host, separator, port_text = address.rpartition(":")
    if not separator or not port_text.isdigit():
        raise StandinError(f"invalid listen address {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port_text)


class _QuietHandler(BaseHTTPRequestHandler):
    """An HTTP handler that logs one line per request through a Logger."""

    logger: Logger
    server_version = "qufabric-standin"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        self.logger.info(f"{self.client_address[0]} {format % args}")


def serve_http(
    log: Logger,
    host: str,
    port: int,
    route: Callable[[str, str], tuple[int, str, bytes]],
) -> str:
    """Serve ``route(method, path) -> (status, content type, body)`` in a thread."""

    class Handler(_QuietHandler):
        logger = log

        def _answer(self) -> None:
            status, content_type, body = route(self.command, self.path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _answer

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as error:
        raise StandinError(f"cannot listen on {host}:{port}: {error}") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"tcp {host}:{port} (http)"


def serve_tcp(host: str, port: int) -> str:
    """Accept TCP connections and close them (enough for ``nc -z`` probes)."""
    try:
        listener = socket.create_server((host, port), reuse_port=False)
    except OSError as error:
        raise StandinError(f"cannot listen on tcp {host}:{port}: {error}") from None

    def accept() -> None:
        while True:
            connection, _ = listener.accept()
            connection.close()

    threading.Thread(target=accept, daemon=True).start()
    return f"tcp {host}:{port}"


def serve_udp(host: str, port: int) -> str:
    """Bind a UDP socket and drop what arrives."""
    try:
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind((host, port))
    except OSError as error:
        raise StandinError(f"cannot listen on udp {host}:{port}: {error}") from None

    def drain() -> None:
        while True:
            receiver.recvfrom(2048)

    threading.Thread(target=drain, daemon=True).start()
    return f"udp {host}:{port}"


def missing_variables(names: Iterable[str]) -> list[str]:
    """The names among ``names`` that are unset or empty in the environment."""
    return [name for name in names if not os.environ.get(name, "").strip()]


def json_answer(status: int, body: str) -> tuple[int, str, bytes]:
    return status, "application/json", body.encode()
