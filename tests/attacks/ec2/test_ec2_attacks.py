"""EC2 attacks against moto's EC2 with tagged instances, through the plugin registry."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.bootstrap import Engine
from chalicelib.domain.errors import InvalidPayload
from chalicelib.domain.model import ExecutorStatus
from chalicelib.plugins.contract import Attack, AttackContext, AttackFailed, AttackSkipped
from chalicelib.plugins.registry import PluginSet, load_plugins
from chalicelib.plugins.validation import validate
from chalicelib.settings import builtin_folder
from tests.attacks.ec2.conftest import REGION, Fleet
from tests.conftest import FixedClock, RecordingScheduler, free_port

TERMINATE = "terminate_ec2_instance:TerminateEC2Instance"
NOT_EXCLUDED = "terminate_ec2_instance_not_excluded:TerminateEC2InstanceNotExcluded"
NOT_EXCLUDED_2017 = "terminate_ec2_instance:TerminateEC2InstanceNotExcluded"
STOP = "stop_ec2_instance:StopEC2Instance"
REBOOT = "reboot_ec2_instance:RebootEC2Instance"
DESCRIBE = ["DescribeInstances", "DescribeAddresses"]
EC2_ATTACKS = (TERMINATE, NOT_EXCLUDED, NOT_EXCLUDED_2017, STOP, REBOOT)


@pytest.fixture(scope="module")
def attacks() -> PluginSet[Attack]:
    loaded = load_plugins("attacks", Attack, [builtin_folder("attacks")])
    assert [error for error in loaded.errors if "ec2" in error.path] == []
    return loaded


def run(
    attacks: PluginSet[Attack], fleet: Fleet, ref: str, args: dict[str, Any], dry_run: bool = False
) -> Any:
    """Run an attack as the engine does, its context naming the fleet's EC2."""
    attack = attacks.resolve(ref)(args)
    attack.context = AttackContext(dry_run=dry_run, environment=fleet.environment)
    return attack.run()


