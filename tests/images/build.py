"""Build the local stand-in images that replace PocketID and QuFabric in tests.

The real images cannot be pulled where qfstack's tests run, so every image the
stack needs is built here from files in this directory:

    qfstack-standin/base:bookworm      Debian bookworm (minbase) with python3,
                                       python3-cryptography, netcat and bash,
                                       made by debootstrap and ``docker import``
    qfstack-standin/pocketid:dev       the PocketID emulator (``pocketid/``)
    qfstack-standin/<service>:dev      one QuFabric stand-in per service
                                       (``qufabric/``): management, signal,
                                       relay, dashboard, coturn

The base is built only when its tag is missing. Each service image carries the
label ``org.qfstack.standin.hash``, a digest of its build context, its build
arguments and the base image id; a build is skipped while an image with the
current digest exists, so editing a stand-in's source rebuilds it.

Errors: ``DockerError`` (a command failed; carries argv, return code, stderr)
and ``BuildError`` (anything else that stops a build), both ``RuntimeError``.

Run as a script: ``python3 tests/images/build.py [--force]``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

IMAGES_DIR = Path(__file__).resolve().parent
BASE_IMAGE = "qfstack-standin/base:bookworm"
HASH_LABEL = "org.qfstack.standin.hash"
BASE_SUITE = "bookworm"
# debootstrap does not resolve virtual packages, so python3-cryptography's
# dependency on the cffi backend API has to be named by its real package.
BASE_PACKAGES = (
    "python3",
    "python3-cryptography",
    "python3-cffi-backend",
    "netcat-openbsd",
    "ca-certificates",
)
BASE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    f"LABEL {HASH_LABEL}=base-{BASE_SUITE}",
)
LOCK_FILE = Path(tempfile.gettempdir()) / "qfstack-standin-build.lock"

# Files in a build context that never reach an image (see each .dockerignore).
IGNORED_NAMES = frozenset(
    {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
)
IGNORED_SUFFIXES = (".pyc", ".pyo")


class BuildError(RuntimeError):
    """A stand-in image could not be built."""


class DockerError(BuildError):
    """A docker (or debootstrap) command failed."""

    def __init__(
        self, argv: Sequence[str], returncode: int, stderr: str, stdout: str = ""
    ) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr
        # debootstrap reports on stdout; keep its tail when stderr says nothing.
        tail = "\n".join(stdout.strip().splitlines()[-30:])
        detail = stderr.strip() or tail or "(no output)"
        super().__init__(
            f"`{shlex.join(self.argv)}` exited with {returncode}:\n{detail}"
        )


@dataclass(frozen=True)
class ServiceImage:
    """One stand-in image built from a directory of this package."""

    name: str
    context: Path
    build_args: dict[str, str] = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return f"qfstack-standin/{self.name}:dev"


SERVICE_IMAGES = (
    ServiceImage("pocketid", IMAGES_DIR / "pocketid"),
    *(
        ServiceImage(name, IMAGES_DIR / "qufabric", {"SERVICE": name})
        for name in ("management", "signal", "relay", "dashboard", "coturn")
    ),
)


def _run(
    argv: Sequence[str],
    *,
    stdin: int | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run a command, return its stdout, raise DockerError when it fails."""
    logger.debug("running %s", shlex.join(argv))
    completed = subprocess.run(
        list(argv),
        stdin=stdin,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if completed.returncode != 0:
        raise DockerError(
            argv, completed.returncode, completed.stderr, completed.stdout
        )
    return completed.stdout


def image_id(tag: str) -> str | None:
    """The id of the local image called ``tag``, or None when there is none."""
    found = _run(["docker", "image", "ls", "--quiet", "--no-trunc", tag]).split()
    return found[0] if found else None


def _hash_of(image: str) -> str:
    """The source hash an image was built from ('' when it has none)."""
    template = f'{{{{ index .Config.Labels "{HASH_LABEL}" }}}}'
    return _run(["docker", "image", "inspect", "--format", template, image]).strip()


def _context_files(context: Path) -> Iterator[Path]:
    for path in sorted(context.rglob("*")):
        relative = path.relative_to(context)
        if any(part in IGNORED_NAMES for part in relative.parts):
            continue
        if path.is_file() and not path.name.endswith(IGNORED_SUFFIXES):
            yield path


def source_hash(image: ServiceImage, base_id: str) -> str:
    """Digest of everything that goes into ``image``: files, build args, base."""
    digest = hashlib.sha256()
    digest.update(f"{image.name}\0{base_id}\0".encode())
    for key, value in sorted(image.build_args.items()):
        digest.update(f"arg {key}={value}\0".encode())
    for path in _context_files(image.context):
        relative = path.relative_to(image.context).as_posix()
        mode = "x" if os.access(path, os.X_OK) else "-"
        digest.update(f"file {relative} {mode}\0".encode())
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


@contextmanager
def _build_lock() -> Iterator[None]:
    """Serialise builds between processes (parallel test runs share the engine)."""
    with open(LOCK_FILE, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _mounts_below(directory: Path) -> list[str]:
    """Mount points at or below ``directory``, deepest first."""
    prefix = str(directory.resolve())
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)


def _remove_rootfs(directory: Path) -> None:
    """Delete a debootstrap target, never following a mount left behind in it.

    A debootstrap that fails half-way can leave /proc, /sys or a bind mount of
    /dev mounted inside the target; deleting through them would reach the host.
    """
    for point in _mounts_below(directory):
        subprocess.run(["umount", point], capture_output=True, check=False)
    remaining = _mounts_below(directory)
    if remaining:
        raise BuildError(
            f"{directory} still has mounts ({', '.join(remaining)}); unmount them "
            "and delete the directory by hand"
        )
    shutil.rmtree(directory, ignore_errors=True)


def build_base() -> None:
    """Make ``BASE_IMAGE`` with debootstrap and ``docker import``."""
    if _debootstrap_path() is None:
        raise BuildError(
            "debootstrap is not installed; install it (apt-get install debootstrap) "
            f"to build {BASE_IMAGE}"
        )
    if os.geteuid() != 0:
        raise BuildError(f"building {BASE_IMAGE} with debootstrap needs root")

    workdir = Path(tempfile.mkdtemp(prefix="qfstack-standin-base-"))
    rootfs = workdir / "rootfs"
    try:
        _debootstrap(rootfs)
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / leftover).glob("*"):
                if path.is_file() and path.name != "lock":
                    path.unlink()
        for needed in ("bin/bash", "usr/bin/python3", "bin/nc"):
            if not os.path.lexists(rootfs / needed):
                raise BuildError(f"the debootstrap result has no /{needed}")

        _import_rootfs(rootfs)
    finally:
        _remove_rootfs(rootfs)
        shutil.rmtree(workdir, ignore_errors=True)


