"""Helpers for integration tests that drive the real `qfstack` command."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SEED = ROOT / "tests" / "fixtures" / "seed-setup.env"

STANDIN_IMAGES = """\
QUFABRIC_DASHBOARD_IMAGE=qfstack-standin/dashboard
QUFABRIC_DASHBOARD_TAG=dev
QUFABRIC_SIGNAL_IMAGE=qfstack-standin/signal
QUFABRIC_SIGNAL_TAG=dev
QUFABRIC_RELAY_IMAGE=qfstack-standin/relay
QUFABRIC_RELAY_TAG=dev
QUFABRIC_MANAGEMENT_IMAGE=qfstack-standin/management
QUFABRIC_MANAGEMENT_TAG=dev
COTURN_IMAGE=qfstack-standin/coturn
COTURN_TAG=dev
QFSTACK_POCKETID_IMAGE=qfstack-standin/pocketid
QFSTACK_POCKETID_TAG=dev
"""


def free_ports(count: int) -> list[int]:
    """Distinct ports free on 127.0.0.1 right now."""
    sockets, ports = [], []
    try:
        while len(ports) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            port = sock.getsockname()[1]
            if port not in ports:
                ports.append(port)
    finally:
        for sock in sockets:
            sock.close()
    return ports


def local_ports_env() -> str:
    """setup.env lines giving a local stack free ports of its own."""
    mgmt, signal, relay, http, https, turn, relay_range = free_ports(7)
    return (
        f"QUFABRIC_MGMT_API_PORT={mgmt}\nQUFABRIC_SIGNAL_PORT={signal}\n"
        f"QUFABRIC_RELAY_PORT={relay}\nQFSTACK_DASHBOARD_HTTP_PORT={http}\n"
        f"QFSTACK_DASHBOARD_HTTPS_PORT={https}\nQUFABRIC_TURN_PORT={turn}\n"
        f"QUFABRIC_TURN_MIN_PORT={relay_range}\n"
        f"QUFABRIC_TURN_MAX_PORT={relay_range}\n"
    )


def seed_setup_env(host_and_port: str, client_id: str, api_token: str) -> str:
    """The seed's exact block with its placeholders filled."""
    text = SEED.read_text()
    text = text.replace("<YOUR_POCKETID_HOST_AND_PORT>", host_and_port)
    text = text.replace("<CLIENT_ID>", client_id).replace("<API_TOKEN>", api_token)
    assert "<" not in text
    return text


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> object:
        return json.loads(self.stdout)


