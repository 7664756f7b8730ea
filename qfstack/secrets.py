"""Secrets that are generated once and kept for ever.

Generated secrets live in `DIR/secrets.env` (mode 0600). A value set in
setup.env always wins; a stored value is never replaced. The datastore
encryption key is special: management writes one into
`artifacts/management.json` when it finds none, and that key encrypts the
data, so it is carried over from there and never dropped.

`plan_secrets` decides and writes nothing; `SecretPlan.save` writes
secrets.env. Callers plan first and save only once everything else that
could fail has been checked, so a refused command leaves no file behind.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from qfstack.config import BUNDLED_SECRETS, GENERATED_SECRETS, Config
from qfstack.errors import ConfigError, Finding
from qfstack.files import format_env, write_atomic

logger = logging.getLogger(__name__)

SECRETS_ENV = "secrets.env"
ENCRYPTION_KEY = "QUFABRIC_DATASTORE_ENCRYPTION_KEY"
MASK = "********"


def generate(name: str) -> str:
    """A new random value suited to the secret `name`."""
    if name in (ENCRYPTION_KEY, "QFSTACK_POCKETID_ENCRYPTION_KEY"):
        return base64.b64encode(secrets.token_bytes(32)).decode()
    return secrets.token_urlsafe(32)


def read_stored(directory: Path) -> dict[str, str]:
    """The values of DIR/secrets.env, or nothing when there is none."""
    path = directory / SECRETS_ENV
    if not path.is_file():
        return {}
    return {k: v or "" for k, v in dotenv_values(path, interpolate=False).items()}


def written_encryption_key(directory: Path) -> str:
    """The key management wrote into artifacts/management.json, if any."""
    path = directory / "artifacts" / "management.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return ""
    key = data.get("DataStoreEncryptionKey") if isinstance(data, dict) else None
    return key if isinstance(key, str) else ""


@dataclass(frozen=True)
class SecretPlan:
    """The secrets a configuration needs and what secrets.env must become.

    Planning writes nothing, so a caller can check everything else first and
    store the secrets only when it is about to use them.
    """

    directory: Path
    values: dict[str, str]
    generated: list[str]
    # The new secrets.env content, or None when the file stays as it is.
    store: dict[str, str] | None

    def save(self) -> bool:
        """Write secrets.env when it must change; returns whether it did."""
        if self.store is None:
            return False
        text = format_env(self.store, _HEADER)
        written = write_atomic(self.directory / SECRETS_ENV, text, mode=0o600)
        for name in self.generated:
            logger.info("generated %s (kept in %s)", name, SECRETS_ENV)
        return written


def plan_secrets(config: Config) -> SecretPlan:
    """Every secret `config` needs: configured, stored, or to be generated.

    Raises ConfigError when setup.env sets a datastore key that differs from
    the one management already uses.
    """
    directory = config.directory
    stored = read_stored(directory)
    wanted = list(GENERATED_SECRETS)
    if config.bundled_pocketid:
        wanted += BUNDLED_SECRETS
    values: dict[str, str] = {}
    generated: list[str] = []
    changed = False

    for name in wanted:
        configured = config.values.get(name, "")
        if name == ENCRYPTION_KEY:
            value, source = _encryption_key(directory, configured, stored.get(name))
        elif configured:
            value, source = configured, "setup.env"
        elif stored.get(name):
            value, source = stored[name], SECRETS_ENV
        else:
            value, source = generate(name), "generated"
        values[name] = value
        if source == "generated":
            generated.append(name)
        # A generated key, or one management wrote, belongs in secrets.env.
        changed |= source != "setup.env" and stored.get(name) != value

    store = None
    if changed:
        store = {
            **stored,
            **{k: v for k, v in values.items() if not config.values.get(k)},
        }
    return SecretPlan(directory, values, generated, store)


def ensure_secrets(config: Config) -> Config:
    """Return `config` with every secret it needs, generating missing ones once."""
    plan = plan_secrets(config)
    plan.save()
    return config.with_secrets(plan.values)


def _encryption_key(
    directory: Path, configured: str, stored: str | None
) -> tuple[str, str]:
    """Pick the datastore key; returns it and where it came from.

    The key management uses (in the management.json it reads) wins over
    secrets.env: it is the one that encrypted the data.
    """
    written = written_encryption_key(directory)
    if configured and written and configured != written:
        raise ConfigError(
            "the datastore encryption key would change",
            [
                Finding(
                    "error",
                    ENCRYPTION_KEY,
                    "differs from the key management already uses (in "
                    "artifacts/management.json); the data encrypted with it would "
                    "be lost.",
                    f"remove {ENCRYPTION_KEY} from setup.env, or restore the key that "
                    "management.json holds.",
                )
            ],
        )
    if configured:
        return configured, "setup.env"
    if written:
        if stored and stored != written:
            logger.warning(
                "%s in %s differs from management.json; keeping the one "
                "management uses",
                ENCRYPTION_KEY,
                SECRETS_ENV,
            )
        return written, "management.json"
    if stored:
        return stored, SECRETS_ENV
    return generate(ENCRYPTION_KEY), "generated"


_HEADER = (
    "Secrets generated by qfstack. Keep this file and back it up: losing\n"
    "QUFABRIC_DATASTORE_ENCRYPTION_KEY loses access to encrypted data.\n"
    "A value set in setup.env takes precedence over the one here."
)


def redact(text: str, values: Mapping[str, str], keys: Sequence[str] = ()) -> str:
    """Replace every secret value in `text`, and the value of each YAML
    `KEY: value` line whose key is in `keys`, by a mask."""
    for value in sorted(set(values.values()), key=len, reverse=True):
        if len(value) >= 6:
            text = text.replace(value, MASK)
    for key in keys:
        line = re.compile(
            rf"^(\s*-?\s*{re.escape(key)}:)[ \t]+(?!\"\"$|''$)\S.*$", re.MULTILINE
        )
        text = line.sub(rf"\1 {MASK}", text)
    return text
