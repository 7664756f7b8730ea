"""The HTTP(S) plumbing around ``Application``, and the request log."""

from __future__ import annotations

import re
import socketserver
import ssl
import sys
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .app import Application, Reply
from .settings import Settings

# Paths that carry a secret: never written to the log as they are.
SECRET_IN_PATH = re.compile(r"^(/lc/|/api/one-time-access-token/)[^/?]+")


def log(message: str) -> None:
    """One line on stderr, timestamped like PocketID's console logger."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    sys.stderr.write(f"{stamp} {message}\n")
    sys.stderr.flush()


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: Application) -> None:
        self.app = app
        super().__init__(address, RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would look the host name up in DNS; skip that.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ssl.SSLError, ConnectionError, TimeoutError)):
            log(f"{client_address[0]} connection failed: {error}")
        else:
            log(f"{client_address[0]} unexpected error:\n{traceback.format_exc()}")


class RequestHandler(BaseHTTPRequestHandler):
    server: EmulatorServer
    protocol_version = "HTTP/1.1"
    server_version = "pocket-id"
    sys_version = ""
    timeout = 60
    # Send each answer in one segment: with keep-alive, separate header and body
    # writes meet Nagle and delayed ACKs and cost ~40 ms a request.
    wbufsize = -1
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def do_PATCH(self) -> None:
        self._answer()

    def _answer(self) -> None:
        started = time.monotonic()
        request_id = str(uuid.uuid4())
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {name: value for name, value in self.headers.items()}
        app = self.server.app
        client = app.client_address(self.client_address[0], headers)

        try:
            reply = app.respond(
                self.command, self.path, headers, body, client, request_id
            )
        except Exception:
            log(f"{client} {self.command} {self.path}:\n{traceback.format_exc()}")
            reply = Reply(500, b'{"error":"Something went wrong"}', "application/json")
        self._send(reply, request_id)

        elapsed = (time.monotonic() - started) * 1000
        path = SECRET_IN_PATH.sub(r"\1***", self.path)
        log(f"{client} {self.command} {path} {reply.status} {elapsed:.1f}ms")

    def _send(self, reply: Reply, request_id: str) -> None:
        self.send_response_only(reply.status)
        self.send_header("Date", self.date_time_string())
        self.send_header("X-Request-Id", request_id)
        if reply.content_type:
            self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD" and reply.body:
            self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        # The one line per request is written by _answer, with secrets masked.
        return


def make_server(settings: Settings, app: Application) -> EmulatorServer:
    """Bind the listening socket (wrapped in TLS when a certificate is given)."""
    server = EmulatorServer((settings.host, settings.port), app)
    if settings.tls_cert and settings.tls_key:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
        # The handshake runs in the request thread (see RequestHandler.setup), so
        # a client that stalls it cannot block the accept loop.
        server.socket = context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    return server


def listening_url(settings: Settings, server: EmulatorServer) -> str:
    host = settings.host
    if ":" in host:
        host = f"[{host}]"
    return f"{settings.scheme}://{host}:{server.server_port}"
