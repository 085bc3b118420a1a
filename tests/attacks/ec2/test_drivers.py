"""EC2DriverFactory: the 2017 import paths, the AWS credential chain, region, endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.adapters.ec2 import EC2DriverFactory, EC2Error
from chalicelib.plugins.contract import AttackContext, AttackEnvironment
from chalicelib.settings import Settings
from tests.attacks.ec2.conftest import Fleet


def test_the_factory_is_importable_the_2017_ways() -> None:
    from chaosmonkey.drivers import EC2DriverFactory as from_package
    from chaosmonkey.drivers.ec2_driver import EC2DriverFactory as from_module

    assert from_package is from_module
    assert issubclass(from_module, EC2DriverFactory)


def role_credentials(monkeypatch: pytest.MonkeyPatch, key: str, secret: str, token: str) -> None:
    """The environment a Lambda role gives a function (botocore reads the 2012 name first)."""
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_SESSION_TOKEN", token)


def test_credentials_include_the_session_token(monkeypatch: pytest.MonkeyPatch) -> None:
    role_credentials(monkeypatch, "AKIDROLE", "role-secret", "role-session-token")

    factory = EC2DriverFactory("eu-west-1")
    driver = factory.get_driver()

    assert (factory.aws_ak, factory.aws_sk, factory.token) == (
        "AKIDROLE",
        "role-secret",
        "role-session-token",
    )
    assert driver.key == "AKIDROLE"
    assert driver.secret == "role-secret"
    assert driver.connection.token == "role-session-token"
    assert driver.signature_version == "4"


def test_credentials_come_from_the_standard_chain_not_only_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "[chaos]\n"
        "aws_access_key_id = AKIDFILE\n"
        "aws_secret_access_key = file-secret\n"
        "aws_session_token = file-token\n"
    )
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_PROFILE", "chaos")

    factory = EC2DriverFactory("eu-west-1")

    assert (factory.aws_ak, factory.token) == ("AKIDFILE", "file-token")
    assert factory.get_driver().connection.token == "file-token"


def test_the_2017_iam_role_path_sets_region_and_passes_the_token_without_metadata_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What a Lambda role (or a container role) provides: key, secret and session token.
    monkeypatch.setenv("AWS_IAM_ROLE", "chaos-monkey")
    role_credentials(monkeypatch, "ASIAROLE", "role-secret", "role-token")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    contacted: list[object] = []

    def no_network(*args: object, **kwargs: object) -> None:
        contacted.append(args)
        raise AssertionError("the factory must not make network calls")

    monkeypatch.setattr("socket.create_connection", no_network)
    monkeypatch.setattr("requests.Session.request", no_network)

    factory = EC2DriverFactory()
    driver = factory.get_driver()

    assert factory.region == "eu-central-1"
    assert driver.region_name == "eu-central-1"
    assert driver.connection.token == "role-token"
    assert contacted == []


def test_no_credentials_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))

    with pytest.raises(EC2Error, match="no AWS credentials"):
        EC2DriverFactory("eu-west-1")


def test_region_is_the_argument_else_aws_default_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")

    assert EC2DriverFactory("us-east-2").get_driver().region_name == "us-east-2"
    assert EC2DriverFactory().get_driver().region_name == "eu-west-3"


def test_no_region_anywhere_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))

    with pytest.raises(EC2Error, match="no AWS region"):
        EC2DriverFactory()


def test_an_unknown_region_is_a_clear_error() -> None:
    with pytest.raises(EC2Error, match="no EC2 region 'mars-north-1'"):
        EC2DriverFactory("mars-north-1").get_driver()


def test_without_an_endpoint_the_driver_targets_the_regional_aws_endpoint() -> None:
    connection = EC2DriverFactory("eu-west-1").get_driver().connection

    assert (connection.host, connection.secure) == ("ec2.eu-west-1.amazonaws.com", True)


def test_the_endpoint_argument_points_the_driver_elsewhere() -> None:
    connection = EC2DriverFactory("eu-west-1", "http://127.0.0.1:4567").get_driver().connection

    assert (connection.host, connection.port, connection.secure) == ("127.0.0.1", 4567, False)


def test_the_endpoint_variable_is_not_read_at_run_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # CME_EC2_ENDPOINT is a setting, read once at start (Settings.from_env).
    monkeypatch.setenv("CME_EC2_ENDPOINT", "http://127.0.0.1:4567")

    connection = EC2DriverFactory("eu-west-1").get_driver().connection

    assert connection.host == "ec2.eu-west-1.amazonaws.com"
    assert Settings.from_env().ec2_endpoint == "http://127.0.0.1:4567"


def test_in_an_attack_run_the_2017_factory_takes_the_engine_region_and_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from chaosmonkey.drivers import EC2DriverFactory as Factory2017

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    engine = AttackEnvironment(aws_region="eu-central-1", ec2_endpoint="http://127.0.0.1:4567")

    with AttackContext(environment=engine).active():
        inside = Factory2017().get_driver()
        chosen = Factory2017("us-east-2", "http://127.0.0.1:9999").get_driver()
    outside = Factory2017().get_driver()

    assert (inside.region_name, inside.connection.host, inside.connection.port) == (
        "eu-central-1",
        "127.0.0.1",
        4567,
    )
    assert (chosen.region_name, chosen.connection.port) == ("us-east-2", 9999)
    assert (outside.region_name, outside.connection.host) == (
        "eu-west-3",
        "ec2.eu-west-3.amazonaws.com",
    )


def test_a_malformed_endpoint_is_a_clear_error() -> None:
    with pytest.raises(EC2Error, match="not an http"):
        EC2DriverFactory("eu-west-1", endpoint="127.0.0.1:4567").get_driver()


def test_the_driver_lists_moto_instances_by_tag(fleet: Fleet) -> None:
    from chaosmonkey.drivers import EC2DriverFactory as Factory2017

    tagged = fleet.launch(2, tags={"Chaos": "true", "Name": "web"})
    fleet.launch(1, tags={"Chaos": "false"})

    # As a 2017 plugin does it, inside an attack run whose engine's EC2 is the fleet.
    with AttackContext(environment=fleet.environment).active():
        driver = Factory2017().get_driver()
    nodes = driver.list_nodes(ex_filters={"tag:Chaos": "true"})

    assert sorted(node.id for node in nodes) == sorted(tagged)
    assert {node.name for node in nodes} == {"web"}
