"""Checks before anything starts: engine, Compose, free ports, disk space.

Each problem is a Finding naming what is wrong and the fix. `preflight`
returns them; `up` refuses to start when one is an error.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from qfstack.config import Config
from qfstack.errors import Finding

logger = logging.getLogger(__name__)

MIN_COMPOSE = (2, 24, 0)  # env_file "required: false"
MIN_FREE_BYTES = 1 << 30
LOW_FREE_BYTES = 5 << 30


@dataclass(frozen=True)
class Port:
    """A port the stack publishes on the host."""

    variable: str
    address: str
    number: int
    protocol: str = "tcp"


def published_ports(config: Config) -> list[Port]:
    """Every host port the stack publishes, with the variable that sets it."""
    bind = config.bind_address
    ports = [
        Port("QFSTACK_DASHBOARD_HTTP_PORT", bind, config.dashboard_http_port),
        Port("QFSTACK_DASHBOARD_HTTPS_PORT", bind, config.dashboard_https_port),
        Port("QUFABRIC_SIGNAL_PORT", bind, config.signal_port),
        Port("QUFABRIC_RELAY_PORT", bind, config.relay_port),
        Port("QUFABRIC_MGMT_API_PORT", bind, config.mgmt_api_port),
    ]
    if config.bundled_pocketid:
        ports.append(Port("QFSTACK_POCKETID_PORT", bind, config.pocketid_port))
    turn_address = bind if config.coturn_network == "bridge" else "0.0.0.0"
    ports.append(Port("QUFABRIC_TURN_PORT", turn_address, config.turn_port, "udp"))
    ports.append(Port("QUFABRIC_TURN_PORT", turn_address, config.turn_port, "tcp"))
    if config.coturn_network == "bridge":
        # Published one by one, so one taken port fails `docker compose up`;
        # on the host network coturn just skips a busy relay port.
        ports += [
            Port("QUFABRIC_TURN_MIN_PORT", bind, number, "udp")
            for number in range(config.turn_min_port, config.turn_max_port + 1)
        ]
    return ports


def port_findings(ports: Iterable[Port], own: set[tuple[int, str]]) -> list[Finding]:
    """A finding per port another program holds; `own` are the stack's."""
    findings = []
    for port in ports:
        if (port.number, port.protocol) in own or _is_free(port):
            continue
        holder = _holder(port) or "that program"
        move = (
            "move the relay range (QUFABRIC_TURN_MIN_PORT to QUFABRIC_TURN_MAX_PORT)"
            if port.variable == "QUFABRIC_TURN_MIN_PORT"
            else f"give {port.variable} another port"
        )
        findings.append(
            Finding(
                "error",
                port.variable,
                f"{port.protocol.upper()} port {port.number} on {port.address} is "
                f"already in use by {holder}.",
                f"stop {holder} or {move}.",
            )
        )
    return findings


def _is_free(port: Port) -> bool:
    family = socket.AF_INET6 if ":" in port.address else socket.AF_INET
    kind = socket.SOCK_DGRAM if port.protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((port.address, port.number))
        except OSError as exc:
            return exc.errno not in (errno.EADDRINUSE, errno.EACCES)
    return True


def _holder(port: Port) -> str:
    """Who holds a port: a container's name, else a process, else ''."""
    done = subprocess.run(
        [
            "docker",
            "ps",
            "--filter",
            f"publish={port.number}/{port.protocol}",
            "--format",
            "{{.Names}}",
        ],
        capture_output=True,
        text=True,
    )
    names = done.stdout.split()
    if done.returncode == 0 and names:
        return f"container {names[0]}"
    return _process_holding(port)


def _process_holding(port: Port) -> str:
    inodes = set()
    tables = ("udp", "udp6") if port.protocol == "udp" else ("tcp", "tcp6")
    for table in tables:
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            listening = port.protocol == "udp" or state == "0A"
            if listening and int(local.rsplit(":", 1)[1], 16) == port.number:
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return ""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                name = Path(f"/proc/{pid}/comm").read_text().strip()
                return f"process {name} (pid {pid})"
        except OSError:
            continue
    return ""


def engine_findings() -> list[Finding]:
    """The Docker engine answers and Compose v2 is new enough."""
    done = subprocess.run(
        ["docker", "version", "--format", "{{json .Server}}"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return [
            Finding(
                "error",
                "docker",
                "the Docker engine does not answer: "
                + (done.stderr.strip().splitlines() or ["no output"])[-1],
                "start it (e.g. `systemctl start docker`, or run "
                "scripts/ensure-docker.sh as root).",
            )
        ]
    findings = []
    compose = subprocess.run(
        ["docker", "compose", "version", "--short"], capture_output=True, text=True
    )
    version = compose.stdout.strip().lstrip("v")
    if compose.returncode != 0 or not version:
        findings.append(
            Finding(
                "error",
                "docker compose",
                "the Compose v2 plugin is missing.",
                "install docker-compose-plugin (or run scripts/ensure-docker.sh).",
            )
        )
    elif _version(version) < MIN_COMPOSE:
        need = ".".join(map(str, MIN_COMPOSE))
        findings.append(
            Finding(
                "error",
                "docker compose",
                f"version {version} is older than {need}.",
                f"upgrade the Compose plugin to {need} or newer.",
            )
        )
    return findings


def disk_findings() -> list[Finding]:
    done = subprocess.run(
        ["docker", "info", "--format", "{{json .DockerRootDir}}"],
        capture_output=True,
        text=True,
    )
    try:
        root = json.loads(done.stdout) if done.returncode == 0 else ""
    except ValueError:
        root = ""
    if not root or not os.path.isdir(root):
        return []
    free = shutil.disk_usage(root).free
    gib = free / (1 << 30)
    if free < MIN_FREE_BYTES:
        return [
            Finding(
                "error",
                "disk",
                f"only {gib:.1f} GiB free under {root}.",
                "free space for the images and volumes (1 GiB at least).",
            )
        ]
    if free < LOW_FREE_BYTES:
        return [
            Finding(
                "warning",
                "disk",
                f"{gib:.1f} GiB free under {root}.",
                "keep a few GiB free for logs and the database.",
            )
        ]
    return []


def preflight(config: Config, own: set[tuple[int, str]]) -> list[Finding]:
    """Every preflight finding for `config`; `own` are ports its containers hold."""
    findings = engine_findings()
    if any(f.level == "error" for f in findings):
        return findings
    findings += port_findings(published_ports(config), own)
    findings += disk_findings()
    return findings


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("-")[0].split(".")[:3]:
        parts.append(int(piece) if piece.isdigit() else 0)
    return tuple(parts)
