"""The emulator's configuration, read once from environment variables."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_VERSION = "2.14.0"
DEFAULT_APP_URL = "http://localhost:1411"
DEFAULT_DATA_DIR = "/app/data"

Version = tuple[int, int, int]


class ConfigError(Exception):
    """The environment describes a configuration PocketID would refuse."""


@dataclass(frozen=True)
class Settings:
    """Everything the emulator reads from its environment."""

    version: Version
    host: str
    port: int
    app_url: str
    internal_app_url: str
    data_dir: Path
    encryption_key: str | None
    static_api_key: str | None
    disable_rate_limiting: bool
    trust_proxy: bool
    # Test knobs (EMU_*): ways to make the emulator fail like a broken provider.
    start_delay: float
    issuer_override: str | None
    empty_jwks: bool
    malformed_jwks: str | None
    html_discovery: bool
    discovery_omit: frozenset[str]
    no_s256: bool
    tls_cert: Path | None
    tls_key: Path | None
    rate_limit_localhost: bool
    seed: dict[str, Any] | None

    def at_least(self, major: int, minor: int = 0, patch: int = 0) -> bool:
        """True when the emulated PocketID is this version or newer."""
        return self.version >= (major, minor, patch)

    @property
    def version_text(self) -> str:
        return ".".join(str(part) for part in self.version)

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check the configuration; raise ConfigError on bad values."""
        env = os.environ if environ is None else environ
        version = parse_version(env.get("EMU_VERSION", DEFAULT_VERSION))
        v2 = version >= (2, 0, 0)

        app_url = normalise_url("APP_URL", env.get("APP_URL") or DEFAULT_APP_URL)
        internal_app_url = app_url
        if env.get("INTERNAL_APP_URL") and version >= (1, 11, 0):
            internal_app_url = normalise_url(
                "INTERNAL_APP_URL", env["INTERNAL_APP_URL"]
            )

        encryption_key = _secret(env, "ENCRYPTION_KEY")
        if v2 and not encryption_key:
            raise ConfigError(
                "ENCRYPTION_KEY is required: set ENCRYPTION_KEY or ENCRYPTION_KEY_FILE "
                "to a random value of at least 16 bytes"
            )
        if v2 and encryption_key and len(encryption_key.encode()) < 16:
            raise ConfigError("ENCRYPTION_KEY must be at least 16 bytes long")

        static_api_key = None
        if version >= (2, 2, 0):
            static_api_key = _secret(env, "STATIC_API_KEY")
            if static_api_key is not None and len(static_api_key) < 16:
                raise ConfigError("STATIC_API_KEY must be at least 16 characters long")

        tls_cert = env.get("EMU_TLS_CERT") or None
        tls_key = env.get("EMU_TLS_KEY") or None
        if bool(tls_cert) != bool(tls_key):
            raise ConfigError("EMU_TLS_CERT and EMU_TLS_KEY must be set together")

        return cls(
            version=version,
            host=env.get("HOST") or "0.0.0.0",
            port=_integer(env, "PORT", 1411),
            app_url=app_url,
            internal_app_url=internal_app_url,
            data_dir=Path(env.get("EMU_DATA_DIR") or DEFAULT_DATA_DIR),
            encryption_key=encryption_key,
            static_api_key=static_api_key,
            disable_rate_limiting=(
                version >= (2, 2, 0) and parse_bool(env, "DISABLE_RATE_LIMITING")
            ),
            trust_proxy=parse_bool(env, "TRUST_PROXY"),
            start_delay=_number(env, "EMU_START_DELAY", 0.0),
            issuer_override=env.get("EMU_ISSUER") or None,
            empty_jwks=parse_bool(env, "EMU_EMPTY_JWKS"),
            malformed_jwks=_malformed_jwks_mode(env.get("EMU_MALFORMED_JWKS", "")),
            html_discovery=parse_bool(env, "EMU_HTML_DISCOVERY"),
            discovery_omit=frozenset(
                name.strip()
                for name in env.get("EMU_DISCOVERY_OMIT", "").split(",")
                if name.strip()
            ),
            no_s256=parse_bool(env, "EMU_NO_S256"),
            tls_cert=Path(tls_cert) if tls_cert else None,
            tls_key=Path(tls_key) if tls_key else None,
            rate_limit_localhost=parse_bool(env, "EMU_RATE_LIMIT_LOCALHOST"),
            seed=_seed(env.get("EMU_SEED", "")),
        )


def parse_version(text: str) -> Version:
    """``2.14.0``, ``v2.14`` or ``1`` -> a (major, minor, patch) tuple."""
    parts = text.strip().removeprefix("v").split(".")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        raise ConfigError(
            f"EMU_VERSION {text!r} is not a version like 2.14.0"
        ) from None
    if not 1 <= len(numbers) <= 3:
        raise ConfigError(f"EMU_VERSION {text!r} is not a version like 2.14.0")
    major, minor, patch = [*numbers, 0, 0][:3]
    if major not in (1, 2):
        raise ConfigError(
            f"EMU_VERSION {text!r}: only PocketID 1.x and 2.x are emulated"
        )
    return major, minor, patch


def normalise_url(name: str, value: str) -> str:
    """Lowercase, strip the trailing slash, refuse paths (PocketID 1.14.1+)."""
    url = value.strip().lower().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
    if parts.path or parts.query or parts.fragment:
        raise ConfigError(f"{name} must not contain a path, got {value!r}")
    return url


def parse_bool(env: Mapping[str, str], name: str) -> bool:
    """Read a boolean the way Go's strconv.ParseBool does; empty is false."""
    value = env.get(name, "").strip()
    if value in ("", "0", "f", "F", "false", "FALSE", "False"):
        return False
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    raise ConfigError(f"{name}={value!r} is not a boolean")


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """A value from ``NAME`` or from the file named by ``NAME_FILE``."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as error:
        raise ConfigError(f"{name}_FILE: cannot read {path}: {error}") from None


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not an integer") from None


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a number") from None


def _malformed_jwks_mode(value: str) -> str | None:
    mode = value.strip().lower()
    if mode in ("", "0", "false"):
        return None
    if mode in ("1", "true", "json"):
        return "json"
    if mode == "key":
        return "key"
    raise ConfigError(f"EMU_MALFORMED_JWKS={value!r}: use 1 (or json) or key")


def _seed(value: str) -> dict[str, Any] | None:
    """EMU_SEED: inline JSON (starting with ``{``) or the path of a JSON file."""
    text = value.strip()
    if not text:
        return None
    if not text.startswith("{"):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"EMU_SEED: cannot read {value}: {error}") from None
    try:
        seed = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"EMU_SEED is not valid JSON: {error}") from None
    if not isinstance(seed, dict):
        raise ConfigError("EMU_SEED must be a JSON object")
    return seed
