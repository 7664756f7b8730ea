"""Checking the identity provider's public documents: discovery and JWKS.

`inspect_provider` runs every check of the provider's public documents and
returns them as `Verdict`s (see checks.py): the TLS connection, the discovery
document, the issuer, the endpoints, PKCE, the scopes and the JWKS. `up`,
`wait` and `doctor` all run it. The older `fetch_discovery` / `fetch_jwks`
raise `IdentityProviderError` instead, for callers that want one answer.

The documents are fetched with oidc.py's client and `send`, so the TLS
settings and the provider's rate limit apply; `connection_verdict` says why a
connection failed.
"""

from __future__ import annotations

import json
import re
import ssl
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx

from qfstack.checks import Level, Verdict
from qfstack.config import Config, is_ip
from qfstack.errors import IdentityProviderError
from qfstack.oidc import HttpSettings, is_local_host, retry_after, send, trust_source

WELL_KNOWN = "/.well-known/openid-configuration"
REQUIRED_FIELDS = ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint")
GROUP = "identity provider"
ENDPOINT_VAR = "QUFABRIC_AUTH_OIDC_CONFIGURATION_ENDPOINT"
CA_FIX = (
    "trust the CA that signed it: --ca-bundle FILE, SSL_CERT_FILE, or "
    "QFSTACK_CA_BUNDLE in setup.env (or, for a throwaway test only, --insecure)."
)
# How long the raising fetch_* functions honour a 429's Retry-After.
FETCH_MAX_WAIT = 10.0
# A certificate that expires sooner than this is reported as a warning.
EXPIRY_WARNING_DAYS = 14


# --- what the configuration expects ---------------------------------------


