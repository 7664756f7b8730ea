"""Writing setup.env for `qfstack init`: change only what was asked, keep the rest.

The operator's comments, order and untouched lines survive; a changed
variable is rewritten in place, a new one is appended. Secrets are generated
only when no value exists anywhere (setup.env, secrets.env, or the key
management wrote into artifacts/management.json).
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from qfstack.config import (
    EXTRA_PREFIX,
    GENERATED_SECRETS,
    SETUP_ENV,
    VARIABLES,
    WELL_KNOWN,
    build_config,
    read_setup_env,
)
from qfstack.errors import ConfigError, Finding
from qfstack.files import write_atomic
from qfstack.secrets import (
    ENCRYPTION_KEY,
    generate,
    read_stored,
    written_encryption_key,
)

logger = logging.getLogger(__name__)

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


@dataclass(frozen=True)
class InitResult:
    path: Path
    changed: list[str]
    generated: list[str]
    backup: Path | None


def quote(value: str) -> str:
    """A double-quoted value python-dotenv reads back verbatim."""
    if "\n" in value:
        raise ConfigError(
            "a value has a line break",
            [
                Finding(
                    "error",
                    "init",
                    "values cannot contain line breaks.",
                    "pass the value on one line.",
                )
            ],
        )
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def update_text(text: str, changes: Mapping[str, str]) -> str:
    """`text` with each variable of `changes` set, in place or appended."""
    remaining = dict(changes)
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = _LINE.match(line)
        if match and match.group(1) in remaining:
            name = match.group(1)
            lines[index] = f"{name}={quote(remaining.pop(name))}"
    if remaining:
        if lines and lines[-1].strip():
            lines.append("")
        lines.extend(f"{name}={quote(value)}" for name, value in remaining.items())
    return "\n".join(lines) + "\n"


def init_setup_env(
    directory: Path,
    existing: Mapping[str, str],
    requested: Mapping[str, str],
    environ: Mapping[str, str],
) -> InitResult:
    """Write DIR/setup.env with `requested` applied and secrets kept or made once.

    Raises ConfigError, writing nothing, when the result would not validate.
    """
    path = directory / SETUP_ENV
    changes = {k: v for k, v in requested.items() if existing.get(k) != v}
    stored = read_stored(directory)
    generated = []
    for name in GENERATED_SECRETS:
        if existing.get(name) or requested.get(name):
            continue
        if name == ENCRYPTION_KEY and written_encryption_key(directory):
            changes[name] = written_encryption_key(directory)
        elif stored.get(name):
            changes[name] = stored[name]
        else:
            changes[name] = generate(name)
            generated.append(name)

    values = {**existing, **changes}
    build_config(directory.resolve(), values, environ)  # raises with every finding

    if not changes and path.exists():
        return InitResult(path, [], [], None)
    backup = None
    if path.exists():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        backup = path.with_name(f"{SETUP_ENV}.{stamp}.bak")
        shutil.copy2(path, backup)
        backup.chmod(0o600)
    text = path.read_text() if path.exists() else _HEADER
    write_atomic(path, update_text(text, changes), mode=0o600)
    logger.info("wrote %s (%d change(s))", path, len(changes))
    return InitResult(path, sorted(changes), generated, backup)


# The guide's values for a PocketID-backed stack, written into a new file.
GUIDE_DEFAULTS = {
    "QUFABRIC_USE_AUTH0": "false",
    "QUFABRIC_AUTH_SUPPORTED_SCOPES": "openid profile email groups",
    "QUFABRIC_AUTH_REDIRECT_URI": "/auth",
    "QUFABRIC_AUTH_SILENT_REDIRECT_URI": "/silent-auth",
    "QUFABRIC_TOKEN_SOURCE": "idToken",
    "QUFABRIC_AUTH_DEVICE_AUTH_PROVIDER": "none",
    "QUFABRIC_AUTH_DEVICE_AUTH_SCOPE": "openid profile email groups",
    "QUFABRIC_AUTH_DEVICE_AUTH_USE_ID_TOKEN": "true",
    "QUFABRIC_MGMT_IDP": "pocketid",
    "QUFABRIC_IDP_MGMT_CLIENT_ID": "qufabric",
}

Prompt = Callable[[str, str, bool], str]


def read_existing(directory: Path) -> dict[str, str]:
    """The current setup.env values, or nothing when there is no file yet."""
    if not (directory / SETUP_ENV).is_file():
        return {}
    return read_setup_env(directory)


def init_values(
    existing: Mapping[str, str],
    *,
    domain: str | None = None,
    pocketid_url: str | None = None,
    client_id: str | None = None,
    api_token: str | None = None,
    bundled: bool | None = None,
    assignments: Sequence[str] = (),
    prompt: Prompt | None = None,
) -> dict[str, str]:
    """The variables `init` should set, from flags, then prompts for the rest."""
    values: dict[str, str] = {}
    if not existing:
        values.update(GUIDE_DEFAULTS)
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(
                "invalid --set",
                [
                    Finding(
                        "error",
                        "--set",
                        f"{item!r} is not NAME=VALUE.",
                        "write it like --set QUFABRIC_MGMT_API_PORT=33073.",
                    )
                ],
            )
        if name not in VARIABLES and not name.startswith(EXTRA_PREFIX):
            raise ConfigError(
                "invalid --set",
                [
                    Finding(
                        "error",
                        name,
                        "is not a variable qfstack knows.",
                        "see `qfstack validate` for the known variables.",
                    )
                ],
            )
        values[name] = value

    def current(name: str) -> str:
        return values.get(name) or existing.get(name, "")

    if bundled:
        values["QFSTACK_BUNDLED_POCKETID"] = "true"
        values.setdefault("QUFABRIC_DOMAIN", domain or "localhost")
    if domain is None and prompt and not current("QUFABRIC_DOMAIN"):
        domain = prompt("QUFABRIC_DOMAIN", "Public host name of the stack", False)
    if domain:
        values["QUFABRIC_DOMAIN"] = domain

    is_bundled = current("QFSTACK_BUNDLED_POCKETID").lower() == "true"
    if not is_bundled:
        endpoint = "QUFABRIC_AUTH_OIDC_CONFIGURATION_ENDPOINT"
        if pocketid_url is None and prompt and not current(endpoint):
            pocketid_url = prompt(endpoint, "PocketID base URL (https://...)", False)
        if pocketid_url:
            base = pocketid_url.rstrip("/")
            values[endpoint] = base + WELL_KNOWN
            values[EXTRA_PREFIX + "MANAGEMENT_ENDPOINT"] = base
        if client_id is None and prompt and not current("QUFABRIC_AUTH_CLIENT_ID"):
            client_id = prompt(
                "QUFABRIC_AUTH_CLIENT_ID", "PocketID OIDC client id", False
            )
        token_var = EXTRA_PREFIX + "API_TOKEN"
        if api_token is None and prompt and not current(token_var):
            api_token = prompt(token_var, "PocketID API key (hidden)", True)
        if api_token:
            values[token_var] = api_token
    if client_id:
        names = ["QUFABRIC_AUTH_CLIENT_ID", "QUFABRIC_AUTH_AUDIENCE"]
        # The device client matters only when the device flow is on; setting it
        # with provider "none" is the contradiction `validate` warns about.
        if current("QUFABRIC_AUTH_DEVICE_AUTH_PROVIDER") not in ("", "none"):
            names += [
                "QUFABRIC_AUTH_DEVICE_AUTH_CLIENT_ID",
                "QUFABRIC_AUTH_DEVICE_AUTH_AUDIENCE",
            ]
        for name in names:
            values[name] = client_id
    return values


_HEADER = """\
# QuFabric stack configuration, written by `qfstack init`.
# Check it with `qfstack validate`; start the stack with `qfstack up`.
# This file holds secrets: keep it mode 0600 and out of version control.
"""
