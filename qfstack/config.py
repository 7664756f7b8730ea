"""The setup.env model: variables, defaults, derivations and validation.

`load_config(directory)` reads `DIR/setup.env` once and returns a `Config` with
every default filled and every derived value computed, or raises `ConfigError`
listing every problem at once. Only this module reads setup.env.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import io
import ipaddress
import logging
import os
import re
import shlex
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from dotenv.parser import parse_stream

from qfstack.errors import ConfigError, Finding

logger = logging.getLogger(__name__)

SETUP_ENV = "setup.env"
WELL_KNOWN = "/.well-known/openid-configuration"
LOCAL_DOMAINS = ("localhost", "127.0.0.1")
SERVICES = ("dashboard", "signal", "relay", "management", "coturn")
EXTRA_PREFIX = "QUFABRIC_IDP_MGMT_EXTRA_"
STORE_ENGINES = ("sqlite", "postgres", "mysql")
TOKEN_SOURCES = ("accessToken", "idToken")
DEVICE_PROVIDERS = ("none", "hosted")
IDP_MANAGERS = ("pocketid", "none")
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
_PLACEHOLDER = re.compile(r"<[A-Za-z_][A-Za-z0-9_]*>")


@dataclass(frozen=True)
class Var:
    """A setup.env variable qfstack knows."""

    name: str
    default: str = ""
    secret: bool = False
    doc: str = ""


def _vars(*items: Var) -> dict[str, Var]:
    return {item.name: item for item in items}


VARIABLES: dict[str, Var] = _vars(
    # The seed's variables.
    Var("QUFABRIC_AUTH_OIDC_CONFIGURATION_ENDPOINT", doc="discovery document URL"),
    Var("QUFABRIC_USE_AUTH0", "false"),
    Var("QUFABRIC_AUTH_CLIENT_ID"),
    Var("QUFABRIC_AUTH_CLIENT_SECRET", secret=True),
    Var("QUFABRIC_AUTH_SUPPORTED_SCOPES", "openid profile email groups"),
    Var("QUFABRIC_AUTH_AUDIENCE", doc="defaults to the client id"),
    Var("QUFABRIC_AUTH_REDIRECT_URI", "/auth"),
    Var("QUFABRIC_AUTH_SILENT_REDIRECT_URI", "/silent-auth"),
    Var("QUFABRIC_TOKEN_SOURCE", "accessToken"),
    Var("QUFABRIC_AUTH_DEVICE_AUTH_PROVIDER", "none"),
    Var("QUFABRIC_AUTH_DEVICE_AUTH_CLIENT_ID"),
    Var("QUFABRIC_AUTH_DEVICE_AUTH_AUDIENCE"),
    Var("QUFABRIC_AUTH_DEVICE_AUTH_SCOPE", "openid"),
    Var("QUFABRIC_AUTH_DEVICE_AUTH_USE_ID_TOKEN", "false"),
    Var("QUFABRIC_MGMT_IDP", "pocketid"),
    Var("QUFABRIC_IDP_MGMT_CLIENT_ID"),
    Var("QUFABRIC_IDP_MGMT_CLIENT_SECRET", secret=True),
    Var("QUFABRIC_MGMT_IDP_SIGNKEY_REFRESH", "false"),
    # The rest of a self-hosted setup.env.
    Var("QUFABRIC_DOMAIN", doc="the public host name of the stack"),
    Var("QUFABRIC_TURN_DOMAIN", doc="defaults to QUFABRIC_DOMAIN"),
    Var("QUFABRIC_TURN_EXTERNAL_IP"),
    Var("QUFABRIC_TURN_USER", "self"),
    Var("QUFABRIC_TURN_PASSWORD", secret=True, doc="generated once when empty"),
    Var("QUFABRIC_TURN_PORT", "3478", doc="TURN/STUN listening port"),
    Var("QUFABRIC_TURN_MIN_PORT", "49152"),
    Var("QUFABRIC_TURN_MAX_PORT", "65535"),
    Var("QUFABRIC_RELAY_AUTH_SECRET", secret=True, doc="generated once when empty"),
    Var("QUFABRIC_DATASTORE_ENCRYPTION_KEY", secret=True),
    Var("QUFABRIC_LETSENCRYPT_EMAIL"),
    Var("QUFABRIC_DISABLE_LETSENCRYPT", "false"),
    Var("QUFABRIC_DISABLE_ANONYMOUS_METRICS", "false"),
    Var("QUFABRIC_MGMT_DNS_DOMAIN", "qufabric.selfhosted"),
    Var("QUFABRIC_MGMT_DISABLE_DEFAULT_POLICY", "false"),
    Var("QUFABRIC_AUTH_PKCE_REDIRECT_URL_PORTS", "53000"),
    Var("QUFABRIC_AUTH_USER_ID_CLAIM", "sub"),
    Var("QUFABRIC_DASH_AUTH_USE_AUDIENCE", "true"),
    Var("QUFABRIC_STORE_CONFIG_ENGINE", "sqlite"),
    Var("QUFABRIC_STORE_ENGINE_POSTGRES_DSN", secret=True),
    Var("QUFABRIC_STORE_ENGINE_MYSQL_DSN", secret=True),
    Var("QUFABRIC_MGMT_API_PORT", "33073"),
    Var("QUFABRIC_SIGNAL_PORT", "10000"),
    Var("QUFABRIC_RELAY_PORT", "33080"),
    Var("QUFABRIC_DASHBOARD_IMAGE", "qufabric/dashboard"),
    Var("QUFABRIC_DASHBOARD_TAG", "latest"),
    Var("QUFABRIC_SIGNAL_IMAGE", "qufabric/signal"),
    Var("QUFABRIC_SIGNAL_TAG", "latest"),
    Var("QUFABRIC_RELAY_IMAGE", "qufabric/relay"),
    Var("QUFABRIC_RELAY_TAG", "latest"),
    Var("QUFABRIC_MANAGEMENT_IMAGE", "qufabric/management"),
    Var("QUFABRIC_MANAGEMENT_TAG", "latest"),
    Var("COTURN_IMAGE", "coturn/coturn"),
    Var("COTURN_TAG", "latest"),
    # qfstack's own settings.
    Var("QFSTACK_PROJECT", doc="compose project name; defaults to the directory"),
    Var("QFSTACK_BIND_ADDRESS", doc="address ports are published on"),
    Var("QFSTACK_DASHBOARD_HTTP_PORT", "80"),
    Var("QFSTACK_DASHBOARD_HTTPS_PORT", "443"),
    Var("QFSTACK_COTURN_NETWORK", doc="host (default) or bridge (local stacks)"),
    Var("QFSTACK_IMAGE_REGISTRY", doc="registry or mirror prefix for every image"),
    Var("QFSTACK_HEALTH_START_PERIOD", "15", doc="seconds before failed probes count"),
    Var("QFSTACK_CA_BUNDLE", doc="PEM file of CAs trusted for the identity provider"),
    Var("QFSTACK_BUNDLED_POCKETID", "false"),
    Var("QFSTACK_POCKETID_IMAGE", "ghcr.io/pocket-id/pocket-id"),
    Var("QFSTACK_POCKETID_TAG", "v2"),
    Var("QFSTACK_POCKETID_PORT", "1411"),
    Var("QFSTACK_POCKETID_URL", doc="the browser's URL of the bundled PocketID"),
    Var("QFSTACK_POCKETID_STATIC_API_KEY", secret=True),
    Var("QFSTACK_POCKETID_ENCRYPTION_KEY", secret=True),
    Var("QFSTACK_POCKETID_ADMIN", "admin", doc="first admin `up` creates (bundled)"),
    Var("QFSTACK_POCKETID_ADMIN_EMAIL", doc="that admin's e-mail address"),
    Var("QFSTACK_POCKETID_GROUP", "qufabric-users", doc="group allowed on the client"),
)

# Secrets qfstack generates once when setup.env leaves them empty.
GENERATED_SECRETS = (
    "QUFABRIC_TURN_PASSWORD",
    "QUFABRIC_RELAY_AUTH_SECRET",
    "QUFABRIC_DATASTORE_ENCRYPTION_KEY",
)
BUNDLED_SECRETS = ("QFSTACK_POCKETID_STATIC_API_KEY", "QFSTACK_POCKETID_ENCRYPTION_KEY")


def is_secret(name: str) -> bool:
    """Whether a variable holds a secret that must never be shown."""
    var = VARIABLES.get(name)
    if var is not None:
        return var.secret
    return name.startswith(EXTRA_PREFIX) and any(
        word in name for word in ("TOKEN", "SECRET", "PASSWORD", "KEY")
    )


@dataclass(frozen=True)
class Images:
    """Full image references per service."""

    dashboard: str
    signal: str
    relay: str
    management: str
    coturn: str
    pocketid: str


@dataclass(frozen=True)
class Config:
    """A complete, validated stack configuration."""

    directory: Path
    values: Mapping[str, str]
    project: str
    domain: str
    local: bool
    bind_address: str
    bundled_pocketid: bool
    # The identity provider as seen from this host (and the browser).
    configuration_endpoint: str
    authority: str
    # The identity provider as seen from the containers.
    internal_configuration_endpoint: str
    client_id: str
    audience: str
    scopes: str
    redirect_uri: str
    silent_redirect_uri: str
    use_id_token: bool
    use_auth0: bool
    device_provider: str
    device_client_id: str
    device_audience: str
    device_scope: str
    device_use_id_token: bool
    idp_manager: str
    idp_extra: Mapping[str, str]
    pkce_ports: tuple[int, ...]
    dashboard_audience: str
    mgmt_api_port: int
    mgmt_endpoint: str
    signal_port: int
    signal_proto: str
    relay_port: int
    relay_endpoint: str
    dashboard_http_port: int
    dashboard_https_port: int
    turn_domain: str
    turn_external_ip: str
    turn_user: str
    turn_port: int
    turn_min_port: int
    turn_max_port: int
    coturn_network: str
    letsencrypt_domain: str
    store_engine: str
    pocketid_port: int
    pocketid_url: str
    ca_bundle: Path | None
    images: Images
    findings: tuple[Finding, ...] = ()
    secrets: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        """The value of a variable: setup.env, then secrets, then the default."""
        value = self.values.get(name) or self.secrets.get(name)
        if value:
            return value
        var = VARIABLES.get(name)
        return var.default if var else ""

    def get_bool(self, name: str) -> bool:
        return _parse_bool(self.get(name)) is True

    @property
    def artifacts(self) -> Path:
        return self.directory / "artifacts"

    @property
    def pkce_redirect_urls(self) -> list[str]:
        return [f"http://localhost:{port}" for port in self.pkce_ports]

    @property
    def pocketid_internal_url(self) -> str:
        return "http://pocketid:1411"

    def with_secrets(self, secrets: Mapping[str, str]) -> Config:
        return replace(self, secrets=dict(secrets))


def setup_env_path(directory: Path) -> Path:
    return directory / SETUP_ENV


def read_setup_env(directory: Path) -> dict[str, str]:
    """The raw values of DIR/setup.env (without interpolation)."""
    path = setup_env_path(directory)
    text = read_text(path)
    # parse_stream is what dotenv_values uses, minus its log line per bad
    # line: file_findings reports those, naming the variable.
    return {
        binding.key: (binding.value or "").strip()
        for binding in parse_stream(io.StringIO(text))
        if binding.key is not None and not binding.error
    }


def read_text(path: Path) -> str:
    """setup.env's text, or a ConfigError saying why it cannot be read."""

    def fail(message: str, fix: str) -> ConfigError:
        return ConfigError(
            f"cannot read {path}", [Finding("error", SETUP_ENV, message, fix)]
        )

    if path.is_dir():
        raise fail(f"{path} is a directory.", "remove it and run `qfstack init`.")
    if path.is_symlink() and not path.exists():
        raise fail(
            f"{path} is a link to a missing file.",
            "point the link at the file, or run `qfstack init`.",
        )
    if not path.exists():
        raise fail(
            f"{path} does not exist.",
            "run `qfstack init` or pass --dir to the stack directory.",
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise fail(
            f"{path} cannot be read ({exc.strerror}).",
            "run qfstack as the file's owner, or fix its permissions.",
        ) from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise fail(
            f"{path} is UTF-16 text.",
            "save it as UTF-8 (in Notepad: Save As, Encoding UTF-8).",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise fail(
            f"{path} is not UTF-8 text (line {line}).", "save it as UTF-8."
        ) from None


def file_findings(directory: Path) -> list[Finding]:
    """Problems of setup.env as a file: unreadable lines, repeats, its mode.

    python-dotenv silently skips what it cannot parse, so each such line is
    named here.
    """
    path = setup_env_path(directory)
    findings: list[Finding] = []
    try:
        text = read_text(path)
        mode = path.stat().st_mode
    except (OSError, ConfigError):
        return findings
    seen: dict[str, int] = {}
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            match = _ASSIGNMENT.match(binding.original.string)
            where = f"{SETUP_ENV} line {line}"
            findings.append(
                Finding(
                    "error",
                    match.group(1) if match else where,
                    f"{where + ' ' if match else ''}cannot be read (an unclosed "
                    "quote or a line that is not NAME=VALUE) and is ignored.",
                    'write it as NAME="value" with matching quotes.',
                )
            )
        elif binding.key is not None:
            if binding.key in seen:
                findings.append(
                    Finding(
                        "warning",
                        binding.key,
                        f"is set on line {seen[binding.key]} and again on line "
                        f"{line}; the last one wins.",
                        "keep one of the two lines.",
                    )
                )
            seen[binding.key] = line
    if mode & 0o077:
        findings.append(
            Finding(
                "warning",
                SETUP_ENV,
                f"is readable by other users (mode {stat.S_IMODE(mode):04o}) "
                "and holds secrets such as the PocketID API key.",
                f"chmod 600 {shlex.quote(str(path))}",
            )
        )
    return findings


def load_config(directory: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and derive the stack configuration of `directory`."""
    directory = directory.resolve()
    values = read_setup_env(directory)
    return build_config(
        directory,
        values,
        os.environ if environ is None else environ,
        notes=file_findings(directory),
    )


def build_config(
    directory: Path,
    values: Mapping[str, str],
    environ: Mapping[str, str],
    *,
    notes: Sequence[Finding] = (),
) -> Config:
    """Validate `values` (setup.env) and derive the whole configuration.

    `notes` are findings made elsewhere (about the file itself) that belong
    in the same report.
    """
    check = _Checker(values)
    config = check.build(directory)
    findings = [*notes, *check.findings, *_shell_overrides(values, environ)]
    errors = [f for f in findings if f.level == "error"]
    if errors or config is None:
        count = len(errors)
        raise ConfigError(
            f"{SETUP_ENV} has {count} error{'s' if count != 1 else ''}", findings
        )
    for finding in findings:
        logger.debug("finding: %s", finding)
    return replace(config, findings=tuple(findings))


class _Checker:
    """Collects findings while deriving the configuration."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.findings: list[Finding] = []

    def error(self, variable: str, message: str, fix: str = "") -> None:
        self.findings.append(Finding("error", variable, message, fix))

    def warn(self, variable: str, message: str, fix: str = "") -> None:
        self.findings.append(Finding("warning", variable, message, fix))

    def raw(self, name: str) -> str:
        value = self.values.get(name, "")
        return value if value else VARIABLES[name].default

    def required(self, name: str, why: str = "") -> str:
        value = self.values.get(name, "")
        if not value:
            self.error(
                name,
                f"is required{why} but is empty or missing.",
                f"set {name} in {SETUP_ENV}.",
            )
        return value

    def boolean(self, name: str) -> bool:
        value = self.raw(name)
        parsed = _parse_bool(value)
        if parsed is None:
            self.error(
                name, f"is {_shown(name, value)}, not a boolean.", "use true or false."
            )
            return False
        return parsed

    def port(self, name: str) -> int:
        value = self.raw(name)
        if not value.isdigit() or not 0 < int(value) < 65536:
            self.error(
                name,
                f"is {_shown(name, value)}, not a port number.",
                "use a number from 1 to 65535.",
            )
            return 0
        return int(value)

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.raw(name)
        if value not in choices:
            self.error(
                name,
                f"is {_shown(name, value)}, which qfstack does not support.",
                f"use one of: {', '.join(choices)}.",
            )
        return value

    def url(self, name: str, value: str, *, path_allowed: bool = True) -> bool:
        shown = _shown(name, value)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.error(
                name,
                f"is {shown}, not an http(s) URL.",
                "write it as https://host[:port]/path.",
            )
            return False
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            self.error(
                name,
                f"has an invalid port in {shown}.",
                "use a port from 1 to 65535.",
            )
            return False
        if parts.username is not None or parts.password is not None:
            self.error(
                name,
                "carries a user name or password in the URL.",
                "remove the user:password@ part; PocketID needs none there.",
            )
            return False
        if not _is_hostname(parts.hostname, url=True) or any(
            c.isspace() for c in value
        ):
            self.error(
                name,
                f"is {shown}; its host {parts.hostname!r} is not a valid host name.",
                "check the URL for typos and stray characters.",
            )
            return False
        if not path_allowed and parts.path not in ("", "/"):
            self.error(
                name,
                f"is {shown}; a path is not allowed here.",
                "give only scheme, host and port.",
            )
            return False
        if parts.query or parts.fragment:
            self.error(
                name,
                f"is {shown}; a ?query or #fragment is not allowed here.",
                "remove everything from the ? or #.",
            )
            return False
        return True

    def hostname(self, name: str, value: str) -> None:
        if value and not _is_hostname(value):
            self.error(
                name,
                f"is {value!r}, not a host name.",
                "give the bare host name, without scheme, port or path.",
            )

    def unknown(self) -> None:
        for name in self.values:
            if name in VARIABLES or name.startswith(EXTRA_PREFIX):
                continue
            close = difflib.get_close_matches(name, list(VARIABLES), n=1, cutoff=0.8)
            hint = (
                f"did you mean {close[0]}?" if close else "remove it or fix its name."
            )
            if name.startswith(("QUFABRIC_", "QFSTACK_", "COTURN_")):
                self.error(name, "is not a variable qfstack knows.", hint)
            else:
                self.warn(name, "is not a variable qfstack knows; it is ignored.", hint)

    def characters(self) -> None:
        """Values that would break the files rendered from them."""
        for name, value in self.values.items():
            if name not in VARIABLES and not name.startswith(EXTRA_PREFIX):
                continue
            placeholder = _PLACEHOLDER.search(value)
            if placeholder and not is_secret(name):
                self.error(
                    name,
                    f"still holds the guide's placeholder {placeholder.group(0)}.",
                    "replace it with the real value.",
                )
            elif placeholder:
                self.error(
                    name,
                    "still holds a placeholder in angle brackets.",
                    "replace it with the real value.",
                )
            if "'" in value or "\n" in value or "\r" in value:
                self.error(
                    name,
                    "contains a single quote or a line break, which cannot be "
                    "written into the rendered env files.",
                    "remove it (percent-encode it as %27 inside a URL).",
                )

    def build(self, directory: Path) -> Config | None:
        self.unknown()
        self.characters()
        v = self.values

        domain = self.required("QUFABRIC_DOMAIN")
        if domain and not _is_hostname(domain):
            self.error(
                "QUFABRIC_DOMAIN",
                f"is {domain!r}, not a host name.",
                "give the bare host name, without scheme, port or path.",
            )
        local = domain in LOCAL_DOMAINS
        bundled = self.boolean("QFSTACK_BUNDLED_POCKETID")

        bind_address = v.get("QFSTACK_BIND_ADDRESS") or (
            "127.0.0.1" if local else "0.0.0.0"
        )
        if not is_ip(bind_address):
            self.error(
                "QFSTACK_BIND_ADDRESS",
                f"is {bind_address!r}, not an IP address.",
                "use 0.0.0.0 to publish on every interface or 127.0.0.1.",
            )

        pocketid_port = self.port("QFSTACK_POCKETID_PORT")
        pocketid_url = (
            v.get("QFSTACK_POCKETID_URL") or f"http://localhost:{pocketid_port}"
        )
        if bundled and self.url(
            "QFSTACK_POCKETID_URL", pocketid_url, path_allowed=False
        ):
            pocketid_url = pocketid_url.rstrip("/").lower()

        endpoint, internal_endpoint = self.identity_provider(bundled, pocketid_url)
        authority = (
            endpoint[: -len(WELL_KNOWN)] if endpoint.endswith(WELL_KNOWN) else ""
        )

        client_id = v.get("QUFABRIC_AUTH_CLIENT_ID", "")
        if not bundled:
            client_id = self.required("QUFABRIC_AUTH_CLIENT_ID")
        elif not client_id:
            client_id = "qufabric"
        audience = v.get("QUFABRIC_AUTH_AUDIENCE") or client_id
        if client_id and audience != client_id:
            self.error(
                "QUFABRIC_AUTH_AUDIENCE",
                f"is {audience!r} but the client id is {client_id!r}; PocketID "
                "puts the client id in the token's audience, so management "
                "would reject every token.",
                "set QUFABRIC_AUTH_AUDIENCE to the client id (or remove it).",
            )

        use_auth0 = self.boolean("QUFABRIC_USE_AUTH0")
        idp_manager = self.choice("QUFABRIC_MGMT_IDP", IDP_MANAGERS)
        if use_auth0 and idp_manager == "pocketid":
            self.error(
                "QUFABRIC_USE_AUTH0",
                "is true, but the identity provider is PocketID.",
                "set QUFABRIC_USE_AUTH0=false.",
            )

        scopes = self.raw("QUFABRIC_AUTH_SUPPORTED_SCOPES")
        self.scopes("QUFABRIC_AUTH_SUPPORTED_SCOPES", scopes)
        for name in ("QUFABRIC_AUTH_REDIRECT_URI", "QUFABRIC_AUTH_SILENT_REDIRECT_URI"):
            if not self.raw(name).startswith("/"):
                self.error(
                    name,
                    f"is {self.raw(name)!r}; it must be a path.",
                    f"use a path starting with '/', e.g. {VARIABLES[name].default}.",
                )
        token_source = self.choice("QUFABRIC_TOKEN_SOURCE", TOKEN_SOURCES)

        device_provider = self.choice(
            "QUFABRIC_AUTH_DEVICE_AUTH_PROVIDER", DEVICE_PROVIDERS
        )
        device_client_id = v.get("QUFABRIC_AUTH_DEVICE_AUTH_CLIENT_ID", "")
        if device_provider == "none" and device_client_id:
            self.warn(
                "QUFABRIC_AUTH_DEVICE_AUTH_PROVIDER",
                'is "none" but QUFABRIC_AUTH_DEVICE_AUTH_CLIENT_ID is set; '
                'qfstack honours "none" (the device flow stays off).',
                'set the provider to "hosted" to enable the device flow, or '
                "clear the device client id.",
            )
        device_scope = self.raw("QUFABRIC_AUTH_DEVICE_AUTH_SCOPE")
        if device_provider != "none":
            self.scopes("QUFABRIC_AUTH_DEVICE_AUTH_SCOPE", device_scope)

        idp_extra = self.idp_manager(idp_manager, bundled, authority, pocketid_url)

        ports = self.pkce_ports()
        use_audience = self.boolean("QUFABRIC_DASH_AUTH_USE_AUDIENCE")
        self.boolean("QUFABRIC_DISABLE_ANONYMOUS_METRICS")
        self.boolean("QUFABRIC_MGMT_DISABLE_DEFAULT_POLICY")
        self.boolean("QUFABRIC_MGMT_IDP_SIGNKEY_REFRESH")
        use_id_token_device = self.boolean("QUFABRIC_AUTH_DEVICE_AUTH_USE_ID_TOKEN")
        disable_le = self.boolean("QUFABRIC_DISABLE_LETSENCRYPT")

        mgmt_port = self.port("QUFABRIC_MGMT_API_PORT")
        signal_port = self.port("QUFABRIC_SIGNAL_PORT")
        relay_port = self.port("QUFABRIC_RELAY_PORT")
        http_port = self.port("QFSTACK_DASHBOARD_HTTP_PORT")
        https_port = self.port("QFSTACK_DASHBOARD_HTTPS_PORT")
        turn_port = self.port("QUFABRIC_TURN_PORT")
        turn_min = self.port("QUFABRIC_TURN_MIN_PORT")
        turn_max = self.port("QUFABRIC_TURN_MAX_PORT")
        if turn_min and turn_max and turn_min > turn_max:
            self.error(
                "QUFABRIC_TURN_MIN_PORT",
                f"{turn_min} is above QUFABRIC_TURN_MAX_PORT {turn_max}.",
                "swap the two values.",
            )
        self.port_clashes(
            {
                "QUFABRIC_MGMT_API_PORT": mgmt_port,
                "QUFABRIC_SIGNAL_PORT": signal_port,
                "QUFABRIC_RELAY_PORT": relay_port,
                "QFSTACK_DASHBOARD_HTTP_PORT": http_port,
                "QFSTACK_DASHBOARD_HTTPS_PORT": https_port,
                "QUFABRIC_TURN_PORT": turn_port,
                **({"QFSTACK_POCKETID_PORT": pocketid_port} if bundled else {}),
            }
        )

        turn_domain = v.get("QUFABRIC_TURN_DOMAIN") or domain
        self.hostname("QUFABRIC_TURN_DOMAIN", v.get("QUFABRIC_TURN_DOMAIN", ""))
        turn_ip = v.get("QUFABRIC_TURN_EXTERNAL_IP", "")
        if turn_ip:
            self.turn_ip(turn_ip)
        self.turn_credentials()
        coturn_network = v.get("QFSTACK_COTURN_NETWORK") or (
            "bridge" if local else "host"
        )
        if coturn_network not in ("host", "bridge"):
            self.error(
                "QFSTACK_COTURN_NETWORK",
                f"is {coturn_network!r}.",
                "use host (public servers) or bridge (local stacks).",
            )
        if coturn_network == "bridge" and "QUFABRIC_TURN_MAX_PORT" not in v:
            # Docker publishes each bridged port with its own proxy: keep the
            # relay range of a local stack small unless asked otherwise.
            turn_max = min(turn_max, turn_min + 9)

        store_engine = self.choice("QUFABRIC_STORE_CONFIG_ENGINE", STORE_ENGINES)
        if store_engine in ("postgres", "mysql"):
            dsn = f"QUFABRIC_STORE_ENGINE_{store_engine.upper()}_DSN"
            if not v.get(dsn):
                self.error(
                    dsn,
                    f"is required when the store engine is {store_engine}.",
                    f"set {dsn} to the database's connection string.",
                )

        self.hostname("QUFABRIC_MGMT_DNS_DOMAIN", self.raw("QUFABRIC_MGMT_DNS_DOMAIN"))
        self.encryption_keys(bundled)
        ca_bundle = self.ca_bundle()
        scheme = "http" if local else "https"
        letsencrypt = "none" if (local or disable_le) else domain
        email = v.get("QUFABRIC_LETSENCRYPT_EMAIL", "")
        if email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            self.error(
                "QUFABRIC_LETSENCRYPT_EMAIL",
                f"is {email!r}, not an e-mail address.",
                "give an address like admin@example.com.",
            )
        elif letsencrypt != "none" and not email:
            self.warn(
                "QUFABRIC_LETSENCRYPT_EMAIL",
                "is empty; Let's Encrypt will not send expiry notices.",
                "set it to an address you read, or disable Let's Encrypt.",
            )

        if any(f.level == "error" for f in self.findings):
            return None
        return Config(
            directory=directory,
            values=dict(v),
            project=self.project(directory),
            domain=domain,
            local=local,
            bind_address=bind_address,
            bundled_pocketid=bundled,
            configuration_endpoint=endpoint,
            authority=authority,
            internal_configuration_endpoint=internal_endpoint,
            client_id=client_id,
            audience=audience,
            scopes=scopes,
            redirect_uri=self.raw("QUFABRIC_AUTH_REDIRECT_URI"),
            silent_redirect_uri=self.raw("QUFABRIC_AUTH_SILENT_REDIRECT_URI"),
            use_id_token=token_source == "idToken",
            use_auth0=use_auth0,
            device_provider=device_provider,
            device_client_id=device_client_id or client_id,
            device_audience=v.get("QUFABRIC_AUTH_DEVICE_AUTH_AUDIENCE") or audience,
            device_scope=device_scope,
            device_use_id_token=use_id_token_device,
            idp_manager=idp_manager,
            idp_extra=idp_extra,
            pkce_ports=ports,
            dashboard_audience=audience if use_audience else "none",
            mgmt_api_port=mgmt_port,
            mgmt_endpoint=f"{scheme}://{domain}:{mgmt_port}",
            signal_port=signal_port,
            signal_proto="http",
            relay_port=relay_port,
            relay_endpoint=f"rel://{domain}:{relay_port}",
            dashboard_http_port=http_port,
            dashboard_https_port=https_port,
            turn_domain=turn_domain,
            turn_external_ip=turn_ip,
            turn_user=self.raw("QUFABRIC_TURN_USER"),
            turn_port=turn_port,
            turn_min_port=turn_min,
            turn_max_port=turn_max,
            coturn_network=coturn_network,
            letsencrypt_domain=letsencrypt,
            store_engine=store_engine,
            pocketid_port=pocketid_port,
            pocketid_url=pocketid_url,
            ca_bundle=ca_bundle,
            images=self.images(),
        )

    def identity_provider(self, bundled: bool, pocketid_url: str) -> tuple[str, str]:
        name = "QUFABRIC_AUTH_OIDC_CONFIGURATION_ENDPOINT"
        endpoint = self.values.get(name, "")
        if bundled:
            if endpoint and endpoint != pocketid_url + WELL_KNOWN:
                self.error(
                    name,
                    f"is {endpoint!r}, but the bundled PocketID serves "
                    f"{pocketid_url + WELL_KNOWN}.",
                    f"clear {name} (qfstack derives it) or set QFSTACK_POCKETID_URL.",
                )
            return pocketid_url + WELL_KNOWN, f"http://pocketid:1411{WELL_KNOWN}"
        endpoint = self.required(name)
        if not endpoint or not self.url(name, endpoint):
            return "", ""  # nothing derived from it is worth a second finding
        if not endpoint.endswith(WELL_KNOWN):
            self.error(
                name,
                f"is {endpoint!r}; it must end with {WELL_KNOWN}.",
                f"use https://<pocketid host>{WELL_KNOWN}.",
            )
        elif endpoint.endswith("/" + WELL_KNOWN):
            self.error(
                name,
                "has a double slash before /.well-known; the issuer "
                "would end with '/' and not match PocketID's.",
                "remove the slash before /.well-known.",
            )
        host = urlsplit(endpoint).hostname or ""
        if urlsplit(endpoint).scheme == "http" and not _is_loopback(host):
            self.error(
                name,
                f"uses http:// for the non-local host {host}; tokens and "
                "keys would travel unencrypted.",
                "serve PocketID over https and use an https:// URL.",
            )
        elif _is_loopback(host):
            self.warn(
                name,
                f"points at {host}, which inside the management container is "
                "the container itself; management fetches this URL when it "
                "starts and exits without an answer.",
                "use a name the containers can resolve, or run PocketID in "
                "the stack with QFSTACK_BUNDLED_POCKETID=true.",
            )
        return endpoint, endpoint

    def idp_manager(
        self, manager: str, bundled: bool, authority: str, pocketid_url: str
    ) -> dict[str, str]:
        extra = {
            _extra_key(name[len(EXTRA_PREFIX) :]): value
            for name, value in self.values.items()
            if name.startswith(EXTRA_PREFIX)
        }
        if manager != "pocketid":
            return extra
        if bundled:
            extra.setdefault("ManagementEndpoint", "http://pocketid:1411")
            return extra
        endpoint_var = EXTRA_PREFIX + "MANAGEMENT_ENDPOINT"
        endpoint = self.required(endpoint_var, " with QUFABRIC_MGMT_IDP=pocketid")
        self.required(EXTRA_PREFIX + "API_TOKEN", " with QUFABRIC_MGMT_IDP=pocketid")
        valid = endpoint and self.url(endpoint_var, endpoint, path_allowed=False)
        host = urlsplit(endpoint).hostname or ""
        if valid and urlsplit(endpoint).scheme == "http" and not _is_loopback(host):
            self.error(
                endpoint_var,
                f"uses http:// for the non-local host {host}; the PocketID API "
                "key would travel unencrypted.",
                "use PocketID's https:// base URL.",
            )
        elif valid and authority and _origin(endpoint) != _origin(authority):
            self.warn(
                endpoint_var,
                f"is {endpoint!r} but the identity provider is at "
                f"{authority!r}; management calls PocketID's API there.",
                "use the PocketID base URL of the configuration endpoint.",
            )
        return extra

    def scopes(self, name: str, scopes: str) -> None:
        words = scopes.split()
        if "openid" not in words:
            self.error(
                name,
                f"is {scopes!r} and lacks 'openid'.",
                'add openid: "openid profile email groups".',
            )
        elif "groups" not in words:
            self.warn(
                name,
                f"is {scopes!r} and lacks 'groups'; QuFabric gets no group claims.",
                "add groups to the scopes.",
            )

    def pkce_ports(self) -> tuple[int, ...]:
        name = "QUFABRIC_AUTH_PKCE_REDIRECT_URL_PORTS"
        raw = self.raw(name)
        ports: list[int] = []
        for item in raw.replace(" ", "").split(","):
            if not item.isdigit() or not 0 < int(item) < 65536:
                self.error(
                    name,
                    f"has {item!r}, not a port number.",
                    "give comma-separated ports, e.g. 53000.",
                )
                continue
            ports.append(int(item))
        return tuple(ports)

    def port_clashes(self, ports: Mapping[str, int]) -> None:
        seen: dict[int, str] = {}
        for name, port in ports.items():
            if port and port in seen:
                self.error(
                    name,
                    f"uses port {port}, like {seen[port]}.",
                    "give each published port its own number.",
                )
            seen.setdefault(port, name)

    def turn_ip(self, value: str) -> None:
        name = "QUFABRIC_TURN_EXTERNAL_IP"
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            self.error(
                name,
                f"is {value!r}, which is not an IP address (a host name or a typo?).",
                "give the public IPv4 or IPv6 address.",
            )
            return
        if address.is_unspecified or address.is_multicast or address.is_loopback:
            self.error(
                name,
                f"is {value}, which peers cannot reach (unspecified, "
                "loopback or multicast).",
                "give the host's public address.",
            )
        elif address.is_private:
            self.warn(
                name,
                f"is {value}, a private address; peers outside that "
                "network cannot reach TURN.",
                "give the public address.",
            )

    def turn_credentials(self) -> None:
        user = self.raw("QUFABRIC_TURN_USER")
        if not user or ":" in user or any(c.isspace() for c in user):
            self.error(
                "QUFABRIC_TURN_USER",
                f"is {user!r}; coturn's user=NAME:PASSWORD line needs a name "
                "without ':' or spaces.",
                "use a plain name such as self.",
            )
        password = self.values.get("QUFABRIC_TURN_PASSWORD", "")
        if any(c.isspace() for c in password):
            self.error(
                "QUFABRIC_TURN_PASSWORD",
                "contains white space, which coturn's user= line cannot hold.",
                "remove it from setup.env; qfstack then generates one.",
            )

    def encryption_keys(self, bundled: bool) -> None:
        name = "QUFABRIC_DATASTORE_ENCRYPTION_KEY"
        key = self.values.get(name, "")
        if key and _base64_length(key) not in (16, 24, 32):
            self.error(
                name,
                "is not the base64 encoding of a 16, 24 or 32 byte key; "
                "management cannot encrypt its store with it.",
                f"remove {name} from setup.env; qfstack generates one once and "
                "keeps it in secrets.env.",
            )
        if not bundled:
            return
        for name, what in (
            ("QFSTACK_POCKETID_ENCRYPTION_KEY", "bytes"),
            ("QFSTACK_POCKETID_STATIC_API_KEY", "characters"),
        ):
            value = self.values.get(name, "")
            if value and len(value) < 16:
                self.error(
                    name,
                    f"is shorter than the 16 {what} PocketID requires.",
                    f"remove {name}; qfstack generates one once.",
                )

    def ca_bundle(self) -> Path | None:
        value = self.values.get("QFSTACK_CA_BUNDLE", "")
        if not value:
            return None
        path = Path(value).expanduser()
        if not path.is_file():
            self.error(
                "QFSTACK_CA_BUNDLE",
                f"names {value}, which is not a file.",
                "give the path of a PEM file with the CA certificates.",
            )
            return None
        return path.resolve()

    def project(self, directory: Path) -> str:
        name = self.values.get("QFSTACK_PROJECT") or directory.name
        project = re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("-_")
        if not project:
            self.error(
                "QFSTACK_PROJECT",
                f"cannot make a project name of {name!r}.",
                "set QFSTACK_PROJECT to lower-case letters and digits.",
            )
        return project

    def images(self) -> Images:
        registry = self.values.get("QFSTACK_IMAGE_REGISTRY", "").strip("/")

        def ref(image_var: str, tag_var: str) -> str:
            image, tag = self.raw(image_var), self.raw(tag_var)
            if registry:
                image = f"{registry}/{_without_registry(image)}"
            last = image.rsplit("/", 1)[-1]
            return image if ("@" in image or ":" in last) else f"{image}:{tag}"

        return Images(
            dashboard=ref("QUFABRIC_DASHBOARD_IMAGE", "QUFABRIC_DASHBOARD_TAG"),
            signal=ref("QUFABRIC_SIGNAL_IMAGE", "QUFABRIC_SIGNAL_TAG"),
            relay=ref("QUFABRIC_RELAY_IMAGE", "QUFABRIC_RELAY_TAG"),
            management=ref("QUFABRIC_MANAGEMENT_IMAGE", "QUFABRIC_MANAGEMENT_TAG"),
            coturn=ref("COTURN_IMAGE", "COTURN_TAG"),
            pocketid=ref("QFSTACK_POCKETID_IMAGE", "QFSTACK_POCKETID_TAG"),
        )


def _shell_overrides(
    values: Mapping[str, str], environ: Mapping[str, str]
) -> list[Finding]:
    """Warn about exported variables that differ from setup.env.

    qfstack reads only setup.env, but `docker compose` and scripts that the
    operator runs by hand read the shell: a stale export is worth naming.
    """
    findings = []
    for name, exported in sorted(environ.items()):
        if name not in VARIABLES and not name.startswith(EXTRA_PREFIX):
            continue
        value = values.get(name)
        if value is None:
            default = VARIABLES[name].default if name in VARIABLES else ""
            if exported == default:
                continue
            used = f"the default {default!r}" if default else "no value"
            shown = "a value" if is_secret(name) else repr(exported)
            message = (
                f"the shell exports {shown}, but {SETUP_ENV} does not set it; "
                f"qfstack ignores the shell and uses {used}."
            )
            fix = f"set {name} in {SETUP_ENV}, or `unset {name}`."
        elif exported != value:
            shown = "a different value" if is_secret(name) else repr(exported)
            message = (
                f"the shell exports {shown}, which differs from {SETUP_ENV}; "
                f"qfstack uses {SETUP_ENV}."
            )
            fix = f"`unset {name}` so other tools do not pick up the stale value."
        else:
            continue
        findings.append(Finding("warning", name, message, fix))
    return findings


def _without_registry(image: str) -> str:
    """`ghcr.io/pocket-id/pocket-id` -> `pocket-id/pocket-id` (for a mirror)."""
    first, sep, rest = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return rest
    return image


def _extra_key(suffix: str) -> str:
    return "".join(part.capitalize() for part in suffix.lower().split("_") if part)


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of a URL, as browsers compare origins."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _shown(name: str, value: str) -> str:
    """A value as a message may show it: secrets never appear."""
    return "a secret value" if is_secret(name) else repr(value)


def _base64_length(value: str) -> int:
    """The decoded length of standard base64 `value`, or -1 when invalid."""
    try:
        return len(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return -1


def _parse_bool(value: str) -> bool | None:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    return None


def is_ip(value: str) -> bool:
    """Whether `value` is an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_hostname(value: str, *, url: bool = False) -> bool:
    """A host name or IP address; in a URL, Docker's names with '_' pass too."""
    if is_ip(value):
        return True
    chars = "a-z0-9_-" if url else "a-z0-9-"
    label = rf"(?!-)[{chars}]{{1,63}}(?<!-)"
    return re.fullmatch(rf"{label}(\.{label})*", value.lower()) is not None
