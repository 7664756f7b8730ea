"""The setup.env model: the seed is accepted, mistakes are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from qfstack.config import build_config, load_config
from qfstack.errors import ConfigError
from tests.support.stack import seed_setup_env

SEED = seed_setup_env("pocketid.example.com", "client-123", "api-token-xyz")


def _write(directory: Path, text: str) -> Path:
    (directory / "setup.env").write_text(text)
    return directory


def _errors(directory: Path, text: str) -> dict[str, str]:
    _write(directory, text)
    with pytest.raises(ConfigError) as caught:
        load_config(directory, environ={})
    return {f.variable: f.message for f in caught.value.findings if f.level == "error"}


def test_the_seed_block_with_a_domain_is_accepted(tmp_path: Path) -> None:
    config = load_config(
        _write(tmp_path, SEED + 'QUFABRIC_DOMAIN="qf.example.com"\n'), environ={}
    )
    assert config.authority == "https://pocketid.example.com"
    assert config.client_id == config.audience == "client-123"
    assert config.use_id_token is True
    assert config.device_provider == "none"
    assert config.idp_extra == {
        "ManagementEndpoint": "https://pocketid.example.com",
        "ApiToken": "api-token-xyz",
    }
    assert config.pkce_redirect_urls == ["http://localhost:53000"]
    assert config.mgmt_endpoint == "https://qf.example.com:33073"
    assert config.relay_endpoint == "rel://qf.example.com:33080"
    assert config.coturn_network == "host"
    assert config.bind_address == "0.0.0.0"
    # The seed sets a device client id with provider "none": named, honoured.
    warned = {f.variable for f in config.findings if f.level == "warning"}
    assert "QUFABRIC_AUTH_DEVICE_AUTH_PROVIDER" in warned


def test_the_seed_block_alone_lacks_only_the_domain(tmp_path: Path) -> None:
    assert set(_errors(tmp_path, SEED)) == {"QUFABRIC_DOMAIN"}


@pytest.mark.parametrize(
    ("line", "variable"),
    [
        pytest.param(
            "QUFABRIC_AUTH_CLIENTID=x", "QUFABRIC_AUTH_CLIENTID", id="unknown-typo"
        ),
        pytest.param(
            "QUFABRIC_MGMT_API_PORT=99999",
            "QUFABRIC_MGMT_API_PORT",
            id="port-out-of-range",
        ),
        pytest.param("QUFABRIC_USE_AUTH0=maybe", "QUFABRIC_USE_AUTH0", id="not-bool"),
        pytest.param(
            "QUFABRIC_TURN_EXTERNAL_IP=turn.example.com",
            "QUFABRIC_TURN_EXTERNAL_IP",
            id="turn-ip-hostname",
        ),
        pytest.param(
            "QUFABRIC_STORE_CONFIG_ENGINE=postgres",
            "QUFABRIC_STORE_ENGINE_POSTGRES_DSN",
            id="dsn-missing",
        ),
        pytest.param(
            "QUFABRIC_AUTH_REDIRECT_URI=auth",
            "QUFABRIC_AUTH_REDIRECT_URI",
            id="redirect-not-a-path",
        ),
    ],
)
def test_a_bad_value_is_reported_by_name(
    tmp_path: Path, line: str, variable: str
) -> None:
    errors = _errors(tmp_path, SEED + "QUFABRIC_DOMAIN=qf.example.com\n" + line + "\n")
    assert variable in errors


def test_missing_required_values_are_all_named_at_once(tmp_path: Path) -> None:
    errors = _errors(tmp_path, "QUFABRIC_TOKEN_SOURCE=idToken\n")
    assert {
        "QUFABRIC_DOMAIN",
        "QUFABRIC_AUTH_OIDC_CONFIGURATION_ENDPOINT",
        "QUFABRIC_AUTH_CLIENT_ID",
        "QUFABRIC_IDP_MGMT_EXTRA_MANAGEMENT_ENDPOINT",
        "QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN",
    } <= set(errors)


def test_an_endpoint_without_the_well_known_suffix_is_refused(tmp_path: Path) -> None:
    text = SEED.replace("/.well-known/openid-configuration", "")
    errors = _errors(tmp_path, text + "QUFABRIC_DOMAIN=qf.example.com\n")
    assert (
        "must end with /.well-known"
        in errors["QUFABRIC_AUTH_OIDC_CONFIGURATION_ENDPOINT"]
    )


def test_a_stale_shell_export_is_reported_without_its_secret(tmp_path: Path) -> None:
    values = {"QUFABRIC_DOMAIN": "qf.example.com"}
    text = SEED + "QUFABRIC_DOMAIN=qf.example.com\n"
    _write(tmp_path, text)
    config = load_config(
        tmp_path,
        environ={
            "QUFABRIC_DOMAIN": "old.example.com",
            "QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN": "stale-secret-token",
        },
    )
    messages = {f.variable: f.message for f in config.findings}
    assert "old.example.com" in messages["QUFABRIC_DOMAIN"]
    assert "stale-secret-token" not in messages["QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN"]
    assert config.domain == values["QUFABRIC_DOMAIN"]


def test_a_local_domain_publishes_on_loopback(tmp_path: Path) -> None:
    config = build_config(
        tmp_path,
        {
            "QUFABRIC_DOMAIN": "localhost",
            "QFSTACK_BUNDLED_POCKETID": "true",
        },
        {},
    )
    assert config.local and config.bind_address == "127.0.0.1"
    assert config.mgmt_endpoint == "http://localhost:33073"
    assert config.coturn_network == "bridge"
    assert config.turn_max_port - config.turn_min_port == 9
    assert config.authority == "http://localhost:1411"
    assert config.internal_configuration_endpoint == (
        "http://pocketid:1411/.well-known/openid-configuration"
    )


def test_defaults_and_derivations_of_the_reference(tmp_path: Path) -> None:
    config = build_config(
        tmp_path,
        {
            "QUFABRIC_DOMAIN": "qf.example.com",
            "QUFABRIC_AUTH_OIDC_CONFIGURATION_ENDPOINT": "https://id.example.com/.well-known/openid-configuration",
            "QUFABRIC_AUTH_CLIENT_ID": "c-1",
            "QUFABRIC_IDP_MGMT_EXTRA_MANAGEMENT_ENDPOINT": "https://id.example.com",
            "QUFABRIC_IDP_MGMT_EXTRA_API_TOKEN": "t",
            "QUFABRIC_IDP_MGMT_EXTRA_SOME_OTHER_KEY": "v",
            "QUFABRIC_AUTH_PKCE_REDIRECT_URL_PORTS": "53000, 54000",
            "QUFABRIC_DASH_AUTH_USE_AUDIENCE": "false",
        },
        {},
    )
    assert (config.mgmt_api_port, config.signal_port, config.relay_port) == (
        33073,
        10000,
        33080,
    )
    assert config.signal_proto == "http"
    assert config.turn_user == "self"
    assert (config.turn_min_port, config.turn_max_port) == (49152, 65535)
    assert config.turn_domain == "qf.example.com"
    assert config.get("QUFABRIC_MGMT_DNS_DOMAIN") == "qufabric.selfhosted"
    assert config.store_engine == "sqlite"
    assert config.use_id_token is False  # token source accessToken unless set
    assert config.audience == "c-1"
    assert config.dashboard_audience == "none"
    assert config.pkce_redirect_urls == [
        "http://localhost:53000",
        "http://localhost:54000",
    ]
    assert config.idp_extra == {
        "ManagementEndpoint": "https://id.example.com",
        "ApiToken": "t",
        "SomeOtherKey": "v",
    }


def test_an_export_of_a_variable_setup_env_leaves_out_is_named(
    tmp_path: Path,
) -> None:
    _write(tmp_path, SEED + "QUFABRIC_DOMAIN=qf.example.com\n")
    config = load_config(
        tmp_path,
        environ={
            "QUFABRIC_MGMT_API_PORT": "443",
            "QUFABRIC_SIGNAL_PORT": "10000",  # the default: nothing to say
            "QUFABRIC_TURN_PASSWORD": "exported-turn-password",
        },
    )
    warned = {f.variable: f.message for f in config.findings}
    assert "33073" in warned["QUFABRIC_MGMT_API_PORT"]
    assert "QUFABRIC_SIGNAL_PORT" not in warned
    assert "exported-turn-password" not in warned["QUFABRIC_TURN_PASSWORD"]
    assert config.mgmt_api_port == 33073


def test_a_host_name_with_an_underscore_is_fine_in_a_url(tmp_path: Path) -> None:
    text = SEED.replace("pocketid.example.com", "pocket_id")
    _write(tmp_path, text + "QUFABRIC_DOMAIN=qf.lan\n")
    assert load_config(tmp_path, environ={}).authority == "https://pocket_id"


def test_the_same_origin_spelled_differently_is_no_warning(tmp_path: Path) -> None:
    text = SEED.replace('EXTRA_MANAGEMENT_ENDPOINT="https://pocketid.example.com"',
                        'EXTRA_MANAGEMENT_ENDPOINT="https://PocketID.example.com:443/"')
    assert "PocketID.example.com" in text
    _write(tmp_path, text + "QUFABRIC_DOMAIN=qf.example.com\n")
    warned = {f.variable for f in load_config(tmp_path, environ={}).findings}
    assert "QUFABRIC_IDP_MGMT_EXTRA_MANAGEMENT_ENDPOINT" not in warned
