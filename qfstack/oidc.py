"""Reaching the identity provider over HTTP: TLS settings, client, rate limit.

Every connection to the provider uses a client from `http_client`, which
applies the TLS settings (`HttpSettings`), `--resolve` and the bundled
PocketID's aliases. TLS is verified unless the operator passes `insecure`.
What the provider's documents must say is checked in provider.py.

PocketID rate-limits `/api` and `/.well-known` to 1 request/s per client
address (burst 60); loopback clients are exempt. `send` keeps under that limit
for other hosts and honours a 429's `Retry-After` for every host.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import math
import os
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from qfstack.config import Config
from qfstack.errors import ConfigError, Finding

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpSettings:
    """How qfstack reaches the identity provider from this host."""

    ca_bundle: Path | None = None
    insecure: bool = False
    timeout: float = 5.0
    # "host:port" -> address to connect to instead, like curl's --resolve.
    resolve: Mapping[str, str] = field(default_factory=dict)
    # URL prefixes rewritten before a request, e.g. the bundled PocketID's
    # internal URL (reachable from containers) to its published one.
    aliases: Mapping[str, str] = field(default_factory=dict)


def effective_settings(config: Config, settings: HttpSettings) -> HttpSettings:
    """Add what the configuration implies: its CA bundle, the bundled aliases."""
    if settings.ca_bundle is None and config.ca_bundle is not None:
        settings = replace(settings, ca_bundle=config.ca_bundle)
    if config.bundled_pocketid:
        aliases = {
            config.pocketid_internal_url: config.pocketid_url,
            **settings.aliases,
        }
        settings = replace(settings, aliases=aliases)
    return settings


def parse_resolve(items: list[str]) -> dict[str, str]:
    """Parse `HOST:PORT:ADDRESS` items into a resolve map."""
    result: dict[str, str] = {}
    for item in items:
        host, sep, rest = item.partition(":")
        port, sep2, address = rest.partition(":")
        valid_port = port.isdigit() and 0 < int(port) < 65536
        if not (sep and sep2 and host and valid_port and address):
            raise ConfigError(
                "invalid --resolve",
                [
                    Finding(
                        "error",
                        "--resolve",
                        f"{item!r} is not HOST:PORT:ADDRESS.",
                        "write it like pocketid.example.com:443:127.0.0.1.",
                    )
                ],
            )
        result[f"{host.lower()}:{port}"] = address.strip("[]")
    return result


def ssl_context(settings: HttpSettings) -> ssl.SSLContext:
    """The TLS context: system store, or the named CA bundle, or none at all."""
    if settings.insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    bundle = settings.ca_bundle or _env_bundle()
    try:
        return ssl.create_default_context(cafile=str(bundle) if bundle else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "cannot load the CA bundle",
            [
                Finding(
                    "error",
                    "--ca-bundle",
                    f"{bundle} could not be loaded ({exc}).",
                    "give a readable PEM file of CA certificates.",
                )
            ],
        ) from exc


def trust_source(settings: HttpSettings) -> str:
    """Where the CAs that the TLS check trusts come from, for messages."""
    if settings.insecure:
        return "nothing (--insecure: not verified)"
    if settings.ca_bundle:
        return f"the CA bundle {settings.ca_bundle}"
    env = _env_bundle()
    if env:
        return f"SSL_CERT_FILE {env}"
    return "the system store"


def _env_bundle() -> Path | None:
    value = os.environ.get("SSL_CERT_FILE")
    return Path(value) if value else None


def is_local_host(host: str) -> bool:
    """Whether `host` is this machine (PocketID does not rate-limit it)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_local_url(url: str) -> bool:
    """Whether `url` points at this machine."""
    return is_local_host(urlsplit(url).hostname or "")


