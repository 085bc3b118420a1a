"""POST /api/1/plans/preview: the executors, the targets on moto's EC2 and every guard's
verdict, with nothing stored, scheduled or attacked."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from chalicelib.bootstrap import Engine
from chalicelib.domain.safety import GUARD_ORDER
from chalicelib.settings import Settings
from tests.api.conftest import Api
from tests.attacks.ec2 import conftest as ec2
from tests.attacks.ec2.conftest import EXCLUDE, REGION, Fleet
from tests.conftest import FIXTURES, RecordingScheduler

# The EC2 attack tests' fixtures: moto's EC2 server on 127.0.0.1, Libcloud reading it,
# and a fleet of instances launched there.
moto_server = ec2.moto_server
tolerant_libcloud = ec2.tolerant_libcloud
fleet = ec2.fleet

PREVIEW = "/api/1/plans/preview"

# A test attack written for these tests: its dry run fails quoting a secret, and a real
# run (which must never happen in a preview) leaves a mark.
FINDER = """
from chaosmonkey.attacks import Attack, AttackSkipped

REAL_RUNS = []


class Finder(Attack):
    ref = "finder:Finder"
    supports_dry_run = True
    schema = {
        "type": "object",
        "properties": {"ref": {"type": "string"}, "args": {"type": "object"}},
        "required": ["ref"],
    }
    example = {"ref": ref, "args": {"mode": "fail"}}

    def run(self):
        if not self.context.dry_run:
            REAL_RUNS.append(self.attack_config)
            return {"did": "harm"}
        mode = self.attack_config.get("mode")
        if mode == "fail":
            raise RuntimeError(
                "listing failed at https://admin:hunter2@inventory.example/v1?token=s3cr3t "
                + "x" * 600
            )
        if mode == "none":
            raise AttackSkipped("dry run: nothing matched", result={"targets": []})
        return {"targets": ["db-1", "db-2"]}
