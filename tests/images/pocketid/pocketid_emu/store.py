"""All persistent state in one JSON file, shared by the server and the CLI.

The server and ``pocket-id one-time-access-token`` are separate processes, so
every read-modify-write takes an exclusive ``flock`` and the file is replaced
atomically. The state is small; each request loads it afresh.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import string
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

State = dict[str, Any]
Record = dict[str, Any]

STATE_FILE = "emulator-state.json"
LOCK_FILE = ".emulator-state.lock"
COLLECTIONS = ("users", "apiKeys", "clients", "groups", "oneTimeTokens")
TOKEN_ALPHABET = string.ascii_letters + string.digits


class Store:
    """The JSON state file in the data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / STATE_FILE
        self._thread_lock = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[State]:
        """Yield the state; write it back if the block changed it and did not fail."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, open(self.data_dir / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self._load()
            before = json.dumps(state, sort_keys=True)
            yield state
            if json.dumps(state, sort_keys=True) != before:
                self._save(state)

    def _load(self) -> State:
        state: State = {}
        if self.path.exists():
            state = json.loads(self.path.read_text(encoding="utf-8"))
        for name in COLLECTIONS:
            state.setdefault(name, {})
        state.setdefault("meta", {})
        return state

    def _save(self, state: State) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        os.replace(temporary, self.path)


def now() -> datetime:
    return datetime.now(timezone.utc)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as PocketID writes times."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """Parse RFC 3339; raise ValueError for anything else (or a naive time)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment


def new_id() -> str:
    return str(uuid.uuid4())


def new_token(length: int = 32) -> str:
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(length))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_user(
    username: str,
    *,
    email: str | None = None,
    first_name: str = "",
    last_name: str = "",
    is_admin: bool = False,
    disabled: bool = False,
    hidden: bool = False,
    user_id: str | None = None,
) -> Record:
    display_name = " ".join(part for part in (first_name, last_name) if part)
    return {
        "id": user_id or new_id(),
        "username": username,
        "email": email,
        "firstName": first_name,
        "lastName": last_name,
        "displayName": display_name or username,
        "isAdmin": is_admin,
        "disabled": disabled,
        "hidden": hidden,
        "createdAt": format_time(now()),
    }


def new_api_key(
    user_id: str,
    token: str,
    *,
    name: str,
    expires_at: datetime,
    description: str = "",
    key_id: str | None = None,
) -> Record:
    return {
        "id": key_id or new_id(),
        "userId": user_id,
        "name": name,
        "description": description,
        "tokenHash": hash_token(token),
        "expiresAt": format_time(expires_at),
        "lastUsedAt": None,
        "createdAt": format_time(now()),
    }


def new_group(name: str, friendly_name: str, group_id: str | None = None) -> Record:
    return {
        "id": group_id or new_id(),
        "name": name,
        "friendlyName": friendly_name,
        "userIds": [],
        "createdAt": format_time(now()),
    }


def real_users(state: State) -> list[Record]:
    """Users an admin sees: every user but the hidden static API user."""
    return [user for user in state["users"].values() if not user.get("hidden")]


def find_user(state: State, username_or_email: str) -> Record | None:
    for user in real_users(state):
        if username_or_email in (user["username"], user.get("email")):
            return user
    return None


def find_by(collection: dict[str, Record], field: str, value: Any) -> Record | None:
    for record in collection.values():
        if record.get(field) == value:
            return record
    return None