def origin(url: str) -> str:
    """The scheme, host and port of `url`."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# --- the rate limit ---------------------------------------------------------


class RateLimit:
    """Our side of a provider's token bucket, plus pauses a 429 asked for.

    `paced` buckets (non-local hosts) spend a token per request and refill at
    `rate` per second up to `burst`; every bucket honours `Retry-After`.
    """

    def __init__(self, *, paced: bool, rate: float = 1.0, burst: int = 30) -> None:
        self.paced = paced
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._hold_until = 0.0
        self._lock = threading.Lock()

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def delay(self) -> float:
        """Seconds until a request may go out."""
        now = time.monotonic()
        with self._lock:
            self._refill(now)
            wait = max(0.0, self._hold_until - now)
            if self.paced and self._tokens < 1.0:
                wait = max(wait, (1.0 - self._tokens) / self.rate)
            return wait

    def spend(self) -> None:
        """Count one request that goes out now."""
        if not self.paced:
            return
        with self._lock:
            self._refill(time.monotonic())
            self._tokens -= 1.0

    def hold(self, seconds: float) -> None:
        """Send nothing for `seconds` (the provider's Retry-After)."""
        with self._lock:
            self._hold_until = max(self._hold_until, time.monotonic() + seconds)


class RateLimits:
    """One `RateLimit` per provider origin.

    PocketID allows 1 request/s with a burst of 60 per client address; we
    keep half the burst for others that share this host's address.
    """

    def __init__(self, *, rate: float = 1.0, burst: int = 30) -> None:
        self.rate = rate
        self.burst = burst
        self._limits: dict[str, RateLimit] = {}
        self._lock = threading.Lock()

    def for_url(self, url: str | httpx.URL) -> RateLimit:
        """The limit of the provider that serves `url`."""
        parts = httpx.URL(str(url))
        key = f"{parts.scheme}://{parts.host}:{parts.port or ''}"
        with self._lock:
            limit = self._limits.get(key)
            if limit is None:
                limit = RateLimit(
                    paced=not is_local_host(parts.host),
                    rate=self.rate,
                    burst=self.burst,
                )
                self._limits[key] = limit
            return limit


# Used for plain httpx clients, which carry no limits of their own.


_SHARED_LIMITS = RateLimits()
RATE_LIMITED_PREFIXES = ("/api/", "/.well-known/")


class _Transport(httpx.HTTPTransport):
    """Applies `resolve` and `aliases` while keeping Host and SNI intact."""

    def __init__(self, settings: HttpSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._resolve = dict(settings.resolve)
        self._aliases = dict(settings.aliases)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        for prefix, target in self._aliases.items():
            if url.startswith(prefix):
                request.url = httpx.URL(target + url[len(prefix) :])
                request.headers["Host"] = request.url.netloc.decode()
                break
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        address = self._resolve.get(f"{request.url.host}:{port}")
        if address is not None:
            request.extensions = {
                **request.extensions,
                "sni_hostname": request.url.host,
            }
            request.url = request.url.copy_with(host=address)
        return super().handle_request(request)


class ProviderClient(httpx.Client):
    """An httpx client that knows its TLS settings and keeps rate limits."""

    def __init__(self, settings: HttpSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.rate_limits = RateLimits()


def http_client(settings: HttpSettings) -> httpx.Client:
    """An httpx client with qfstack's TLS, timeout and address overrides."""
    context = ssl_context(settings)
    transport = _Transport(settings, verify=context)
    return ProviderClient(
        settings,
        transport=transport,
        timeout=settings.timeout,
        follow_redirects=False,
        headers={"User-Agent": "qfstack"},
    )


def _limit(client: httpx.Client, url: str) -> RateLimit | None:
    if not urlsplit(url).path.startswith(RATE_LIMITED_PREFIXES):
        return None
    limits = getattr(client, "rate_limits", None)
    if not isinstance(limits, RateLimits):
        limits = _SHARED_LIMITS
    return limits.for_url(_resolved_url(client, url))


def _resolved_url(client: httpx.Client, url: str) -> str:
    """The URL a request really goes to, after the client's aliases."""
    settings = getattr(client, "settings", None)
    if isinstance(settings, HttpSettings):
        for prefix, target in settings.aliases.items():
            if url.startswith(prefix):
                return target + url[len(prefix) :]
    return url


def rate_limit_delay(client: httpx.Client, url: str) -> float:
    """Seconds before a request to `url` stays within the provider's limit."""
    limit = _limit(client, url)
    return limit.delay() if limit is not None else 0.0


def send(
    client: httpx.Client,
    method: str,
    url: str,
    *,
    max_wait: float = 0.0,
    **kwargs: Any,
) -> httpx.Response:
    """Send a request within the provider's rate limit.

    Sleeps up to `max_wait` seconds in all for our pacing and for the
    `Retry-After` of a 429, retrying after it; returns the 429 when honouring
    it would take longer. Transport errors are raised as httpx raises them.
    """
    deadline = time.monotonic() + max_wait
    limit = _limit(client, url)
    while True:
        if limit is not None:
            pause = limit.delay()
            if pause > 0:
                if time.monotonic() + pause > deadline:
                    return _too_soon(method, url, pause)
                logger.debug(
                    "waiting %.2fs before %s %s (rate limit)", pause, method, url
                )
                time.sleep(pause)
            limit.spend()
        response = client.request(method, url, **kwargs)
        if response.status_code != 429 or limit is None:
            return response
        after = retry_after(response)
        logger.info("%s %s: 429, retry after %.1fs", method, url, after)
        limit.hold(after)
        if time.monotonic() + after > deadline:
            return response
        response.close()


def _too_soon(method: str, url: str, pause: float) -> httpx.Response:
    """A 429 of our own making: the request would break the rate limit."""
    request = httpx.Request(method, url)
    return httpx.Response(
        429,
        headers={"Retry-After": f"{math.ceil(pause)}", "X-Qfstack-Paced": "1"},
        json={"error": "not sent: it would exceed the provider's rate limit"},
        request=request,
    )


def retry_after(response: httpx.Response, default: float = 1.0) -> float:
    """The pause a 429 or 503 asks for, in seconds (capped at 5 minutes)."""
    value = response.headers.get("Retry-After", "").strip()
    seconds = default
    if value.isdigit():
        seconds = float(value)
    elif value:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return min(300.0, max(0.0, seconds))