def _debootstrap_path() -> str | None:
    # /usr/sbin may be missing from a non-login root shell's PATH.
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which("debootstrap", path=search)


def _debootstrap(rootfs: Path) -> None:
    argv = [
        _debootstrap_path() or "debootstrap", "--variant=minbase",
        "--include=" + ",".join(BASE_PACKAGES),
        BASE_SUITE, str(rootfs),
    ]  # fmt: skip
    try:
        _run(argv)
    except DockerError as error:
        log = rootfs / "debootstrap" / "debootstrap.log"
        if not log.is_file():
            raise
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise BuildError(f"{error}\n--- end of debootstrap.log ---\n{tail}") from error


def _import_rootfs(rootfs: Path) -> None:
    """Stream ``tar -C rootfs -c .`` into ``docker import``."""
    tar_argv = ["tar", "-C", str(rootfs), "-c", "."]
    import_argv = ["docker", "import"]
    for change in BASE_CHANGES:
        import_argv += ["--change", change]
    import_argv += ["-", BASE_IMAGE]

    logger.debug("running %s | %s", shlex.join(tar_argv), shlex.join(import_argv))
    read_end, write_end = os.pipe()
    with tempfile.TemporaryFile() as tar_stderr:
        tar = subprocess.Popen(tar_argv, stdout=write_end, stderr=tar_stderr)
        os.close(write_end)
        try:
            _run(import_argv, stdin=read_end)
        finally:
            os.close(read_end)
            tar.wait()
        if tar.returncode != 0:
            tar_stderr.seek(0)
            message = tar_stderr.read().decode(errors="replace")
            raise DockerError(tar_argv, tar.returncode, message)


