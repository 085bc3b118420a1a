"""The targeting path against moto's EC2 with tagged instances: guards, blast radius, seed,
dry run, for the EC2 instance attacks and the Libcloud node attacks (its EC2 driver)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chalicelib.bootstrap import Engine
from chalicelib.domain.model import ExecutorStatus
from chalicelib.plugins.contract import Attack, AttackContext, AttackFailed, AttackSkipped
from chalicelib.plugins.registry import PluginSet, load_plugins
from chalicelib.plugins.validation import validate
from chalicelib.settings import builtin_folder
from tests.attacks.ec2 import shared_dummy
from tests.attacks.ec2.conftest import EXCLUDE, REGION, Fleet
from tests.attacks.ec2.shared_dummy import SharedDummyNodeDriver
from tests.conftest import FixedClock, RecordingScheduler

TERMINATE = "terminate_ec2_instance:TerminateEC2Instance"
NOT_EXCLUDED = "terminate_ec2_instance_not_excluded:TerminateEC2InstanceNotExcluded"
STOP = "stop_ec2_instance:StopEC2Instance"
REBOOT = "reboot_ec2_instance:RebootEC2Instance"
TERMINATE_NODE = "terminate_node:TerminateNode"
STOP_NODE = "stop_node:StopNode"
REBOOT_NODE = "reboot_node:RebootNode"
TAGS_TEXT = "opt-in tag chaos-monkey-engine=target, exclude tag chaos-monkey-engine-exclude"


@pytest.fixture(scope="module")
def attacks() -> PluginSet[Attack]:
    return load_plugins("attacks", Attack, [builtin_folder("attacks")])


def run(
    attacks: PluginSet[Attack], fleet: Fleet, ref: str, args: dict[str, Any], dry_run: bool = False
) -> Any:
    """Validate the arguments as plan creation does, then run as the engine does."""
    validate({"ref": ref, "args": args}, attacks.resolve(ref).schema, "attack")
    attack = attacks.resolve(ref)(args)
    attack.context = AttackContext(dry_run=dry_run, environment=fleet.environment)
    return attack.run()


def skipped(attacks: PluginSet[Attack], fleet: Fleet, ref: str, args: dict[str, Any], **kw: Any):
    with pytest.raises(AttackSkipped) as raised:
        run(attacks, fleet, ref, args, **kw)
    return raised.value


def hit(fleet: Fleet, ids: list[str]) -> list[str]:
    """Which of ``ids`` are no longer running."""
    states = fleet.states()
    return sorted(i for i in ids if states[i] != "running")


def by_suite(suite_tag: dict[str, str], **args: Any) -> dict[str, Any]:
    return {"filters": {"tag:Suite": suite_tag["Suite"]}, **args}


# --- the engine's tag guards ------------------------------------------------------------------


def test_instances_without_the_opt_in_tag_are_refused_with_the_reason(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str]
) -> None:
    ids = fleet.launch(2, tags={**suite_tag, "Chaos": "true"}, opt_in=False)

    refusal = skipped(attacks, fleet, TERMINATE, by_suite(suite_tag))

    assert refusal.reason == (
        f"opt-in: 2 instances matched and none may be attacked ({TAGS_TEXT}): 2 lack the "
        "opt-in tag chaos-monkey-engine=target"
    )
    assert refusal.result["targets"] == []
    assert refusal.result["selection"]["spared"] == [
        {"id": i, "why": "lacks the opt-in tag chaos-monkey-engine=target"} for i in sorted(ids)
    ]
    assert hit(fleet, ids) == []


def test_an_excluded_instance_is_refused_even_with_the_opt_in_tag(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str]
) -> None:
    (excluded,) = fleet.launch(1, tags={**suite_tag, **EXCLUDE})

    refusal = skipped(attacks, fleet, STOP, by_suite(suite_tag))

    assert refusal.reason == (
        f"exclude: 1 instance matched and none may be attacked ({TAGS_TEXT}): 1 carries the "
        "exclude tag chaos-monkey-engine-exclude"
    )
    assert hit(fleet, [excluded]) == []


def test_both_guards_and_the_attacks_own_exclusions_are_named(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str]
) -> None:
    ids = fleet.launch(1, tags=suite_tag, opt_in=False)
    ids += fleet.launch(1, tags={**suite_tag, **EXCLUDE})
    ids += fleet.launch(1, tags={**suite_tag, "Protected": "yes"})
    args = by_suite(suite_tag, excluded={"tag:Protected": "yes"})

    refusal = skipped(attacks, fleet, NOT_EXCLUDED, args)

    assert refusal.reason == (
        f"opt-in and exclude: 3 instances matched and none may be attacked ({TAGS_TEXT}): "
        "1 lacks the opt-in tag chaos-monkey-engine=target; 1 carries the exclude tag "
        "chaos-monkey-engine-exclude; 1 spared by the attack's own arguments (matches the "
        "attack's excluded filters)"
    )
    assert hit(fleet, ids) == []


def test_only_opted_in_instances_that_are_not_excluded_are_hit(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str]
) -> None:
    (lacking,) = fleet.launch(1, tags=suite_tag, opt_in=False)
    (excluded,) = fleet.launch(1, tags={**suite_tag, **EXCLUDE})
    (target,) = fleet.launch(1, tags={**suite_tag, "Name": "web"})

    result = run(attacks, fleet, TERMINATE, by_suite(suite_tag, count="all"))

    assert hit(fleet, [lacking, excluded, target]) == [target]
    assert result["instance"]["id"] == target
    assert [item["id"] for item in result["targets"]] == [target]
    selection = result["selection"]
    assert (selection["matched"], selection["eligible"]) == (3, 1)
    assert {item["id"]: item["why"] for item in selection["spared"]} == {
        lacking: "lacks the opt-in tag chaos-monkey-engine=target",
        excluded: "carries the exclude tag chaos-monkey-engine-exclude",
    }


def test_the_refusal_is_recorded_on_the_executor(
    fleet: Fleet,
    engine: Engine,
    clock: FixedClock,
    scheduler: RecordingScheduler,
    suite_tag: dict[str, str],
) -> None:
    (db,) = fleet.launch(1, tags={**suite_tag, "Name": "db"}, opt_in=False)
    at = (clock.now() + timedelta(minutes=5)).isoformat()
    engine.plans.create(
        {
            "name": "not opted in",
            "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": at}},
            "attack": {"ref": TERMINATE, "args": by_suite(suite_tag)},
        }
    )
    (executor_id,) = scheduler.scheduled
    clock.advance(minutes=5)

    engine.runner.run(executor_id)

    stored = engine.store.get_executor(executor_id)
    assert stored is not None
    assert stored.status == ExecutorStatus.SKIPPED
    assert stored.reason == (
        f"opt-in: 1 instance matched and none may be attacked ({TAGS_TEXT}): 1 lacks the "
        "opt-in tag chaos-monkey-engine=target"
    )
    assert stored.result["selection"]["spared"] == [
        {"id": db, "why": "lacks the opt-in tag chaos-monkey-engine=target"}
    ]
    assert fleet.states()[db] == "running"


# --- the blast radius ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("radius", "launched", "expected"),
    [
        ({}, 5, 1),
        ({"count": 2}, 5, 2),
        ({"count": 9}, 3, 3),
        ({"count": "all"}, 4, 4),
        ({"percent": 50}, 5, 3),  # 2.5 rounded up
        ({"percent": 10}, 5, 1),  # 0.5: at least one
        ({"percent": 40}, 5, 2),
        ({"percent": 100, "max_targets": 2}, 5, 2),
        ({"count": 4, "max_targets": 3}, 5, 3),
        ({"count": "all", "min_remaining": 2}, 5, 3),
        ({"count": 2, "min_remaining": 3}, 5, 2),
        ({"count": "all", "min_remaining": 4}, 5, 1),  # the boundary: one may be hit
    ],
)
def test_the_blast_radius_hits_exactly_that_many(  # noqa: PLR0917 (fixtures and parameters)
    attacks: PluginSet[Attack],
    fleet: Fleet,
    suite_tag: dict[str, str],
    radius: dict[str, Any],
    launched: int,
    expected: int,
) -> None:
    ids = fleet.launch(launched, tags=suite_tag)
    spared = fleet.launch(2, tags=suite_tag, opt_in=False)  # matched, never eligible

    result = run(attacks, fleet, STOP, by_suite(suite_tag, **radius))

    stopped = hit(fleet, ids + spared)
    assert len(stopped) == expected
    assert set(stopped) <= set(ids)
    assert sorted(item["id"] for item in result["targets"]) == stopped
    assert (result["selection"]["matched"], result["selection"]["eligible"]) == (
        launched + 2,
        launched,
    )
    assert ("instance" in result) == (expected == 1)


@pytest.mark.parametrize("min_remaining", [3, 4])
def test_min_remaining_that_leaves_nothing_to_hit_refuses_and_touches_nothing(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str], min_remaining: int
) -> None:
    ids = fleet.launch(3, tags=suite_tag)
    ids += fleet.launch(1, tags=suite_tag, opt_in=False)

    refusal = skipped(
        attacks, fleet, TERMINATE, by_suite(suite_tag, count="all", min_remaining=min_remaining)
    )

    assert refusal.reason == (
        f"blast radius: min_remaining {min_remaining} leaves nothing to hit: 3 eligible "
        f"instances of 4 matched, at most 3 - {min_remaining} = {3 - min_remaining} may be hit"
    )
    assert refusal.result["targets"] == []
    assert hit(fleet, ids) == []


def test_count_and_percent_together_are_refused_at_plan_time(
    fleet: Fleet,
    engine: Engine,
    clock: FixedClock,
    scheduler: RecordingScheduler,
    suite_tag: dict[str, str],
) -> None:
    from chalicelib.domain.errors import InvalidPayload

    at = (clock.now() + timedelta(minutes=5)).isoformat()
    with pytest.raises(InvalidPayload, match=r"attack\.args\.count: 2 is not one of"):
        engine.plans.create(
            {
                "name": "both",
                "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": at}},
                "attack": {"ref": TERMINATE, "args": by_suite(suite_tag, count=2, percent=50)},
            }
        )
    assert not scheduler.scheduled


# --- the recorded seed, and dry run ---------------------------------------------------------------


def test_the_recorded_seed_reproduces_the_pick(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str]
) -> None:
    ids = fleet.launch(8, tags=suite_tag)
    args = by_suite(suite_tag, count=3)
    first = skipped(attacks, fleet, TERMINATE, args, dry_run=True).result
    seed = first["selection"]["seed"]
    picked = sorted(item["id"] for item in first["targets"])

    replayed = run(attacks, fleet, TERMINATE, {**args, "seed": seed})

    assert sorted(item["id"] for item in replayed["targets"]) == picked
    assert replayed["selection"]["seed"] == seed
    assert hit(fleet, ids) == picked


def test_runs_without_a_seed_record_different_seeds(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str]
) -> None:
    fleet.launch(3, tags=suite_tag)

    seeds = {
        skipped(attacks, fleet, TERMINATE, by_suite(suite_tag), dry_run=True).result["selection"][
            "seed"
        ]
        for _ in range(3)
    }

    assert len(seeds) == 3


@pytest.mark.parametrize("ref", [TERMINATE, NOT_EXCLUDED, STOP, REBOOT])
def test_dry_run_touches_nothing_and_reports_every_target(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str], ref: str
) -> None:
    ids = fleet.launch(4, tags=suite_tag)
    before = fleet.states()

    refusal = skipped(attacks, fleet, ref, by_suite(suite_tag, count=3), dry_run=True)

    assert fleet.states() == before
    targets = refusal.result["targets"]
    assert len(targets) == 3
    assert {item["id"] for item in targets} <= set(ids)
    action = refusal.result["action"]
    assert refusal.reason.startswith(f"dry run: would {action} ")
    assert refusal.reason.endswith("; nothing was done")
    for item in targets:
        assert f"{item['id']} (name None, private IP {item['private_ip']}" in refusal.reason
    assert refusal.result["selection"]["radius"] == {"count": 3, "min_remaining": 0}


def test_a_dry_run_that_finds_nothing_still_lists_targets(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str]
) -> None:
    refusal = skipped(attacks, fleet, TERMINATE, by_suite(suite_tag), dry_run=True)

    assert (refusal.reason, refusal.result["targets"]) == ("no instance matched", [])


# --- Libcloud node attacks: the same path (EC2 driver against moto) ----------------------------


@pytest.fixture
def node_args(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A Libcloud EC2 node attack pointed at moto's server, its keys by reference."""
    monkeypatch.setenv("CME_SECRET_NODE_KEY", "testing")
    monkeypatch.setenv("CME_SECRET_NODE_SECRET", "testing")
    # Libcloud signs eu-west-1 with signature version 2 unless told otherwise, and moto
    # reads no region from such a request; "signature" looks secret to the schema, so the
    # option can only be given by reference.
    monkeypatch.setenv("CME_SECRET_NODE_SIGNATURE_VERSION", "4")
    host, port = fleet.endpoint.removeprefix("http://").split(":")
    return {
        "provider": "ec2",
        "key": {"env": "CME_SECRET_NODE_KEY"},
        "secret": {"env": "CME_SECRET_NODE_SECRET"},
        "driver_args": {
            "region": REGION,
            "host": host,
            "port": int(port),
            "secure": False,
            "signature_version": {"env": "CME_SECRET_NODE_SIGNATURE_VERSION"},
        },
        "name_pattern": "*",
    }


