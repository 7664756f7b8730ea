"""A real HTTP server on 127.0.0.1 serving a discovery document and a JWKS.

Host-only tests point setup.env at it: validation allows http:// for a
loopback identity provider. Each route's answer can be replaced mid-test.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.stack import seed_setup_env

WELL_KNOWN = "/.well-known/openid-configuration"
# httpx honours these; a test talking to 127.0.0.1 must not go through a proxy.
PROXY_VARIABLES = tuple(
    name
    for base in ("http_proxy", "https_proxy", "all_proxy")
    for name in (base, base.upper())
)
JWKS_PATH = "/.well-known/jwks.json"

# A public RSA key shaped like PocketID's; qfstack only checks that one exists.
JWK = {
    "kty": "RSA",
    "kid": "qfstack-test-key",
    "alg": "RS256",
    "use": "sig",
    "e": "AQAB",
    "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pc"
    "M9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTR"
    "sLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-l"
    "A_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-V"
    "TdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
}


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"


def json_answer(data: Any, status: int = 200) -> Answer:
    return Answer(status, json.dumps(data).encode())


class OidcServer:
    """Serves `routes` (path -> Answer) on an ephemeral port of 127.0.0.1."""

    def __init__(self) -> None:
        self.routes: dict[str, Answer] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                missing = Answer(404, b"404 page not found", "text/plain")
                answer = server.routes.get(self.path, missing)
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.content_type)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            # A short poll keeps shutdown() quick at the end of each test.
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.serve(self.document())

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return self.base + WELL_KNOWN

    def document(self, **changes: Any) -> dict[str, Any]:
        """A PocketID discovery document for this server; `changes` override
        fields, and a field set to `...` is left out."""
        base = self.base
        document: dict[str, Any] = {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/api/oidc/token",
            "userinfo_endpoint": f"{base}/api/oidc/userinfo",
            "end_session_endpoint": f"{base}/api/oidc/end-session",
            "introspection_endpoint": f"{base}/api/oidc/introspect",
            "device_authorization_endpoint": f"{base}/api/oidc/device/authorize",
            "jwks_uri": base + JWKS_PATH,
            "grant_types_supported": [
                "authorization_code",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:device_code",
                "client_credentials",
            ],
            "scopes_supported": ["openid", "profile", "email", "groups"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["plain", "S256"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }
        document.update(changes)
        return {k: v for k, v in document.items() if v is not ...}

    def serve(
        self,
        document: Any,
        jwks: Any = None,
        answers: Mapping[str, Answer] | None = None,
    ) -> None:
        """Answer discovery with `document` and the JWKS with `jwks`."""
        self.routes = {
            WELL_KNOWN: json_answer(document),
            JWKS_PATH: json_answer({"keys": [JWK]} if jwks is None else jwks),
            **(answers or {}),
        }

    def setup_env(self, client_id: str, api_token: str) -> str:
        """The seed's setup.env pointed at this server, with a domain."""
        text = seed_setup_env(f"127.0.0.1:{self.port}", client_id, api_token)
        text = text.replace("https://", "http://")
        return text + 'QUFABRIC_DOMAIN="qf.example.com"\n'


@contextmanager
def oidc_server() -> Iterator[OidcServer]:
    """Run an OidcServer for the duration of the block."""
    server = OidcServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
