"""The stand-in images on a real Docker engine: build cache, start-up failures,
and management against an emulator container on a user-defined network."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.images.build import HASH_LABEL, ensure_images, image_id
from tests.support.tlsca import CAFiles, make_ca

pytestmark = pytest.mark.integration

SERVICES = ("pocketid", "management", "signal", "relay", "dashboard", "coturn")
DASHBOARD_REQUIRED = (
    "AUTH_AUTHORITY",
    "AUTH_CLIENT_ID",
    "AUTH_AUDIENCE",
    "AUTH_SUPPORTED_SCOPES",
    "USE_AUTH0",
    "QUFABRIC_MGMT_API_ENDPOINT",
)
IDP_ALIAS = "pocketid.qfstack.test"


def docker(
    *args: str, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=check, timeout=timeout
    )


def unique(prefix: str) -> str:
    return f"qfs-{prefix}-{uuid.uuid4().hex[:8]}"


def run_once(
    image: str,
    *arguments: str,
    env: dict[str, str] | None = None,
    options: Sequence[str] = (),
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """``docker run --rm`` a container that is expected to end by itself."""
    name = unique("once")
    argv = ["run", "--rm", "--name", name, *options]
    for key, value in (env or {}).items():
        argv += ["-e", f"{key}={value}"]
    try:
        return docker(*argv, image, *arguments, check=False, timeout=timeout)
    finally:
        docker("rm", "-f", "-v", name, check=False)


@contextmanager
def network() -> Iterator[str]:
    name = unique("net")
    docker("network", "create", name)
    try:
        yield name
    finally:
        docker("network", "rm", name, check=False)


@contextmanager
def detached(
    image: str,
    *arguments: str,
    env: dict[str, str] | None = None,
    options: Sequence[str] = (),
) -> Iterator[str]:
    """A background container, always removed afterwards."""
    name = unique("ctr")
    argv = ["run", "-d", "--name", name, *options]
    for key, value in (env or {}).items():
        argv += ["-e", f"{key}={value}"]
    try:
        docker(*argv, image, *arguments)
        yield name
    finally:
        docker("rm", "-f", "-v", name, check=False)


def logs(container: str) -> str:
    done = docker("logs", container, check=False)
    return done.stdout + done.stderr


def wait_for(condition: str, check: Callable[[], bool], timeout: float = 20) -> None:
    """Poll ``check()`` until it is true; fail naming ``condition``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:g} s waiting for {condition}")


def running(container: str) -> bool:
    state = docker("inspect", "--format", "{{.State.Running}}", container, check=False)
    return state.stdout.strip() == "true"


@contextmanager
def emulator_container(
    image: str, net: str, env: dict[str, str] | None = None, certs: Path | None = None
) -> Iterator[str]:
    """The PocketID emulator as ``pocketid.qfstack.test`` on ``net``, healthy."""
    scheme = "https" if certs else "http"
    settings = {
        "APP_URL": f"{scheme}://{IDP_ALIAS}:1411",
        "ENCRYPTION_KEY": "image-test-encryption-key",
        **(env or {}),
    }
    options = ["--network", net, "--network-alias", IDP_ALIAS]
    if certs:
        options += ["-v", f"{certs}:/certs:ro"]
    with detached(image, env=settings, options=options) as container:
        wait_for(
            "the emulator to be healthy",
            lambda: (
                docker(
                    "exec", container, "/app/pocket-id", "healthcheck", check=False
                ).returncode
                == 0
            ),
        )
        yield container


def management_json(path: Path, endpoint: str, **extra: object) -> Path:
    config = {
        "Datadir": "/var/lib/qufabric",
        "DataStoreEncryptionKey": "",
        "HttpConfig": {"Address": "0.0.0.0:443", "OIDCConfigEndpoint": endpoint},
        **extra,
    }
    path.write_text(json.dumps(config, indent=2))
    return path


# --- build ------------------------------------------------------------------------


