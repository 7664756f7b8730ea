"""Dashboard stand-in: refuses to start without its settings, serves 80 and 443."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Sequence

from .common import Logger, StandinError, missing_variables, run_service, serve_http

REQUIRED = (
    "AUTH_AUTHORITY",
    "AUTH_CLIENT_ID",
    "AUTH_AUDIENCE",
    "AUTH_SUPPORTED_SCOPES",
    "USE_AUTH0",
    "QUFABRIC_MGMT_API_ENDPOINT",
)
# Shown by /config.json, as the real dashboard bakes them into its front end.
PUBLIC = (
    *REQUIRED,
    "QUFABRIC_MGMT_GRPC_API_ENDPOINT",
    "AUTH_REDIRECT_URI",
    "AUTH_SILENT_REDIRECT_URI",
    "QUFABRIC_TOKEN_SOURCE",
    "NGINX_SSL_PORT",
    "LETSENCRYPT_DOMAIN",
)


def settings() -> dict[str, str]:
    return {name: os.environ[name] for name in PUBLIC if name in os.environ}


def route(method: str, path: str) -> tuple[int, str, bytes]:
    if path.split("?")[0] == "/config.json":
        body = json.dumps(settings(), indent=2) + "\n"
        return 200, "application/json", body.encode()
    authority = html.escape(os.environ.get("AUTH_AUTHORITY", ""))
    page = (
        "<!doctype html><html><head><title>QuFabric</title></head><body>"
        f"<h1>QuFabric dashboard (stand-in)</h1><p>Sign in at {authority}</p>"
        "</body></html>\n"
    )
    return 200, "text/html; charset=utf-8", page.encode()


def start(argv: Sequence[str]) -> int:
    def starter(log: Logger, listen: bool) -> Iterable[str]:
        missing = missing_variables(REQUIRED)
        for name in missing:
            log.error(f"{name} is not set")
        if missing:
            raise StandinError(
                "missing required environment variables: " + ", ".join(missing)
            )
        if os.environ["USE_AUTH0"].lower() not in ("true", "false"):
            raise StandinError(
                f"USE_AUTH0 must be true or false, not {os.environ['USE_AUTH0']!r}"
            )
        if not listen:
            return []
        return [
            serve_http(log, "0.0.0.0", 80, route),
            serve_http(log, "0.0.0.0", 443, route),
        ]

    return run_service("dashboard", starter)
