"""Management stand-in: reads management.json, fetches discovery, keeps a store.

Like the real service it fetches ``HttpConfig.OIDCConfigEndpoint`` once at
start and exits 1 unless it gets a 200 with JSON; it writes a generated
``DataStoreEncryptionKey`` back into the (bind-mounted) management.json; and it
keeps an installation id in ``<Datadir>/store.db`` so that a backup/restore
can be checked. The store remembers a digest of the encryption key and the
service refuses to start with a different key, since the data it encrypted
would be unreadable.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import secrets
import sqlite3
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .common import Logger, StandinError, json_answer, run_service, serve_http

DEFAULT_CONFIG = "/etc/qufabric/management.json"
DEFAULT_DATADIR = "/var/lib/qufabric"
DISCOVERY_TIMEOUT = 10.0


def parse_args(argv: Sequence[str], log: Logger) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="management", add_help=False)
    parser.add_argument("--port", type=int, default=443)
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--datadir", default=None)
    parser.add_argument("--log-file", default="console")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--disable-anonymous-metrics", default="false")
    parser.add_argument("--single-account-mode-domain", default="")
    parser.add_argument("--dns-domain", default="")
    args, unknown = parser.parse_known_args(list(argv))
    if unknown:
        log.info(f"ignoring arguments: {' '.join(unknown)}")
    return args


def load_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise StandinError(
            f"failed reading provided config file: {path}: {error.strerror}"
        ) from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise StandinError(f"failed parsing config file {path}: {error}") from None
    if not isinstance(config, dict):
        raise StandinError(f"config file {path} does not hold a JSON object")
    return config


def fetch_discovery(url: str, log: Logger) -> dict[str, Any]:
    """GET the OIDC configuration once; any failure is fatal, as in the real one.

    TLS is verified against the system store, which SSL_CERT_FILE and
    SSL_CERT_DIR replace, as they do for a Go binary.
    """
    log.info(f"fetching OIDC configuration from {url}")
    context = ssl.create_default_context()
    try:
        with urllib.request.urlopen(
            url, timeout=DISCOVERY_TIMEOUT, context=context
        ) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        raise StandinError(
            f"failed fetching OIDC configuration from {url}: status {error.code}"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise StandinError(
            f"failed fetching OIDC configuration from {url}: {reason}"
        ) from None
    if status != 200:
        raise StandinError(
            f"failed fetching OIDC configuration from {url}: status {status}"
        )
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StandinError(
            f"failed decoding OIDC configuration from {url}: {error}"
        ) from None
    if not isinstance(document, dict):
        raise StandinError(f"OIDC configuration from {url} is not a JSON object")
    log.info(f"OIDC issuer is {document.get('issuer')!r}")
    return document


def ensure_encryption_key(config: dict[str, Any], path: Path, log: Logger) -> str:
    """Return the datastore key, generating it and saving it into ``path``."""
    key = config.get("DataStoreEncryptionKey")
    if isinstance(key, str) and key:
        return key

    key = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
    config["DataStoreEncryptionKey"] = key
    try:
        # A single-file bind mount cannot be replaced by a rename: rewrite it.
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(config, indent=4) + "\n")
    except OSError as error:
        raise StandinError(
            f"failed to store the generated datastore encryption key in {path}: "
            f"{error.strerror}"
        ) from None
    log.info(f"generated a new datastore encryption key and stored it in {path}")
    return key


def open_store(datadir: Path, encryption_key: str, log: Logger) -> str:
    """Open or create ``store.db``; return the installation id it keeps."""
    try:
        datadir.mkdir(parents=True, exist_ok=True)
        database = sqlite3.connect(datadir / "store.db")
    except (OSError, sqlite3.Error) as error:
        raise StandinError(f"failed opening the store in {datadir}: {error}") from None

    check = hmac.new(
        encryption_key.encode(), b"qufabric-store", hashlib.sha256
    ).hexdigest()
    with database:
        database.execute(
            "CREATE TABLE IF NOT EXISTS installation "
            "(id TEXT PRIMARY KEY, created_at TEXT NOT NULL, key_check TEXT NOT NULL)"
        )
        row = database.execute("SELECT id, key_check FROM installation").fetchone()
        if row is None:
            installation_id = str(uuid.uuid4())
            database.execute(
                "INSERT INTO installation VALUES (?, datetime('now'), ?)",
                (installation_id, check),
            )
            log.info(f"created a new store, installation id {installation_id}")
        else:
            installation_id, stored_check = row
            if not hmac.compare_digest(stored_check, check):
                raise StandinError(
                    "the datastore encryption key does not match the store in "
                    f"{datadir}: encrypted data cannot be read"
                )
            log.info(f"opened the store, installation id {installation_id}")
    database.close()
    return str(installation_id)


def route(method: str, path: str) -> tuple[int, str, bytes]:
    if path.startswith("/api/"):
        return json_answer(401, '{"message":"token invalid","code":401}')
    return 404, "text/plain", b"404 page not found\n"


def start(argv: Sequence[str]) -> int:
    def starter(log: Logger, listen: bool) -> Iterable[str]:
        args = parse_args(argv, log)
        config_path = Path(args.config)
        config = load_config(config_path)
        http_config = config.get("HttpConfig")
        endpoint = (
            http_config.get("OIDCConfigEndpoint")
            if isinstance(http_config, dict)
            else None
        )
        if not endpoint:
            raise StandinError(
                f"{config_path} has no HttpConfig.OIDCConfigEndpoint: the identity "
                "provider cannot be discovered"
            )
        fetch_discovery(str(endpoint), log)

        key = ensure_encryption_key(config, config_path, log)
        datadir = Path(args.datadir or config.get("Datadir") or DEFAULT_DATADIR)
        open_store(datadir, key, log)
        if not listen:
            return []
        return [serve_http(log, "0.0.0.0", args.port, route)]

    return run_service("management", starter)