def test_ensure_images_names_every_image_and_reuses_them(
    standin_images: dict[str, str],
) -> None:
    assert standin_images == {name: f"qfstack-standin/{name}:dev" for name in SERVICES}
    before = {name: image_id(tag) for name, tag in standin_images.items()}

    started = time.monotonic()
    assert ensure_images() == standin_images
    assert time.monotonic() - started < 10
    assert {name: image_id(tag) for name, tag in standin_images.items()} == before

    label = docker(
        "image", "inspect", "--format",
        f'{{{{ index .Config.Labels "{HASH_LABEL}" }}}}', standin_images["relay"],
    ).stdout.strip()  # fmt: skip
    assert len(label) == 32


@pytest.mark.parametrize("service", SERVICES)
def test_every_image_has_bash_and_nc(
    standin_images: dict[str, str], service: str
) -> None:
    done = run_once(
        standin_images[service],
        "-c",
        "command -v bash && command -v nc && nc -h 2>&1 | head -n 1",
        options=["--entrypoint", "bash"],
    )
    assert done.returncode == 0, done.stderr
    assert "OpenBSD netcat" in done.stdout


# --- start-up failures ------------------------------------------------------------


def test_dashboard_names_each_missing_variable(standin_images: dict[str, str]) -> None:
    done = run_once(standin_images["dashboard"], env={"AUTH_CLIENT_ID": "qufabric"})
    assert done.returncode == 1
    missing = [name for name in DASHBOARD_REQUIRED if name != "AUTH_CLIENT_ID"]
    for name in missing:
        assert f"{name} is not set" in done.stderr
    assert "AUTH_CLIENT_ID is not set" not in done.stderr


def test_relay_names_missing_variables(standin_images: dict[str, str]) -> None:
    done = run_once(standin_images["relay"], env={"QF_LISTEN_ADDRESS": ":33080"})
    assert done.returncode == 1
    assert "QF_EXPOSED_ADDRESS, QF_AUTH_SECRET" in done.stderr


def test_coturn_needs_a_realm(standin_images: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "turnserver.conf").write_text("listening-port=3478\nuser=self:pw\n")
    done = run_once(
        standin_images["coturn"],
        "-c",
        "/etc/turnserver.conf",
        options=["-v", f"{tmp_path / 'turnserver.conf'}:/etc/turnserver.conf:ro"],
    )
    assert done.returncode == 1
    assert "no realm= line" in done.stderr


def test_exit_after_simulates_a_crash(standin_images: dict[str, str]) -> None:
    env = dict.fromkeys(DASHBOARD_REQUIRED, "x") | {
        "USE_AUTH0": "false",
        "STANDIN_EXIT_AFTER": "1",
    }
    done = run_once(standin_images["dashboard"], env=env)
    assert done.returncode == 1
    assert "listening on tcp 0.0.0.0:80" in done.stderr
    assert "STANDIN_EXIT_AFTER" in done.stderr


def test_no_listen_keeps_the_port_closed(standin_images: dict[str, str]) -> None:
    probe = ["bash", "-c", "</dev/tcp/127.0.0.1/80"]
    with detached(standin_images["signal"], env={"STANDIN_NO_LISTEN": "1"}) as quiet:
        wait_for("the signal stand-in to start", lambda: "not listening" in logs(quiet))
        assert docker("exec", quiet, *probe, check=False).returncode != 0
    with detached(standin_images["signal"]) as loud:
        wait_for("the signal stand-in to listen", lambda: "listening on" in logs(loud))
        assert docker("exec", loud, *probe, check=False).returncode == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "failed reading provided config file", id="missing"),
        pytest.param("{not json", "failed parsing config file", id="not-json"),
        pytest.param('{"HttpConfig": {}}', "no HttpConfig.OIDCConfigEndpoint",
                     id="no-endpoint"),
    ],
)  # fmt: skip
def test_management_refuses_a_bad_config(
    standin_images: dict[str, str], tmp_path: Path, content: str | None, message: str
) -> None:
    options = []
    if content is not None:
        (tmp_path / "management.json").write_text(content)
        options = [
            "-v",
            f"{tmp_path / 'management.json'}:/etc/qufabric/management.json",
        ]
    done = run_once(standin_images["management"], "--port=443", options=options)
    assert done.returncode == 1
    assert message in done.stderr


