"""Plugins written the 2017 way, loaded from a folder, planned and run through the API."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from chalicelib.bootstrap import Engine
from chalicelib.domain.model import ExecutorStatus
from chalicelib.settings import Settings
from tests.api.conftest import Api
from tests.conftest import FIXTURES, FixedClock, RecordingScheduler

PLUGINS = FIXTURES / "plugins_2017"


@pytest.fixture
def settings() -> Settings:
    return Settings(
        plans_table="test-plans",
        executors_table="test-executors",
        attack_folders=(PLUGINS / "attacks",),
        planner_folders=(PLUGINS / "planners",),
    )


def test_2017_plugins_are_listed_with_their_own_schema_and_example(api: Api) -> None:
    attacks = {a["ref"]: a for a in api.get("/api/1/attacks/").body["attacks"]}
    planners = {p["ref"]: p for p in api.get("/api/1/planners/").body["planners"]}
    assert attacks["my_attack:MyAttack"]["example"] == {
        "ref": "my_attack:MyAttack",
        "name": "attack1",
    }
    assert planners["my_planner:MyPlanner"]["schema"]["properties"]["args"]["type"] == "object"
    assert "code_form_planner:TwiceDailyPlanner" in planners


def test_documented_planner_form_with_add_job(
    api: Api, engine: Engine, clock: FixedClock, scheduler: RecordingScheduler
) -> None:
    runs: list[Any] = sys.modules[engine.attacks.resolve("my_attack:MyAttack").__module__].RUNS
    runs.clear()
    payload = {
        "name": "2017 style",
        "attack": {"ref": "my_attack:MyAttack", "args": {"target": "db-1"}},
        "planner": {"ref": "my_planner:MyPlanner", "args": {"date": "2026-12-01T15:30"}},
    }
    answer = api.post("/api/1/plans/", payload)
    assert answer.status == 200, answer.body
    plan = api.get(f"/api/1/plans/{answer.body['id']}").body
    [executor] = plan["_embedded"]["executors"]
    # A naive date from a 2017 planner is in the engine's timezone (Europe/Madrid).
    assert executor["next_run_time"] == "2026-12-01T15:30:00+01:00"
    assert executor["name"] == "Job Name"
    assert list(scheduler.scheduled) == [executor["id"]]

    clock.current = engine.executors.get(executor["id"]).next_run_time
    engine.runner.run(executor["id"])
    assert runs == [{"target": "db-1"}]
    shown = api.get(f"/api/1/executors/{executor['id']}").body
    assert shown["status"] == ExecutorStatus.SUCCEEDED.value
    assert shown["executed"] is True


def test_code_form_planner_with_add_plan_and_add_executor(api: Api) -> None:
    payload = {
        "name": "twice",
        "attack": {"ref": "my_attack.MyAttack"},
        "planner": {
            "ref": "code_form_planner.TwiceDailyPlanner",
            "args": {"start": "2026-12-01T11:00"},
        },
    }
    answer = api.post("/api/1/plans/", payload)
    assert answer.status == 200, answer.body
    plan = api.get(f"/api/1/plans/{answer.body['id']}").body
    assert plan["executors_count"] == 2
    assert [e["name"] for e in plan["_embedded"]["executors"]] == ["twice-1", "twice-2"]
    assert [e["next_run_time"] for e in plan["_embedded"]["executors"]] == [
        "2026-12-01T11:00:00+01:00",
        "2026-12-01T23:00:00+01:00",
    ]


def test_2017_documented_put_date_format(api: Api, engine: Engine) -> None:
    payload = {
        "name": "move me",
        "attack": {"ref": "my_attack:MyAttack"},
        "planner": {"ref": "my_planner:MyPlanner", "args": {"date": "2026-12-01T15:30"}},
    }
    plan_id = api.post("/api/1/plans/", payload).body["id"]
    executor_id = api.get(f"/api/1/plans/{plan_id}").body["_embedded"]["executors"][0]["id"]
    # The 2017 docs' own example date is in the past now: refused, not silently accepted.
    past = api.put(
        f"/api/1/executors/{executor_id}", {"type": "date", "args": {"date": "2017-10-23T19:19"}}
    )
    assert past.status == 400
    moved = api.put(
        f"/api/1/executors/{executor_id}", {"type": "date", "args": {"date": "2027-10-23T19:19"}}
    )
    assert moved.status == 200
    assert moved.body["next_run_time"] == "2027-10-23T19:19:00+02:00"


def test_a_planner_that_imports_pytz_loads_and_plans(api: Api, engine: Engine) -> None:
    assert not [error for error in engine.planners.errors if "pytz_planner" in error.path]
    payload = {
        "name": "pytz",
        "attack": {"ref": "my_attack:MyAttack"},
        "planner": {"ref": "pytz_planner:NewYorkPlanner", "args": {"date": "2026-12-01T09:30"}},
    }
    answer = api.post("/api/1/plans/", payload)
    assert answer.status == 200, answer.body
    [executor] = api.get(f"/api/1/plans/{answer.body['id']}").body["_embedded"]["executors"]
    # 09:30 in New York (EST, UTC-5) is 15:30 in Madrid (CET, UTC+1).
    assert executor["next_run_time"] == "2026-12-01T15:30:00+01:00"


def hourly_plan(times: object) -> dict[str, Any]:
    return {
        "name": "hourly",
        "attack": {"ref": "my_attack:MyAttack"},
        "planner": {
            "ref": "times_planner:HourlyPlanner",
            "args": {"date": "2026-12-01T11:00", "times": times},
        },
    }


def test_a_2017_shaped_planner_schema_validates_the_whole_planner_object(api: Api) -> None:
    refused = api.post("/api/1/plans/", hourly_plan("x"))
    assert refused.status == 400
    assert refused.body["msg"].startswith("invalid payload planner.args.times:"), refused.body
    assert "'x' is not of type 'integer'" in refused.body["msg"]
    accepted = api.post("/api/1/plans/", hourly_plan(2))
    assert accepted.status == 200, accepted.body
    assert api.get(f"/api/1/plans/{accepted.body['id']}").body["executors_count"] == 2


def test_a_schema_that_describes_args_still_validates_args(api: Api) -> None:
    payload = {
        "name": "simple",
        "attack": {"ref": "my_attack:MyAttack"},
        "planner": {
            "ref": "simple_planner:SimplePlanner",
            "args": {"min_time": "10:00", "max_time": "11:00", "times": "x"},
        },
    }
    refused = api.post("/api/1/plans/", payload)
    assert refused.status == 400
    assert refused.body["msg"].startswith("invalid payload planner.args.times:"), refused.body