def test_node_attacks_apply_the_guards_to_the_nodes_tags(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str], node_args: dict[str, Any]
) -> None:
    (lacking,) = fleet.launch(1, tags={**suite_tag, "Name": "web-a"}, opt_in=False)
    (excluded,) = fleet.launch(1, tags={**suite_tag, "Name": "web-b", **EXCLUDE})
    args = {**node_args, "filters": {"tag:Suite": suite_tag["Suite"]}}

    refusal = skipped(attacks, fleet, TERMINATE_NODE, args)

    assert refusal.reason == (
        f"opt-in and exclude: 2 nodes matched and none may be attacked ({TAGS_TEXT}): 1 lacks "
        "the opt-in tag chaos-monkey-engine=target; 1 carries the exclude tag "
        "chaos-monkey-engine-exclude"
    )
    assert hit(fleet, [lacking, excluded]) == []

    (target,) = fleet.launch(1, tags={**suite_tag, "Name": "web-c"})
    result = run(attacks, fleet, TERMINATE_NODE, {**args, "count": "all"})

    assert result["node"]["id"] == target
    assert [item["id"] for item in result["targets"]] == [target]
    assert hit(fleet, [lacking, excluded, target]) == [target]


def test_node_attacks_take_the_blast_radius_and_the_seed(
    attacks: PluginSet[Attack], fleet: Fleet, suite_tag: dict[str, str], node_args: dict[str, Any]
) -> None:
    fleet.launch(5, tags={**suite_tag, "Name": "web"})
    args = {**node_args, "filters": {"tag:Suite": suite_tag["Suite"]}, "percent": 50}

    # Reboot leaves the nodes running, so the second run sees the same candidates.
    first = run(attacks, fleet, REBOOT_NODE, args)
    again = run(attacks, fleet, REBOOT_NODE, {**args, "seed": first["selection"]["seed"]})
    capped = run(attacks, fleet, REBOOT_NODE, {**args, "min_remaining": 4})

    assert len(first["targets"]) == 3  # 2.5 rounded up
    assert [item["id"] for item in again["targets"]] == [item["id"] for item in first["targets"]]
    assert first["selection"]["radius"] == {"percent": 50, "min_remaining": 0}
    assert "node" not in first
    assert len(capped["targets"]) == 1
    assert capped["node"] == capped["targets"][0]


