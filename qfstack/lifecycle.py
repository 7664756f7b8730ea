"""The operations behind `up`, `status` and `down`, as plain functions.

They take a Config and HttpSettings, return results and raise qfstack errors;
the CLI decides how to show them.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from qfstack.config import SERVICES, VARIABLES, Config, is_secret
from qfstack.doctor import pocketid_verdicts
from qfstack.errors import (
    ConfigError,
    Finding,
    IdentityProviderError,
    Interrupted,
    NotReadyError,
    Pending,
    PreflightError,
    QfstackError,
)
from qfstack.files import write_atomic
from qfstack.oidc import (
    HttpSettings,
    ProviderReport,
    effective_settings,
    fetch_discovery,
    fetch_jwks,
    http_client,
)
from qfstack.pocketid import PocketIdError
from qfstack.preflight import preflight
from qfstack.provision import BundledSetup, SignInLink, prepare_bundled, sign_in_link
from qfstack.readiness import (
    Check,
    CheckResult,
    IdentityProviderCheck,
    Progress,
    ServicesCheck,
    wait_until_ready,
)
from qfstack.render import SECRET_ENV_KEYS, Rendered, render, render_bootstrap
from qfstack.render import artifacts as render_artifacts
from qfstack.render import write as write_artifacts
from qfstack.secrets import (
    plan_secrets,
    read_stored,
    redact,
    written_encryption_key,
)
from qfstack.stack import ServiceState, Stack

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"


@dataclass
class UpResult:
    project: str
    rendered: Rendered
    checks: list[CheckResult]
    seconds: float
    created: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    # What `up` did in the bundled PocketID: client, group, first admin.
    pocketid: BundledSetup | None = None
    # The first admin's one-time sign-in link, when `up` created the admin.
    sign_in: SignInLink | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        provisioned = self.pocketid is not None and self.pocketid.changed
        return bool(
            self.rendered.changed or self.created or self.recreated or provisioned
        )


def up(
    config: Config,
    settings: HttpSettings,
    *,
    timeout: float,
    on_progress: Progress | None = None,
) -> UpResult:
    """Render, start, and wait until the identity provider and every service
    are ready; only then mark the stack healthy.

    A bundled PocketID is started first and, once ready, provisioned with
    its static API key (QuFabric's client, the user group, the first admin).
    PocketID's API key and QuFabric's client are then checked before any
    QuFabric service starts: a fault ends `up` with NotReadyError (exit 3).
    """
    start = time.monotonic()
    deadline = start + timeout
    stack = Stack(config)
    secrets = plan_secrets(config)
    _refuse_new_keys_for_old_data(stack, secrets.generated)
    secrets.save()
    config = config.with_secrets(secrets.values)
    existing = stack.ps()
    before = {s.service: s.container_id for s in existing}
    findings = preflight(config, {pub for s in existing for pub in s.published})
    for finding in findings:
        if finding.level != "error":
            logger.warning("preflight: %s", finding)
    if any(f.level == "error" for f in findings):
        raise PreflightError([f for f in findings if f.level == "error"])
    _clear_state(config)
    render_bootstrap(config)

    stage = "waiting for the identity provider"
    try:
        with http_client(effective_settings(config, settings)) as client:
            idp = IdentityProviderCheck(config, client)
            if config.bundled_pocketid:
                stage = "starting the bundled PocketID"
                stack.up(["pocketid"], no_deps=True)
                stage = "waiting for the bundled PocketID"
            first: list[Check] = [idp]
            if config.bundled_pocketid:
                # A PocketID that crashes (a wrong key, a bad setting) is named
                # at once instead of being waited for until the deadline.
                first.append(ServicesCheck(stack, ["pocketid"]))
            wait_until_ready(first, _left(deadline), on_progress=on_progress)
            assert idp.discovery is not None
            bundled = None
            if config.bundled_pocketid:
                stage = "provisioning the bundled PocketID"
                bundled = _prepare_bundled(config, client)
            stage = "checking PocketID's API key and OIDC client"
            api_check = _pocketid_check(config, client, idp.report)
            rendered = render(config, idp.discovery)

            stage = "starting the services"
            stack.up()
            after = {s.service: s.container_id for s in stack.ps()}
            stage = "waiting for the services to become healthy"
            services = ServicesCheck(stack, stack.services())
            checks = wait_until_ready(
                [idp, services], _left(deadline), on_progress=on_progress
            )
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted while {stage}",
            details=[
                "Files are intact; containers already started keep running.",
                "Run `qfstack status` to see them, `qfstack up` to continue, or "
                "`qfstack down` to stop them.",
            ],
        ) from None

    seconds = time.monotonic() - start
    _write_state(config, {"healthy": True, "since": _now(), "seconds": seconds})
    result = UpResult(
        config.project,
        rendered,
        [*checks[:1], *([api_check] if api_check else []), *checks[1:]],
        seconds,
        created=sorted(name for name in after if name not in before),
        recreated=sorted(
            name
            for name, cid in after.items()
            if name in before and before[name] != cid
        ),
        pocketid=bundled,
    )
    if bundled is not None and bundled.admin is not None:
        try:
            result.sign_in = sign_in_link(config, bundled.admin.username)
        except QfstackError as exc:
            result.notes.append(
                f"no sign-in link for {bundled.admin.username!r}: {exc.message}; "
                "`qfstack pocketid sign-in-link` makes one."
            )
    return result


def _prepare_bundled(config: Config, client: httpx.Client) -> BundledSetup:
    """Provision the bundled PocketID; a refusal ends `up` (exit 3)."""
    try:
        return prepare_bundled(config, client)
    except PocketIdError as exc:
        raise NotReadyError(
            f"the bundled PocketID could not be provisioned ({exc.check})",
            [Pending(f"pocketid {exc.check}", exc.detail, _fix(exc.fix))],
        ) from None


def _pocketid_check(
    config: Config, client: httpx.Client, report: ProviderReport | None
) -> CheckResult | None:
    """PocketID's API key and QuFabric's client, as `doctor` checks them
    (two API calls); a failed check ends `up` (exit 3) naming it and its fix."""
    verdicts, skipped = pocketid_verdicts(config, client, report, thorough=False)
    for note in skipped:
        logger.info("not checked: %s", note)
    if not verdicts:
        return None
    failures = [v for v in verdicts if v.level == "fail"]
    if failures:
        raise NotReadyError(
            f"{failures[0].title} failed; QuFabric's services were not started",
            [
                Pending(v.title, v.summary, [*v.evidence, *_fix(v.fix)])
                for v in failures
            ],
        )
    warnings = [v.line() for v in verdicts if v.level == "warn"]
    passed = sum(v.level == "pass" for v in verdicts)
    detail = f"API key and client {config.client_id}: {passed} check(s) passed"
    if warnings:
        detail += f", {len(warnings)} warning(s)"
    return CheckResult("pocketid api", True, detail, evidence=warnings)


def _fix(fix: str) -> list[str]:
    return [f"Fix: {fix}"] if fix else []


def render_stack(config: Config, settings: HttpSettings) -> Rendered:
    """Fetch and check the discovery document once, then write artifacts/.

    Nothing is written, not even a generated secret, unless every file can be
    rendered.
    """
    secrets = plan_secrets(config)
    config = config.with_secrets(secrets.values)
    with http_client(effective_settings(config, settings)) as client:
        try:
            discovery = fetch_discovery(
                client, config.configuration_endpoint, config.authority
            )
            fetch_jwks(client, discovery.jwks_uri)
        except IdentityProviderError as exc:
            if config.bundled_pocketid:
                exc.details.append(
                    "The bundled PocketID answers only while the stack runs: "
                    "`qfstack up` renders and starts it."
                )
            raise
    files = render_artifacts(config, discovery)
    secrets.save()
    return write_artifacts(config, files)


def compose_config(config: Config, *, show_secrets: bool = False) -> str:
    """The merged Compose configuration, as `docker compose config` prints it,
    with every secret masked unless `show_secrets`."""
    text = Stack(config).config_yaml()
    if show_secrets:
        return text
    return redact(text, secret_values(config), keys=SECRET_ENV_KEYS)


def secret_values(config: Config) -> dict[str, str]:
    """Every secret value the configuration knows, for masking output."""
    known = {**config.values, **config.secrets}
    known.update(read_stored(config.directory))
    known["DataStoreEncryptionKey"] = written_encryption_key(config.directory)
    return {
        name: value
        for name, value in known.items()
        if value
        and (
            is_secret(name)
            or (
                name not in VARIABLES
                and name.upper().endswith(("TOKEN", "SECRET", "PASSWORD", "KEY"))
            )
        )
    }


# Which generated key encrypts which volume's data.
_KEY_OF_VOLUME = {
    "management": "QUFABRIC_DATASTORE_ENCRYPTION_KEY",
    "pocketid-data": "QFSTACK_POCKETID_ENCRYPTION_KEY",
}


def _refuse_new_keys_for_old_data(stack: Stack, generated: list[str]) -> None:
    """A new encryption key for a volume that already holds data loses it."""
    if not any(name in generated for name in _KEY_OF_VOLUME.values()):
        return
    existing = set(stack.volumes())
    findings = [
        Finding(
            "error",
            key,
            f"would be generated anew, but the volume {stack.volume(volume)} "
            "already holds data encrypted with the previous key (secrets.env "
            "is missing or lost it).",
            "restore secrets.env (or the whole stack with `qfstack restore`) "
            "from a backup, or set the key in setup.env; to start over instead, "
            "remove the data with `qfstack down --volumes`.",
        )
        for volume, key in _KEY_OF_VOLUME.items()
        if key in generated and stack.volume(volume) in existing
    ]
    if findings:
        raise ConfigError("refusing to replace an encryption key in use", findings)


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


@dataclass
class Status:
    project: str
    services: list[ServiceState]
    missing: list[str]
    identity_provider: CheckResult
    issuer: str
    urls: dict[str, str] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return (
            bool(self.services)
            and not self.missing
            and all(s.ready for s in self.services)
            and self.identity_provider.ok
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "healthy": self.healthy,
            "services": [s.as_dict() for s in self.services]
            + [
                {
                    "service": name,
                    "state": "missing",
                    "health": "none",
                    "status": "",
                    "ports": [],
                }
                for name in self.missing
            ],
            "identity_provider": {
                "ready": self.identity_provider.ok,
                "issuer": self.issuer,
                "detail": self.identity_provider.detail,
            },
            "urls": self.urls,
        }


def expected_services(config: Config) -> list[str]:
    return [*SERVICES, *(["pocketid"] if config.bundled_pocketid else [])]


def status(config: Config, settings: HttpSettings) -> Status:
    """The stack's state now: one `docker compose ps`, one provider check."""
    stack = Stack(config)
    states = sorted(stack.ps(), key=lambda s: s.service)
    present = {s.service for s in states}
    missing = [name for name in expected_services(config) if name not in present]
    with http_client(effective_settings(config, settings)) as client:
        idp = IdentityProviderCheck(config, client)
        result = idp.check()
    issuer = idp.discovery.issuer if idp.discovery else config.authority
    return Status(config.project, states, missing, result, issuer, urls(config))


def urls(config: Config) -> dict[str, str]:
    scheme = "http" if config.local else "https"
    port = config.dashboard_http_port if config.local else config.dashboard_https_port
    default = 80 if config.local else 443
    dashboard = f"{scheme}://{config.domain}" + ("" if port == default else f":{port}")
    result = {
        "dashboard": dashboard,
        "management": config.mgmt_endpoint,
        "identity_provider": config.authority,
    }
    return result


def down(config: Config, *, volumes: bool = False) -> None:
    """Stop and remove the containers; volumes only when asked."""
    Stack(config).down(volumes=volumes)
    _clear_state(config)


def _write_state(config: Config, state: dict[str, Any]) -> None:
    state = {"project": config.project, **state}
    write_atomic(config.artifacts / STATE_FILE, json.dumps(state, indent=2) + "\n")


def _clear_state(config: Config) -> None:
    path = config.artifacts / STATE_FILE
    if path.exists():
        write_atomic(
            path, json.dumps({"project": config.project, "healthy": False}) + "\n"
        )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def restart(
    config: Config,
    settings: HttpSettings,
    services: list[str],
    *,
    timeout: float,
    on_progress: Progress | None = None,
) -> list[CheckResult]:
    """Restart services (all when none are named) and wait until healthy."""
    stack = Stack(config)
    stack.restart(services)
    with http_client(effective_settings(config, settings)) as client:
        checks: list[Check] = [
            IdentityProviderCheck(config, client),
            ServicesCheck(stack, stack.services()),
        ]
        return wait_until_ready(checks, timeout, on_progress=on_progress)


# Volumes whose loss loses data; the others (certificates, signal state) are
# recreated by the services themselves.
DATA_VOLUMES = ("management",)
BACKED_UP_FILES = (
    "setup.env",
    "secrets.env",
    "compose.override.yml",
    "compose.override.yaml",
)


def data_volumes(config: Config) -> list[str]:
    return [*DATA_VOLUMES, *(["pocketid-data"] if config.bundled_pocketid else [])]


@dataclass
class BackupResult:
    archive: Path
    volumes: list[str]
    files: list[str]
    stopped_seconds: float


def backup(config: Config, archive: Path | None = None) -> BackupResult:
    """Archive setup.env, secrets, artifacts and the data volumes into one file.

    Services that write the volumes are stopped only while their volume is
    copied, then started again.
    """
    stack = Stack(config)
    if archive is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        archive = config.directory / "backups" / f"{config.project}-{stamp}.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    running = {s.service for s in stack.ps() if s.state == "running"}
    volumes = data_volumes(config)
    writers = {"management": "management", "pocketid-data": "pocketid"}
    image = config.images.management
    files: list[str] = []

    with tempfile.TemporaryDirectory(dir=archive.parent) as tmp:
        stopped = 0.0
        dumps = {}
        for volume in volumes:
            service = writers[volume]
            dump = Path(tmp) / f"{volume}.tar"
            began = time.monotonic()
            if service in running:
                stack.stop([service])
            try:
                stack.export_volume(volume, image, dump)
            finally:
                if service in running:
                    stack.start([service])
                stopped += time.monotonic() - began
            dumps[volume] = dump

        partial = Path(tmp) / "archive.tar.gz"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for name in BACKED_UP_FILES:
                path = config.directory / name
                if path.is_file():
                    tar.add(path, arcname=name)
                    files.append(name)
            if config.artifacts.is_dir():
                for path in sorted(config.artifacts.iterdir()):
                    if path.is_file():
                        tar.add(path, arcname=f"artifacts/{path.name}")
                        files.append(f"artifacts/{path.name}")
            for volume, dump in dumps.items():
                tar.add(dump, arcname=f"volumes/{volume}.tar")
            manifest = json.dumps(
                {
                    "project": config.project,
                    "created": _now(),
                    "volumes": volumes,
                    "files": files,
                }
            ).encode()
            info = tarfile.TarInfo("qfstack-backup.json")
            info.size = len(manifest)
            tar.addfile(info, io.BytesIO(manifest))
        os.replace(partial, archive)
    return BackupResult(archive, volumes, files, stopped)


def read_backup(archive: Path) -> dict[str, Any]:
    """The manifest of a qfstack backup; raises when it is not one."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile("qfstack-backup.json")
            if member is None:
                raise KeyError("qfstack-backup.json")
            manifest = json.loads(member.read())
    except (OSError, KeyError, tarfile.TarError, ValueError) as exc:
        raise QfstackError(
            f"{archive} is not a qfstack backup ({exc})",
            details=["Give an archive written by `qfstack backup`."],
        ) from None
    if not isinstance(manifest, dict):
        raise QfstackError(f"{archive} has an invalid manifest")
    return manifest


def restore(
    directory: Path,
    archive: Path,
    load: Callable[[Path], Config],
) -> Config:
    """Put files and volumes of `archive` back; the stack is left stopped.

    Files the archive replaces are first copied to `<name>.before-restore`.
    """
    manifest = read_backup(archive)
    with tarfile.open(archive, "r:gz") as tar:
        for name in manifest.get("files", []):
            if not _safe_member(name):
                raise QfstackError(f"{archive} holds an unsafe path: {name!r}")
            member = tar.extractfile(name)
            if member is None:
                continue
            target = directory / name
            if target.exists():
                shutil.copy2(target, target.with_name(target.name + ".before-restore"))
            private = name in ("setup.env", "secrets.env") or name.endswith(
                (".json", ".env", ".conf")
            )
            mode = 0o600 if private and name != "artifacts/discovery.json" else 0o644
            write_atomic(target, member.read().decode(), mode=mode)
        config = load(directory)
        stack = Stack(config)
        stack.down()
        stack.create()
        for volume in manifest.get("volumes", []):
            member = tar.extractfile(f"volumes/{volume}.tar")
            if member is None:
                raise QfstackError(f"{archive} lacks the volume {volume}")
            with tempfile.NamedTemporaryFile(dir=directory, suffix=".tar") as dump:
                shutil.copyfileobj(member, dump)
                dump.flush()
                stack.import_volume(volume, config.images.management, Path(dump.name))
    return config


def _safe_member(name: str) -> bool:
    path = Path(name)
    return not path.is_absolute() and ".." not in path.parts


@dataclass
class UpgradeResult:
    backup: BackupResult
    before: dict[str, str]
    after: dict[str, str]
    up: UpResult


def upgrade(
    config: Config,
    settings: HttpSettings,
    *,
    timeout: float,
    on_progress: Progress | None = None,
) -> UpgradeResult:
    """Back up, pull the configured tags, recreate and wait for health."""
    stack = Stack(config)
    references = sorted(set(stack.images().values()))
    before = stack.image_ids(references)
    saved = backup(config)
    stack.pull()
    after = stack.image_ids(references)
    try:
        result = up(config, settings, timeout=timeout, on_progress=on_progress)
    except QfstackError as exc:
        exc.details += rollback_advice(saved.archive, before, after)
        raise
    return UpgradeResult(saved, before, after, result)


def rollback_advice(
    archive: Path, before: dict[str, str], after: dict[str, str]
) -> list[str]:
    lines = [
        f"To roll back: `qfstack restore {archive}`, then pin the previous images:"
    ]
    for reference, image_id in sorted(before.items()):
        if after.get(reference) != image_id:
            lines.append(f"  {reference} was {image_id[:19]}")
    return lines
