"""The one place that runs Docker Compose (through python-on-whales)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from python_on_whales import DockerClient
from python_on_whales.exceptions import DockerException
from python_on_whales.utils import run

from qfstack.config import Config
from qfstack.errors import ComposeError

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

    @property
    def ready(self) -> bool:
        return self.state == "running" and self.health == "healthy"

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "state": self.state,
            "health": self.health,
            "status": self.status,
            "ports": list(self.ports),
        }


class Stack:
    """A Compose project: qfstack's files, the stack directory, the env file."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.files: list[str | Path] = list(compose_files(config))
        self.docker = DockerClient(
            compose_files=self.files,
            compose_project_name=config.project,
            compose_project_directory=config.directory,
            compose_env_files=[config.artifacts / "compose.env"],
        )

    @property
    def project(self) -> str:
        return self.config.project

    def services(self) -> list[str]:
        """The services the merged configuration defines."""
        data = self._compose_json(["config", "--format", "json"])
        services = data.get("services", {}) if isinstance(data, dict) else {}
        return sorted(services)

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
        out = self._run(["ps", "--all", "--format", "json"], "list containers")
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

    def config_yaml(self) -> str:
        return self._run(["config"], "render the compose configuration") + "\n"

    def config_json(self) -> Any:
        return self._compose_json(["config", "--format", "json"])

    def _compose_json(self, argv: list[str]) -> Any:
        out = self._run(argv, "read the compose configuration")
        return json.loads(out) if out.strip() else {}

    def _run(self, argv: list[str], what: str) -> str:
        command = [*self.docker.compose.docker_compose_cmd, *argv]
        try:
            return str(run(command))
        except DockerException as exc:
            raise ComposeError(
                f"docker compose could not {what} (exit {exc.return_code})",
                argv=exc.docker_command,
                returncode=exc.return_code,
                stderr=exc.stderr or "",
            ) from None
        except FileNotFoundError as exc:
            raise ComposeError(
                f"cannot run docker: {exc}; install Docker and the Compose plugin",
                argv=[str(c) for c in command],
                returncode=127,
                stderr="",
            ) from None


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
        ports=tuple(sorted(set(ports))),
    )
