"""Request routing outside the REST handlers: health, rate limit, discovery, pages."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from .api import Api, Request, Response, error_body, redeem_one_time_token
from .discovery import HTML_PAGE, discovery_document, jwks_body
from .settings import Settings

LOOPBACK_ADDRESSES = frozenset({"127.0.0.1", "::1"})
RATE_LIMITED_PREFIXES = ("/api/", "/.well-known/")


@dataclass
class Reply:
    """A complete HTTP answer."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


class RateLimiter:
    """A token bucket per client address: ``rate`` per second, ``burst`` deep."""

    def __init__(self, rate: float = 1.0, burst: int = 60) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        moment = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (float(self.burst), moment))
            tokens = min(float(self.burst), tokens + (moment - last) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[client] = (tokens - 1.0 if allowed else tokens, moment)
        return allowed


class Application:
    """Turns one request into one reply; knows nothing about sockets."""

    def __init__(self, settings: Settings, api: Api) -> None:
        self.settings = settings
        self.api = api
        self.limiter = RateLimiter()

    def client_address(self, peer: str, headers: dict[str, str]) -> str:
        """The client as PocketID sees it: the peer, or X-Forwarded-For if trusted."""
        if self.settings.trust_proxy:
            for name, value in headers.items():
                if name.lower() == "x-forwarded-for" and value.strip():
                    return value.split(",")[0].strip()
        return peer

    def respond(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes,
        client: str,
        request_id: str,
    ) -> Reply:
        parts = urlsplit(target)
        path = parts.path
        request = Request(
            method=method,
            path=path,
            query=parse_qs(parts.query),
            headers=headers,
            body=body,
            request_id=request_id,
        )

        if path == "/healthz" and method in ("GET", "HEAD"):
            return Reply(204)
        if path.startswith(RATE_LIMITED_PREFIXES) and self._limited(client):
            return self._json(
                429,
                error_body(
                    self.settings, "Too many requests", "rate_limited", request_id
                ),
                [("Retry-After", "1")],
            )

        if method == "GET" and path == "/.well-known/openid-configuration":
            if self.settings.html_discovery:
                return Reply(200, HTML_PAGE.encode(), "text/html; charset=utf-8")
            return self._json(200, discovery_document(self.settings))
        if method == "GET" and path == "/.well-known/jwks.json":
            jwks = jwks_body(self.settings, self.api.key)
            return Reply(200, jwks, "application/json; charset=utf-8")

        if path.startswith("/api/"):
            response = self.api.handle(request)
            if response is None:
                response = Response(
                    404, error_body(self.settings, "Not found", "not_found", request_id)
                )
            return self._json(response.status, response.body, response.headers)
        if path.startswith("/.well-known/"):
            return self._json(
                404, error_body(self.settings, "Not found", "not_found", request_id)
            )

        if method == "GET" and path.startswith("/lc/"):
            return self._sign_in_link(path.removeprefix("/lc/"), request_id)
        if method in ("GET", "HEAD"):
            # Every other path belongs to the web frontend (a single-page app).
            return Reply(200, HTML_PAGE.encode(), "text/html; charset=utf-8")
        return Reply(404, b"404 page not found", "text/plain; charset=utf-8")

    def _limited(self, client: str) -> bool:
        if self.settings.disable_rate_limiting:
            return False
        if client in LOOPBACK_ADDRESSES and not self.settings.rate_limit_localhost:
            return False
        return not self.limiter.allow(client)

    def _sign_in_link(self, token: str, request_id: str) -> Reply:
        """``/lc/<token>``: redeem a one-time token, sign in, go to the settings."""
        with self.api.store.transaction() as state:
            user = redeem_one_time_token(state, token.strip("/"))
        if user is None:
            body = error_body(
                self.settings,
                "Token is invalid or expired",
                "token_invalid_or_expired",
                request_id,
            )
            return self._json(400, body)
        headers = [
            ("Location", "/settings"),
            ("Set-Cookie", self.api.session_cookie(user)),
        ]
        return Reply(302, b"", None, headers)

    @staticmethod
    def _json(
        status: int, body: object, headers: list[tuple[str, str]] | None = None
    ) -> Reply:
        if status == 204 or body is None:
            return Reply(status, b"", None, headers or [])
        data = json.dumps(body, separators=(",", ":")).encode()
        return Reply(status, data, "application/json; charset=utf-8", headers or [])
