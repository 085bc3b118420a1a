"""TerminateNode, StopNode, RebootNode on Libcloud's Dummy driver (and a shared variant)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from libcloud.compute.providers import DRIVERS, set_driver

from chalicelib.domain.errors import InvalidPayload
from chalicelib.domain.safety import TargetTags
from chalicelib.plugins.contract import (
    Attack,
    AttackEnvironment,
    AttackFailed,
    AttackSkipped,
)
from chalicelib.plugins.registry import PluginSet, load_plugins
from chalicelib.plugins.validation import validate
from chalicelib.settings import builtin_folder
from tests.attacks.ec2 import shared_dummy
from tests.attacks.ec2.shared_dummy import SharedDummyNodeDriver

TERMINATE = "terminate_node:TerminateNode"
STOP = "stop_node:StopNode"
REBOOT = "reboot_node:RebootNode"
NODE_ATTACKS = (TERMINATE, STOP, REBOOT)


@pytest.fixture(scope="module")
def attacks() -> PluginSet[Attack]:
    return load_plugins("attacks", Attack, [builtin_folder("attacks")])


@pytest.fixture
def shared_dummy_driver() -> Iterator[type[SharedDummyNodeDriver]]:
    set_driver(shared_dummy.PROVIDER, shared_dummy.__name__, "SharedDummyNodeDriver")  # type: ignore[arg-type]
    SharedDummyNodeDriver.reset(
        [("web-1", "a"), ("web-2", "b"), ("db-1", "a"), ("db-2", "b"), ("web-3", "b")]
    )
    try:
        yield SharedDummyNodeDriver
    finally:
        DRIVERS.pop(shared_dummy.PROVIDER, None)  # type: ignore[call-overload]


def run(
    attacks: PluginSet[Attack],
    ref: str,
    args: dict[str, Any],
    dry_run: bool = False,
    target_tags: TargetTags | None = None,
) -> Any:
    validate({"ref": ref, "args": args}, attacks.resolve(ref).schema, "attack")
    attack = attacks.resolve(ref)(args)
    attack.context.dry_run = dry_run
    if target_tags is not None:
        attack.context.environment = AttackEnvironment(target_tags=target_tags)
    return attack.run()


# Libcloud's own Dummy driver builds its nodes itself, without tags, so they cannot carry
# the opt-in tag: the tests of that driver turn the opt-in rule off (the exclude tag stays).
NO_OPT_IN = TargetTags(opt_in=None)


def shared(**args: Any) -> dict[str, Any]:
    return {"provider": shared_dummy.PROVIDER, "name_pattern": "*", **args}


# --- schemas ---------------------------------------------------------------------------


@pytest.mark.parametrize("ref", NODE_ATTACKS)
def test_node_attacks_are_listed_and_their_examples_pass(
    attacks: PluginSet[Attack], ref: str
) -> None:
    entry = next(item for item in attacks.catalogue() if item["ref"] == ref)

    validate(entry["example"], entry["schema"], "attack")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"name_pattern": "web-*"}, "provider"),
        ({"provider": "dummy"}, "name_pattern"),
        ({"provider": "Dummy Cloud", "name_pattern": "*"}, "attack.args.provider"),
        ({"provider": "dummy", "name_pattern": "*", "key": "inline-key"}, "attack.args.key"),
        ({"provider": "dummy", "name_pattern": "*", "secret": "hunter2"}, "attack.args.secret"),
        (
            {"provider": "dummy", "name_pattern": "*", "driver_args": {"password": "hunter2"}},
            "attack.args.driver_args.password",
        ),
        (
            {"provider": "dummy", "name_pattern": "*", "driver_args": {"api_token": "abc"}},
            "attack.args.driver_args.api_token",
        ),
        ({"provider": "dummy", "name_pattern": "*", "states": ["gone"]}, "attack.args.states"),
        ({"provider": "dummy", "name_pattern": "*", "nmae": "x"}, "nmae"),
    ],
)
@pytest.mark.parametrize("ref", NODE_ATTACKS)
def test_bad_arguments_and_inline_secrets_are_rejected_naming_the_field(
    attacks: PluginSet[Attack], ref: str, args: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidPayload) as raised:
        validate({"ref": ref, "args": args}, attacks.resolve(ref).schema, "attack")

    assert field in str(raised.value)


def test_plain_non_secret_driver_arguments_are_allowed(attacks: PluginSet[Attack]) -> None:
    args = {
        "provider": "gce",
        "name_pattern": "*",
        "driver_args": {"project": "p", "datacenter": "europe-west1-b", "secure": True},
    }

    validate({"ref": TERMINATE, "args": args}, attacks.resolve(TERMINATE).schema, "attack")


# --- Libcloud's own Dummy driver ----------------------------------------------------------


def test_terminate_node_on_the_dummy_provider(
    attacks: PluginSet[Attack], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "CME_SECRET_DUMMY_NODES", "4"
    )  # the Dummy driver's "credentials": node count

    args = {
        "provider": "dummy",
        "key": {"env": "CME_SECRET_DUMMY_NODES"},
        "name_pattern": "dummy-[12]",
    }
    result = run(attacks, TERMINATE, args, target_tags=NO_OPT_IN)

    assert result["provider"] == "dummy"
    assert result["matched"] == 2
    assert result["node"]["name"] in ("dummy-1", "dummy-2")
    assert result["node"]["public_ips"] in (["127.0.0.2"], ["127.0.0.3"])


def test_reboot_node_on_the_dummy_provider(
    attacks: PluginSet[Attack], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CME_SECRET_DUMMY_NODES", "1")

    result = run(
        attacks,
        REBOOT,
        {"provider": "dummy", "key": {"env": "CME_SECRET_DUMMY_NODES"}, "name_pattern": "dummy-0"},
        target_tags=NO_OPT_IN,
    )

    assert (result["action"], result["node"]["name"]) == ("reboot", "dummy-0")


def test_a_driver_without_stop_fails_before_touching_anything(
    attacks: PluginSet[Attack], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CME_SECRET_DUMMY_NODES", "2")

    with pytest.raises(AttackFailed, match="the 'dummy' driver cannot stop nodes"):
        run(
            attacks,
            STOP,
            {"provider": "dummy", "key": {"env": "CME_SECRET_DUMMY_NODES"}, "name_pattern": "*"},
        )


def test_filters_on_a_driver_without_filters_are_refused_not_ignored(
    attacks: PluginSet[Attack], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CME_SECRET_DUMMY_NODES", "2")
    args = {
        "provider": "dummy",
        "key": {"env": "CME_SECRET_DUMMY_NODES"},
        "name_pattern": "*",
        "filters": {"zone": "a"},
    }

    with pytest.raises(AttackFailed, match="cannot filter nodes"):
        run(attacks, TERMINATE, args)


def test_an_unknown_provider_fails_with_its_name(attacks: PluginSet[Attack]) -> None:
    with pytest.raises(AttackFailed, match="no compute provider 'nocloud'"):
        run(attacks, TERMINATE, {"provider": "nocloud", "name_pattern": "*"})


def test_a_missing_secret_fails_naming_the_reference(attacks: PluginSet[Attack]) -> None:
    args = {"provider": "dummy", "key": {"env": "CME_SECRET_TEST_UNSET"}, "name_pattern": "*"}

    with pytest.raises(AttackFailed, match="environment variable CME_SECRET_TEST_UNSET"):
        run(attacks, TERMINATE, args)


# --- effects, filters and secrets on the shared Dummy driver ------------------------------


def test_terminate_node_removes_one_node_matching_the_pattern(
    attacks: PluginSet[Attack], shared_dummy_driver: type[SharedDummyNodeDriver]
) -> None:
    result = run(attacks, TERMINATE, shared(name_pattern="web-*"))

    victim = result["node"]["name"]
    assert victim.startswith("web-")
    assert victim not in shared_dummy_driver.by_name()
    assert sorted(shared_dummy_driver.by_name()) == sorted(
        {"web-1", "web-2", "web-3", "db-1", "db-2"} - {victim}
    )


def test_provider_filters_narrow_the_choice(
    attacks: PluginSet[Attack], shared_dummy_driver: type[SharedDummyNodeDriver]
) -> None:
    result = run(attacks, STOP, shared(name_pattern="db-*", filters={"zone": "b"}))

    assert result["node"]["name"] == "db-2"
    assert shared_dummy_driver.by_name()["db-2"] == "stopped"
    assert shared_dummy_driver.by_name()["db-1"] == "running"


def test_only_running_nodes_are_attacked_unless_states_say_otherwise(
    attacks: PluginSet[Attack], shared_dummy_driver: type[SharedDummyNodeDriver]
) -> None:
    run(attacks, STOP, shared(name_pattern="db-1"))

    with pytest.raises(AttackSkipped, match="no node matched"):
        run(attacks, TERMINATE, shared(name_pattern="db-1"))
    result = run(attacks, TERMINATE, shared(name_pattern="db-1", states=["stopped"]))

    assert result["node"]["name"] == "db-1"
    assert "db-1" not in shared_dummy_driver.by_name()


def test_dry_run_names_the_node_and_does_nothing(
    attacks: PluginSet[Attack], shared_dummy_driver: type[SharedDummyNodeDriver]
) -> None:
    with pytest.raises(
        AttackSkipped, match=r"^dry run: would terminate cme_shared_dummy node web-2"
    ) as skipped:
        run(attacks, TERMINATE, shared(name_pattern="web-2"), dry_run=True)

    assert shared_dummy_driver.by_name()["web-2"] == "running"
    assert [item["name"] for item in skipped.value.result["targets"]] == ["web-2"]


def test_dry_run_of_several_nodes_names_each_and_does_nothing(
    attacks: PluginSet[Attack], shared_dummy_driver: type[SharedDummyNodeDriver]
) -> None:
    before = shared_dummy_driver.by_name()

    with pytest.raises(AttackSkipped) as skipped:
        run(attacks, STOP, shared(name_pattern="web-*", count="all"), dry_run=True)

    assert shared_dummy_driver.by_name() == before
    assert skipped.value.reason == (
        "dry run: would stop cme_shared_dummy node web-1 (1), cme_shared_dummy node web-2 (2), "
        "cme_shared_dummy node web-3 (5); nothing was done"
    )
    assert [item["name"] for item in skipped.value.result["targets"]] == [
        "web-1",
        "web-2",
        "web-3",
    ]


def test_the_opt_in_and_exclude_tags_apply_to_nodes(
    attacks: PluginSet[Attack], shared_dummy_driver: type[SharedDummyNodeDriver]
) -> None:
    shared_dummy_driver.reset(
        [("web-1", "a"), ("web-2", "a"), ("web-3", "a")],
        tags={"web-1": {}, "web-2": {**shared_dummy.OPT_IN, "chaos-monkey-engine-exclude": ""}},
    )

    result = run(attacks, STOP, shared(name_pattern="web-*", count="all"))

    assert shared_dummy_driver.by_name() == {
        "web-1": "running",
        "web-2": "running",
        "web-3": "stopped",
    }
    assert result["node"]["name"] == "web-3"
    assert result["selection"]["spared"] == [
        {"id": "1", "why": "lacks the opt-in tag chaos-monkey-engine=target"},
        {"id": "2", "why": "carries the exclude tag chaos-monkey-engine-exclude"},
    ]


def test_secrets_come_from_env_ssm_and_secrets_manager_and_never_show(
    attacks: PluginSet[Attack],
    shared_dummy_driver: type[SharedDummyNodeDriver],
    aws: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("CME_SECRET_CLOUD_KEY", "key-from-env")
    boto3.client("ssm").put_parameter(
        Name="/chaos-monkey-engine/cloud-secret", Value="secret-from-ssm", Type="SecureString"
    )
    boto3.client("secretsmanager").create_secret(
        Name="chaos-monkey-engine/cloud",
        SecretString=json.dumps({"token": "token-from-secrets-manager"}),
    )
    args = shared(
        name_pattern="web-1",
        key={"env": "CME_SECRET_CLOUD_KEY"},
        secret={"ssm": "/chaos-monkey-engine/cloud-secret"},
        driver_args={
            "api_token": {"secretsmanager": "chaos-monkey-engine/cloud", "key": "token"},
            "region": "north",
        },
    )
    # Our loggers at DEBUG (botocore's own debug log prints every response body).
    caplog.set_level(logging.INFO)
    for name in ("attacks", "chalicelib", "_cme_plugins"):
        caplog.set_level(logging.DEBUG, logger=name)

    result = run(attacks, TERMINATE, args)

    assert shared_dummy_driver.built_with == [
        (
            ("key-from-env", "secret-from-ssm"),
            {"api_token": "token-from-secrets-manager", "region": "north"},
        )
    ]
    assert "terminate cme_shared_dummy node 1" in caplog.text
    shown = json.dumps(result) + caplog.text + json.dumps(args)
    for secret in ("key-from-env", "secret-from-ssm", "token-from-secrets-manager"):
        assert secret not in shown