def test_management_exits_when_discovery_is_unreachable(
    standin_images: dict[str, str], tmp_path: Path
) -> None:
    config = management_json(
        tmp_path / "management.json",
        "http://127.0.0.1:1/.well-known/openid-configuration",
    )
    done = run_once(
        standin_images["management"],
        "--port=443",
        "--log-file=console",
        options=["-v", f"{config}:/etc/qufabric/management.json"],
    )
    assert done.returncode == 1
    assert "failed fetching OIDC configuration" in done.stderr
    assert json.loads(config.read_text())["DataStoreEncryptionKey"] == ""


# --- management against the emulator -------------------------------------------------


def test_management_stores_its_key_in_the_mounted_file(
    standin_images: dict[str, str], tmp_path: Path
) -> None:
    config = management_json(
        tmp_path / "management.json",
        f"http://{IDP_ALIAS}:1411/.well-known/openid-configuration",
    )
    data = tmp_path / "data"
    data.mkdir()
    options = [
        "-v", f"{config}:/etc/qufabric/management.json",
        "-v", f"{data}:/var/lib/qufabric",
    ]  # fmt: skip
    arguments = ["--port=443", "--log-file=console", "--dns-domain=qufabric.test"]

    with network() as net, emulator_container(standin_images["pocketid"], net):
        options += ["--network", net]
        with detached(standin_images["management"], *arguments, options=options) as m:
            wait_for("management to listen", lambda: "listening on" in logs(m))
            first_log = logs(m)
        key = json.loads(config.read_text())["DataStoreEncryptionKey"]

        with detached(standin_images["management"], *arguments, options=options) as m:
            wait_for("management to listen again", lambda: "listening on" in logs(m))
            second_log = logs(m)

    assert len(base64.b64decode(key)) == 32
    assert "generated a new datastore encryption key" in first_log
    assert "generated" not in second_log
    assert json.loads(config.read_text())["DataStoreEncryptionKey"] == key
    installation = first_log.split("installation id ")[1].split()[0]
    assert f"opened the store, installation id {installation}" in second_log
    assert (data / "store.db").exists()


@pytest.fixture
def certs(tmp_path: Path) -> CAFiles:
    return make_ca(tmp_path / "certs", [IDP_ALIAS])


@pytest.mark.parametrize("trusted", [True, False], ids=["trusted-ca", "unknown-ca"])
def test_management_verifies_tls_with_ssl_cert_file(
    standin_images: dict[str, str], tmp_path: Path, certs: CAFiles, trusted: bool
) -> None:
    config = management_json(
        tmp_path / "management.json",
        f"https://{IDP_ALIAS}:1411/.well-known/openid-configuration",
    )
    tls = {"EMU_TLS_CERT": "/certs/server.pem", "EMU_TLS_KEY": "/certs/server-key.pem"}
    env = {"SSL_CERT_FILE": "/certs/ca.pem"} if trusted else {}
    folder = certs.ca_cert.parent
    with (
        network() as net,
        emulator_container(standin_images["pocketid"], net, tls, certs=folder),
    ):
        done = run_once(
            standin_images["management"],
            env={**env, "STANDIN_EXIT_AFTER": "3"},
            options=[
                "--network", net,
                "-v", f"{config}:/etc/qufabric/management.json",
                "-v", f"{folder}:/certs:ro",
            ],
        )  # fmt: skip
    if trusted:
        assert "listening on" in done.stderr
    else:
        assert "CERTIFICATE_VERIFY_FAILED" in done.stderr
    assert done.returncode == 1


# --- the PocketID image's own command -------------------------------------------------


def test_pocket_id_command_makes_sign_in_links(standin_images: dict[str, str]) -> None:
    seed = {"users": [{"username": "admin", "email": "admin@qfstack.test"}]}
    with (
        network() as net,
        emulator_container(
            standin_images["pocketid"], net, {"EMU_SEED": json.dumps(seed)}
        ) as container,
    ):
        made = docker(
            "exec", container, "/app/pocket-id", "one-time-access-token", "admin"
        )
        link = made.stdout.strip()
        token = link.rsplit("/", 1)[1]
        status = docker(
            "exec", container, "bash", "-c",
            "exec 3<>/dev/tcp/127.0.0.1/1411;"
            f"printf 'GET /lc/{token} HTTP/1.0\\r\\n\\r\\n' >&3;"
            "head -n 1 <&3",
        ).stdout  # fmt: skip
    assert link.startswith(f"http://{IDP_ALIAS}:1411/lc/")
    assert " 302 " in status
