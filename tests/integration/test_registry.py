"""Mirrored registries: pulls and upgrades through a real registry on loopback.

The registry is Debian's `docker-registry` (the distribution registry),
serving on 127.0.0.1 from a temporary folder.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.stack import (
    STANDIN_IMAGES,
    free_ports,
    local_ports_env,
    project_name,
    qfstack,
)

pytestmark = pytest.mark.integration

SERVICES = ("dashboard", "signal", "relay", "management", "coturn", "pocketid")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.fail("docker-registry is missing; run scripts/ensure-build-tools.sh")
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        f"http:\n  addr: {address}\n"
    )
    process = subprocess.Popen(
        [binary, "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://{address}/v2/").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the registry did not answer within 20 s")
            time.sleep(0.2)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=10)
        done = subprocess.run(
            [
                "docker",
                "images",
                "--format",
                "{{.Repository}}:{{.Tag}}",
                f"{address}/*/*",
            ],
            capture_output=True,
            text=True,
        )
        for ref in done.stdout.split():
            subprocess.run(["docker", "rmi", "-f", ref], capture_output=True)


def _docker(*argv: str) -> None:
    subprocess.run(["docker", *argv], check=True, capture_output=True)


def _push(registry: str, service: str, source: str) -> None:
    target = f"{registry}/qfstack-standin/{service}:dev"
    _docker("tag", source, target)
    _docker("push", target)
    _docker("rmi", target)  # only the registry has it now


def test_a_mirror_prefix_pulls_every_image_and_upgrade_takes_new_tags(
    standin_images, stack_dir: Path, registry: str, tmp_path: Path
) -> None:
    for service in SERVICES:
        _push(registry, service, standin_images[service])
    (port,) = free_ports(1)
    (stack_dir / "setup.env").write_text(
        "QUFABRIC_DOMAIN=localhost\nQFSTACK_BUNDLED_POCKETID=true\n"
        f"QFSTACK_POCKETID_PORT={port}\nQFSTACK_IMAGE_REGISTRY={registry}\n"
        + local_ports_env()
        + STANDIN_IMAGES
    )

    up = qfstack(stack_dir, "up", "--timeout", "180")
    assert up.returncode == 0, up.stderr
    running = subprocess.run(
        [
            "docker",
            "inspect",
            "--format",
            "{{.Config.Image}}",
            f"{project_name(stack_dir)}-signal-1",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert running == f"{registry}/qfstack-standin/signal:dev"

    # A new release of signal appears in the mirror under the same tag.
    build = tmp_path / "build"
    build.mkdir()
    (build / "Dockerfile").write_text(
        f"FROM {standin_images['signal']}\nLABEL org.qfstack.test.release=2\n"
        # Not a stand-in build: drop the label the image cache looks up.
        "LABEL org.qfstack.standin.hash=\n"
    )
    newer = f"{registry}/qfstack-standin/signal:dev"
    _docker("build", "-q", "-t", newer, str(build))
    _docker("push", newer)
    _docker("rmi", newer)

    upgrade = qfstack(stack_dir, "upgrade", "--timeout", "180")
    assert upgrade.returncode == 0, upgrade.stderr
    assert "Backed up to" in upgrade.stderr
    assert f"New images: {registry}/qfstack-standin/signal:dev" in upgrade.stderr
    assert "recreated: signal\n" in upgrade.stderr
    label = subprocess.run(
        [
            "docker",
            "inspect",
            "--format",
            '{{index .Config.Labels "org.qfstack.test.release"}}',
            f"{project_name(stack_dir)}-signal-1",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert label == "2"
    assert list((stack_dir / "backups").glob("*.tar.gz"))
