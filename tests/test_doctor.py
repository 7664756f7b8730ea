"""`diagnose`: every check once, against the emulator (1.16 and 2.x) over TLS,
plus the engine and the ports the stack publishes."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qfstack.checks import Verdict
from qfstack.doctor import DoctorReport, diagnose, engine_verdicts, port_verdicts
from qfstack.oidc import HttpSettings
from qfstack.stack import ServiceState
from tests.support.emulator import Emulator, run_emulator
from tests.support.provider import (
    TOKENS,
    USER_TOKEN,
    VERSIONS,
    free_port,
    make_config,
    seed,
    setup_values,
)
from tests.support.tlsca import CAFiles, make_ca


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CAFiles:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module", params=VERSIONS)
def emulator(request: pytest.FixtureRequest, ca: CAFiles) -> Iterator[Emulator]:
    env = {
        "EMU_VERSION": request.param,
        "EMU_TLS_CERT": str(ca.server_cert),
        "EMU_TLS_KEY": str(ca.server_key),
        "EMU_SEED": json.dumps(seed()),
    }
    with run_emulator(env) as running:
        yield running


def run(tmp_path: Path, emulator: Emulator, ca: CAFiles, **values: Any) -> DoctorReport:
    config = make_config(
        tmp_path, setup_values(emulator.url, ca_bundle=ca.ca_cert, **values)
    )
    return diagnose(config, HttpSettings(), docker=False)


def named(report: DoctorReport, group: str) -> dict[str, Verdict]:
    return {v.name: v for v in report.verdicts if v.group == group}


def v2(request: pytest.FixtureRequest) -> bool:
    return str(request.node.callspec.params["emulator"]).startswith("2.")


def test_a_right_setup(tmp_path: Path, emulator: Emulator, ca: CAFiles) -> None:
    report = run(tmp_path, emulator, ca)
    assert report.exit_code == 0
    # (The configuration warns that containers cannot reach 127.0.0.1.)
    checked = [v for v in report.verdicts if v.group != "config"]
    assert {v.level for v in checked} == {"pass"}, checked
    groups = [v.group for v in report.verdicts]
    assert groups.count("identity provider") == 7
    assert named(report, "pocketid api")["api key"].level == "pass"
    assert list(named(report, "oidc client")) == [
        "exists", "public", "pkce", "callback urls", "logout url", "user groups"
    ]  # fmt: skip
    text = json.dumps(report.as_dict())
    assert all(token not in text for token in TOKENS)


CLIENT_FAULTS = [
    pytest.param("confidential", "public", "fail", "confidential", id="confidential"),
    pytest.param("nopkce", "pkce", "fail", "PKCE is off", id="pkce-off"),
    pytest.param("slash", "callback urls", "fail", "missing", id="wrong-callback"),
    pytest.param("nologout", "logout url", "fail", "missing", id="wrong-logout"),
    pytest.param("emptygroup", "user groups", "warn", "no members", id="empty-group"),
    pytest.param("wild", "callback urls", "warn", "wildcard", id="wildcard"),
    pytest.param("absent", "exists", "fail", "no OIDC client", id="missing"),
]  # fmt: skip


@pytest.mark.parametrize(("client_id", "name", "level", "text"), CLIENT_FAULTS)
def test_client_faults(
    tmp_path: Path,
    emulator: Emulator,
    ca: CAFiles,
    client_id: str,
    name: str,
    level: str,
    text: str,
) -> None:
    report = run(tmp_path, emulator, ca, client_id=client_id)
    verdict = named(report, "oidc client")[name]
    assert (verdict.level, text in verdict.summary) == (level, True), verdict
    assert report.exit_code == (1 if level == "fail" else 0)


def test_group_restriction_without_groups(
    tmp_path: Path, emulator: Emulator, ca: CAFiles, request: pytest.FixtureRequest
) -> None:
    verdict = named(run(tmp_path, emulator, ca, client_id="nogroups"), "oidc client")
    groups = verdict["user groups"]
    if v2(request):
        assert groups.level == "fail" and "nobody can log in" in groups.summary
        assert "Allowed User Groups" in groups.fix
    else:
        # 1.x has no restriction switch: an empty list lets everyone in.
        assert groups.level == "pass" and "every user" in groups.summary


def test_a_refused_key_skips_the_client(
    tmp_path: Path, emulator: Emulator, ca: CAFiles
) -> None:
    report = run(tmp_path, emulator, ca, token="wrong-key-0123456789")
    key = named(report, "pocketid api")["api key"]
    assert key.level == "fail" and "invalid or expired" in key.summary
    assert "Administration -> API Keys" in key.fix
    assert not named(report, "oidc client")
    assert any("OIDC client" in note for note in report.skipped)
    assert "wrong-key-0123456789" not in json.dumps(report.as_dict())


def test_a_non_admin_key(tmp_path: Path, emulator: Emulator, ca: CAFiles) -> None:
    report = run(tmp_path, emulator, ca, token=USER_TOKEN)
    key = named(report, "pocketid api")["api key"]
    assert key.level == "fail" and "not an admin" in key.summary
    assert report.exit_code == 1


def test_an_unreachable_provider_skips_the_api(tmp_path: Path, ca: CAFiles) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    config = make_config(tmp_path, setup_values(url, ca_bundle=ca.ca_cert))
    report = diagnose(config, HttpSettings(), docker=False)
    failed = [v.title for v in report.verdicts if v.level == "fail"]
    assert failed == ["identity provider: connection"]
    assert report.skipped and "not asked" in report.skipped[1]


def test_config_warnings_are_reported(
    tmp_path: Path, emulator: Emulator, ca: CAFiles
) -> None:
    report = run(tmp_path, emulator, ca, QUFABRIC_AUTH_SUPPORTED_SCOPES="openid email")
    config = named(report, "config")
    assert config["QUFABRIC_AUTH_SUPPORTED_SCOPES"].level == "warn"
    assert report.exit_code == 0


# --- ports and engine ---------------------------------------------------------


class FakeStack:
    """Stands in for Stack: this project's dashboard holds the HTTP port."""

    held: int = 0

    def __init__(self, config: object) -> None:
        pass

    def ps(self) -> list[ServiceState]:
        return [
            ServiceState(
                "dashboard", "running", "healthy", 0, "Up", (),
                published=((self.held, "tcp"),),
            )
        ]  # fmt: skip