@dataclass(frozen=True)
class Expectations:
    """What QuFabric needs of the provider's public documents."""

    configuration_endpoint: str
    authority: str
    scopes: tuple[str, ...] = ("openid",)
    device_flow: bool = False

    @classmethod
    def from_config(cls, config: Config) -> Expectations:
        """What `config` needs: its authority, scopes and device flow."""
        scopes = config.scopes.split()
        if config.device_provider != "none":
            scopes += [s for s in config.device_scope.split() if s not in scopes]
        return cls(
            configuration_endpoint=config.configuration_endpoint,
            authority=config.authority,
            scopes=tuple(scopes),
            device_flow=config.device_provider != "none",
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


@dataclass
class ProviderReport:
    """Every verdict on the provider's documents, and what was fetched."""

    verdicts: list[Verdict]
    discovery: Discovery | None = None
    keys: list[Mapping[str, Any]] = field(default_factory=list)

    @property
    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.level == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def permanent(self) -> bool:
        return any(v.permanent for v in self.failures)

    @property
    def retry_after(self) -> float | None:
        pauses = [v.retry_after for v in self.failures if v.retry_after is not None]
        return max(pauses) if pauses else None


class _Failed(Exception):
    """A fetch failed; carries the verdict that says why."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.summary)
        self.verdict = verdict


def expected_issuer(configuration_endpoint: str) -> str:
    """The issuer the endpoint promises: the URL without the well-known suffix."""
    if configuration_endpoint.endswith(WELL_KNOWN):
        return configuration_endpoint[: -len(WELL_KNOWN)]
    return configuration_endpoint


def inspect_provider(
    client: httpx.Client, expect: Expectations, *, max_wait: float = 0.0
) -> ProviderReport:
    """Fetch discovery and JWKS and check each thing QuFabric relies on.

    A fetch that fails ends the inspection with the verdict saying why; the
    checks that depend on it are not reported.
    """
    verdicts: list[Verdict] = []
    url = expect.configuration_endpoint
    try:
        response, document = _get_json(client, url, "discovery", max_wait=max_wait)
    except _Failed as failed:
        return ProviderReport([failed.verdict])
    verdicts.append(tls_verdict(client, response))
    if not isinstance(document, dict):
        verdicts.append(
            _fail(
                "discovery",
                f"{url} answered JSON that is not an object "
                f"({type(document).__name__}).",
                fix="point the configuration endpoint at the provider's "
                "discovery document.",
                permanent=True,
            )
        )
        return ProviderReport(verdicts)
    discovery = Discovery(url=url, document=document)
    verdicts.append(
        _verdict(
            "discovery",
            "pass",
            f"{url} answered 200 with a JSON document of {len(document)} fields.",
        )
    )

    verdicts.append(issuer_verdict(discovery.issuer, expect.authority))
    verdicts.append(endpoints_verdict(discovery, expect))
    verdicts.append(pkce_verdict(discovery))
    verdicts.append(scopes_verdict(discovery, expect))

    keys: list[Mapping[str, Any]] = []
    jwks_uri = discovery.jwks_uri
    if _is_absolute(jwks_uri):
        try:
            _, body = _get_json(client, jwks_uri, "jwks", max_wait=max_wait)
        except _Failed as failed:
            verdicts.append(failed.verdict)
        else:
            verdict, keys = jwks_verdict(jwks_uri, body, discovery)
            verdicts.append(verdict)
    return ProviderReport(verdicts, discovery, keys)


def _get_json(
    client: httpx.Client, url: str, name: str, *, max_wait: float
) -> tuple[httpx.Response, Any]:
    """GET `url` expecting JSON; raise `_Failed` with the reason otherwise."""
    try:
        response = send(
            client,
            "GET",
            url,
            max_wait=max_wait,
            headers={"Accept": "application/json"},
        )
    except httpx.HTTPError as exc:
        raise _Failed(connection_verdict(client, url, exc)) from None
    status = response.status_code
    if status == 429:
        pause = retry_after(response)
        paced = "X-Qfstack-Paced" in response.headers
        raise _Failed(
            _fail(
                name,
                (
                    f"not asked yet: staying under the provider's rate limit "
                    f"for {pause:.1f}s."
                    if paced
                    else f"GET {url} answered 429 Too Many Requests "
                    f"(Retry-After {pause:.0f}s)."
                ),
                fix="wait; PocketID allows 1 request/s per client address "
                "(burst 60). Something else on this address may be using it up.",
                retry_after=pause,
            )
        )
    if 300 <= status < 400:
        location = response.headers.get("Location", "(no Location)")
        raise _Failed(
            _fail(
                name,
                f"GET {url} answered {status}, a redirect to {location}.",
                fix="use the final URL (scheme, host and path) in "
                f"{ENDPOINT_VAR}; qfstack and management do not follow redirects.",
            )
        )
    if status != 200:
        raise _Failed(
            _fail(
                name,
                f"GET {url} answered {status}: {_snippet(response)}",
                fix="check that the URL points at the identity provider and that "
                "it has started."
                if status != 404
                else "the path is wrong or the provider does not serve it; check "
                f"{ENDPOINT_VAR} and any reverse proxy in front of the provider.",
            )
        )
    kind = response.headers.get("content-type", "no content type")
    try:
        data = response.json()
    except ValueError:
        html = "html" in kind.lower() or response.text.lstrip()[:1] == "<"
        summary = (
            f"GET {url} answered 200 with an HTML page ({kind}), not JSON"
            if html
            else f"GET {url} answered 200 but the body is not valid JSON ({kind})"
        )
        fix = (
            "the URL reaches a web page (PocketID's frontend, the dashboard or a "
            f"proxy's page) instead of the document: check {ENDPOINT_VAR} (host, "
            "port, path) and that a reverse proxy passes /.well-known to PocketID."
            if html
            else "the provider sends a broken document; check its logs and version."
        )
        raise _Failed(
            _fail(
                name,
                summary + ".",
                evidence=(f"body starts: {_snippet(response)}",),
                fix=fix,
                permanent=True,
            )
        ) from None
    return response, data


def _snippet(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE)
    if title:
        text = f"<title>{title.group(1)}</title> " + text
    return text[:120] + ("..." if len(text) > 120 else "")


def _fail(
    name: str,
    summary: str,
    *,
    fix: str = "",
    evidence: Sequence[str] = (),
    permanent: bool = False,
    retry_after: float | None = None,
) -> Verdict:
    return Verdict(
        GROUP,
        name,
        "fail",
        summary,
        tuple(evidence),
        fix,
        permanent=permanent,
        retry_after=retry_after,
    )


def _verdict(
    name: str,
    level: Level,
    summary: str,
    *,
    evidence: Sequence[str] = (),
    fix: str = "",
    permanent: bool = False,
) -> Verdict:
    return Verdict(GROUP, name, level, summary, tuple(evidence), fix, permanent)


# --- TLS and connections ---------------------------------------------------

# OpenSSL's verification results that qfstack names (X509_V_ERR_*).
_UNTRUSTED = {2, 18, 19, 20, 21, 27}
_EXPIRED = 10
_NOT_YET_VALID = 9
_WRONG_HOST = {62, 64}


def connection_verdict(
    client: httpx.Client, url: str, exc: BaseException, *, name: str = ""
) -> Verdict:
    """Name why a connection failed; TLS causes are permanent and explained."""
    host = urlsplit(url).hostname or url
    verify = _verify_error(exc)
    if verify is not None:
        code = verify.verify_code
        reason = verify.verify_message or str(verify)
        trusted = trust_source(_settings_of(client))
        if code == _EXPIRED:
            summary = f"the TLS certificate of {host} has expired ({reason})."
            fix = "renew the provider's certificate (or fix this host's clock)."
        elif code == _NOT_YET_VALID:
            summary = f"the TLS certificate of {host} is not valid yet ({reason})."
            fix = "check the clock of this host and of the provider."
        elif code in _WRONG_HOST:
            summary = (
                f"the TLS certificate does not name {host} (wrong host name: {reason})."
            )
            fix = (
                "use the host name the certificate was issued for in "
                f"{ENDPOINT_VAR}, or issue a certificate for {host}."
            )
        elif code in _UNTRUSTED:
            summary = (
                f"the TLS certificate of {host} is not trusted: {reason} "
                f"(trusted: {trusted})."
            )
            fix = CA_FIX
        else:
            summary = f"the TLS certificate of {host} was refused: {reason}."
            fix = CA_FIX
        return Verdict(GROUP, name or "tls", "fail", summary, (), fix, permanent=True)

    tls = next((e for e in _chain(exc) if isinstance(e, ssl.SSLError)), None)
    if tls is not None:
        wrong_protocol = "WRONG_VERSION_NUMBER" in str(tls).upper()
        return Verdict(
            GROUP,
            name or "tls",
            "fail",
            f"TLS with {host} failed: {describe(exc)}",
            (),
            "the port does not speak TLS: use http:// for it or the provider's "
            "TLS port."
            if wrong_protocol
            else "check the provider's TLS setup (certificate, key, protocols).",
            permanent=wrong_protocol,
        )

    if isinstance(exc, httpx.ConnectTimeout | httpx.ReadTimeout | httpx.PoolTimeout):
        fix = "the provider is slow, or a firewall drops the traffic."
    elif isinstance(exc, httpx.ConnectError):
        fix = "check that the provider runs and that the host and port are right."
    else:
        fix = "check that the provider runs; see its logs."
    return Verdict(
        GROUP,
        name or "connection",
        "fail",
        f"GET {url} failed: {describe(exc)}",
        (),
        fix,
    )


def tls_verdict(client: httpx.Client, response: httpx.Response) -> Verdict:
    """How the answer that arrived was protected: verified TLS, or not."""
    settings = _settings_of(client)
    url = response.request.url
    if url.scheme != "https":
        if is_local_host(url.host):
            return _verdict("tls", "pass", f"plain http to {url.host} (this machine).")
        return _verdict(
            "tls",
            "warn",
            f"plain http to {url.host}: tokens and keys travel unencrypted.",
            fix="serve the provider over https.",
        )
    if settings.insecure:
        return _verdict(
            "tls",
            "warn",
            f"the certificate of {url.host} is NOT verified (--insecure).",
            fix="drop --insecure and trust the provider's CA with --ca-bundle.",
        )
    evidence, expires = _certificate(response)
    summary = f"the certificate of {url.host} is verified against "
    summary += trust_source(settings) + "."
    if expires is not None:
        days = (expires - datetime.now(timezone.utc)).total_seconds() / 86400
        if days < EXPIRY_WARNING_DAYS:
            return _verdict(
                "tls",
                "warn",
                f"the certificate of {url.host} expires in {days:.0f} days.",
                evidence=evidence,
                fix="renew it before it expires; logins fail once it has.",
            )
    return _verdict("tls", "pass", summary, evidence=evidence)


def _certificate(response: httpx.Response) -> tuple[tuple[str, ...], datetime | None]:
    """Subject, issuer and expiry of the peer certificate, when available."""
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    # httpcore hands out the socket-level object (_ssl._SSLSocket), which has
    # the same getpeercert() as ssl.SSLObject.
    getpeercert = getattr(ssl_object, "getpeercert", None)
    cert = getpeercert() if callable(getpeercert) else None
    if not isinstance(cert, dict) or not cert:
        return (), None

    def name(items: Any) -> str:
        return ", ".join(f"{k}={v}" for rdn in items for k, v in rdn)

    evidence = [f"subject: {name(cert.get('subject', ()))}"]
    evidence.append(f"issuer: {name(cert.get('issuer', ()))}")
    expires = None
    if cert.get("notAfter"):
        expires = datetime.fromtimestamp(
            ssl.cert_time_to_seconds(str(cert["notAfter"])), timezone.utc
        )
        evidence.append(f"expires: {expires:%Y-%m-%d}")
    return tuple(evidence), expires


def _settings_of(client: httpx.Client) -> HttpSettings:
    settings = getattr(client, "settings", None)
    return settings if isinstance(settings, HttpSettings) else HttpSettings()


def _verify_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    for inner in _chain(exc):
        if isinstance(inner, ssl.SSLCertVerificationError):
            return inner
    return None


def describe(exc: BaseException) -> str:
    """A one-line description of a connection failure, TLS causes named."""
    verify = _verify_error(exc)
    if verify is not None:
        return f"TLS certificate not accepted: {verify.verify_message}"
    for inner in _chain(exc):
        if isinstance(inner, ConnectionRefusedError):
            return "connection refused"
    return _one_line(exc)


def is_tls_error(exc: BaseException) -> bool:
    """Whether a connection failed on the certificate's verification."""
    return _verify_error(exc) is not None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


# --- the discovery document ------------------------------------------------


def issuer_verdict(issuer: str, authority: str) -> Verdict:
    """The announced issuer must equal the configured authority exactly."""
    evidence = (f"announced: {issuer!r}", f"configured: {authority!r}")
    if issuer == authority:
        return _verdict("issuer", "pass", f"{issuer} as configured.")
    cause, fix = _issuer_cause(issuer, authority)
    return _verdict(
        "issuer",
        "fail",
        f"the provider announces issuer {issuer!r} but the configuration "
        f"expects {authority!r}. {cause}",
        evidence=evidence,
        fix=fix,
        permanent=True,
    )


def _issuer_cause(issuer: str, authority: str) -> tuple[str, str]:
    """Why two issuers differ, and what to change."""
    set_endpoint = f"set {ENDPOINT_VAR} to <issuer>{WELL_KNOWN}"
    if not issuer:
        return (
            "The document has no issuer.",
            "check that the URL is the provider's discovery document.",
        )
    if WELL_KNOWN in issuer or "/.well-known" in issuer:
        return (
            "The announced issuer carries a /.well-known suffix: the provider's "
            "public URL (PocketID's APP_URL) includes the discovery path.",
            "set APP_URL to the bare origin, e.g. https://pocketid.example.com.",
        )
    if WELL_KNOWN in authority or "/.well-known" in authority:
        return (
            "The configured authority carries a /.well-known suffix (the "
            "discovery path was appended twice).",
            f"{set_endpoint}, with the suffix once.",
        )
    if issuer.rstrip("/") == authority.rstrip("/"):
        if issuer.endswith("/"):
            return (
                "They differ only by a trailing slash, which the provider adds.",
                "remove the trailing slash from the provider's public URL "
                "(PocketID 1.14.1+ strips it from APP_URL itself).",
            )
        return (
            "They differ only by a trailing slash in the configuration.",
            f"{set_endpoint} without a slash before /.well-known.",
        )
    if issuer.lower() == authority.lower():
        return (
            "They differ only in letter case (PocketID lowercases APP_URL).",
            f"{set_endpoint}, in lower case.",
        )
    announced, configured = urlsplit(issuer), urlsplit(authority)
    if announced.netloc == configured.netloc and announced.scheme != configured.scheme:
        return (
            f"The scheme differs ({announced.scheme} vs {configured.scheme}).",
            "set the provider's public URL (APP_URL) to the https:// URL browsers use.",
        )
    return (
        "The provider's public URL is not the one this configuration uses.",
        f"{set_endpoint}, or set PocketID's APP_URL to the URL browsers use.",
    )


def check_issuer(issuer: str, authority: str) -> None:
    """Raise unless `issuer` equals the configured authority exactly."""
    verdict = issuer_verdict(issuer, authority)
    if verdict.level == "fail":
        raise IdentityProviderError(
            "issuer", verdict.summary, fix=verdict.fix, permanent=True
        )


def endpoints_verdict(discovery: Discovery, expect: Expectations) -> Verdict:
    """The endpoints QuFabric uses are present and absolute URLs."""
    names = ["authorization_endpoint", "token_endpoint", "jwks_uri"]
    if expect.device_flow:
        names.append("device_authorization_endpoint")
    missing = [n for n in names if n not in discovery.document]
    invalid = [
        n for n in names if n not in missing and not _is_absolute(discovery.field(n))
    ]
    evidence = tuple(f"{n}: {discovery.document.get(n, '(missing)')!r}" for n in names)
    if missing or invalid:
        parts = []
        if missing:
            parts.append(f"lacks {', '.join(missing)}")
        if invalid:
            parts.append(f"has {', '.join(invalid)} that are not absolute URLs")
        device = (
            " The device flow is on (QUFABRIC_AUTH_DEVICE_AUTH_PROVIDER), so it "
            "needs the device endpoint."
            if "device_authorization_endpoint" in missing
            else ""
        )
        return _verdict(
            "endpoints",
            "fail",
            f"the discovery document {' and '.join(parts)}.{device}",
            evidence=evidence,
            fix="use a provider version that serves them (PocketID 0.50+ for the "
            "device flow), or set QUFABRIC_AUTH_DEVICE_AUTH_PROVIDER=none."
            if device
            else "check that the URL is the provider's discovery document and "
            "that the provider is configured completely.",
            permanent=True,
        )
    plain = [
        n
        for n in names
        if discovery.field(n).startswith("http://")
        and not is_local_host(urlsplit(discovery.field(n)).hostname or "")
        and not _is_internal(discovery.field(n))
    ]
    if plain:
        return _verdict(
            "endpoints",
            "warn",
            f"{', '.join(plain)} use plain http to another host.",
            evidence=evidence,
            fix="serve the provider over https (PocketID's APP_URL).",
        )
    return _verdict(
        "endpoints",
        "pass",
        f"{', '.join(names)} are present and absolute.",
        evidence=evidence,
    )


def _is_absolute(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_internal(url: str) -> bool:
    """A single-label host (a container name, like the bundled `pocketid`)."""
    host = urlsplit(url).hostname or ""
    return "." not in host and not is_ip(host)


def pkce_verdict(discovery: Discovery) -> Verdict:
    """QuFabric's client is public and uses PKCE with S256."""
    methods = discovery.document.get("code_challenge_methods_supported")
    if methods is None:
        return _verdict(
            "pkce",
            "warn",
            "the provider does not announce code_challenge_methods_supported; "
            "QuFabric's logins need PKCE with S256.",
            fix="nothing if you know it supports S256 (PocketID announces it "
            "since 1.7); otherwise upgrade the provider.",
        )
    evidence = (f"code_challenge_methods_supported: {methods!r}",)
    if not isinstance(methods, list) or "S256" not in methods:
        return _verdict(
            "pkce",
            "fail",
            "the provider does not support PKCE with S256, which QuFabric's "
            "public client uses.",
            evidence=evidence,
            fix="upgrade the provider (PocketID supports S256 since 1.7).",
            permanent=True,
        )
    return _verdict("pkce", "pass", "S256 is supported.", evidence=evidence)


def scopes_verdict(discovery: Discovery, expect: Expectations) -> Verdict:
    """The configured scopes against `scopes_supported`.

    `openid` must be listed; another missing scope is a warning, since the
    OpenID discovery spec lets providers leave supported scopes unlisted.
    """
    supported = discovery.document.get("scopes_supported")
    wanted = list(expect.scopes)
    if supported is None:
        return _verdict(
            "scopes",
            "warn",
            f"the provider does not announce scopes_supported; cannot confirm "
            f"{' '.join(wanted)}.",
            fix="nothing if you know it supports them.",
        )
    evidence = (
        f"scopes_supported: {supported!r}",
        f"configured: {' '.join(wanted)!r}",
    )
    if not isinstance(supported, list) or "openid" not in supported:
        return _verdict(
            "scopes",
            "fail",
            "the provider does not list the openid scope; it is not an OpenID "
            "Connect provider, or not configured as one.",
            evidence=evidence,
            fix=f"check that {ENDPOINT_VAR} points at an OpenID Connect provider.",
            permanent=True,
        )
    missing = [s for s in wanted if s not in supported]
    if missing:
        groups = (
            " Without groups, QuFabric gets no group claims."
            if "groups" in missing
            else ""
        )
        return _verdict(
            "scopes",
            "warn",
            f"the provider does not list {', '.join(missing)}.{groups}",
            evidence=evidence,
            fix="remove them from QUFABRIC_AUTH_SUPPORTED_SCOPES, or enable them "
            "in the provider.",
        )
    return _verdict(
        "scopes", "pass", f"{' '.join(wanted)} are supported.", evidence=evidence
    )


# --- the JWKS --------------------------------------------------------------

_RSA_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC_ALGS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512", "secp256k1": "ES256K"}
_OKP_ALGS = {"Ed25519": ("EdDSA", "Ed25519"), "Ed448": ("EdDSA", "Ed448")}
_PRIVATE_PARAMS = ("d", "p", "q", "dp", "dq", "qi", "k")


def jwks_verdict(
    url: str, body: Any, discovery: Discovery
) -> tuple[Verdict, list[Mapping[str, Any]]]:
    """Parse the JWKS with joserfc and find a key for an announced algorithm."""
    keys = body.get("keys") if isinstance(body, dict) else None
    if not isinstance(keys, list):
        return (
            _verdict(
                "jwks",
                "fail",
                f'{url} is JSON without a "keys" list.',
                fix="check that jwks_uri is the provider's key set.",
                permanent=True,
            ),
            [],
        )
    if not keys:
        return (
            _verdict(
                "jwks",
                "fail",
                f"{url} holds no keys, so no token can be verified.",
                fix="check the provider's key storage (PocketID: the keys in its "
                "data volume) and its logs.",
                permanent=True,
            ),
            [],
        )

    announced = discovery.document.get("id_token_signing_alg_values_supported")
    algs = [a for a in announced if a != "none"] if isinstance(announced, list) else []
    evidence: list[str] = []
    problems: list[str] = []
    usable: list[Mapping[str, Any]] = []
    covered: set[str] = set()
    for index, data in enumerate(keys):
        label = f"key {index}"
        if isinstance(data, dict) and data.get("kid"):
            label += f" (kid {data['kid']})"
        problem, candidates = _parse_key(data)
        if problem:
            problems.append(f"{label}: {problem}")
            continue
        assert isinstance(data, dict)
        use = data.get("use")
        if use not in (None, "sig"):
            evidence.append(f"{label}: {data['kty']} for use {use!r}, not signing")
            continue
        evidence.append(f"{label}: {data['kty']}, algorithms {', '.join(candidates)}")
        usable.append(data)
        covered.update(candidates)

    private = [p for p in problems if "private" in p]
    if private:
        return (
            _verdict(
                "jwks",
                "fail",
                f"{url} publishes private key material: anyone can forge tokens.",
                evidence=tuple(private),
                fix="rotate the provider's signing key at once and fix what "
                "publishes it.",
                permanent=True,
            ),
            [],
        )
    if not usable:
        return (
            _verdict(
                "jwks",
                "fail",
                f"{url} holds no usable signing key"
                + (" (every key is malformed)." if problems else "."),
                evidence=tuple(problems + evidence),
                fix="check the provider's key storage and logs; the key set must "
                "be valid JWKs (RFC 7517).",
                permanent=True,
            ),
            [],
        )
    if not algs:
        return (
            _verdict(
                "jwks",
                "warn",
                f"{len(usable)} signing key(s), but the provider announces no "
                "id_token_signing_alg_values_supported to match them against.",
                evidence=tuple(evidence + problems),
                fix="nothing if tokens verify; a complete provider announces it.",
            ),
            usable,
        )
    matched = [a for a in algs if a in covered]
    if not matched:
        return (
            _verdict(
                "jwks",
                "fail",
                f"no key in {url} can verify ID tokens signed with "
                f"{', '.join(algs)} (the algorithms the provider announces).",
                evidence=tuple(evidence + problems),
                fix="the key set and the announced algorithms disagree; check the "
                "provider's key rotation.",
                permanent=True,
            ),
            usable,
        )
    if problems:
        return (
            _verdict(
                "jwks",
                "warn",
                f"a key for {', '.join(matched)}, but {len(problems)} malformed "
                "key(s) beside it.",
                evidence=tuple(evidence + problems),
                fix="remove the broken keys from the provider's key set.",
            ),
            usable,
        )
    return (
        _verdict(
            "jwks",
            "pass",
            f"{len(usable)} signing key(s); {', '.join(matched)} can be verified.",
            evidence=tuple(evidence),
        ),
        usable,
    )


def _parse_key(data: Any) -> tuple[str, tuple[str, ...]]:
    """(problem, algorithms the key can verify); a problem is never empty text."""
    if not isinstance(data, dict) or not isinstance(data.get("kty"), str):
        return "not a JWK (no kty).", ()
    kty = data["kty"]
    if any(p in data for p in _PRIVATE_PARAMS):
        return f"a {kty} key with private parameters.", ()
    if kty not in ("RSA", "EC", "OKP"):
        return f"key type {kty!r} cannot verify ID tokens.", ()

    # Imported here: joserfc loads cryptography (~30 ms), which every command
    # would otherwise pay at start-up, `--version` included.
    from joserfc.errors import JoseError
    from joserfc.jwk import JWKRegistry

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            key = JWKRegistry.import_key(data)
    except (JoseError, ValueError, TypeError) as exc:
        return f"does not parse: {type(exc).__name__}: {_one_line(exc)}", ()
    alg = data.get("alg")
    if kty == "RSA":
        compatible: tuple[str, ...] = _RSA_ALGS
    elif kty == "EC":
        curve = str(key.get("crv") or "")
        compatible = (_EC_ALGS[curve],) if curve in _EC_ALGS else ()
    else:
        compatible = _OKP_ALGS.get(str(key.get("crv") or ""), ())
    if isinstance(alg, str):
        if alg not in compatible:
            return f"alg {alg!r} does not fit a {kty} key.", ()
        return "", (alg,)
    return "", compatible


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:160]


# --- the older raising API -------------------------------------------------


def fetch_json(client: httpx.Client, url: str, check: str) -> Any:
    """GET `url` and return its JSON body, or raise naming `check`."""
    try:
        return _get_json(client, url, check, max_wait=FETCH_MAX_WAIT)[1]
    except _Failed as failed:
        raise _as_error(failed.verdict, check) from None


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
            permanent=True,
        )
    check_issuer(discovery.issuer, authority)
    return discovery


def fetch_jwks(client: httpx.Client, url: str) -> list[Mapping[str, Any]]:
    """Fetch the JWKS and return its signing keys; raise when none is usable."""
    body = fetch_json(client, url, "jwks")
    verdict, keys = jwks_verdict(url, body, Discovery(url, {}))
    if verdict.level == "fail":
        raise _as_error(verdict, "jwks")
    return keys


def _as_error(verdict: Verdict, check: str) -> IdentityProviderError:
    return IdentityProviderError(
        check, verdict.summary, fix=verdict.fix, permanent=verdict.permanent
    )