@pytest.fixture
def actions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The EC2 API actions Libcloud sends, in order."""
    from libcloud.compute.drivers.ec2 import EC2Connection

    sent: list[str] = []
    original = EC2Connection.request

    def request(self: Any, action: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        sent.append(str((params or {}).get("Action")))
        return original(self, action, params=params, **kw)

    monkeypatch.setattr(EC2Connection, "request", request)
    return sent


# --- refs, schemas and examples -------------------------------------------------------


@pytest.mark.parametrize("ref", EC2_ATTACKS)
def test_every_ec2_attack_is_listed_and_its_example_passes_its_schema(
    attacks: PluginSet[Attack], ref: str
) -> None:
    entry = next(item for item in attacks.catalogue() if item["ref"] == ref)

    validate(entry["example"], entry["schema"], "attack")
    assert entry["example"]["ref"] in EC2_ATTACKS


def test_the_2017_ref_and_the_dotted_form_name_the_same_class(attacks: PluginSet[Attack]) -> None:
    assert attacks.resolve(NOT_EXCLUDED_2017) is attacks.resolve(NOT_EXCLUDED)
    assert attacks.resolve("terminate_ec2_instance.TerminateEC2Instance") is attacks.resolve(
        TERMINATE
    )


def test_the_shared_base_class_is_not_an_attack_of_its_own(attacks: PluginSet[Attack]) -> None:
    assert not [ref for ref in attacks.refs if "EC2InstanceAttack" in ref or ref.startswith("_")]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({}, "filters"),
        ({"filters": {}}, "attack.args.filters"),
        ({"filters": {"tag:Chaos": 3}}, "attack.args.filters.tag:Chaos"),
        ({"filters": {"tag:Chaos": []}}, "attack.args.filters.tag:Chaos"),
        ({"filters": {"tag:Chaos": "true"}, "region": "Ireland"}, "attack.args.region"),
        ({"filters": {"tag:Chaos": "true"}, "regoin": "eu-west-1"}, "regoin"),
        ({"filters": "tag:Chaos=true"}, "attack.args.filters"),
    ],
)
@pytest.mark.parametrize("ref", EC2_ATTACKS)
def test_bad_arguments_are_rejected_naming_the_field(
    attacks: PluginSet[Attack], ref: str, args: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidPayload) as raised:
        validate({"ref": ref, "args": args}, attacks.resolve(ref).schema, "attack")

    assert field in str(raised.value)


@pytest.mark.parametrize(
    ("excluded", "field"),
    [
        ({"launch-time": "2026"}, "launch-time"),
        ({"tag:Protected": 1}, "attack.args.excluded.tag:Protected"),
        ({}, "attack.args.excluded"),
    ],
)
def test_bad_exclusions_are_rejected_naming_the_field(
    attacks: PluginSet[Attack], excluded: dict[str, Any], field: str
) -> None:
    args = {"filters": {"tag:Chaos": "true"}, "excluded": excluded}
    with pytest.raises(InvalidPayload) as raised:
        validate(
            {"ref": NOT_EXCLUDED, "args": args}, attacks.resolve(NOT_EXCLUDED).schema, "attack"
        )

    assert field in str(raised.value)


def test_the_2017_quickstart_attack_without_region_is_valid(attacks: PluginSet[Attack]) -> None:
    quickstart = {"ref": TERMINATE, "args": {"filters": {"instance-state-name": "running"}}}

    validate(quickstart, attacks.resolve(TERMINATE).schema, "attack")


# --- TerminateEC2Instance -----------------------------------------------------------------


def test_terminate_kills_one_matching_instance_and_names_it(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str]
) -> None:
    chaos = fleet.launch(3, tags={**suite_tag, "Name": "web"})
    bystanders = fleet.launch(2, tags={"Name": "db"})

    result = run(attacks, fleet, TERMINATE, {"filters": {"tag:Suite": suite_tag["Suite"]}})

    victim = result["instance"]["id"]
    states = fleet.states()
    assert victim in chaos
    assert states[victim] in ("shutting-down", "terminated")
    assert [i for i in chaos + bystanders if states[i] != "running"] == [victim]
    described = fleet.instance(victim)
    assert result["instance"]["name"] == "web"
    assert result["instance"]["private_ip"] == described["PrivateIpAddress"]
    assert result["instance"]["zone"] == described["Placement"]["AvailabilityZone"]
    assert (result["action"], result["region"], result["matched"]) == ("terminate", REGION, 3)


def test_running_is_added_without_changing_the_stored_config(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str]
) -> None:
    (stopped,) = fleet.launch(1, tags=suite_tag)
    fleet.stop(stopped)
    args = {"filters": {"tag:Suite": suite_tag["Suite"]}}
    stored = copy.deepcopy(args)

    with pytest.raises(AttackSkipped, match=r"^no instance matched$"):
        run(attacks, fleet, TERMINATE, args)

    assert args == stored
    assert fleet.states()[stopped] == "stopped"


def test_a_state_filter_in_the_plan_is_respected(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str]
) -> None:
    (stopped,) = fleet.launch(1, tags=suite_tag)
    (running,) = fleet.launch(1, tags=suite_tag)
    fleet.stop(stopped)

    filters = {"tag:Suite": suite_tag["Suite"], "instance-state-name": ["stopped"]}
    result = run(attacks, fleet, TERMINATE, {"filters": filters})

    assert result["instance"]["id"] == stopped
    assert fleet.states()[running] == "running"


def test_no_match_is_skipped_with_the_reason(attacks: PluginSet[Attack], fleet: Fleet) -> None:
    fleet.launch(2, tags={"Chaos": "false"})

    with pytest.raises(AttackSkipped) as skipped:
        run(attacks, fleet, TERMINATE, {"filters": {"tag:Chaos": "true"}})

    assert skipped.value.reason == "no instance matched"


def test_dry_run_names_the_instance_and_terminates_nothing(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str]
) -> None:
    (only,) = fleet.launch(1, tags={**suite_tag, "Name": "web"})

    with pytest.raises(AttackSkipped) as skipped:
        run(attacks, fleet, TERMINATE, {"filters": {"tag:Suite": suite_tag["Suite"]}}, dry_run=True)

    assert skipped.value.reason.startswith(f"dry run: would terminate {only} (name web")
    assert fleet.states()[only] == "running"


def test_region_is_honoured(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str]
) -> None:
    (instance,) = fleet.launch(1, tags=suite_tag)
    filters = {"tag:Suite": suite_tag["Suite"]}

    with pytest.raises(AttackSkipped):
        run(attacks, fleet, TERMINATE, {"filters": filters, "region": "us-east-1"})
    result = run(attacks, fleet, TERMINATE, {"filters": filters, "region": REGION})

    assert result["instance"]["id"] == instance


def test_an_unreachable_ec2_fails_the_attack_with_a_message(
    attacks: PluginSet[Attack], fleet: Fleet
) -> None:
    nobody = Fleet(f"http://127.0.0.1:{free_port()}")

    with pytest.raises(AttackFailed, match="describing instances in eu-west-1 failed"):
        run(attacks, nobody, TERMINATE, {"filters": {"tag:Chaos": "true"}})


def test_through_the_engine_the_executor_records_the_instance(
    fleet: Fleet,
    engine: Engine,
    clock: FixedClock,
    scheduler: RecordingScheduler,
    suite_tag: dict[str, str],
) -> None:
    (instance,) = fleet.launch(1, tags={**suite_tag, "Name": "api"})
    at = (clock.now() + timedelta(hours=1)).isoformat()
    plan = engine.plans.create(
        {
            "name": "terminate one",
            "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": at}},
            "attack": {"ref": TERMINATE, "args": {"filters": {"tag:Suite": suite_tag["Suite"]}}},
        }
    )
    (executor_id,) = scheduler.scheduled
    clock.advance(hours=1)

    executor = engine.runner.run(executor_id)

    assert executor is not None
    stored = engine.store.get_executor(executor_id)
    assert stored is not None
    assert (stored.status, stored.error) == (ExecutorStatus.SUCCEEDED, None)
    assert stored.result["instance"]["id"] == instance
    assert stored.result["instance"]["name"] == "api"
    assert fleet.states()[instance] != "running"
    assert engine.store.get_plan(plan.id) is not None


def test_through_the_engine_no_match_ends_skipped(
    fleet: Fleet, engine: Engine, clock: FixedClock, scheduler: RecordingScheduler
) -> None:
    at = (clock.now() + timedelta(minutes=5)).isoformat()
    engine.plans.create(
        {
            "name": "nothing to hit",
            "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": at}},
            "attack": {"ref": TERMINATE, "args": {"filters": {"tag:Chaos": "nobody"}}},
        }
    )
    (executor_id,) = scheduler.scheduled
    clock.advance(minutes=5)

    engine.runner.run(executor_id)

    stored = engine.store.get_executor(executor_id)
    assert stored is not None
    assert (stored.status, stored.reason) == (ExecutorStatus.SKIPPED, "no instance matched")


# --- TerminateEC2InstanceNotExcluded ---------------------------------------------------


@pytest.mark.parametrize("ref", [NOT_EXCLUDED, NOT_EXCLUDED_2017])
def test_excluded_instances_are_never_terminated(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str], ref: str
) -> None:
    protected = fleet.launch(4, tags={**suite_tag, "Protected": "true"})
    (exposed,) = fleet.launch(1, tags=suite_tag)
    args = {"filters": {"tag:Suite": suite_tag["Suite"]}, "excluded": {"tag:Protected": "true"}}

    result = run(attacks, fleet, ref, args)
    with pytest.raises(AttackSkipped, match="no instance matched that is not excluded"):
        run(attacks, fleet, ref, args)

    assert result["instance"]["id"] == exposed
    assert result["selection"]["spared"] == [
        {"id": instance, "why": "matches the attack's excluded filters"}
        for instance in sorted(protected)
    ]
    states = fleet.states()
    assert states[exposed] != "running"
    assert {states[i] for i in protected} == {"running"}


def test_exclusion_costs_one_describe_call(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str], actions: list[str]
) -> None:
    fleet.launch(5, tags={**suite_tag, "Protected": "true"})
    fleet.launch(2, tags=suite_tag)
    args = {"filters": {"tag:Suite": suite_tag["Suite"]}, "excluded": {"tag:Protected": "true"}}

    run(attacks, fleet, NOT_EXCLUDED, args)

    # Libcloud's list_nodes adds one DescribeAddresses for the whole list.
    assert actions == [*DESCRIBE, "TerminateInstances"]


def test_any_excluded_filter_spares_an_instance(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str]
) -> None:
    (in_a,) = fleet.launch(1, tags=suite_tag, zone="eu-west-1a")
    (kept,) = fleet.launch(1, tags={**suite_tag, "Keep": "yes"}, zone="eu-west-1b")
    (exposed,) = fleet.launch(1, tags=suite_tag, zone="eu-west-1b")
    args = {
        "filters": {"tag:Suite": suite_tag["Suite"]},
        "excluded": {"availability-zone": "eu-west-1a", "tag-key": "Keep"},
    }

    result = run(attacks, fleet, NOT_EXCLUDED, args)

    assert result["instance"]["id"] == exposed
    assert [item["id"] for item in result["selection"]["spared"]] == sorted([in_a, kept])


def test_the_2017_region_as_zone_exclusion_spares_the_whole_region(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str]
) -> None:
    instances = fleet.launch(2, tags=suite_tag, zone="eu-west-1b")
    args = {
        "filters": {"tag:Suite": suite_tag["Suite"]},
        "excluded": {"availability-zone": "eu-west-1"},
    }

    with pytest.raises(AttackSkipped):
        run(attacks, fleet, NOT_EXCLUDED_2017, args)

    assert {fleet.states()[i] for i in instances} == {"running"}


# --- StopEC2Instance and RebootEC2Instance ---------------------------------------------


def test_stop_stops_one_matching_instance(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str], actions: list[str]
) -> None:
    (instance,) = fleet.launch(1, tags=suite_tag)
    (other,) = fleet.launch(1)

    result = run(attacks, fleet, STOP, {"filters": {"tag:Suite": suite_tag["Suite"]}})

    assert (result["action"], result["instance"]["id"]) == ("stop", instance)
    assert fleet.states()[instance] in ("stopping", "stopped")
    assert fleet.states()[other] == "running"
    assert actions == [*DESCRIBE, "StopInstances"]


def test_reboot_reboots_one_matching_instance(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str], actions: list[str]
) -> None:
    (instance,) = fleet.launch(1, tags=suite_tag)

    result = run(attacks, fleet, REBOOT, {"filters": {"tag:Suite": suite_tag["Suite"]}})

    assert (result["action"], result["instance"]["id"]) == ("reboot", instance)
    assert actions == [*DESCRIBE, "RebootInstances"]
    assert fleet.states()[instance] == "running"


@pytest.mark.parametrize("ref", [STOP, REBOOT])
def test_stop_and_reboot_honour_dry_run(
    attacks: PluginSet[Attack],
    fleet: Fleet,
    suite_tag: dict[str, str],
    actions: list[str],
    ref: str,
) -> None:
    fleet.launch(1, tags=suite_tag)

    with pytest.raises(AttackSkipped, match=r"^dry run: would (stop|reboot) "):
        run(attacks, fleet, ref, {"filters": {"tag:Suite": suite_tag["Suite"]}}, dry_run=True)

    assert actions == DESCRIBE
