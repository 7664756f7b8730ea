"""Writing setup.env for `qfstack init`: change only what was asked, keep the rest.

The operator's comments, order and untouched lines survive; a changed
variable is rewritten in place, a new one is appended, and the previous file
is kept as a backup. Generated secrets go to secrets.env, never to setup.env,
and only when no value exists anywhere (setup.env, secrets.env, or the key
management wrote into artifacts/management.json).
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

from qfstack.config import (
    EXTRA_PREFIX,
    SETUP_ENV,
    VARIABLES,
    WELL_KNOWN,
    Config,
    build_config,
    file_findings,
    read_setup_env,
    read_text,
)
from qfstack.errors import ConfigError, Finding
from qfstack.files import write_atomic
from qfstack.secrets import SECRETS_ENV, plan_secrets

logger = logging.getLogger(__name__)

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


@dataclass(frozen=True)
class InitResult:
    """What `init` did: the variables it set, the secrets it generated, and
    the warnings `validate` would show for the result."""

    path: Path
    changed: list[str]
    generated: list[str]
    backup: Path | None
    findings: tuple[Finding, ...] = ()

    @property
    def secrets_path(self) -> Path:
        return self.path.with_name(SECRETS_ENV)


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
    """`text` with each variable of `changes` set, in place or appended.

    Every line that sets a variable is rewritten, since the last one wins.
    """
    remaining = dict(changes)
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = _LINE.match(line)
        if match and match.group(1) in changes:
            name = match.group(1)
            lines[index] = f"{name}={quote(changes[name])}"
            remaining.pop(name, None)
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
    guard: Callable[[Config, list[str]], None] | None = None,
) -> InitResult:
    """Write DIR/setup.env with `requested` applied and secrets kept or made once.

    Raises ConfigError, writing nothing, when the result would not validate;
    `guard` sees the configuration and the secrets about to be generated, and
    may refuse them the same way.
    """
    path = directory / SETUP_ENV
    changes = {k: v for k, v in requested.items() if existing.get(k) != v}
    values = {**existing, **changes}
    notes = [f for f in file_findings(directory) if f.level == "error"]
    config = build_config(directory.resolve(), values, environ, notes=notes)
    secrets = plan_secrets(config)  # raises when the datastore key would change
    if guard is not None:
        guard(config, secrets.generated)

    backup = None
    if changes or not path.exists():
        if path.exists():
            backup = _backup(path)
        text = read_text(path) if path.exists() else _HEADER
        write_atomic(path, update_text(text, changes), mode=0o600)
        logger.info("wrote %s (%d change(s))", path, len(changes))
    secrets.save()
    return InitResult(path, sorted(changes), secrets.generated, backup, config.findings)


@dataclass(frozen=True)
class Update:
    """What `update_setup_env` changed, and the backup of the previous file."""

    path: Path
    changed: list[str]
    backup: Path | None


def update_setup_env(directory: Path, changes: Mapping[str, str]) -> Update:
    """Set `changes` in the existing DIR/setup.env and touch nothing else.

    Each variable is rewritten in place (or appended); every other line,
    comment and secret stays as it is, and no secret is generated. The
    previous file is kept as a backup. Nothing is written when every value is
    already set.
    """
    path = directory / SETUP_ENV
    existing = read_setup_env(directory)
    changes = {k: v for k, v in changes.items() if existing.get(k) != v}
    if not changes:
        return Update(path, [], None)
    text = update_text(read_text(path), changes)  # raises on a line break
    backup = _backup(path)
    write_atomic(path, text, mode=0o600)
    logger.info("wrote %s (%d change(s))", path, len(changes))
    return Update(path, sorted(changes), backup)


def _backup(path: Path) -> Path:
    """Copy `path` to a new setup.env.<UTC time>.bak (0600) and return it."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    backup = path.with_name(f"{path.name}.{stamp}.bak")
    count = 1
    while backup.exists():
        count += 1
        backup = path.with_name(f"{path.name}.{stamp}-{count}.bak")
    write_atomic(backup, read_text(path), mode=0o600)
    return backup


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


def _suggestion(name: str) -> str:
    close = difflib.get_close_matches(name, list(VARIABLES), n=1, cutoff=0.75)
    if close:
        return f"did you mean {close[0]}?"
    return "the README lists qfstack's own settings; the QuFabric guide the rest."


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
            # The item may be a secret given without its name: do not echo it.
            raise ConfigError(
                "invalid --set",
                [
                    Finding(
                        "error",
                        "--set",
                        "expects NAME=VALUE but got no '=' or no name.",
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
                        _suggestion(name),
                    )
                ],
            )
        values[name] = value

    def current(name: str) -> str:
        return values.get(name) or existing.get(name, "")

    if bundled:
        values["QFSTACK_BUNDLED_POCKETID"] = "true"
        if not domain and not current("QUFABRIC_DOMAIN"):
            domain = "localhost"
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
            base = base_url(pocketid_url)
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


def base_url(url: str) -> str:
    """PocketID's base URL as its issuer spells it: https:// unless a scheme
    is given, host in lower case (PocketID lowercases APP_URL), no slash."""
    url = url.strip()
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    netloc = parts.netloc.lower()
    path = parts.path.rstrip("/")
    if path.endswith(WELL_KNOWN):
        path = path[: -len(WELL_KNOWN)]
    return f"{parts.scheme.lower()}://{netloc}{path}"


_HEADER = """\
# QuFabric stack configuration, written by `qfstack init`.
# Check it with `qfstack validate`; start the stack with `qfstack up`.
# This file holds secrets: keep it mode 0600 and out of version control.
"""
