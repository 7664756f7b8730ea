"""`qfstack up` / `status` / `down` against a real Docker engine.

The identity provider is the PocketID emulator, a real HTTPS server in a
container; the QuFabric services are the stand-in images of tests/images/.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from tests.support.stack import (
    STANDIN_IMAGES,
    external_idp,
    join_network_override,
    local_ports_env,
    project_containers,
    project_name,
    project_volumes,
    qfstack,
    seed_setup_env,
)
from tests.support.tlsca import make_ca

pytestmark = pytest.mark.integration


@pytest.fixture
def certs(tmp_path: Path):
    directory = tmp_path / "certs"
    directory.mkdir()
    return make_ca(directory, ["pocketid.qfstack.test"])


CLIENT_ID = "qufabric-client"


def _guide_client(ports: str) -> dict[str, object]:
    """The client the guide has the operator click together, for the local
    stack whose ports are `ports` (its dashboard serves http://localhost:P)."""
    http = next(
        line.split("=", 1)[1]
        for line in ports.splitlines()
        if line.startswith("QFSTACK_DASHBOARD_HTTP_PORT=")
    )
    dashboard = f"http://localhost:{http}"
    return {
        "id": CLIENT_ID,
        "name": "QuFabric",
        "callbackURLs": [
            "http://localhost:53000",
            f"{dashboard}/auth",
            f"{dashboard}/silent-auth",
        ],
        "logoutCallbackURLs": [f"{dashboard}/"],
        "isPublic": True,
        "pkceEnabled": True,
        "isGroupRestricted": False,
    }


def _seed_stack(directory: Path, idp, ca_cert: Path, ports: str) -> None:
    """The seed's setup.env, filled in, plus what a local test stack needs."""
    text = seed_setup_env(idp.host_and_port, CLIENT_ID, idp.api_token)
    text += "\n# The self-hosting guide's part, for a stack on this host:\n"
    text += "QUFABRIC_DOMAIN=localhost\n"
    text += f"QFSTACK_CA_BUNDLE={ca_cert}\n"
    text += ports
    (directory / "setup.env").write_text(text)
    (directory / "compose.override.yml").write_text(
        join_network_override(idp.network, images=True)
    )


def test_seed_scenario_over_tls_comes_up_healthy_and_goes_down(
    standin_images, stack_dir: Path, certs
) -> None:
    ports = local_ports_env()
    with external_idp(
        standin_images["pocketid"],
        certs.server_cert.parent,
        certs.server_cert,
        certs.server_key,
        stack=stack_dir,
        clients=[_guide_client(ports)],
    ) as idp:
        _seed_stack(stack_dir, idp, certs.ca_cert, ports)
        env = {"QFSTACK_RESOLVE": idp.resolve}

        up = qfstack(stack_dir, "up", "--timeout", "180", env=env)
        assert up.returncode == 0, up.stderr + idp.logs()
        assert "healthy" in up.stderr

        status = qfstack(stack_dir, "status", "--json", env=env)
        assert status.returncode == 0, status.stderr
        report = status.json()
        assert isinstance(report, dict)
        assert report["healthy"] is True
        assert report["project"] == project_name(stack_dir)
        services = {s["service"]: s for s in report["services"]}
        assert set(services) == {"dashboard", "signal", "relay", "management", "coturn"}
        assert all(
            s["state"] == "running" and s["health"] == "healthy"
            for s in services.values()
        )
        issuer = f"https://{idp.host_and_port}"
        assert report["identity_provider"] == {
            "ready": True,
            "issuer": issuer,
            "detail": report["identity_provider"]["detail"],
        }
        assert idp.api_token not in status.stdout + status.stderr + up.stderr

        artifacts = stack_dir / "artifacts"
        management = json.loads((artifacts / "management.json").read_text())
        assert management["HttpConfig"]["AuthIssuer"] == issuer
        assert management["HttpConfig"]["AuthKeysLocation"] == (
            f"{issuer}/.well-known/jwks.json"
        )
        assert management["HttpConfig"]["OIDCConfigEndpoint"] == (
            f"{issuer}/.well-known/openid-configuration"
        )
        assert management["IdpManagerConfig"]["ExtraConfig"] == {
            "ManagementEndpoint": issuer,
            "ApiToken": idp.api_token,
        }
        assert management["DataStoreEncryptionKey"]
        snapshot = json.loads((artifacts / "discovery.json").read_text())
        assert snapshot["document"]["issuer"] == issuer
        for name in (
            "management.json",
            "turnserver.conf",
            "dashboard.env",
            "relay.env",
        ):
            assert stat.S_IMODE((artifacts / name).stat().st_mode) == 0o600, name

        # Images replaced in compose.override.yml serve the backup too.
        backup = qfstack(stack_dir, "backup", env=env)
        assert backup.returncode == 0, backup.stderr
        assert Path(backup.stdout.strip()).is_file()

        down = qfstack(stack_dir, "down", env=env)
        assert down.returncode == 0, down.stderr
        project = project_name(stack_dir)
        assert project_containers(project) == []
        assert project_volumes(project), "down must keep the volumes"


def test_bundled_demo_stack_comes_up_healthy(standin_images, stack_dir: Path) -> None:
    (stack_dir / "setup.env").write_text(
        "QUFABRIC_DOMAIN=localhost\nQFSTACK_BUNDLED_POCKETID=true\n"
        f"QFSTACK_POCKETID_PORT={_free_port()}\n" + local_ports_env() + STANDIN_IMAGES
    )
    up = qfstack(stack_dir, "up", "--timeout", "180")
    assert up.returncode == 0, up.stderr

    report = qfstack(stack_dir, "status", "--json").json()
    assert isinstance(report, dict)
    assert report["healthy"] is True
    services = {s["service"] for s in report["services"]}
    assert services == {
        "dashboard",
        "signal",
        "relay",
        "management",
        "coturn",
        "pocketid",
    }
    management = json.loads((stack_dir / "artifacts/management.json").read_text())
    # Browsers use the published URL; management reaches PocketID internally.
    assert management["HttpConfig"]["AuthIssuer"].startswith("http://localhost:")
    assert management["HttpConfig"]["OIDCConfigEndpoint"] == (
        "http://pocketid:1411/.well-known/openid-configuration"
    )

    down = qfstack(stack_dir, "down", "--volumes", "--yes")
    assert down.returncode == 0, down.stderr
    assert project_containers(project_name(stack_dir)) == []
    assert project_volumes(project_name(stack_dir)) == []


def test_slow_identity_provider_is_waited_for(
    standin_images, stack_dir: Path, certs
) -> None:
    delay = 8
    ports = local_ports_env()
    with external_idp(
        standin_images["pocketid"],
        certs.server_cert.parent,
        certs.server_cert,
        certs.server_key,
        env={"EMU_START_DELAY": str(delay)},
        stack=stack_dir,
        clients=[_guide_client(ports)],
    ) as idp:
        _seed_stack(stack_dir, idp, certs.ca_cert, ports)
        started = time.monotonic()
        up = qfstack(
            stack_dir, "up", "--timeout", "180", env={"QFSTACK_RESOLVE": idp.resolve}
        )
        assert up.returncode == 0, up.stderr + idp.logs()
        assert time.monotonic() - started >= delay


@pytest.mark.parametrize(
    ("knobs", "check"),
    [
        pytest.param(
            {"EMU_ISSUER": "https://elsewhere.qfstack.test"},
            "issuer",
            id="wrong-issuer",
        ),
        pytest.param({"EMU_EMPTY_JWKS": "1"}, "jwks", id="empty-jwks"),
    ],
)
def test_bad_identity_provider_fails_with_exit_3_naming_the_check(
    standin_images, stack_dir: Path, certs, knobs: dict[str, str], check: str
) -> None:
    ports = local_ports_env()
    with external_idp(
        standin_images["pocketid"],
        certs.server_cert.parent,
        certs.server_cert,
        certs.server_key,
        env=knobs,
        stack=stack_dir,
        clients=[_guide_client(ports)],
    ) as idp:
        _seed_stack(stack_dir, idp, certs.ca_cert, ports)
        up = qfstack(
            stack_dir, "up", "--timeout", "15", env={"QFSTACK_RESOLVE": idp.resolve}
        )
        assert up.returncode == 3, up.stderr
        assert f"identity provider ({check})" in up.stderr
        assert "Traceback" not in up.stderr
        # Nothing of QuFabric was started against a broken provider.
        assert project_containers(project_name(stack_dir)) == []


def test_a_missing_client_stops_up_with_exit_3_until_provision_makes_it(
    standin_images, stack_dir: Path, certs
) -> None:
    """No client in PocketID: `up` names the check and the fix and starts no
    QuFabric service; `qfstack pocketid provision` makes it; then `up` passes."""
    ports = local_ports_env()
    with external_idp(
        standin_images["pocketid"],
        certs.server_cert.parent,
        certs.server_cert,
        certs.server_key,
        stack=stack_dir,
    ) as idp:
        _seed_stack(stack_dir, idp, certs.ca_cert, ports)
        env = {"QFSTACK_RESOLVE": idp.resolve}

        refused = qfstack(stack_dir, "up", "--timeout", "60", env=env)
        assert refused.returncode == 3, refused.stderr
        assert "oidc client: exists" in refused.stderr
        assert "Fix: run `qfstack pocketid provision`" in refused.stderr
        assert project_containers(project_name(stack_dir)) == []

        plan = qfstack(
            stack_dir, "pocketid", "provision", "--dry-run", "--user", "admin",
            env=env,
        )  # fmt: skip
        assert plan.returncode == 0, plan.stderr
        assert "would change: client qufabric-client: created" in plan.stdout
        assert "nothing was changed" in plan.stderr

        done = qfstack(
            stack_dir, "pocketid", "provision", "--user", "admin", "--json", env=env
        )
        assert done.returncode == 0, done.stderr
        report = done.json()
        assert isinstance(report, dict)
        assert report["client_id"] == CLIENT_ID and report["changed"] is True
        # setup.env names the client (and its audience) already.
        assert report["setup_env"] == [] and report["backup"] is None
        assert report["pocketid_version"] == "2.x"

        up = qfstack(stack_dir, "up", "--timeout", "180", env=env)
        assert up.returncode == 0, up.stderr + idp.logs()
        assert "ok pocketid api" in up.stderr
        for result in (refused, plan, done, up):
            assert idp.api_token not in result.stdout + result.stderr


def _free_port() -> int:
    from tests.support.stack import free_ports

    return free_ports(1)[0]