def test_a_node_dry_run_with_secret_references_contacts_nothing_and_lists_no_targets(
    attacks: PluginSet[Attack], fleet: Fleet, node_args: dict[str, Any], actions: list[str]
) -> None:
    refusal = skipped(attacks, fleet, TERMINATE_NODE, node_args, dry_run=True)

    assert refusal.reason == (
        "dry run: would terminate ec2 nodes matching '*'; its secrets were not resolved and "
        "the provider was not contacted; nothing was done"
    )
    assert refusal.result["targets"] == []
    assert actions == []


@pytest.fixture
def actions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The EC2 API actions Libcloud sends."""
    from libcloud.compute.drivers.ec2 import EC2Connection

    sent: list[str] = []
    original = EC2Connection.request

    def request(self: Any, action: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        sent.append(str((params or {}).get("Action")))
        return original(self, action, params=params, **kw)

    monkeypatch.setattr(EC2Connection, "request", request)
    return sent


# --- several targets, one fails -----------------------------------------------------------------


def test_when_one_of_several_fails_the_others_are_hit_and_the_result_says_which(
    attacks: PluginSet[Attack], fleet: Fleet
) -> None:
    from libcloud.compute.providers import DRIVERS, set_driver

    set_driver(shared_dummy.PROVIDER, shared_dummy.__name__, "SharedDummyNodeDriver")  # type: ignore[arg-type]
    SharedDummyNodeDriver.reset([("web-1", "a"), ("web-2", "a"), ("web-3", "a")])
    SharedDummyNodeDriver.refusing = {"web-2"}
    try:
        with pytest.raises(AttackFailed) as failed:
            run(
                attacks,
                fleet,
                STOP_NODE,
                {"provider": shared_dummy.PROVIDER, "name_pattern": "web-*", "count": "all"},
            )
        states = SharedDummyNodeDriver.by_name()
    finally:
        SharedDummyNodeDriver.refusing = set()
        DRIVERS.pop(shared_dummy.PROVIDER, None)  # type: ignore[call-overload]

    assert str(failed.value) == (
        "stop failed on 1 of 3 nodes: cme_shared_dummy did not confirm the stop of 2"
    )
    assert failed.value.result["hit"] == ["1", "3"]
    assert failed.value.result["failed"] == [
        {"id": "2", "error": "cme_shared_dummy did not confirm the stop of 2"}
    ]
    assert [item["name"] for item in failed.value.result["targets"]] == ["web-1", "web-2", "web-3"]
    assert states == {"web-1": "stopped", "web-2": "running", "web-3": "stopped"}
