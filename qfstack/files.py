"""Writing files so that a crash never leaves half of one behind."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from qfstack.errors import ConfigError, Finding, QfstackError


def write_atomic(path: Path, text: str, *, mode: int = 0o644) -> bool:
    """Write `text` to `path` through a temporary file and a rename.

    Returns False, and touches nothing, when the file already holds `text`
    with `mode`.
    """
    data = text.encode()
    try:
        if path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)
    return True


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def format_env(values: Mapping[str, str], header: str = "") -> str:
    """An env file both python-dotenv and Compose read back verbatim.

    Values are single-quoted, which both take literally (no `$` expansion).
    """
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for name, value in values.items():
        if "'" in value or "\n" in value:
            raise ConfigError(
                f"{name} cannot be written",
                [
                    Finding(
                        "error",
                        name,
                        "contains a single quote or a line break.",
                        "remove that character from the value.",
                    )
                ],
            )
        lines.append(f"{name}='{value}'")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """Lock the stack directory: one changing qfstack command at a time.

    The lock is taken on the directory itself, so it leaves no file behind
    and dies with the process that held it.
    """
    if not directory.is_dir():
        yield  # nothing there to protect; the command says what is missing
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise QfstackError(
                f"another qfstack command is changing {directory.resolve()}",
                details=["Wait for it to finish, then run this again."],
            ) from None
        yield
    finally:
        os.close(fd)
