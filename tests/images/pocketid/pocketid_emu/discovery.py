"""The two ``/.well-known`` documents, including their deliberately broken forms."""

from __future__ import annotations

import json
from typing import Any

from .keys import SigningKey
from .settings import Settings

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

HTML_PAGE = (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
    '<title>Pocket ID</title></head><body><div id="app"></div></body></html>\n'
)


def discovery_document(settings: Settings) -> dict[str, Any]:
    """The OpenID configuration, field for field as PocketID answers it."""
    public = settings.app_url
    internal = settings.internal_app_url

    scopes = ["openid", "profile", "email", "groups"]
    if settings.at_least(2, 14):
        scopes.append("offline_access")
    response_types = ["code"] if settings.at_least(2, 14) else ["code", "id_token"]
    challenge_methods = ["plain"] if settings.no_s256 else ["plain", "S256"]

    document: dict[str, Any] = {
        "issuer": settings.issuer_override or public,
        "authorization_endpoint": f"{public}/authorize",
        "token_endpoint": f"{internal}/api/oidc/token",
        "userinfo_endpoint": f"{internal}/api/oidc/userinfo",
        "end_session_endpoint": f"{public}/api/oidc/end-session",
        "introspection_endpoint": f"{internal}/api/oidc/introspect",
        "device_authorization_endpoint": f"{public}/api/oidc/device/authorize",
        "jwks_uri": f"{internal}/.well-known/jwks.json",
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            DEVICE_GRANT,
            "client_credentials",
        ],
        "scopes_supported": scopes,
        "code_challenge_methods_supported": challenge_methods,
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": response_types,
    }
    for name in settings.discovery_omit:
        document.pop(name, None)
    return document


def jwks_body(settings: Settings, key: SigningKey) -> bytes:
    """The JWKS as bytes, since one of the test modes is not JSON at all."""
    if settings.malformed_jwks == "json":
        return b'{"keys": [{"kty": "RSA", "kid": '
    if settings.malformed_jwks == "key":
        garbage = {"kty": "RSA", "kid": key.kid, "alg": "RS256", "n": "%%not-base64%%"}
        return json.dumps({"keys": [garbage]}, separators=(",", ":")).encode()
    keys = [] if settings.empty_jwks else [key.jwk()]
    return json.dumps({"keys": keys}, separators=(",", ":")).encode()
