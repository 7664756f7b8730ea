"""Provisioning QuFabric's OIDC client in PocketID, so that nobody clicks.

`provision` makes PocketID hold exactly the client `clientspec.client_spec`
describes, the same spec `doctor` checks against: it creates the client, or
updates the one it finds (by id, else by name) field by field. PocketID 2.x
lets only the members of a client's allowed user groups in, so there it also
creates or reuses a group, allows it on the client and adds named users, or
leaves access open when asked. Every change is a `Change`; a dry run plans
them from what PocketID answers and sends nothing that changes anything.

`provision_setup` is `qfstack pocketid provision`: it reads setup.env, picks
the API key (a file, setup.env, or the bundled PocketID's static key),
provisions, and writes the client id back into setup.env in place.

`prepare_bundled` is what `up` does for the bundled PocketID (2.2+): provision
with the static API key, keeping the access an existing client has, and
create the first admin when no user exists. `sign_in_link` asks the container
for a one-time sign-in link, after asking the API whether the user exists;
`SignInLink` masks it everywhere but `reveal`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from qfstack.clientspec import ClientSpec, client_spec
from qfstack.config import (
    Config,
    build_config,
    file_findings,
    read_setup_env,
)
from qfstack.doctor import STATIC_KEY, api_key
from qfstack.errors import ComposeError, ConfigError, Finding, QfstackError
from qfstack.oidc import HttpSettings, effective_settings, http_client, origin
from qfstack.pocketid import (
    ApiKey,
    OidcClient,
    PocketIdClient,
    PocketIdError,
    User,
    UserGroup,
)
from qfstack.setup_env import update_setup_env
from qfstack.stack import Stack

logger = logging.getLogger(__name__)

GROUP_FRIENDLY_NAME = "QuFabric users"
# What a plan assumes when PocketID's answers do not tell its major version.
ASSUMED_VERSION = "2.x"
TOKEN_VAR = "QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN"
CLIENT_VARS = ("QUFABRIC_AUTH_CLIENT_ID", "QUFABRIC_AUTH_AUDIENCE")
DEVICE_VARS = (
    "QUFABRIC_AUTH_DEVICE_AUTH_CLIENT_ID",
    "QUFABRIC_AUTH_DEVICE_AUTH_AUDIENCE",
)
# Fields of a client answer that an update must not send back.
READ_ONLY = ("id", "allowedUserGroups", "allowedUserGroupsCount", "createdAt")
_PLACEHOLDER = re.compile(r"^<[A-Za-z_][A-Za-z0-9_]*>$")
_LINK = re.compile(r"https?://\S+/lc/\S+")

KEY_HOW_TO = (
    "qfstack needs the API key of a PocketID admin. PocketID 1.x has no "
    "static API key, so create one in its web interface, signed in as an "
    "admin: Administration -> API Keys -> Add API Key; Name: QuFabric "
    "Management Token; Expires At: a date well in the future (`qfstack "
    "doctor` warns 30 days before); Description: QuFabric Management Token; "
    "Save, then copy the key (PocketID shows it only once). Save it in a file "
    "readable only by you and run `qfstack pocketid provision --api-token-file "
    f"FILE`; management needs it too, as {TOKEN_VAR} in setup.env."
)


class SignInLink:
    """A one-time PocketID sign-in link: a credential, masked but in `reveal`."""

    __slots__ = ("_url", "user")

    def __init__(self, user: str, url: str) -> None:
        self.user = user
        self._url = url

    def reveal(self) -> str:
        """The link itself, to show the operator once."""
        return self._url

    def __repr__(self) -> str:
        return f"SignInLink({self.user!r}, '********')"

    __str__ = __repr__


@dataclass(frozen=True)
class Access:
    """Who may log in through the client (PocketID 2.x restricts by group)."""

    restricted: bool = True
    group: str = "qufabric-users"
    users: tuple[str, ...] = ()
    # Leave an existing client's restriction and groups alone (`up` does, so
    # that an operator's choice survives every run).
    keep_existing: bool = False


@dataclass(frozen=True)
class Change:
    """One thing provisioning changed or, in a dry run, would change."""

    subject: str
    field: str
    before: str
    after: str

    def line(self) -> str:
        if not self.field:
            return f"{self.subject}: {self.after}"
        return f"{self.subject}: {self.field}: {self.before} -> {self.after}"

    def as_dict(self) -> dict[str, str]:
        return {
            "subject": self.subject,
            "field": self.field,
            "before": self.before,
            "after": self.after,
        }


@dataclass
class Provisioned:
    """The client after provisioning, and every change on the way."""

    client_id: str
    version: str
    dry_run: bool
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    client: OidcClient | None = None
    group: UserGroup | None = None
    # The version the plan assumed because PocketID's answers did not tell it.
    assumed_version: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "pocketid_version": self.version,
            "pocketid_version_assumed": self.assumed_version,
            "dry_run": self.dry_run,
            "changed": self.changed,
            "changes": [c.as_dict() for c in self.changes],
            "notes": list(self.notes),
        }


def provision(
    api: PocketIdClient,
    spec: ClientSpec,
    *,
    client_id: str | None,
    access: Access,
    by_name: bool = True,
    dry_run: bool = False,
) -> Provisioned:
    """Make PocketID hold the client `spec` describes; see the module notes.

    `client_id` is the id to look for and to create the client with; None
    looks by name only and lets PocketID choose the id of a new client.
    Everything is read before anything is written, so a missing user or an
    ambiguous name changes nothing.
    """
    api.require_admin()
    api.detect_version()
    current = _find(api, spec, client_id, by_name=by_name)
    # A real run learns the major version from the client it creates at the
    # latest; a dry run creates none, so both ask for any client first and
    # plan from the same answer.
    api.learn_major_from_clients()
    users = _resolve_users(api, access.users) if access.restricted else []
    restricted = _restriction(api, current, access)
    fields = _fields(spec, restricted)
    result = Provisioned(
        client_id=current.id if current else client_id or "",
        version=api.version_text,
        dry_run=dry_run,
    )

    if current is None:
        subject = f"client {client_id}" if client_id else f"client {spec.name!r}"
        if not dry_run:
            body = {**({"id": client_id} if client_id else {}), **fields}
            result.client = api.create_client(body)
            result.client_id = result.client.id
            # The answer tells the version: 1.x has no restriction to report.
            restricted = _restriction(api, None, access)
        result.changes.append(Change(subject, "", "", _created(spec, restricted)))
    else:
        result.changes += _differences(current, spec, restricted)
        result.client = current
        if result.changes and not dry_run:
            result.client = api.update_client(current.id, _update_body(current, fields))
        if not current.is_public:
            _note_secrets(api, current, result)
    result.version = api.version_text

    if api.major == 1:
        result.notes.append(
            "PocketID 1.x has no group restriction: every user may log in "
            "unless the client lists allowed groups; qfstack leaves them (and "
            "the users' groups) as they are."
        )
    elif restricted:
        _ensure_group(api, result, access, users, dry_run=dry_run)
    elif restricted is False:
        result.notes.append(
            "access is open: every PocketID user may log in to QuFabric."
        )
    # restricted None: an existing client keeps the access it has.

    if api.major is None:
        result.assumed_version = ASSUMED_VERSION
        result.notes.append(
            f"version unknown; assuming {ASSUMED_VERSION}: PocketID does not "
            "announce its version and has no OIDC client whose fields tell it. "
            "On 1.x the real run creates no group and sets no group restriction."
        )
    return result


def _find(
    api: PocketIdClient, spec: ClientSpec, client_id: str | None, *, by_name: bool
) -> OidcClient | None:
    """The client with `client_id`, else the one named like the spec."""
    if client_id:
        found = api.get_client(client_id)
        if found is not None:
            return found
    if not by_name:
        return None
    named = [c for c in api.list_clients(search=spec.name) if c.name == spec.name]
    if len(named) > 1:
        ids = ", ".join(c.id for c in named)
        raise PocketIdError(
            "client",
            f"PocketID has {len(named)} clients named {spec.name!r} ({ids}) and "
            f"none with the id {client_id!r}; qfstack cannot tell which one "
            "QuFabric uses.",
            fix="pass --client-id with the id of the one to use, or delete the "
            "others in PocketID (Administration -> OIDC Clients).",
            permanent=True,
        )
    if not named:
        return None
    # The list leaves the allowed groups out; the client's own answer has them.
    return api.get_client(named[0].id) or named[0]


def _resolve_users(api: PocketIdClient, names: Sequence[str]) -> list[User]:
    """The users named (by user name or e-mail); raises naming a missing one."""
    found: list[User] = []
    for name in dict.fromkeys(names):
        matches = [
            u for u in api.list_users(search=name) if name in (u.username, u.email)
        ]
        if not matches:
            raise PocketIdError(
                "users",
                f"PocketID has no user {name!r}; nothing was changed.",
                fix="check the spelling, or create the user first "
                "(Administration -> Users -> Add User).",
                permanent=True,
            )
        found.append(matches[0])
    return found


def _restriction(
    api: PocketIdClient, current: OidcClient | None, access: Access
) -> bool | None:
    """The group restriction to set: None where there is none to set (1.x)
    or where an existing client keeps its own."""
    if api.major == 1:
        return None
    if current is not None and access.keep_existing:
        return None
    return access.restricted


def _fields(spec: ClientSpec, restricted: bool | None) -> dict[str, Any]:
    """The fields of a client body that provisioning decides."""
    body: dict[str, Any] = {
        "name": spec.name,
        "callbackURLs": list(spec.callback_urls),
        "logoutCallbackURLs": list(spec.logout_callback_urls),
        "isPublic": spec.public,
        "pkceEnabled": spec.pkce,
        "launchURL": spec.launch_url or None,
    }
    if restricted is not None:
        body["isGroupRestricted"] = restricted
    return body


def _update_body(current: OidcClient, fields: Mapping[str, Any]) -> dict[str, Any]:
    """PUT replaces the whole client: send back what qfstack leaves alone."""
    kept = {k: v for k, v in current.raw.items() if k not in READ_ONLY}
    return {**kept, **fields}


def _created(spec: ClientSpec, restricted: bool | None) -> str:
    access = {
        True: ", restricted to user groups",
        False: ", open to every user",
        None: "",
    }[restricted]
    return (
        f"created as {spec.name!r}: public, PKCE, launch URL {spec.launch_url}, "
        f"callback URLs {_urls(spec.callback_urls)}, logout callback URL "
        f"{_urls(spec.logout_callback_urls)}{access}"
    )


def _differences(
    current: OidcClient, spec: ClientSpec, restricted: bool | None
) -> list[Change]:
    subject = f"client {current.id}"
    changes: list[Change] = []

    def compare(name: str, before: str, after: str) -> None:
        if before != after:
            changes.append(Change(subject, name, before, after))

    compare("name", repr(current.name), repr(spec.name))
    for name, have, want in (
        ("callbackURLs", current.callback_urls, spec.callback_urls),
        ("logoutCallbackURLs", current.logout_callback_urls, spec.logout_callback_urls),
    ):
        # PocketID matches against the list as a set: order is not a change.
        if sorted(have) != sorted(want):
            changes.append(Change(subject, name, _urls(have), _urls(want)))
    compare("isPublic", _bool(current.is_public), _bool(spec.public))
    compare("pkceEnabled", _bool(current.pkce_enabled), _bool(spec.pkce))
    compare("launchURL", current.launch_url or "(none)", spec.launch_url or "(none)")
    if restricted is not None and current.is_group_restricted is not None:
        compare(
            "isGroupRestricted",
            _bool(current.is_group_restricted),
            _bool(restricted),
        )
    return changes


def _note_secrets(api: PocketIdClient, client: OidcClient, result: Provisioned) -> None:
    """A confidential client made public may keep secrets nobody uses."""
    secrets = api.client_secret_ids(client.id)
    if secrets:
        result.notes.append(
            f"client {client.id} keeps {len(secrets)} client secret(s) from "
            "when it was confidential; a public client never uses them. Delete "
            "them in PocketID (Administration -> OIDC Clients -> "
            f"{client.name} -> Client secrets) if nothing else does."
        )


def _ensure_group(
    api: PocketIdClient,
    result: Provisioned,
    access: Access,
    users: Sequence[User],
    *,
    dry_run: bool,
) -> None:
    """Create or reuse the group, allow it on the client, add the users."""
    name = access.group
    subject = f"group {name}"
    group = next((g for g in api.list_groups(search=name) if g.name == name), None)
    if group is None:
        result.changes.append(Change(subject, "", "", "created"))
        if not dry_run:
            group = api.create_group(name, GROUP_FRIENDLY_NAME)
    result.group = group

    client = result.client
    allowed = list(client.allowed_groups) if client else []
    if group is None or group.id not in {g.id for g in allowed}:
        before = ", ".join(g.name for g in allowed) or "(none)"
        after = ", ".join([*(g.name for g in allowed), name])
        subject_client = (
            f"client {result.client_id}" if result.client_id else "the new client"
        )
        result.changes.append(
            Change(subject_client, "allowedUserGroups", before, after)
        )
        if client is not None and group is not None:
            ids = [g.id for g in allowed] + [group.id]
            result.client = api.set_allowed_groups(client.id, ids)

    members: tuple[str, ...] = ()
    if group is not None:
        group = result.group = api.get_group(group.id)
        members = group.member_ids or ()
    new = [u for u in users if u.id not in members]
    if new:
        result.changes.append(
            Change(subject, "members", f"{len(members)} user(s)",
                   "+ " + ", ".join(u.username for u in new))
        )  # fmt: skip
        if group is not None:
            result.group = api.set_group_users(
                group.id, [*members, *(u.id for u in new)]
            )


def _urls(urls: Sequence[str]) -> str:
    return "[" + ", ".join(urls) + "]" if urls else "(none)"


def _bool(value: bool) -> str:
    return "true" if value else "false"


# --- qfstack pocketid provision ---------------------------------------------


@dataclass(frozen=True)
class Options:
    """What `qfstack pocketid provision` was asked."""

    api_token: str | None = None
    client_id: str | None = None
    group: str | None = None
    users: tuple[str, ...] = ()
    open_access: bool = False
    dry_run: bool = False


@dataclass
class ProvisionReport:
    """What `provision_setup` did in PocketID and in setup.env."""

    provisioned: Provisioned
    setup_env: list[Change]
    backup: Path | None
    findings: tuple[Finding, ...] = ()
    # What the operator still has to do before `validate` and `up` pass.
    next_steps: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.provisioned.changed or bool(self.setup_env)

    def as_dict(self) -> dict[str, Any]:
        data = self.provisioned.as_dict()
        data["changed"] = self.changed
        data["setup_env"] = [c.as_dict() for c in self.setup_env]
        data["backup"] = str(self.backup) if self.backup else None
        data["next_steps"] = list(self.next_steps)
        return data


def provision_setup(
    directory: Path,
    settings: HttpSettings,
    options: Options,
    environ: Mapping[str, str] | None = None,
) -> ProvisionReport:
    """Provision the client setup.env describes and write its id back.

    Works before setup.env names a client (empty, or the guide's <CLIENT_ID>)
    and before it holds an API key (one given in `options`).
    """
    environ = os.environ if environ is None else environ
    raw = read_setup_env(directory)
    config, configured_id = _provisioning_config(directory, raw, environ)
    key, source = _choose_key(config, raw, options.api_token)
    wanted_id = options.client_id or configured_id
    if config.bundled_pocketid:
        wanted_id = options.client_id or config.client_id
    access = Access(
        restricted=not options.open_access,
        group=options.group or config.get("QFSTACK_POCKETID_GROUP"),
        users=options.users,
    )
    base = config.pocketid_url if config.bundled_pocketid else origin(config.authority)

    with http_client(effective_settings(config, settings)) as http:
        api = PocketIdClient(http, base, key, key_source=source)
        provisioned = provision(
            api,
            client_spec(config),
            client_id=wanted_id,
            access=access,
            by_name=not config.bundled_pocketid,
            dry_run=options.dry_run,
        )

    new_id = provisioned.client_id or "(the id PocketID assigns)"
    changes = _setup_env_values(config, raw, new_id, configured_id)
    planned = [
        Change("setup.env", name, raw.get(name) or "(unset)", value)
        for name, value in changes.items()
    ]
    backup = None
    if changes and not options.dry_run:
        backup = update_setup_env(directory, changes).backup
    group = provisioned.group
    if group is not None and not group.member_ids and not options.dry_run:
        provisioned.notes.append(
            f"the group {group.name!r} has no members yet, so nobody can log in "
            "to QuFabric: add users with --user NAME (or in PocketID: "
            "Administration -> User Groups)."
        )
    return ProvisionReport(
        provisioned, planned, backup, config.findings, _next_steps(config, raw)
    )


def _next_steps(config: Config, raw: Mapping[str, str]) -> list[str]:
    """What provisioning leaves to the operator: a key given to it is never
    written, yet management needs one in setup.env."""
    if config.bundled_pocketid or _value(raw, TOKEN_VAR):
        return []
    state = "still has a placeholder in" if raw.get(TOKEN_VAR) else "has no value for"
    return [
        f"setup.env {state} {TOKEN_VAR}: put the management API key there "
        "(qfstack init --api-token-file FILE does it); `qfstack validate` and "
        "`qfstack up` need it."
    ]


def _provisioning_config(
    directory: Path, raw: Mapping[str, str], environ: Mapping[str, str]
) -> tuple[Config, str | None]:
    """The configuration, with stand-ins for what provisioning provides.

    Returns it and the client id setup.env names (None when it names none).
    """
    values = dict(raw)
    configured = _value(raw, "QUFABRIC_AUTH_CLIENT_ID")
    stand_in = configured or "qufabric"
    for name in CLIENT_VARS:
        if not configured or not _value(raw, name):
            values[name] = stand_in
    # The device client stands in for a placeholder only: an empty one stays
    # empty, as `validate` reads it, so both report the same warnings.
    for name in DEVICE_VARS:
        if raw.get(name) and not _value(raw, name):
            values[name] = stand_in
    bundled = raw.get("QFSTACK_BUNDLED_POCKETID", "").strip().lower()
    if not _value(raw, TOKEN_VAR) and bundled not in ("true", "1", "yes", "on"):
        values[TOKEN_VAR] = "provided-by-qfstack"
    notes = file_findings(directory)
    config = build_config(directory.resolve(), values, environ, notes=notes)
    return config, configured or None


def _value(raw: Mapping[str, str], name: str) -> str:
    """A setup.env value, or "" for a placeholder such as <CLIENT_ID>."""
    value = raw.get(name, "")
    return "" if _PLACEHOLDER.match(value) else value


def _choose_key(
    config: Config, raw: Mapping[str, str], given: str | None
) -> tuple[ApiKey, str]:
    """The API key: the file given, else setup.env's, else the static key."""
    if given:
        return ApiKey(given), "the file given to --api-token-file"
    if config.bundled_pocketid:
        key, source = api_key(config)
        if key:
            return key, source
        raise PocketIdError(
            "api key",
            "the bundled PocketID has no static API key yet.",
            fix="run `qfstack up`: it generates the key, starts PocketID with "
            "it and provisions the client itself.",
            permanent=True,
        )
    token = _value(raw, TOKEN_VAR)
    if token:
        return ApiKey(token), TOKEN_VAR
    raise PocketIdError(
        "api key",
        f"no PocketID API key: {TOKEN_VAR} in setup.env is empty and no "
        "--api-token-file was given.",
        fix=KEY_HOW_TO,
        permanent=True,
    )


def _setup_env_values(
    config: Config, raw: Mapping[str, str], client_id: str, old_id: str | None
) -> dict[str, str]:
    """The client-id variables setup.env should change to name `client_id`.

    The device client follows where the device flow is on, or where
    setup.env already names the same client (or the guide's placeholder);
    a device client of its own is left alone. The bundled PocketID's client
    id is derived, never written.
    """
    if config.bundled_pocketid:
        return {}
    names = list(CLIENT_VARS)
    for name in DEVICE_VARS:
        current = _value(raw, name)
        if current and current != old_id:
            continue  # a device client of its own
        if config.device_provider != "none" or raw.get(name):
            names.append(name)
    return {name: client_id for name in names if raw.get(name, "") != client_id}


# --- the bundled PocketID, from `up` ---------------------------------------


@dataclass
class BundledSetup:
    """What `up` did in the bundled PocketID."""

    provisioned: Provisioned
    # The first admin, when this run created it.
    admin: User | None = None

    @property
    def changed(self) -> bool:
        return self.provisioned.changed or self.admin is not None

    def lines(self) -> list[str]:
        lines = [c.line() for c in self.provisioned.changes]
        if self.admin is not None:
            lines.append(f"created the first admin {self.admin.username!r}")
        return lines


BUNDLED_V1_HOW_TO = (
    "PocketID before 2.2 has no static API key. Either run PocketID 2.x "
    "(QFSTACK_POCKETID_TAG=v2, the default), or sign in to the bundled "
    "PocketID at {url}/setup to create the first admin, create an API key "
    "there (Administration -> API Keys -> Add API Key; Name: QuFabric "
    "Management Token; Expires At: a date well in the future; Save; copy the "
    f"key), put it in setup.env as {TOKEN_VAR} and run `qfstack up` again."
)


def prepare_bundled(
    config: Config, http: httpx.Client, *, max_wait: float = 15.0
) -> BundledSetup:
    """Provision the client in the bundled PocketID and make its first admin.

    An existing client keeps the access it has (an operator's `pocketid
    provision --open-access` survives); a new one is restricted to the
    configured group on 2.x, and the first admin joins it.
    """
    key, source = api_key(config)
    api = PocketIdClient(
        http, config.pocketid_url, key, key_source=source, max_wait=max_wait
    )
    access = Access(group=config.get("QFSTACK_POCKETID_GROUP"), keep_existing=True)
    try:
        provisioned = provision(
            api,
            client_spec(config),
            client_id=config.client_id,
            access=access,
            by_name=False,
        )
    except PocketIdError as exc:
        if exc.status == 401 and source == STATIC_KEY:
            raise PocketIdError(
                "api key",
                "the bundled PocketID "
                f"({config.images.pocketid}) refused qfstack's static API key.",
                fix=BUNDLED_V1_HOW_TO.format(url=config.pocketid_url),
                permanent=True,
            ) from None
        raise
    return BundledSetup(provisioned, _first_admin(api, config, provisioned))


def _first_admin(
    api: PocketIdClient, config: Config, provisioned: Provisioned
) -> User | None:
    """Create the first admin when PocketID has no user; None when it has."""
    if api.list_users():
        return None
    username = config.get("QFSTACK_POCKETID_ADMIN")
    try:
        admin = api.setup_first_admin(
            username,
            first_name=username.capitalize(),
            email=config.get("QFSTACK_POCKETID_ADMIN_EMAIL"),
        )
    except PocketIdError as exc:
        if exc.status == 400:
            exc.fix = (
                "check QFSTACK_POCKETID_ADMIN (letters, digits, '_', '.', '-', "
                "'@') and QFSTACK_POCKETID_ADMIN_EMAIL (set it when this "
                "PocketID requires an e-mail address)."
            )
        raise
    logger.info("created PocketID's first admin %r", admin.username)

    client = provisioned.client
    group = provisioned.group
    if group is None and client is not None and client.is_group_restricted:
        group = next(iter(client.allowed_groups), None)
    if group is not None:
        members = api.get_group(group.id).member_ids or ()
        if admin.id not in members:
            api.set_group_users(group.id, [*members, admin.id])
    return admin


def sign_in_link(
    config: Config, user: str | None = None, settings: HttpSettings | None = None
) -> SignInLink:
    """A one-hour sign-in link for `user` (default: QFSTACK_POCKETID_ADMIN),
    from the bundled PocketID itself.

    With `settings`, the user is first looked up over PocketID's API, so that
    an unknown one is a ConfigError naming it (exit 2) rather than a failed
    command; without them, or when the API cannot answer, the command decides.
    """
    name = user or config.get("QFSTACK_POCKETID_ADMIN")
    if settings is not None:
        with http_client(effective_settings(config, settings)) as http:
            _require_user(config, http, name, given=user is not None)
    try:
        output = Stack(config).pocketid_one_time_access_token(name)
    except ComposeError as exc:
        raise QfstackError(
            f"PocketID could not create a sign-in link for {name!r} "
            f"(`pocket-id one-time-access-token` exited {exc.returncode})",
            details=[
                *(exc.details or [exc.message]),
                "Check that the user exists and that PocketID runs: "
                "`qfstack status`, `qfstack logs pocketid`.",
            ],
        ) from None
    match = _LINK.search(output)
    if match is None:
        raise QfstackError(
            "PocketID printed no sign-in link",
            details=[
                f"`pocket-id one-time-access-token {name}` in the pocketid "
                "container printed no <APP_URL>/lc/<token> line.",
                "Check that the user exists: `qfstack logs pocketid`.",
            ],
        )
    return SignInLink(name, match.group(0))


def _require_user(
    config: Config, http: httpx.Client, name: str, *, given: bool
) -> None:
    """Raise a ConfigError when the bundled PocketID has no user `name`
    (a user name or an e-mail address, as the command takes it)."""
    key, source = api_key(config)
    if not key:
        return
    api = PocketIdClient(http, config.pocketid_url, key, key_source=source)
    try:
        users = api.list_users()
    except PocketIdError as exc:
        logger.debug("cannot list PocketID's users (%s); the command decides", exc)
        return
    wanted = name.casefold()
    if any(wanted in (u.username.casefold(), u.email.casefold()) for u in users):
        return

    admin = config.get("QFSTACK_POCKETID_ADMIN")
    names = sorted(u.username for u in users)
    known = "it has no user yet"
    if names:
        more = f" and {len(names) - 10} more" if len(names) > 10 else ""
        known = f"its users: {', '.join(names[:10])}{more}"
    if given:
        variable = "USER"
        fix = (
            "pass one of its users (`qfstack pocketid sign-in-link USER`), or "
            f"none for the first admin, QFSTACK_POCKETID_ADMIN ({admin!r})."
        )
    else:
        variable = "QFSTACK_POCKETID_ADMIN"
        fix = (
            "pass the user: `qfstack pocketid sign-in-link USER`, or set "
            "QFSTACK_POCKETID_ADMIN to one of its users."
        )
    if not names:
        fix = "run `qfstack up`: it creates the first admin, QFSTACK_POCKETID_ADMIN."
    raise ConfigError(
        f"PocketID has no user {name!r}",
        [
            Finding(
                "error",
                variable,
                f"is {name!r}, but the bundled PocketID has no user with that "
                f"user name or e-mail address ({known}).",
                fix,
            )
        ],
    )


__all__ = [
    "Access",
    "BundledSetup",
    "Change",
    "Options",
    "ProvisionReport",
    "Provisioned",
    "SignInLink",
    "prepare_bundled",
    "provision",
    "provision_setup",
    "sign_in_link",
]
