"""The one place that runs Docker Compose (through python-on-whales)."""

from __future__ import annotations

import functools
import json
import logging
import re
import shlex
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qfstack.config import Config
from qfstack.errors import ComposeError

if TYPE_CHECKING:
    from python_on_whales import DockerClient

logger = logging.getLogger(__name__)

OVERRIDE_NAMES = ("compose.override.yml", "compose.override.yaml")


def compose_dir() -> Path:
    """The directory of the Compose files qfstack ships."""
    packaged = Path(str(resources.files("qfstack"))) / "compose"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "compose"


def compose_files(config: Config) -> list[Path]:
    """qfstack's files for this configuration, then the operator's override."""
    shipped = compose_dir()
    files = [shipped / "qufabric.yml", shipped / f"coturn-{config.coturn_network}.yml"]
    if config.bundled_pocketid:
        files.append(shipped / "pocketid.yml")
    if config.ca_bundle is not None:
        files.append(shipped / "ca-bundle.yml")
    for name in OVERRIDE_NAMES:
        override = config.directory / name
        if override.is_file():
            files.append(override)
            break
    return files


@dataclass(frozen=True)
class ServiceState:
    """One service's container as `docker compose ps` reports it."""

    service: str
    state: str
    health: str
    exit_code: int
    status: str
    ports: tuple[str, ...]
    container_id: str = ""
    name: str = ""
    running_for: str = ""
    published: tuple[tuple[int, str], ...] = ()
    working_dir: str = ""

    @property
    def ready(self) -> bool:
        return self.state == "running" and self.health == "healthy"

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "state": self.state,
            "health": self.health,
            "status": self.status,
            "uptime": self.running_for.removesuffix(" ago")
            if self.state == "running"
            else "",
            "ports": list(self.ports),
        }


