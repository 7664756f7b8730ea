"""Talking to the identity provider: TLS settings, discovery and JWKS.

Only this module (and pocketid.py, through `http_client`) opens HTTP
connections. TLS is verified unless the operator passes `insecure`.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from qfstack.errors import ConfigError, Finding, IdentityProviderError

logger = logging.getLogger(__name__)

WELL_KNOWN = "/.well-known/openid-configuration"
REQUIRED_FIELDS = ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint")


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


def parse_resolve(items: list[str]) -> dict[str, str]:
    """Parse `HOST:PORT:ADDRESS` items into a resolve map."""
    result: dict[str, str] = {}
    for item in items:
        host, sep, rest = item.partition(":")
        port, sep2, address = rest.partition(":")
        if not (sep and sep2 and host and port.isdigit() and address):
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


def _env_bundle() -> Path | None:
    value = os.environ.get("SSL_CERT_FILE")
    return Path(value) if value else None


class _Transport(httpx.HTTPTransport):
    """Applies `resolve` and `aliases` while keeping Host and SNI intact."""

    def __init__(self, settings: HttpSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._resolve = {k: v for k, v in settings.resolve.items()}
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


def http_client(settings: HttpSettings) -> httpx.Client:
    """An httpx client with qfstack's TLS, timeout and address overrides."""
    context = ssl_context(settings)
    transport = _Transport(settings, verify=context)
    return httpx.Client(
        transport=transport,
        timeout=settings.timeout,
        follow_redirects=False,
        headers={"User-Agent": "qfstack"},
    )


@dataclass(frozen=True)
class Discovery:
    """A fetched and checked OpenID discovery document."""

    url: str
    document: Mapping[str, Any]

    def field(self, name: str) -> str:
        value = self.document.get(name)
        return value if isinstance(value, str) else ""

    @property
    def issuer(self) -> str:
        return self.field("issuer")

    @property
    def jwks_uri(self) -> str:
        return self.field("jwks_uri")


def expected_issuer(configuration_endpoint: str) -> str:
    """The issuer the endpoint promises: the URL without the well-known suffix."""
    if configuration_endpoint.endswith(WELL_KNOWN):
        return configuration_endpoint[: -len(WELL_KNOWN)]
    return configuration_endpoint


def fetch_json(client: httpx.Client, url: str, check: str) -> Any:
    """GET `url` and return its JSON body, or raise naming `check`."""
    try:
        response = client.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise IdentityProviderError(
            check,
            f"GET {url} failed: {describe(exc)}",
            fix=_connection_fix(exc),
            permanent=is_tls_error(exc),
        ) from None
    if response.status_code != 200:
        raise IdentityProviderError(
            check,
            f"GET {url} answered {response.status_code} {_snippet(response)}",
            fix="check that the URL points at PocketID and that it has started.",
        )
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        raise IdentityProviderError(
            check,
            f"GET {url} answered 200 but not with JSON ({kind}): {_snippet(response)}",
            fix="the URL reaches a web page, not PocketID's discovery document; "
            "check the host, port and reverse proxy.",
        ) from None


def fetch_discovery(client: httpx.Client, url: str, authority: str) -> Discovery:
    """Fetch the discovery document and check its issuer and required fields."""
    document = fetch_json(client, url, "discovery")
    if not isinstance(document, dict):
        raise IdentityProviderError("discovery", f"{url} is JSON but not an object.")
    discovery = Discovery(url=url, document=document)
    missing = [name for name in REQUIRED_FIELDS if not discovery.field(name)]
    if missing:
        raise IdentityProviderError(
            "discovery",
            f"the document at {url} lacks {', '.join(missing)}.",
            fix="check that the URL is PocketID's discovery document.",
        )
    check_issuer(discovery.issuer, authority)
    return discovery


def check_issuer(issuer: str, authority: str) -> None:
    """Raise unless `issuer` equals the configured authority exactly."""
    if issuer == authority:
        return
    cause = ""
    if issuer.rstrip("/") == authority.rstrip("/"):
        cause = " They differ only by a trailing slash."
    elif WELL_KNOWN in issuer or WELL_KNOWN in authority:
        cause = " One of them carries the /.well-known suffix."
    raise IdentityProviderError(
        "issuer",
        f"the provider says issuer {issuer!r} but the configuration expects "
        f"{authority!r}.{cause}",
        fix="set QUFABRIC_AUTH_OIDC_CONFIGURATION_ENDPOINT to <issuer>"
        f"{WELL_KNOWN}, or fix PocketID's APP_URL to the URL browsers use.",
        permanent=True,
    )


def fetch_jwks(client: httpx.Client, url: str) -> list[Mapping[str, Any]]:
    """Fetch the JWKS and return its keys; raise when there are none."""
    body = fetch_json(client, url, "jwks")
    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list):
        raise IdentityProviderError("jwks", f'{url} has no "keys" list.')
    usable: list[Mapping[str, Any]] = [
        key for key in keys if isinstance(key, dict) and key.get("kty")
    ]
    if not usable:
        raise IdentityProviderError(
            "jwks",
            f"{url} holds no signing key, so no token can be verified.",
            fix="wait for PocketID to create its key, or check its data volume.",
        )
    return usable


def describe(exc: BaseException) -> str:
    """A one-line description of a connection failure, TLS causes named."""
    for inner in _chain(exc):
        if isinstance(inner, ssl.SSLCertVerificationError):
            return f"TLS certificate not accepted: {inner.verify_message}"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def _connection_fix(exc: BaseException) -> str:
    for inner in _chain(exc):
        if isinstance(inner, ssl.SSLCertVerificationError):
            if "hostname" in (inner.verify_message or ""):
                return (
                    "the certificate does not name this host; use the host name "
                    "it was issued for."
                )
            if "expired" in (inner.verify_message or ""):
                return "renew the identity provider's certificate."
            return (
                "trust the CA that signed it with --ca-bundle FILE or "
                "SSL_CERT_FILE (or, for a throwaway test only, --insecure)."
            )
    if isinstance(exc, httpx.ConnectError):
        return "check that the identity provider runs and the host and port are right."
    if isinstance(exc, httpx.TimeoutException):
        return "the identity provider is slow or a firewall drops the traffic."
    return ""


def is_tls_error(exc: BaseException) -> bool:
    return any(isinstance(inner, ssl.SSLCertVerificationError) for inner in _chain(exc))


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _snippet(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    return text[:120] + ("..." if len(text) > 120 else "")


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def snapshot(discovery: Discovery) -> str:
    """The discovery document as written into artifacts/."""
    return (
        json.dumps(
            {"url": discovery.url, "document": discovery.document},
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
