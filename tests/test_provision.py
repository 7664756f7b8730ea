"""Provisioning QuFabric's client against the emulator (1.16 and 2.x, over TLS):
create, update field by field, no-op re-run, dry run, group access, refused
keys, unsupported versions, the bundled PocketID's first admin."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from qfstack.checks import Verdict
from qfstack.clientspec import check_client, client_spec
from qfstack.config import load_config
from qfstack.doctor import expiry_verdict, pocketid_verdicts, version_verdict
from qfstack.oidc import HttpSettings, http_client
from qfstack.pocketid import OidcClient, PocketIdClient, PocketIdError
from qfstack.provision import (
    Access,
    Options,
    ProvisionReport,
    SignInLink,
    prepare_bundled,
    provision,
    provision_setup,
    sign_in_link,
)
from qfstack.stack import Stack
from tests.support.emulator import Emulator, run_emulator
from tests.support.provider import (
    ADMIN_TOKEN,
    DOMAIN,
    TOKENS,
    USER_TOKEN,
    VERSIONS,
    callbacks,
    good_client,
    make_config,
    setup_values,
    write_setup_env,
)
from tests.support.tlsca import CAFiles, make_ca

STATIC_KEY = "static-api-key-0123456789abcdef"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CAFiles:
    return make_ca(tmp_path_factory.mktemp("ca"))


def users() -> list[dict[str, Any]]:
    return [
        {"username": "admin", "email": "admin@qf.example.test", "isAdmin": True,
         "apiKeys": [{"token": ADMIN_TOKEN}]},
        {"username": "alice", "email": "alice@qf.example.test",
         "apiKeys": [{"token": USER_TOKEN}]},
        {"username": "bob"},
    ]  # fmt: skip


@pytest.fixture(params=VERSIONS)
def version(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def start(
    ca: CAFiles, version: str, *, clients: Any = (), **env: str
) -> AbstractContextManager[Emulator]:
    seed = {"users": users(), "clients": list(clients)}
    settings = {
        "EMU_VERSION": version,
        "EMU_TLS_CERT": str(ca.server_cert),
        "EMU_TLS_KEY": str(ca.server_key),
        "EMU_SEED": json.dumps(seed),
        **env,
    }
    return run_emulator(settings)


@pytest.fixture
def empty(ca: CAFiles, version: str) -> Iterator[Emulator]:
    """A PocketID with users but no client."""
    with start(ca, version) as running:
        yield running


@pytest.fixture
def wrong(ca: CAFiles, version: str) -> Iterator[Emulator]:
    """A PocketID whose client `qufabric` is wrong in every field qfstack sets."""
    client = good_client(
        name="old name",
        isPublic=False,
        pkceEnabled=False,
        callbackURLs=[f"https://{DOMAIN}/auth/"],
        logoutCallbackURLs=[],
        description="kept as it is",
        secret="client-secret-0123456789",
        allowedUserGroups=[],
    )
    with start(ca, version, clients=[client]) as running:
        yield running


def stack(directory: Path, emulator: Emulator, ca: CAFiles, **extra: str) -> Path:
    values = setup_values(emulator.url, ca_bundle=ca.ca_cert, **extra)
    write_setup_env(directory, values)
    return directory


def guide_stack(directory: Path, emulator: Emulator, ca: CAFiles) -> Path:
    """setup.env as the guide leaves it before the client exists."""
    path = stack(directory, emulator, ca)
    text = path.joinpath("setup.env").read_text()
    text = text.replace('QUFABRIC_AUTH_CLIENT_ID="qufabric"', (
        "# The client, from PocketID's admin page:\n"
        'QUFABRIC_AUTH_CLIENT_ID="<CLIENT_ID>"\n'
        'QUFABRIC_AUTH_AUDIENCE="<CLIENT_ID>"\n'
        'QUFABRIC_AUTH_DEVICE_AUTH_PROVIDER="none"\n'
        'QUFABRIC_AUTH_DEVICE_AUTH_CLIENT_ID="<CLIENT_ID>"\n'
        'QUFABRIC_AUTH_DEVICE_AUTH_AUDIENCE="<CLIENT_ID>"'
    ))  # fmt: skip
    path.joinpath("setup.env").write_text(text)
    return path


def run(directory: Path, **options: Any) -> ProvisionReport:
    return provision_setup(directory, HttpSettings(), Options(**options), {})


@pytest.fixture
def http(ca: CAFiles) -> Iterator[httpx.Client]:
    with http_client(HttpSettings(ca_bundle=ca.ca_cert)) as client:
        yield client


def fetch(emulator: Emulator, http: httpx.Client, client_id: str) -> OidcClient:
    found = PocketIdClient(http, emulator.url, ADMIN_TOKEN).get_client(client_id)
    assert found is not None
    return found


def server_state(emulator: Emulator) -> dict[str, Any]:
    """Clients, groups and users (keys' last-use stamps change on every call)."""
    state = json.loads((emulator.data_dir / "emulator-state.json").read_text())
    return {name: state[name] for name in ("clients", "groups", "users")}


def setup_env(directory: Path) -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in (directory / "setup.env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )


def backups(directory: Path) -> list[Path]:
    return sorted(directory.glob("setup.env.*.bak"))


def is_v2(version: str) -> bool:
    return version.startswith("2.")


# --- create ------------------------------------------------------------------


def test_create_from_the_guides_placeholders(
    tmp_path: Path, empty: Emulator, ca: CAFiles, http: httpx.Client, version: str
) -> None:
    directory = guide_stack(tmp_path, empty, ca)
    report = run(directory, users=("admin",))

    new_id = report.provisioned.client_id
    assert new_id and new_id != "qufabric"  # PocketID chose it
    lines = [c.line() for c in report.provisioned.changes]
    assert lines[0].startswith("client 'QuFabric': created as 'QuFabric'")
    values = setup_env(directory)
    for name in (
        "QUFABRIC_AUTH_CLIENT_ID",
        "QUFABRIC_AUTH_AUDIENCE",
        "QUFABRIC_AUTH_DEVICE_AUTH_CLIENT_ID",
        "QUFABRIC_AUTH_DEVICE_AUTH_AUDIENCE",
    ):
        assert values[name] == f'"{new_id}"', name
    # Only those lines changed; the comment and the rest are as they were.
    text = (directory / "setup.env").read_text()
    assert "# The client, from PocketID's admin page:" in text
    (backup,) = backups(directory)
    assert "<CLIENT_ID>" in backup.read_text()

    config = load_config(directory, {})
    client = fetch(empty, http, new_id)
    assert (client.name, client.launch_url) == ("QuFabric", f"https://{DOMAIN}")
    verdicts = check_client(client_spec(config), client)
    assert {v.level for v in verdicts} == {"pass"}, verdicts
    if is_v2(version):
        assert client.is_group_restricted is True
        assert [g.name for g in client.allowed_groups] == ["qufabric-users"]
        assert "group qufabric-users: created" in lines
        assert "group qufabric-users: members: 0 user(s) -> + admin" in lines
    else:
        assert client.is_group_restricted is None and not client.allowed_groups
        assert any(
            "1.x has no group restriction" in n for n in report.provisioned.notes
        )


def test_create_with_the_configured_id(
    tmp_path: Path, empty: Emulator, ca: CAFiles, http: httpx.Client
) -> None:
    directory = stack(tmp_path, empty, ca, client_id="qufabric-prod")
    report = run(directory)
    assert report.provisioned.client_id == "qufabric-prod"
    assert fetch(empty, http, "qufabric-prod").is_public
    # setup.env named it already: only the audience, made explicit, is new.
    assert [c.field for c in report.setup_env] == ["QUFABRIC_AUTH_AUDIENCE"]


def test_the_device_client_follows_when_the_device_flow_is_on(
    tmp_path: Path, empty: Emulator, ca: CAFiles
) -> None:
    directory = guide_stack(tmp_path, empty, ca)
    text = (directory / "setup.env").read_text()
    text = text.replace('DEVICE_AUTH_PROVIDER="none"', 'DEVICE_AUTH_PROVIDER="hosted"')
    text = text.replace('QUFABRIC_AUTH_DEVICE_AUTH_CLIENT_ID="<CLIENT_ID>"\n', "")
    text = text.replace('QUFABRIC_AUTH_DEVICE_AUTH_AUDIENCE="<CLIENT_ID>"\n', "")
    (directory / "setup.env").write_text(text)
    report = run(directory)
    assert sorted(c.field for c in report.setup_env) == [
        "QUFABRIC_AUTH_AUDIENCE",
        "QUFABRIC_AUTH_CLIENT_ID",
        "QUFABRIC_AUTH_DEVICE_AUTH_AUDIENCE",
        "QUFABRIC_AUTH_DEVICE_AUTH_CLIENT_ID",
    ]


def test_an_empty_device_client_warns_no_more_than_validate_does(
    tmp_path: Path, empty: Emulator, ca: CAFiles
) -> None:
    empty_device = {
        "QUFABRIC_AUTH_DEVICE_AUTH_PROVIDER": "none",
        "QUFABRIC_AUTH_DEVICE_AUTH_CLIENT_ID": "",
        "QUFABRIC_AUTH_DEVICE_AUTH_AUDIENCE": "",
    }
    directory = stack(tmp_path, empty, ca, **empty_device)
    validated = {str(f) for f in load_config(directory, {}).findings}
    report = run(directory)
    assert {str(f) for f in report.findings} == validated
    assert not any("DEVICE_AUTH" in f.variable for f in report.findings)
    assert setup_env(directory)["QUFABRIC_AUTH_DEVICE_AUTH_CLIENT_ID"] == '""'


def test_the_device_client_stays_out_while_the_flow_is_off(
    tmp_path: Path, empty: Emulator, ca: CAFiles
) -> None:
    directory = stack(tmp_path, empty, ca, client_id="qufabric-prod")
    run(directory)
    assert "QUFABRIC_AUTH_DEVICE_AUTH_CLIENT_ID" not in setup_env(directory)


# --- find and update ---------------------------------------------------------


def test_found_by_name_when_the_id_is_unknown(
    tmp_path: Path, ca: CAFiles, version: str
) -> None:
    named = good_client("abc-123", name="QuFabric", allowedUserGroups=[])
    with start(ca, version, clients=[named]) as emulator:
        directory = stack(tmp_path, emulator, ca, client_id="typo")
        report = run(directory, open_access=True)
    assert report.provisioned.client_id == "abc-123"
    assert setup_env(directory)["QUFABRIC_AUTH_CLIENT_ID"] == '"abc-123"'
    assert not [c for c in report.provisioned.changes if "created" in c.after]


def test_two_clients_of_the_same_name_change_nothing(
    tmp_path: Path, ca: CAFiles, http: httpx.Client
) -> None:
    with start(ca, "2.14.0") as emulator:
        api = PocketIdClient(http, emulator.url, ADMIN_TOKEN)
        for client_id in ("one", "two"):  # the seed skips a repeated name
            api.create_client({"id": client_id, "name": "QuFabric"})
        directory = guide_stack(tmp_path, emulator, ca)
        before = server_state(emulator)
        with pytest.raises(PocketIdError, match="2 clients named 'QuFabric'") as got:
            run(directory)
        assert server_state(emulator) == before
    assert "--client-id" in got.value.fix
    assert not backups(directory)


def test_an_existing_client_is_updated_field_by_field(
    tmp_path: Path, wrong: Emulator, ca: CAFiles, http: httpx.Client, version: str
) -> None:
    directory = stack(tmp_path, wrong, ca)
    report = run(directory, users=("alice",))
    changed = {c.field: c for c in report.provisioned.changes if c.subject == (
        "client qufabric")}  # fmt: skip
    assert {"name", "callbackURLs", "logoutCallbackURLs", "isPublic", "pkceEnabled",
            "launchURL"} <= set(changed)  # fmt: skip
    assert changed["name"].line() == "client qufabric: name: 'old name' -> 'QuFabric'"
    assert changed["isPublic"].before == "false" and changed["isPublic"].after == "true"
    assert changed["callbackURLs"].before == f"[https://{DOMAIN}/auth/]"
    assert changed["callbackURLs"].after == "[" + ", ".join(callbacks()) + "]"

    client = fetch(wrong, http, "qufabric")
    config = load_config(directory, {})
    assert {v.level for v in check_client(client_spec(config), client)} == {"pass"}
    notes = " ".join(report.provisioned.notes)
    if is_v2(version):
        # What qfstack does not manage survives the PUT.
        assert client.raw["description"] == "kept as it is"
        # 2.14 lists a client's secrets; the old one is named, not deleted.
        assert "keeps 1 client secret(s)" in notes
    else:
        assert "client secret" not in notes


def test_a_second_run_changes_nothing_and_says_so(
    tmp_path: Path, wrong: Emulator, ca: CAFiles
) -> None:
    directory = stack(tmp_path, wrong, ca)
    first = run(directory, users=("alice",))
    assert first.changed
    text = (directory / "setup.env").read_bytes()
    saved = backups(directory)
    state = server_state(wrong)

    again = run(directory, users=("alice",))
    assert not again.changed
    assert again.provisioned.changes == [] and again.setup_env == []
    assert (directory / "setup.env").read_bytes() == text
    assert backups(directory) == saved
    assert server_state(wrong) == state


def test_a_dry_run_plans_and_changes_nothing(
    tmp_path: Path, wrong: Emulator, ca: CAFiles, version: str
) -> None:
    directory = guide_stack(tmp_path, wrong, ca)
    text = (directory / "setup.env").read_bytes()
    state = server_state(wrong)

    report = run(directory, dry_run=True, users=("alice",))
    assert report.provisioned.dry_run and report.changed
    # No client has the name QuFabric: it would be created.
    assert report.provisioned.changes[0].after.startswith("created as 'QuFabric'")
    assert {c.after for c in report.setup_env} == {"(the id PocketID assigns)"}
    if is_v2(version):
        assert "group qufabric-users: created" in [
            c.line() for c in report.provisioned.changes
        ]
    assert (directory / "setup.env").read_bytes() == text
    assert not backups(directory)
    assert server_state(wrong) == state


def test_a_dry_run_of_an_update(tmp_path: Path, wrong: Emulator, ca: CAFiles) -> None:
    directory = stack(tmp_path, wrong, ca)
    state = server_state(wrong)
    planned = run(directory, dry_run=True)
    assert server_state(wrong) == state
    done = run(directory)
    assert [c.line() for c in planned.provisioned.changes] == [
        c.line() for c in done.provisioned.changes
    ]


def test_a_dry_run_plans_what_the_real_run_does(
    tmp_path: Path, wrong: Emulator, ca: CAFiles, version: str
) -> None:
    # No client is named QuFabric, so none tells the version by name; the
    # dry run must still learn it (1.x: no group work) as the real run does.
    directory = guide_stack(tmp_path, wrong, ca)
    planned = run(directory, dry_run=True, users=("alice",))
    done = run(directory, users=("alice",))

    def steps(report: ProvisionReport) -> list[tuple[str, str, str]]:
        return [(c.field, c.before, c.after) for c in report.provisioned.changes]

    assert steps(planned) == steps(done)
    assert planned.provisioned.version == done.provisioned.version
    assert planned.provisioned.assumed_version is None
    if not is_v2(version):
        assert not any("group" in c.line() for c in planned.provisioned.changes)
        assert "restricted" not in planned.provisioned.changes[0].after


def test_a_dry_run_that_cannot_tell_the_version_says_what_it_assumes(
    tmp_path: Path, empty: Emulator, ca: CAFiles, version: str
) -> None:
    # No client at all: 1.16 shows its version nowhere before one is created.
    report = run(guide_stack(tmp_path, empty, ca), dry_run=True)
    notes = report.provisioned.notes
    if is_v2(version):
        # 2.13+ tells it by the error its missing version route answers.
        assert report.provisioned.assumed_version is None
        assert not any("version unknown" in n for n in notes)
        return
    assert report.provisioned.version == "unknown"
    assert report.provisioned.assumed_version == "2.x"
    assert report.as_dict()["pocketid_version_assumed"] == "2.x"
    assert any(n.startswith("version unknown; assuming 2.x") for n in notes)


# --- access (2.x) ------------------------------------------------------------


def test_group_access_is_made_and_reused(
    tmp_path: Path, empty: Emulator, ca: CAFiles, http: httpx.Client, version: str
) -> None:
    directory = stack(tmp_path, empty, ca)
    run(directory, group="vpn-users", users=("alice",))
    again = run(directory, group="vpn-users", users=("alice", "bob"))
    api = PocketIdClient(http, empty.url, ADMIN_TOKEN)
    groups = [g for g in api.list_groups() if g.name == "vpn-users"]
    if not is_v2(version):
        assert groups == []
        return
    assert len(groups) == 1 and groups[0].user_count == 2
    assert [c.line() for c in again.provisioned.changes] == [
        "group vpn-users: members: 1 user(s) -> + bob"
    ]
    client = fetch(empty, http, "qufabric")
    assert [g.name for g in client.allowed_groups] == ["vpn-users"]


def test_open_access_turns_the_restriction_off(
    tmp_path: Path, ca: CAFiles, http: httpx.Client
) -> None:
    seeded = good_client(name="QuFabric", allowedUserGroups=[])
    with start(ca, "2.14.0", clients=[seeded]) as emulator:
        directory = stack(tmp_path, emulator, ca)
        report = run(directory, open_access=True)
        client = fetch(emulator, http, "qufabric")
    assert [c.line() for c in report.provisioned.changes] == [
        "client qufabric: launchURL: (none) -> https://qf.example.test",
        "client qufabric: isGroupRestricted: true -> false",
    ]
    assert client.is_group_restricted is False
    assert "every PocketID user may log in" in " ".join(report.provisioned.notes)


def test_an_empty_group_is_named(tmp_path: Path, ca: CAFiles) -> None:
    with start(ca, "2.14.0") as emulator:
        report = run(stack(tmp_path, emulator, ca))
    assert "has no members yet" in " ".join(report.provisioned.notes)


def test_a_missing_user_changes_nothing(
    tmp_path: Path, empty: Emulator, ca: CAFiles
) -> None:
    directory = stack(tmp_path, empty, ca)
    state = server_state(empty)
    with pytest.raises(PocketIdError, match="no user 'nobody'"):
        run(directory, users=("nobody",))
    assert server_state(empty) == state


# --- keys and versions -------------------------------------------------------


def test_a_non_admin_key_is_refused(
    tmp_path: Path, wrong: Emulator, ca: CAFiles
) -> None:
    directory = stack(tmp_path, wrong, ca, token=USER_TOKEN)
    state = server_state(wrong)
    with pytest.raises(PocketIdError, match="not an admin") as caught:
        run(directory)
    assert server_state(wrong) == state
    assert USER_TOKEN not in str(caught.value) + caught.value.fix
    assert "Administration" in caught.value.fix


def test_a_key_from_a_file_is_used_and_never_written(
    tmp_path: Path, empty: Emulator, ca: CAFiles
) -> None:
    directory = stack(tmp_path, empty, ca, token="<API_TOKEN>")
    report = run(directory, api_token=ADMIN_TOKEN)
    assert report.changed
    assert ADMIN_TOKEN not in (directory / "setup.env").read_text()
    assert ADMIN_TOKEN not in json.dumps(report.as_dict())


def test_a_placeholder_key_in_setup_env_is_the_next_step(
    tmp_path: Path, empty: Emulator, ca: CAFiles
) -> None:
    directory = stack(tmp_path, empty, ca, token="<API_TOKEN>")
    report = run(directory, api_token=ADMIN_TOKEN)
    assert report.next_steps == [
        "setup.env still has a placeholder in QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN: "
        "put the management API key there (qfstack init --api-token-file FILE "
        "does it); `qfstack validate` and `qfstack up` need it."
    ]
    assert report.as_dict()["next_steps"] == report.next_steps
    assert run(stack(tmp_path, empty, ca)).next_steps == []


def test_without_a_key_qfstack_says_how_to_make_one(
    tmp_path: Path, ca: CAFiles
) -> None:
    with start(ca, "1.16.0") as emulator:
        directory = stack(tmp_path, emulator, ca, token="")
        with pytest.raises(PocketIdError, match="no PocketID API key") as caught:
            run(directory)
    fix = caught.value.fix
    assert "1.x has no static API key" in fix
    assert "Administration -> API Keys -> Add API Key" in fix
    assert "Expires At" in fix and "--api-token-file" in fix


class FakePocketId:
    """A PocketID that announces its version (the route newer ones have)."""

    def __init__(self, version: str | None) -> None:
        self.version = version

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/users/me":
            return httpx.Response(200, json={"username": "admin", "isAdmin": True})
        if request.url.path == "/api/version/current" and self.version:
            return httpx.Response(200, json={"currentVersion": self.version})
        return httpx.Response(404, json={"error": "Not found"})


@pytest.mark.parametrize(
    ("announced", "text"),
    [
        pytest.param("v3.0.0", "PocketID 3.0.0 is not supported", id="3.x"),
        pytest.param("0.53.0", "PocketID 0.53.0 is not supported", id="0.x"),
    ],
)
def test_unsupported_versions_are_refused_clearly(
    tmp_path: Path, announced: str, text: str
) -> None:
    config = make_config(tmp_path, setup_values("https://pocketid.test"))
    with httpx.Client(transport=httpx.MockTransport(FakePocketId(announced))) as h:
        api = PocketIdClient(h, "https://pocketid.test", ADMIN_TOKEN)
        with pytest.raises(PocketIdError, match=text) as caught:
            provision(api, client_spec(config), client_id="q", access=Access())
    assert "1.x and 2.x" in caught.value.detail
    assert caught.value.permanent


def test_doctor_names_the_version_and_fails_an_unsupported_one() -> None:
    with httpx.Client(transport=httpx.MockTransport(FakePocketId("3.1.0"))) as h:
        verdict = version_verdict(PocketIdClient(h, "https://p.test", ADMIN_TOKEN))
    assert (verdict.level, verdict.permanent) == ("fail", True)
    assert "PocketID 3.1.0 is not supported" in verdict.summary


def test_doctor_names_a_version_learnt_from_answers(
    tmp_path: Path, wrong: Emulator, ca: CAFiles, http: httpx.Client, version: str
) -> None:
    config = load_config(stack(tmp_path, wrong, ca), {})
    verdicts, _ = pocketid_verdicts(config, http, None)
    (found,) = [v for v in verdicts if v.title == "pocketid api: version"]
    major = "2" if is_v2(version) else "1"
    assert found.summary == (
        f"PocketID {major}.x (from its answers; it does not announce one)."
    )


def test_a_newer_2x_tells_its_version() -> None:
    with httpx.Client(transport=httpx.MockTransport(FakePocketId("v2.15.1"))) as h:
        api = PocketIdClient(h, "https://pocketid.test", ADMIN_TOKEN)
        assert api.detect_version() == "2.15.1"
    assert api.at_least(2, 14) is True and api.group_restricted_by_default


def test_the_version_is_learnt_from_answers(
    empty: Emulator, http: httpx.Client, version: str
) -> None:
    api = PocketIdClient(http, empty.url, ADMIN_TOKEN)
    assert api.detect_version() == ("2.x" if is_v2(version) else "unknown")
    if is_v2(version):
        # 2.13+ errors carry code and request_id: the version route's 404 did.
        assert api.at_least(2, 13) is True
    created = api.create_client({"id": "probe", "name": "probe", "isPublic": True})
    assert api.major == (2 if is_v2(version) else 1)
    secrets = api.client_secret_ids(created.id)
    assert secrets == ([] if is_v2(version) else None)


# --- the bundled PocketID -----------------------------------------------------


def bundled_config(directory: Path, emulator: Emulator, **extra: str) -> Any:
    values = {
        "QUFABRIC_DOMAIN": "localhost",
        "QFSTACK_BUNDLED_POCKETID": "true",
        "QFSTACK_POCKETID_URL": emulator.url,
        "QFSTACK_POCKETID_STATIC_API_KEY": STATIC_KEY,
        "QFSTACK_DASHBOARD_HTTP_PORT": "8080",
        **extra,
    }
    return make_config(directory, values)


@pytest.fixture
def bundled(ca: CAFiles) -> Iterator[Emulator]:
    """The bundled PocketID as `up` starts it: a static key, no user yet."""
    env = {"EMU_VERSION": "2.14.0", "STATIC_API_KEY": STATIC_KEY}
    with run_emulator(env) as running:
        yield running


def test_the_bundled_pocketid_is_provisioned_and_gets_its_first_admin(
    tmp_path: Path, bundled: Emulator
) -> None:
    config = bundled_config(tmp_path, bundled)
    with http_client(HttpSettings()) as http:
        first = prepare_bundled(config, http)
        again = prepare_bundled(config, http)
        verdicts, skipped = pocketid_verdicts(config, http, None)

    assert first.admin is not None and first.admin.username == "admin"
    assert first.provisioned.client_id == "qufabric"
    assert first.lines()[-1] == "created the first admin 'admin'"
    assert first.provisioned.group is not None
    assert again.admin is None and not again.changed
    assert skipped == []
    levels = {v.title: v.level for v in verdicts}
    assert set(levels.values()) == {"pass"}, verdicts
    assert levels["pocketid api: api key expiry"] == "pass"
    by_title = {v.title: v for v in verdicts}
    assert "static API key does not expire" in by_title[
        "pocketid api: api key expiry"].summary  # fmt: skip
    assert "restricted to QuFabric users" in by_title[
        "oidc client: user groups"].summary  # fmt: skip


def test_the_bundled_client_keeps_the_access_an_operator_chose(
    tmp_path: Path, bundled: Emulator
) -> None:
    config = bundled_config(tmp_path, bundled)
    with http_client(HttpSettings()) as http:
        api = PocketIdClient(http, bundled.url, STATIC_KEY)
        provision(api, client_spec(config), client_id="qufabric",
                  access=Access(restricted=False), by_name=False)  # fmt: skip
        result = prepare_bundled(config, http)
        client = api.get_client("qufabric")
    assert client is not None and client.is_group_restricted is False
    assert result.provisioned.changes == []


def test_a_bundled_1x_says_how_to_get_a_key(tmp_path: Path) -> None:
    env = {"EMU_VERSION": "1.16.0", "STATIC_API_KEY": STATIC_KEY}
    with run_emulator(env) as emulator, http_client(HttpSettings()) as http:
        config = bundled_config(tmp_path, emulator)
        with pytest.raises(PocketIdError, match="refused qfstack's static") as caught:
            prepare_bundled(config, http)
    assert "before 2.2 has no static API key" in caught.value.fix
    assert f"{emulator.url}/setup" in caught.value.fix
    assert "Administration -> API Keys -> Add API Key" in caught.value.fix
    assert STATIC_KEY not in str(caught.value)


def test_a_bundled_1x_with_an_api_key_works(tmp_path: Path) -> None:
    seed = {"users": users()}
    env = {"EMU_VERSION": "1.16.0", "EMU_SEED": json.dumps(seed)}
    with run_emulator(env) as emulator, http_client(HttpSettings()) as http:
        config = bundled_config(
            tmp_path, emulator, QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN=ADMIN_TOKEN
        )
        result = prepare_bundled(config, http)
    assert result.provisioned.client_id == "qufabric"
    assert result.admin is None  # PocketID has users already


def test_the_sign_in_link_is_read_and_masked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bundled: Emulator
) -> None:
    printed = (
        'A one-time access token valid for 1 hour has been created for "admin".\n'
        "Use the following URL to sign in once: http://localhost:1411/lc/AbC123\n"
    )
    monkeypatch.setattr(
        Stack, "pocketid_one_time_access_token", lambda self, user: printed
    )
    link = sign_in_link(bundled_config(tmp_path, bundled), "admin")
    assert link.reveal() == "http://localhost:1411/lc/AbC123"
    assert "AbC123" not in f"{link} {link!r}"
    assert isinstance(link, SignInLink)


# --- doctor: the key's expiry -------------------------------------------------


@pytest.mark.parametrize(
    ("days", "level"), [pytest.param(10, "warn", id="soon"), (400, "pass")]
)
def test_doctor_warns_before_the_key_expires(
    ca: CAFiles, http: httpx.Client, days: int, level: str
) -> None:
    expires = datetime.now(timezone.utc) + timedelta(days=days)
    seed = {
        "users": [
            {"username": "admin", "isAdmin": True, "apiKeys": [
                {"token": ADMIN_TOKEN, "name": "QuFabric Management Token",
                 "expiresAt": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
                {"token": "other-key-0123456789abcdef", "name": "another"},
            ]},
        ]
    }  # fmt: skip
    env = {
        "EMU_TLS_CERT": str(ca.server_cert),
        "EMU_TLS_KEY": str(ca.server_key),
        "EMU_SEED": json.dumps(seed),
    }
    with run_emulator(env) as emulator:
        api = PocketIdClient(http, emulator.url, ADMIN_TOKEN)
        api.me()  # stamps lastUsedAt, as doctor's first call does
        verdict: Verdict = expiry_verdict(api, "QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN")
    assert verdict.level == level, verdict
    assert verdict.evidence[0] == "key 'QuFabric Management Token'"
    if level == "warn":
        assert f"in {days - 1} day(s)" in verdict.summary or (
            f"in {days} day(s)" in verdict.summary
        )
        assert "Add API Key" in verdict.fix
    assert all(token not in repr(verdict) for token in TOKENS)