class Stack:
    """A Compose project: qfstack's files, the stack directory, the env file."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.files: list[str | Path] = list(compose_files(config))
        self._services: dict[str, Any] | None = None

    @functools.cached_property
    def docker(self) -> DockerClient:
        # python-on-whales costs ~0.15 s to import; `status` does not need it.
        from python_on_whales import DockerClient

        return DockerClient(
            compose_files=self.files,
            compose_project_name=self.config.project,
            compose_project_directory=self.config.directory,
            compose_env_files=[self.config.artifacts / "compose.env"],
        )

    @property
    def project(self) -> str:
        return self.config.project

    def services(self) -> list[str]:
        """The services the merged configuration defines."""
        return sorted(self._service_configs())

    def without_healthcheck(self) -> list[str]:
        """The services that have no healthcheck (or have it disabled)."""
        return sorted(
            name
            for name, service in self._service_configs().items()
            if not isinstance(service, dict)
            or not service.get("healthcheck")
            or service["healthcheck"].get("disable")
        )

    def _service_configs(self) -> dict[str, Any]:
        # Read once per Stack: the configuration does not change under it.
        if self._services is None:
            data = self._compose_json(["config", "--format", "json"])
            services = data.get("services", {}) if isinstance(data, dict) else {}
            self._services = dict(services)
        return self._services

    def up(self, services: Sequence[str] = (), *, no_deps: bool = False) -> None:
        argv = ["up", "--detach", "--remove-orphans", "--quiet-pull"]
        if no_deps:
            argv.append("--no-deps")
        self._run([*argv, *services], "start the stack")

    def down(self, *, volumes: bool = False) -> None:
        argv = ["down", "--remove-orphans"]
        if volumes:
            argv.append("--volumes")
        self._run(argv, "stop the stack")

    def ps(self) -> list[ServiceState]:
        """Every container of the project, in one `docker compose ps` call."""
        # By project name alone: works before anything is rendered, and costs
        # no parsing of the Compose files.
        argv = [
            "docker",
            "compose",
            "--project-name",
            self.project,
            "ps",
            "--all",
            "--format",
            "json",
        ]
        out = self._run_argv(argv, "list containers")
        return [_service_state(item) for item in _json_lines(out)]

    def logs(self, service: str, tail: int = 20) -> list[str]:
        """The last lines a service logged (empty when it cannot be read)."""
        try:
            out = self._run(
                ["logs", "--no-color", "--no-log-prefix", f"--tail={tail}", service],
                "read logs",
            )
        except ComposeError:
            return []
        return out.splitlines()[-tail:]

    def create(self) -> None:
        """Create containers, networks and volumes without starting them."""
        self._run(["up", "--no-start"], "create the stack")

    def restart(self, services: Sequence[str] = ()) -> None:
        self._run(["restart", *services], "restart services")

    def stop(self, services: Sequence[str] = ()) -> None:
        self._run(["stop", *services], "stop services")

    def start(self, services: Sequence[str] = ()) -> None:
        self._run(["start", *services], "start services")

    def pocketid_one_time_access_token(self, user: str) -> str:
        """What `pocket-id one-time-access-token USER` prints in the bundled
        PocketID's container: a sign-in link, which is a secret. The output
        is returned, never logged."""
        argv = ["exec", "-T", "pocketid", "/app/pocket-id", "one-time-access-token"]
        return self._run([*argv, user], "create a PocketID sign-in link")

    def pull(self, services: Sequence[str] = ()) -> None:
        self._run(["pull", "--quiet", *services], "pull images")

    def images(self) -> dict[str, str]:
        """Service -> image reference of the merged configuration."""
        data = self.config_json()
        services = data.get("services", {}) if isinstance(data, dict) else {}
        return {name: str(svc.get("image", "")) for name, svc in services.items()}

    def image_ids(self, references: Sequence[str]) -> dict[str, str]:
        """Reference -> local image id, for the references present locally."""
        if not references:
            return {}
        argv = ["docker", "image", "inspect", *references]
        # A missing reference makes the command fail but not its JSON answer.
        done = subprocess.run(argv, capture_output=True, text=True)
        try:
            images = json.loads(done.stdout or "[]")
        except ValueError:
            return {}
        wanted = set(references)
        return {
            tag: str(image.get("Id", ""))
            for image in images
            if isinstance(image, dict)
            for tag in image.get("RepoTags") or []
            if tag in wanted
        }

    def health_log(self, container_id: str, entries: int = 3) -> list[str]:
        """The last health probe results of a container."""
        if not container_id:
            return []
        argv = ["docker", "inspect", "--format", "{{json .State.Health}}", container_id]
        done = subprocess.run(argv, capture_output=True, text=True)
        try:
            health = json.loads(done.stdout or "null")
        except ValueError:
            return []
        if not isinstance(health, dict):
            return []
        lines = []
        for probe in (health.get("Log") or [])[-entries:]:
            output = " ".join(str(probe.get("Output", "")).split())[:200]
            lines.append(
                f"probe exit {probe.get('ExitCode')}: {output or '(no output)'}"
            )
        return lines

    def stream_logs(
        self,
        services: Sequence[str] = (),
        *,
        follow: bool = False,
        tail: str | None = None,
        since: str | None = None,
    ) -> Iterator[bytes]:
        """Raw log bytes of the services, as Compose prints them."""
        argv = [*self.docker.compose.docker_compose_cmd, "logs", "--no-color"]
        if follow:
            argv.append("--follow")
        if tail is not None:
            argv.append(f"--tail={tail}")
        if since is not None:
            argv.append(f"--since={since}")
        argv += list(services)
        logger.debug("running %s", " ".join(str(a) for a in argv))
        command = [str(a) for a in argv]
        with subprocess.Popen(command, stdout=subprocess.PIPE, bufsize=0) as proc:
            assert proc.stdout is not None
            while chunk := proc.stdout.read(65536):
                yield chunk
            if proc.wait() != 0:
                raise ComposeError(
                    "docker compose could not read logs",
                    argv=command,
                    returncode=proc.returncode,
                    stderr="",
                )

    def volumes(self) -> list[str]:
        """The Docker names of the project's existing volumes."""
        label = f"label=com.docker.compose.project={self.project}"
        out = self._run_argv(
            ["docker", "volume", "ls", "--quiet", "--filter", label], "list volumes"
        )
        return out.split()

    def volume(self, name: str) -> str:
        """The Docker name of one of the project's volumes."""
        return f"{self.project}_{name}"

    def export_volume(self, volume: str, image: str, target: Path) -> None:
        """Write the volume's files as a tar stream into `target`."""
        argv = [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "tar",
            "-v",
            f"{self.volume(volume)}:/data:ro",
            image,
            "-C",
            "/data",
            "-cf",
            "-",
            ".",
        ]
        with target.open("wb") as out:
            self._run_raw(argv, stdout=out, what=f"archive volume {volume}")

    def import_volume(self, volume: str, image: str, source: Path) -> None:
        """Replace the volume's files by the tar stream in `source`."""
        argv = [
            "docker",
            "run",
            "--rm",
            "-i",
            "--network",
            "none",
            "--entrypoint",
            "sh",
            "-v",
            f"{self.volume(volume)}:/data",
            image,
            "-c",
            "find /data -mindepth 1 -delete && tar -C /data -xf -",
        ]
        with source.open("rb") as data:
            self._run_raw(argv, stdin=data, what=f"restore volume {volume}")

    def _run_raw(self, argv: list[str], *, what: str, **streams: Any) -> None:
        logger.debug("running %s", " ".join(argv))
        done = subprocess.run(argv, stderr=subprocess.PIPE, **streams)
        if done.returncode != 0:
            raise ComposeError(
                f"docker could not {what} (exit {done.returncode})",
                argv=argv,
                returncode=done.returncode,
                stderr=done.stderr.decode(errors="replace"),
            )

    def config_yaml(self) -> str:
        return self._run(["config"], "render the compose configuration") + "\n"

    def config_json(self) -> Any:
        return self._compose_json(["config", "--format", "json"])

    def _compose_json(self, argv: list[str]) -> Any:
        out = self._run(argv, "read the compose configuration")
        return json.loads(out) if out.strip() else {}

    def _run(self, argv: list[str], what: str) -> str:
        return self._run_argv([*self.docker.compose.docker_compose_cmd, *argv], what)

    def _run_argv(self, command: list[str], what: str) -> str:
        argv = [str(part) for part in command]
        logger.debug("running %s", shlex.join(argv))
        try:
            done = subprocess.run(argv, capture_output=True)
        except FileNotFoundError as exc:
            raise ComposeError(
                f"cannot run docker: {exc}; install Docker and the Compose plugin",
                argv=[str(c) for c in command],
                returncode=127,
                stderr="",
            ) from None
        if done.returncode != 0:
            raise ComposeError(
                f"docker compose could not {what} (exit {done.returncode})",
                argv=argv,
                returncode=done.returncode,
                stderr=done.stderr.decode(errors="replace"),
            )
        return done.stdout.decode(errors="replace").removesuffix("\n")


