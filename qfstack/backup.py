"""Backups, restores and upgrades: the operations that move data.

`backup` archives setup.env, secrets, artifacts and the data volumes into one
file; `restore` puts an archive back; `upgrade` backs up, pulls and
recreates, and says how to roll back when that fails.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from qfstack.config import Config, build_config
from qfstack.errors import ConfigError, QfstackError
from qfstack.files import write_atomic
from qfstack.lifecycle import UpResult, now, owned_containers, up
from qfstack.oidc import HttpSettings
from qfstack.readiness import Progress, ServicesCheck, wait_until_ready
from qfstack.stack import Stack

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
    if archive.exists():
        raise QfstackError(
            f"{archive} already exists",
            details=["Give another path with -o, or move the old archive away."],
        )
    archive.parent.mkdir(parents=True, exist_ok=True)
    running = {s.service for s in owned_containers(stack) if s.state == "running"}
    volumes = data_volumes(config)
    writers = {"management": "management", "pocketid-data": "pocketid"}
    # The image that runs management (compose.override.yml may replace it)
    # has the tar the copy needs.
    image = stack.images().get("management") or config.images.management
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
                    # Back only once it is healthy again, so a backup (and
                    # the upgrade that makes one) leaves the stack as it was.
                    wait_until_ready([ServicesCheck(stack, [service])], 120)
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
                    # Skip copies left by restore and half-written files.
                    leftover = path.name.endswith((".before-restore", ".tmp"))
                    if path.is_file() and not leftover:
                        tar.add(path, arcname=f"artifacts/{path.name}")
                        files.append(f"artifacts/{path.name}")
            for volume, dump in dumps.items():
                tar.add(dump, arcname=f"volumes/{volume}.tar")
            manifest = json.dumps(
                {
                    "project": config.project,
                    "created": now(),
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
    # Refuse before replacing anything when another directory owns the
    # project, whether it is named by the current setup.env or the archive's.
    for config in (_loaded(load, directory), _archived_config(archive, directory)):
        if config is not None:
            owned_containers(Stack(config))
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
        owned_containers(stack)
        image = stack.images().get("management") or config.images.management
        stack.down()
        stack.create()
        for volume in manifest.get("volumes", []):
            member = tar.extractfile(f"volumes/{volume}.tar")
            if member is None:
                raise QfstackError(f"{archive} lacks the volume {volume}")
            with tempfile.NamedTemporaryFile(dir=directory, suffix=".tar") as dump:
                shutil.copyfileobj(member, dump)
                dump.flush()
                stack.import_volume(volume, image, Path(dump.name))
    return config


def _loaded(load: Callable[[Path], Config], directory: Path) -> Config | None:
    try:
        return load(directory)
    except ConfigError:
        return None  # a broken setup.env is what restore is for


def _archived_config(archive: Path, directory: Path) -> Config | None:
    """The configuration the archive's setup.env gives `directory`."""
    with tarfile.open(archive, "r:gz") as tar:
        try:
            member = tar.extractfile("setup.env")
        except KeyError:
            return None
        text = member.read().decode("utf-8-sig") if member else ""
    values = {k: v or "" for k, v in dotenv_values(stream=io.StringIO(text)).items()}
    try:
        return build_config(directory.resolve(), values, {})
    except ConfigError:
        return None


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
    try:
        stack.pull()
    except QfstackError as exc:
        exc.details += [
            f"Nothing was changed: the stack runs as before. A backup was written "
            f"to {saved.archive}.",
            "Check the image names and tags (QUFABRIC_*_TAG, QFSTACK_IMAGE_REGISTRY) "
            "and that the registry answers, then run `qfstack upgrade` again.",
        ]
        raise
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