def test_ports_free_held_by_the_stack_or_by_another_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = [free_port() for _ in range(5)]
    values = setup_values(
        "https://pocketid.example.test",
        QFSTACK_BIND_ADDRESS="127.0.0.1",
        QFSTACK_DASHBOARD_HTTP_PORT=str(ports[0]),
        QFSTACK_DASHBOARD_HTTPS_PORT=str(ports[1]),
        QUFABRIC_MGMT_API_PORT=str(ports[2]),
        QUFABRIC_SIGNAL_PORT=str(ports[3]),
        QUFABRIC_RELAY_PORT=str(ports[4]),
    )
    config = make_config(tmp_path, values)
    monkeypatch.setattr("qfstack.doctor.Stack", FakeStack)
    FakeStack.held = ports[0]
    with socket.socket() as ours, socket.socket() as theirs:
        ours.bind(("127.0.0.1", ports[0]))  # as if the dashboard held it
        ours.listen()
        theirs.bind(("127.0.0.1", ports[2]))
        theirs.listen()
        verdicts = port_verdicts(config)
    # TURN's 3478 is fixed: another stack on this machine may hold it.
    failed = [v for v in verdicts if v.level == "fail" and "TURN" not in v.name]
    assert [v.name for v in failed] == ["QUFABRIC_MGMT_API_PORT"]
    assert f"port {ports[2]}" in failed[0].summary and failed[0].fix
    published = next(v for v in verdicts if v.name == "published")
    evidence = "\n".join(published.evidence)
    assert (
        f"tcp/{ports[0]} on 127.0.0.1 (QFSTACK_DASHBOARD_HTTP_PORT): held by "
        "this stack's dashboard" in evidence
    )
    assert (
        f"tcp/{ports[1]} on 127.0.0.1 (QFSTACK_DASHBOARD_HTTPS_PORT): free" in evidence
    )


@pytest.mark.integration
def test_engine_and_compose_versions() -> None:
    assert shutil.which("docker")
    verdicts = {v.name: v for v in engine_verdicts()}
    assert verdicts["engine"].level == "pass"
    assert verdicts["engine"].summary.startswith("Docker Engine ")
    assert verdicts["compose"].summary.startswith("Compose ")