def _json_lines(text: str) -> list[dict[str, Any]]:
    """Compose prints one JSON object per line (v2.21+) or one array (older)."""
    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        items = json.loads(text)
        return [item for item in items if isinstance(item, dict)]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _service_state(item: dict[str, Any]) -> ServiceState:
    publishers = item.get("Publishers") or []
    ports = tuple(
        f"{p.get('URL')}:{p.get('PublishedPort')}->{p.get('TargetPort')}/"
        f"{p.get('Protocol')}"
        for p in publishers
        if isinstance(p, dict) and p.get("PublishedPort")
    )
    return ServiceState(
        service=str(item.get("Service", "")),
        state=str(item.get("State", "")),
        health=str(item.get("Health", "")) or "none",
        exit_code=int(item.get("ExitCode") or 0),
        status=str(item.get("Status", "")),
        ports=compress_ports(ports),
        container_id=str(item.get("ID", "")),
        working_dir=_label(item, "com.docker.compose.project.working_dir"),
        name=str(item.get("Name", "")),
        running_for=str(item.get("RunningFor", "")),
        published=tuple(
            sorted(
                {
                    (int(p["PublishedPort"]), str(p.get("Protocol", "tcp")))
                    for p in publishers
                    if isinstance(p, dict) and p.get("PublishedPort")
                }
            )
        ),
    )


def _label(item: dict[str, Any], name: str) -> str:
    """One label of a `ps` entry, whose labels come as "k=v,k=v"."""
    labels = item.get("Labels") or ""
    if isinstance(labels, dict):
        return str(labels.get(name, ""))
    for pair in str(labels).split(","):
        key, _, value = pair.partition("=")
        if key == name:
            return value
    return ""


def compress_ports(ports: Sequence[str]) -> tuple[str, ...]:
    """Join runs of consecutive identical mappings: 1->1, 2->2 becomes 1-2->1-2."""
    parsed = []
    for text in sorted(set(ports)):
        match = re.fullmatch(r"(.*):(\d+)->(\d+)/(\w+)", text)
        if match is None:
            return tuple(sorted(set(ports)))
        host, published, target, proto = match.groups()
        parsed.append((host, proto, int(published), int(target)))
    parsed.sort()
    runs: list[list[tuple[str, str, int, int]]] = []
    for item in parsed:
        last = runs[-1][-1] if runs else None
        if (
            last
            and last[:2] == item[:2]
            and item[2] == last[2] + 1
            and item[3] == last[3] + 1
        ):
            runs[-1].append(item)
        else:
            runs.append([item])
    result = []
    for run_ in runs:
        host, proto, first_pub, first_target = run_[0]
        last_pub, last_target = run_[-1][2], run_[-1][3]
        if len(run_) == 1:
            result.append(f"{host}:{first_pub}->{first_target}/{proto}")
        else:
            result.append(
                f"{host}:{first_pub}-{last_pub}->{first_target}-{last_target}/{proto}"
            )
    return tuple(result)