def build_service(image: ServiceImage, digest: str) -> None:
    """``docker build`` one service image with its hash label."""
    argv = ["docker", "build", "--quiet", "--tag", image.tag]
    argv += ["--label", f"{HASH_LABEL}={digest}"]
    argv += ["--build-arg", f"BASE_IMAGE={BASE_IMAGE}"]
    for key, value in sorted(image.build_args.items()):
        argv += ["--build-arg", f"{key}={value}"]
    argv.append(str(image.context))

    # The legacy builder is all a 20.10 engine without buildx offers; asking for
    # it explicitly keeps the result the same where buildx exists.
    _run(argv, env={**os.environ, "DOCKER_BUILDKIT": "0"})


def ensure_images(force: bool = False) -> dict[str, str]:
    """Build what is missing or stale; return the tag of each service image.

    ``force`` rebuilds everything, the debootstrap base included.
    """
    tags: dict[str, str] = {}
    with _build_lock():
        replaced: list[str] = []
        old_base = image_id(BASE_IMAGE)
        base_id = None if force else old_base
        if base_id is None:
            logger.info("building %s with debootstrap (about a minute)", BASE_IMAGE)
            started = time.monotonic()
            build_base()
            logger.info("built %s in %.0f s", BASE_IMAGE, time.monotonic() - started)
            base_id = image_id(BASE_IMAGE)
            if base_id is None:
                raise BuildError(f"{BASE_IMAGE} is missing right after its import")
        else:
            logger.info("reusing %s", BASE_IMAGE)

        for image in SERVICE_IMAGES:
            digest = source_hash(image, base_id)
            previous = image_id(image.tag)
            # Only the tagged image itself counts: an image built FROM a
            # stand-in inherits its hash label and must never be adopted.
            current = previous is not None and _hash_of(previous) == digest
            if force or not current:
                started = time.monotonic()
                build_service(image, digest)
                elapsed = time.monotonic() - started
                logger.info("built %s (%s) in %.1f s", image.tag, digest, elapsed)
            else:
                logger.info("reusing %s (%s)", image.tag, digest)
            tags[image.name] = image.tag
            if previous is not None and previous != image_id(image.tag):
                replaced.append(previous)

        # The base goes last: the engine keeps it while its children exist.
        if old_base is not None and old_base != base_id:
            replaced.append(old_base)
        for old in replaced:
            _discard(old)
    return tags


def _discard(old_id: str) -> None:
    """Remove an image its tag no longer names, unless something still uses it."""
    inspect = ["docker", "image", "inspect", "--format", "{{len .RepoTags}}", old_id]
    tags = subprocess.run(inspect, capture_output=True, text=True, check=False)
    if tags.returncode != 0 or tags.stdout.strip() != "0":
        return
    done = subprocess.run(
        ["docker", "image", "rm", old_id], capture_output=True, text=True, check=False
    )
    if done.returncode == 0:
        logger.debug("removed the replaced image %s", old_id)
    else:
        logger.debug("kept the replaced image %s: %s", old_id, done.stderr.strip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--force", action="store_true", help="rebuild every image, the base included"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log commands")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        stream=sys.stderr,
    )
    try:
        tags = ensure_images(force=args.force)
    except BuildError as error:
        logger.error("%s", error)
        return 1
    for name, tag in tags.items():
        print(f"{name}\t{tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