def qfstack(
    directory: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> Result:
    """Run `python -m qfstack --dir DIRECTORY ARGS` and capture its output."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("NO_COLOR", None)
    done = subprocess.run(
        [sys.executable, "-m", "qfstack", "--dir", str(directory), *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=ROOT,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def start_qfstack(directory: Path, *args: str) -> subprocess.Popen[str]:
    """Start `python -m qfstack --dir DIRECTORY ARGS` in the background;
    its stderr is piped for the test to read."""
    return subprocess.Popen(
        [sys.executable, "-m", "qfstack", "--dir", str(directory), *args],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def project_name(directory: Path) -> str:
    values = (
        dict(
            line.split("=", 1)
            for line in (directory / "setup.env").read_text().splitlines()
            if line.startswith("QFSTACK_PROJECT=")
        )
        if (directory / "setup.env").exists()
        else {}
    )
    name = values.get("QFSTACK_PROJECT", directory.name).strip("'\"")
    return re.sub(r"[^a-z0-9_-]", "", name.lower())


def project_containers(project: str) -> list[str]:
    """Every container of a Compose project, running or not."""
    return _labelled(["docker", "ps", "-aq"], project)


def project_volumes(project: str) -> list[str]:
    """Every volume of a Compose project."""
    return _labelled(["docker", "volume", "ls", "-q"], project)


def _labelled(argv: list[str], project: str) -> list[str]:
    label = f"label=com.docker.compose.project={project}"
    done = subprocess.run(
        [*argv, "--filter", label], capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def remove_project(directory: Path) -> None:
    """Remove every container, network and volume of the directory's project."""
    project = project_name(directory)
    subprocess.run(
        [
            "docker",
            "compose",
            "-p",
            project,
            "down",
            "--volumes",
            "--remove-orphans",
            "--timeout",
            "2",
        ],
        capture_output=True,
    )
    for container in project_containers(project):
        subprocess.run(["docker", "rm", "-f", "-v", container], capture_output=True)
    for volume in project_volumes(project):
        subprocess.run(["docker", "volume", "rm", "-f", volume], capture_output=True)


@dataclass
class ExternalIdp:
    """A PocketID emulator container reachable by name from the stack."""

    host: str
    port: int
    network: str
    container: str
    api_token: str

    @property
    def host_and_port(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def resolve(self) -> str:
        return f"{self.host}:{self.port}:127.0.0.1"

    def logs(self) -> str:
        done = subprocess.run(
            ["docker", "logs", self.container], capture_output=True, text=True
        )
        return done.stdout + done.stderr


IDP_HOST = "pocketid.qfstack.test"


@contextmanager
def external_idp(
    image: str,
    certs_dir: Path,
    cert: Path,
    key: Path,
    env: Mapping[str, str] | None = None,
    stack: Path | None = None,
    clients: Sequence[Mapping[str, object]] = (),
) -> Iterator[ExternalIdp]:
    """Run the emulator behind TLS as `pocketid.qfstack.test` on a new network.

    The port inside equals the port published on 127.0.0.1, so the same URL
    works from the host (with --resolve) and from containers on the network.
    `clients` are OIDC clients to seed (the emulator's EMU_SEED format).
    """
    suffix = uuid.uuid4().hex[:8]
    network, container = f"qfs-idp-{suffix}", f"qfs-idp-{suffix}"
    (port,) = free_ports(1)
    token = "test-api-token-" + uuid.uuid4().hex
    seed = {
        "users": [
            {
                "username": "admin",
                "email": "admin@qfstack.test",
                "isAdmin": True,
                "apiKeys": [
                    {
                        "token": token,
                        "name": "QuFabric Management Token",
                        "expiresAt": "2099-01-01T00:00:00Z",
                    }
                ],
            }
        ],
        "clients": [dict(client) for client in clients],
    }
    settings = {
        "PORT": str(port),
        "APP_URL": f"https://{IDP_HOST}:{port}",
        "ENCRYPTION_KEY": "test-encryption-key-0123456789",
        "EMU_TLS_CERT": f"/certs/{cert.name}",
        "EMU_TLS_KEY": f"/certs/{key.name}",
        "EMU_SEED": json.dumps(seed),
        **dict(env or {}),
    }
    subprocess.run(
        ["docker", "network", "create", network], check=True, capture_output=True
    )
    try:
        argv = [
            "docker",
            "run",
            "-d",
            "--name",
            container,
            "--network",
            network,
            "--network-alias",
            IDP_HOST,
            "-p",
            f"127.0.0.1:{port}:{port}",
            "-v",
            f"{certs_dir}:/certs:ro",
        ]
        for name, value in settings.items():
            argv += ["-e", f"{name}={value}"]
        subprocess.run([*argv, image], check=True, capture_output=True)
        yield ExternalIdp(IDP_HOST, port, network, container, token)
    finally:
        if stack is not None:
            # The stack's containers hold the network; remove them first.
            remove_project(stack)
        subprocess.run(["docker", "rm", "-f", "-v", container], capture_output=True)
        with suppress(Exception):
            subprocess.run(["docker", "network", "rm", network], capture_output=True)


def join_network_override(network: str, images: bool = False) -> str:
    """compose.override.yml putting management on the identity provider's
    network and, with `images`, replacing every image by its stand-in."""
    lines = ["services:"]
    for service in ("dashboard", "signal", "relay", "coturn", "management"):
        if images or service == "management":
            lines.append(f"  {service}:")
        if images:
            lines.append(f"    image: qfstack-standin/{service}:dev")
    lines += [
        "    networks: [default, idp]",
        "networks:",
        "  idp:",
        "    external: true",
        f"    name: {network}",
    ]
    return "\n".join(lines) + "\n"
