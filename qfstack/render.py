"""Rendering the stack's files into DIR/artifacts/ from a Config and a Discovery.

`artifacts` is pure: it builds every file in memory and raises, before
anything is written, when the discovery document lacks a value. `write` then
writes them atomically; files that hold a secret get mode 0600.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values

from qfstack.config import Config
from qfstack.errors import IdentityProviderError
from qfstack.files import format_env, write_atomic
from qfstack.provider import Discovery, snapshot
from qfstack.secrets import ENCRYPTION_KEY

logger = logging.getLogger(__name__)

PRIVATE = 0o600
PUBLIC = 0o644

# Keys of the rendered env files whose values are secrets.
SECRET_ENV_KEYS = (
    "AUTH_CLIENT_SECRET",
    "QF_AUTH_SECRET",
    "QF_STORE_ENGINE_POSTGRES_DSN",
    "QF_STORE_ENGINE_MYSQL_DSN",
    "ENCRYPTION_KEY",
    "STATIC_API_KEY",
)


@dataclass(frozen=True)
class Artifact:
    """One file of artifacts/, rendered in memory."""

    name: str
    text: str
    mode: int


@dataclass(frozen=True)
class Rendered:
    """What `render` wrote: every path, and those whose content changed."""

    paths: list[Path]
    changed: list[Path]


def management_document(config: Config, discovery: Discovery) -> dict[str, Any]:
    """management.json, with every value the reference names."""
    issuer = _required(discovery, "issuer")
    jwks_uri = _required(discovery, "jwks_uri")
    token_endpoint = _required(discovery, "token_endpoint")
    authorization_endpoint = _required(discovery, "authorization_endpoint")
    device_endpoint = discovery.field("device_authorization_endpoint")
    if config.device_provider != "none":
        if not device_endpoint:
            raise IdentityProviderError(
                "discovery",
                "the document has no device_authorization_endpoint but "
                "QUFABRIC_AUTH_DEVICE_AUTH_PROVIDER is "
                f"{config.device_provider!r}.",
                fix="set QUFABRIC_AUTH_DEVICE_AUTH_PROVIDER=none.",
            )
        device_endpoint = _required(discovery, "device_authorization_endpoint")
    elif not _is_url(device_endpoint):
        # The device flow is off: an unusable value is left out, not copied.
        device_endpoint = ""
    turn_uri = f"{config.turn_domain}:{config.turn_port}"
    pkce_audience = "" if config.dashboard_audience == "none" else config.audience
    extra = dict(config.idp_extra)
    if config.bundled_pocketid and not extra.get("ApiToken"):
        # The static key, unless setup.env names a key (PocketID 1.x has none).
        extra["ApiToken"] = config.get("QFSTACK_POCKETID_STATIC_API_KEY")
    return {
        "Stuns": [
            {"Proto": "udp", "URI": f"stun:{turn_uri}", "Username": "", "Password": ""}
        ],
        "TURNConfig": {
            "Turns": [
                {
                    "Proto": "udp",
                    "URI": f"turn:{turn_uri}",
                    "Username": config.turn_user,
                    "Password": config.get("QUFABRIC_TURN_PASSWORD"),
                }
            ],
            "CredentialsTTL": "12h",
            "Secret": config.get("QUFABRIC_TURN_PASSWORD"),
            "TimeBasedCredentials": False,
        },
        "Relay": {
            "Addresses": [config.relay_endpoint],
            "CredentialsTTL": "24h",
            "Secret": config.get("QUFABRIC_RELAY_AUTH_SECRET"),
        },
        "Signal": {
            "Proto": config.signal_proto,
            "URI": f"{config.domain}:{config.signal_port}",
            "Username": "",
            "Password": "",
        },
        "ReverseProxy": {
            "TrustedHTTPProxies": [],
            "TrustedHTTPProxiesCount": 0,
            "TrustedPeers": ["0.0.0.0/0"],
        },
        "Datadir": "/var/lib/qufabric",
        "DataStoreEncryptionKey": config.get(ENCRYPTION_KEY),
        "StoreConfig": {"Engine": config.store_engine},
        "DisableDefaultPolicy": config.get_bool("QUFABRIC_MGMT_DISABLE_DEFAULT_POLICY"),
        "HttpConfig": {
            "Address": f"0.0.0.0:{config.mgmt_api_port}",
            "AuthIssuer": issuer,
            "AuthAudience": config.audience,
            "AuthKeysLocation": jwks_uri,
            "AuthUserIDClaim": config.get("QUFABRIC_AUTH_USER_ID_CLAIM"),
            "CertFile": "",
            "CertKey": "",
            "IdpSignKeyRefreshEnabled": config.get_bool(
                "QUFABRIC_MGMT_IDP_SIGNKEY_REFRESH"
            ),
            "OIDCConfigEndpoint": config.internal_configuration_endpoint,
        },
        "IdpManagerConfig": {
            "ManagerType": config.idp_manager,
            "ClientConfig": {
                "Issuer": issuer,
                "TokenEndpoint": token_endpoint,
                "ClientID": config.get("QUFABRIC_IDP_MGMT_CLIENT_ID"),
                "ClientSecret": config.get("QUFABRIC_IDP_MGMT_CLIENT_SECRET"),
                "GrantType": "client_credentials",
            },
            "ExtraConfig": extra,
        },
        "DeviceAuthorizationFlow": {
            "Provider": config.device_provider,
            "ProviderConfig": {
                "Audience": config.device_audience,
                "AuthorizationEndpoint": "",
                "Domain": "",
                "ClientID": config.device_client_id,
                "ClientSecret": "",
                "TokenEndpoint": token_endpoint,
                "DeviceAuthEndpoint": device_endpoint,
                "Scope": config.device_scope,
                "UseIDToken": config.device_use_id_token,
                "RedirectURLs": [],
            },
        },
        "PKCEAuthorizationFlow": {
            "ProviderConfig": {
                "Audience": pkce_audience,
                "ClientID": config.client_id,
                "ClientSecret": config.get("QUFABRIC_AUTH_CLIENT_SECRET"),
                "Domain": "",
                "AuthorizationEndpoint": authorization_endpoint,
                "TokenEndpoint": token_endpoint,
                "Scope": config.scopes,
                "RedirectURLs": config.pkce_redirect_urls,
                "UseIDToken": config.use_id_token,
                "DisablePromptLogin": False,
                "LoginFlag": 0,
            },
        },
    }


def _required(discovery: Discovery, name: str) -> str:
    """A URL field of the discovery document; missing or malformed raises."""
    raw = discovery.document.get(name)
    if raw is None or raw == "":
        raise IdentityProviderError(
            "discovery",
            f"the document at {discovery.url} has no {name}.",
            fix="check that the configuration endpoint is PocketID's.",
        )
    if not isinstance(raw, str) or not _is_url(raw):
        shown = json.dumps(raw)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise IdentityProviderError(
            "discovery",
            f"the document at {discovery.url} has {name} = {shown}, "
            "not an http(s) URL.",
            fix="check PocketID's APP_URL and INTERNAL_APP_URL settings.",
        )
    return raw


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not any(c.isspace() for c in value)
    )


def turnserver_conf(config: Config) -> str:
    lines = [
        "# Written by qfstack; edit setup.env and run `qfstack render` instead.",
        f"listening-port={config.turn_port}",
        "tls-listening-port=5349",
        f"min-port={config.turn_min_port}",
        f"max-port={config.turn_max_port}",
        "fingerprint",
        "lt-cred-mech",
        f"user={config.turn_user}:{config.get('QUFABRIC_TURN_PASSWORD')}",
        f"realm={config.turn_domain}",
        "log-file=stdout",
        "no-software-attribute",
        "pidfile=/var/tmp/turnserver.pid",
        "no-cli",
    ]
    if config.turn_external_ip:
        lines.insert(3, f"external-ip={config.turn_external_ip}")
    return "\n".join(lines) + "\n"


def dashboard_env(config: Config, discovery: Discovery) -> dict[str, str]:
    return {
        "QUFABRIC_MGMT_API_ENDPOINT": config.mgmt_endpoint,
        "QUFABRIC_MGMT_GRPC_API_ENDPOINT": config.mgmt_endpoint,
        "AUTH_AUDIENCE": config.dashboard_audience,
        "AUTH_CLIENT_ID": config.client_id,
        "AUTH_CLIENT_SECRET": config.get("QUFABRIC_AUTH_CLIENT_SECRET"),
        "AUTH_AUTHORITY": _required(discovery, "issuer"),
        "USE_AUTH0": "true" if config.use_auth0 else "false",
        "AUTH_SUPPORTED_SCOPES": config.scopes,
        "AUTH_REDIRECT_URI": config.redirect_uri,
        "AUTH_SILENT_REDIRECT_URI": config.silent_redirect_uri,
        "QUFABRIC_TOKEN_SOURCE": "idToken" if config.use_id_token else "accessToken",
        "NGINX_SSL_PORT": "443",
        "LETSENCRYPT_DOMAIN": config.letsencrypt_domain,
        "LETSENCRYPT_EMAIL": config.get("QUFABRIC_LETSENCRYPT_EMAIL"),
    }


def relay_env(config: Config) -> dict[str, str]:
    return {
        "QF_LISTEN_ADDRESS": f":{config.relay_port}",
        "QF_EXPOSED_ADDRESS": config.relay_endpoint,
        "QF_AUTH_SECRET": config.get("QUFABRIC_RELAY_AUTH_SECRET"),
    }


def management_env(config: Config) -> dict[str, str]:
    env = {}
    for engine in ("postgres", "mysql"):
        value = config.get(f"QUFABRIC_STORE_ENGINE_{engine.upper()}_DSN")
        if config.store_engine == engine and value:
            env[f"QF_STORE_ENGINE_{engine.upper()}_DSN"] = value
    return env


def pocketid_env(config: Config) -> dict[str, str]:
    return {
        "APP_URL": config.pocketid_url,
        "INTERNAL_APP_URL": config.pocketid_internal_url,
        "TRUST_PROXY": "false",
        "ENCRYPTION_KEY": config.get("QFSTACK_POCKETID_ENCRYPTION_KEY"),
        "STATIC_API_KEY": config.get("QFSTACK_POCKETID_STATIC_API_KEY"),
    }


def compose_env(config: Config, hashes: dict[str, str]) -> dict[str, str]:
    """Interpolation values for compose/*.yml; no secrets."""
    images = config.images
    env = {
        "QFS_BIND_ADDRESS": config.bind_address,
        "QFS_DOMAIN": config.domain,
        "QFS_DNS_DOMAIN": config.get("QUFABRIC_MGMT_DNS_DOMAIN"),
        "QFS_DISABLE_ANONYMOUS_METRICS": str(
            config.get_bool("QUFABRIC_DISABLE_ANONYMOUS_METRICS")
        ).lower(),
        "QFS_MGMT_API_PORT": str(config.mgmt_api_port),
        "QFS_SIGNAL_PORT": str(config.signal_port),
        "QFS_RELAY_PORT": str(config.relay_port),
        "QFS_DASHBOARD_HTTP_PORT": str(config.dashboard_http_port),
        "QFS_DASHBOARD_HTTPS_PORT": str(config.dashboard_https_port),
        "QFS_TURN_PORT": str(config.turn_port),
        "QFS_TURN_MIN_PORT": str(config.turn_min_port),
        "QFS_TURN_MAX_PORT": str(config.turn_max_port),
        "QFS_POCKETID_PORT": str(config.pocketid_port),
        "QFS_CA_BUNDLE": str(config.ca_bundle or ""),
        "QFS_HEALTH_START_PERIOD": config.get("QFSTACK_HEALTH_START_PERIOD"),
        "QFS_IMAGE_DASHBOARD": images.dashboard,
        "QFS_IMAGE_SIGNAL": images.signal,
        "QFS_IMAGE_RELAY": images.relay,
        "QFS_IMAGE_MANAGEMENT": images.management,
        "QFS_IMAGE_COTURN": images.coturn,
        "QFS_IMAGE_POCKETID": images.pocketid,
    }
    env.update(
        {f"QFS_{name.upper()}_CONFIG_HASH": value for name, value in hashes.items()}
    )
    return env


def artifacts(config: Config, discovery: Discovery) -> list[Artifact]:
    """Every file of artifacts/, in memory; raises before anything is written."""
    management = json.dumps(management_document(config, discovery), indent=4) + "\n"
    turnserver = turnserver_conf(config)
    hashes = {
        # Bind-mounted files are invisible to Compose's change detection;
        # a label carrying their hash makes Compose recreate the service.
        "management": _digest(management),
        "coturn": _digest(turnserver),
    }
    files = [
        Artifact("management.json", management, PRIVATE),
        Artifact("turnserver.conf", turnserver, PRIVATE),
        Artifact(
            "dashboard.env",
            format_env(dashboard_env(config, discovery), _HEADER),
            PRIVATE,
        ),
        Artifact("relay.env", format_env(relay_env(config), _HEADER), PRIVATE),
        Artifact(
            "management.env", format_env(management_env(config), _HEADER), PRIVATE
        ),
        Artifact(
            "compose.env", format_env(compose_env(config, hashes), _HEADER), PUBLIC
        ),
        Artifact("discovery.json", snapshot(discovery), PUBLIC),
    ]
    if config.bundled_pocketid:
        files.append(
            Artifact("pocketid.env", format_env(pocketid_env(config), _HEADER), PRIVATE)
        )
    return files


def write(config: Config, files: list[Artifact]) -> Rendered:
    """Write `files` into artifacts/, each atomically; unchanged ones stay put."""
    paths, changed = [], []
    for item in files:
        path = config.artifacts / item.name
        paths.append(path)
        if write_atomic(path, item.text, mode=item.mode):
            changed.append(path)
            logger.info("wrote %s", path)
    return Rendered(paths=paths, changed=changed)


def render(config: Config, discovery: Discovery) -> Rendered:
    """Write every artifact; returns the paths and which of them changed."""
    return write(config, artifacts(config, discovery))


def render_bootstrap(config: Config) -> Path:
    """What Compose needs before discovery is known: compose.env (keeping the
    previous configuration hashes) and, when bundled, PocketID's environment."""
    out = config.artifacts
    if config.bundled_pocketid:
        write_atomic(
            out / "pocketid.env",
            format_env(pocketid_env(config), _HEADER),
            mode=PRIVATE,
        )
    path = out / "compose.env"
    previous = dotenv_values(path, interpolate=False) if path.is_file() else {}
    hashes = {
        key[len("QFS_") : -len("_CONFIG_HASH")].lower(): value or ""
        for key, value in previous.items()
        if key.endswith("_CONFIG_HASH")
    }
    write_atomic(path, format_env(compose_env(config, hashes), _HEADER), mode=PUBLIC)
    return path


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_HEADER = "Written by qfstack from setup.env; do not edit, run `qfstack render`."
