"""What happens once before the emulator listens: data checks, static user, seed."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any

from .api import Api, ApiError, secret_record
from .keys import SigningKey
from .settings import ConfigError, Settings
from .store import (
    Record,
    State,
    Store,
    find_by,
    format_time,
    hash_token,
    new_api_key,
    new_group,
    new_id,
    new_user,
    now,
    parse_time,
)

STATIC_USERNAME = "static-api-user"
SEED_KEY_LIFETIME = timedelta(days=365)


class StartupError(Exception):
    """The data directory cannot be used with this configuration."""


def prepare(settings: Settings, store: Store) -> Api:
    """Load or create the signing key and state; return the API over them."""
    try:
        key = SigningKey.load_or_create(settings.data_dir)
    except (OSError, ValueError) as error:
        raise StartupError(f"failed to load the JWT signing key: {error}") from error
    api = Api(settings, store, key)

    with store.transaction() as state:
        _check_version(settings, state)
        if settings.at_least(2) and settings.encryption_key:
            _check_encryption_key(settings.encryption_key, state)
        if settings.static_api_key:
            _ensure_static_user(state)
        if settings.seed:
            apply_seed(api, state, settings.seed)
    return api


def _check_version(settings: Settings, state: State) -> None:
    """A database migrated by 2.x cannot be opened by 1.x again."""
    newest = tuple(state["meta"].get("newestVersion", [0, 0, 0]))
    if settings.version[0] < newest[0]:
        used = ".".join(str(part) for part in newest)
        raise StartupError(
            f"the database was migrated by pocket-id {used}; pocket-id "
            f"{settings.version_text} cannot use it (downgrades are not supported)"
        )
    state["meta"]["newestVersion"] = list(max(settings.version, newest))


def _check_encryption_key(encryption_key: str, state: State) -> None:
    """2.x encrypts its data with ENCRYPTION_KEY: a different key cannot read it."""
    check = hmac.new(
        encryption_key.encode(), b"pocket-id-emulator", hashlib.sha256
    ).hexdigest()
    stored = state["meta"].get("encryptionKeyCheck")
    if stored is not None and not hmac.compare_digest(stored, check):
        raise StartupError(
            "failed to decrypt the stored private key: ENCRYPTION_KEY differs "
            "from the key this data directory was created with"
        )
    state["meta"]["encryptionKeyCheck"] = check


def _ensure_static_user(state: State) -> None:
    if find_by(state["users"], "hidden", True) is None:
        user = new_user(
            STATIC_USERNAME,
            first_name="Static API",
            last_name="User",
            is_admin=True,
            hidden=True,
        )
        state["users"][user["id"]] = user


def apply_seed(api: Api, state: State, seed: dict[str, Any]) -> None:
    """Add what the seed describes and the state lacks; running it twice is a no-op.

    Raise ConfigError when the seed is malformed.
    """
    try:
        for entry in _entries(seed, "users"):
            _seed_user(api, state, entry)
        for entry in _entries(seed, "groups"):
            _seed_group(state, entry)
        for entry in _entries(seed, "clients"):
            _seed_client(api, state, entry)
    except ApiError as error:
        raise ConfigError(f"EMU_SEED: {error.message}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"EMU_SEED is malformed: {error!r}") from None


def _entries(container: dict[str, Any], name: str) -> list[dict[str, Any]]:
    entries = container.get(name, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"EMU_SEED: {name!r} must be a list of objects")
    return entries


def _seed_user(api: Api, state: State, entry: dict[str, Any]) -> None:
    user = find_by(state["users"], "username", entry["username"])
    if user is None:
        body = {"firstName": entry["username"], **entry}
        user = api.validated_user(state, body)
        if entry.get("id"):
            user["id"] = str(entry["id"])
        state["users"][user["id"]] = user

    for key in _entries(entry, "apiKeys"):
        token = key["token"]
        if not isinstance(token, str) or not token:
            raise ConfigError("EMU_SEED: every API key needs a non-empty token")
        if find_by(state["apiKeys"], "tokenHash", hash_token(token)):
            continue
        expires = key.get("expiresAt")
        record = new_api_key(
            user["id"],
            token,
            name=key.get("name", "Seeded API key"),
            description=key.get("description", ""),
            expires_at=parse_time(expires) if expires else now() + SEED_KEY_LIFETIME,
        )
        state["apiKeys"][record["id"]] = record


def _seed_group(state: State, entry: dict[str, Any]) -> None:
    group = find_by(state["groups"], "name", entry["name"])
    if group is None:
        group = new_group(
            entry["name"], entry.get("friendlyName", entry["name"]), entry.get("id")
        )
        state["groups"][group["id"]] = group
    for username in entry.get("members", []):
        member = find_by(state["users"], "username", username)
        if member is None:
            raise ConfigError(f"EMU_SEED: group member {username!r} is not a user")
        if member["id"] not in group["userIds"]:
            group["userIds"].append(member["id"])


def _seed_client(api: Api, state: State, entry: dict[str, Any]) -> None:
    existing = state["clients"].get(entry.get("id", "")) or find_by(
        state["clients"], "name", entry["name"]
    )
    if existing is not None:
        return
    client: Record = api.validated_client(entry)
    groups = []
    for wanted in entry.get("allowedUserGroups", []):
        group = state["groups"].get(wanted) or find_by(state["groups"], "name", wanted)
        if group is None:
            raise ConfigError(f"EMU_SEED: client group {wanted!r} does not exist")
        groups.append(group["id"])
    secret = entry.get("secret")
    client.update(
        id=str(entry.get("id") or new_id()),
        allowedUserGroupIds=groups,
        secrets=[secret_record(secret)] if secret else [],
        createdAt=format_time(now()),
    )
    state["clients"][client["id"]] = client