"""


@pytest.fixture
def settings(tmp_path: Path, moto_server: str) -> Settings:
    """The engine's EC2 attacks call moto's EC2 server; a folder adds ``finder:Finder``."""
    folder = tmp_path / "preview_attacks"
    folder.mkdir()
    (folder / "finder.py").write_text(FINDER)
    return Settings(
        plans_table="test-plans",
        executors_table="test-executors",
        attack_folders=(FIXTURES / "test_attacks", folder),
        aws_region=REGION,
        ec2_endpoint=moto_server,
    )


@pytest.fixture
def instances(fleet: Fleet, engine: Engine) -> dict[str, str]:
    """Instances on moto's EC2, by role. ``web-target`` is the only one the engine may
    attack: ``web-excluded`` carries the exclude tag, ``web-no-opt-in`` lacks the opt-in
    tag, ``db-target`` is not a web one."""
    roles: dict[str, tuple[dict[str, str], bool]] = {
        "web-target": ({"App": "web"}, True),
        "web-excluded": ({"App": "web", **EXCLUDE}, True),
        "web-no-opt-in": ({"App": "web"}, False),
        "db-target": ({"App": "db"}, True),
    }
    return {
        role: fleet.launch(tags={"Name": role, **tags}, opt_in=opt_in)[0]
        for role, (tags, opt_in) in roles.items()
    }


def states(fleet: Fleet, ids: dict[str, str]) -> dict[str, str]:
    found = fleet.states()
    return {role: found[instance_id] for role, instance_id in ids.items()}


def plan(attack: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "name": "terminate one opted-in web instance",
        "attack": attack
        or {
            "ref": "terminate_ec2_instance:TerminateEC2Instance",
            "args": {"filters": {"tag:App": "web"}, "region": REGION},
        },
        "planner": {
            "ref": "exact_planner:ExactPlanner",
            "args": {"date": "2026-12-01T12:00:00+01:00"},
        },
        **extra,
    }


def assert_nothing_stored_or_scheduled(api: Api, scheduler: RecordingScheduler) -> None:
    assert api.get("/api/1/plans/?all=true").body["plans"] == []
    assert api.get("/api/1/executors/?executed=any").body["_embedded"]["executors"] == []
    assert scheduler.scheduled == {}


def guard_verdicts(body: dict[str, Any]) -> dict[str, dict[str, str]]:
    assert [verdict["guard"] for verdict in body["guards"]] == list(GUARD_ORDER)
    return {verdict["guard"]: verdict for verdict in body["guards"]}


def test_a_preview_lists_executors_targets_and_verdicts_and_changes_nothing(
    api: Api, scheduler: RecordingScheduler, fleet: Fleet, instances: dict[str, str]
) -> None:
    for path in (PREVIEW, f"{PREVIEW}/"):
        answer = api.post(path, plan())
        assert answer.status == 200, answer.body
        assert answer.headers["content-type"] == "application/hal+json"
        body = answer.body
        assert body["executors"] == [
            {
                "name": "terminate one opted-in web instance",
                "next_run_time": "2026-12-01T12:00:00+01:00",
            }
        ]
        # Only the opted-in, not excluded web instance: the engine's own tag rules.
        assert [target["id"] for target in body["targets"]] == [instances["web-target"]]
        assert body["targets"][0]["name"] == "web-target"
        shown = json.dumps(body)
        for spared in ("web-excluded", "web-no-opt-in", "db-target"):
            assert instances[spared] not in shown, (spared, body)
        assert "targets_note" not in body
        verdicts = guard_verdicts(body)
        assert all(verdict["verdict"] == "pass" for verdict in verdicts.values()), verdicts
        assert body["_links"]["self"]["href"] == PREVIEW

    assert_nothing_stored_or_scheduled(api, scheduler)
    assert set(states(fleet, instances).values()) == {"running"}


def test_the_blast_radius_decides_how_many_targets_are_listed(
    api: Api, scheduler: RecordingScheduler, fleet: Fleet, instances: dict[str, str]
) -> None:
    more = fleet.launch(count=3, tags={"App": "web"})
    eligible = {instances["web-target"], *more}
    args = {"filters": {"tag:App": "web"}, "region": REGION}
    attack = {"ref": "terminate_ec2_instance:TerminateEC2Instance", "args": args}

    every = api.post(PREVIEW, plan({**attack, "args": {**args, "count": "all"}})).body
    assert {target["id"] for target in every["targets"]} == eligible

    capped = {**args, "count": "all", "max_targets": 2}
    two = api.post(PREVIEW, plan({**attack, "args": capped})).body
    assert len(two["targets"]) == 2
    assert {target["id"] for target in two["targets"]} <= eligible

    assert_nothing_stored_or_scheduled(api, scheduler)
    assert set(
        states(fleet, {**instances, **{f"more-{n}": id_ for n, id_ in enumerate(more)}}).values()
    ) == {"running"}


def test_a_halt_is_the_refusing_guard(
    api: Api, scheduler: RecordingScheduler, instances: dict[str, str]
) -> None:
    reason = "game day postponed: on-call is busy"
    assert api.put("/api/1/halt", {"halted": True, "reason": reason}).status == 200
    body = api.post(PREVIEW, plan()).body
    verdicts = guard_verdicts(body)
    assert verdicts["halt"]["verdict"] == "refuse"
    assert verdicts["halt"]["reason"].startswith("halted: ")
    assert reason in verdicts["halt"]["reason"]
    assert verdicts["calendar"]["verdict"] == "pass"
    # The targets are still listed: the preview says what would be hit once allowed.
    assert instances["web-target"] in json.dumps(body["targets"])
    assert_nothing_stored_or_scheduled(api, scheduler)


class TestACalendarRefuses:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        # The fixed clock's day (2026-12-01) is a blackout date.
        return replace(settings, blackout_dates=frozenset({date(2026, 12, 1)}))

    def test_a_blackout_date_is_the_refusing_guard(
        self, api: Api, scheduler: RecordingScheduler, instances: dict[str, str]
    ) -> None:
        verdicts = guard_verdicts(api.post(PREVIEW, plan()).body)
        assert verdicts["calendar"] == {
            "guard": "calendar",
            "verdict": "refuse",
            "reason": verdicts["calendar"]["reason"],
        }
        assert verdicts["calendar"]["reason"].startswith("calendar: 2026-12-01 is a blackout date")
        assert verdicts["halt"]["verdict"] == "pass"
        assert_nothing_stored_or_scheduled(api, scheduler)


def test_a_stop_condition_the_preview_cannot_evaluate_refuses(
    api: Api, scheduler: RecordingScheduler, instances: dict[str, str]
) -> None:
    safety = {"stop_conditions": {"alarms": ["no-such-alarm"]}}
    verdicts = guard_verdicts(api.post(PREVIEW, plan(safety=safety)).body)
    assert verdicts["stop_conditions"]["verdict"] == "refuse"
    assert "no-such-alarm" in verdicts["stop_conditions"]["reason"]
    assert_nothing_stored_or_scheduled(api, scheduler)


def test_an_attack_without_dry_run_lists_no_targets_and_is_not_run(
    api: Api, scheduler: RecordingScheduler
) -> None:
    from tests.fixtures.test_attacks import scripted

    runs = len(scripted.RUNS)
    body = api.post(PREVIEW, plan({"ref": "scripted:Scripted", "args": {"mode": "ok"}})).body
    assert body["targets"] is None
    assert body["targets_note"] == (
        "scripted:Scripted does not support dry run, so its targets cannot be listed "
        "without running it"
    )
    assert len(scripted.RUNS) == runs
    assert_nothing_stored_or_scheduled(api, scheduler)


def test_a_dry_run_that_names_no_target_list_says_what_it_said(api: Api) -> None:
    body = api.post(PREVIEW, plan({"ref": "scripted:Leashed", "args": {"mode": "ok"}})).body
    assert body["targets"] is None
    assert body["targets_note"] == (
        "the dry run of scripted:Leashed named no targets: dry run: would hit db-1"
    )


def test_the_targets_a_dry_run_returns_are_listed(api: Api) -> None:
    body = api.post(PREVIEW, plan({"ref": "finder:Finder", "args": {"mode": "list"}})).body
    assert body["targets"] == ["db-1", "db-2"]
    assert "targets_note" not in body


def test_no_match_lists_no_target_and_says_why(api: Api) -> None:
    body = api.post(PREVIEW, plan({"ref": "finder:Finder", "args": {"mode": "none"}})).body
    assert body["targets"] == []
    assert body["targets_note"] == "dry run: nothing matched"


def test_a_failure_to_find_targets_is_the_note_clipped_and_masked(
    api: Api, scheduler: RecordingScheduler
) -> None:
    answer = api.post(PREVIEW, plan({"ref": "finder:Finder", "args": {"mode": "fail"}}))
    assert answer.status == 200, answer.body
    body = answer.body
    assert body["targets"] is None
    note = body["targets_note"]
    assert note.startswith("finding the targets failed: RuntimeError: listing failed at https://")
    assert "hunter2" not in note
    assert "s3cr3t" not in note
    assert "more characters)" in note
    assert len(note) < 450
    assert_nothing_stored_or_scheduled(api, scheduler)


def test_the_preview_never_runs_the_real_attack(api: Api) -> None:
    import sys

    for mode in ("list", "none", "fail"):
        api.post(PREVIEW, plan({"ref": "finder:Finder", "args": {"mode": mode}}))
    finder = next(
        module
        for name, module in sys.modules.items()
        if name.endswith("finder") and hasattr(module, "REAL_RUNS")
    )
    assert finder.REAL_RUNS == []


@pytest.mark.parametrize(
    ("body", "start"),
    [
        ({"name": "x"}, "invalid payload plan: 'attack' is a required property"),
        (
            plan(safety={"min_interval": {"seconds": -1}}),
            "invalid payload safety.min_interval.seconds",
        ),
        (plan({"ref": "nope:Nope", "args": {}}), "invalid attack 'nope:Nope'"),
        (
            {
                **plan(),
                "planner": {
                    "ref": "exact_planner:ExactPlanner",
                    "args": {"date": "2000-01-01T00:00:00Z"},
                },
            },
            "cannot plan: planner.args.date '2000-01-01T00:00:00Z' is in the past",
        ),
        (
            plan(
                {
                    "ref": "terminate_ec2_instance:TerminateEC2Instance",
                    "args": {"filters": {}, "region": REGION},
                }
            ),
            "invalid payload attack.args.filters",
        ),
    ],
)
def test_a_body_plan_creation_refuses_is_refused_alike(
    api: Api, scheduler: RecordingScheduler, body: dict[str, Any], start: str
) -> None:
    previewed = api.post(PREVIEW, body)
    created = api.post("/api/1/plans/", body)
    assert previewed.status == created.status == 400
    assert previewed.body == created.body
    assert previewed.body["msg"].startswith(start), previewed.body
    assert_nothing_stored_or_scheduled(api, scheduler)


def test_a_body_that_is_not_json_is_refused(api: Api) -> None:
    answer = api.post(PREVIEW, raw=b"{")
    assert answer.status == 400
    assert answer.body == {"msg": "payload must be a valid json"}
