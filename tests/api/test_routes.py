"""Every route of DESIGN.md section 3, success and error, through the Chalice test client."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from chalicelib.bootstrap import Engine
from chalicelib.domain.model import ExecutorStatus
from tests.api.conftest import Api
from tests.conftest import FixedClock, RecordingScheduler

HAL = "application/hal+json"
JSON = "application/json"
NOW = "2026-12-01T10:00:00+01:00"  # the fixed clock, in the engine's timezone


def exact_plan(date: str = "2026-12-01T12:00:00+01:00", **attack_args: Any) -> dict[str, Any]:
    return {
        "name": "exact",
        "attack": {"ref": "scripted:Scripted", "args": {"mode": "ok", **attack_args}},
        "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": date}},
    }


def simple_plan(times: Any = 3, **overrides: Any) -> dict[str, Any]:
    args = {"min_time": "11:00", "max_time": "17:00", "times": times, **overrides}
    return {
        "name": "Terminate random running instance",
        "attack": {"ref": "scripted:Scripted", "args": {"mode": "ok"}},
        "planner": {"ref": "simple_planner:SimplePlanner", "args": args},
    }


def create(api: Api, payload: dict[str, Any]) -> str:
    answer = api.post("/api/1/plans/", payload)
    assert answer.status == 200, answer.body
    return str(answer.body["id"])


class TestCatalogues:
    @pytest.mark.parametrize("path", ["/api/1/attacks/", "/api/1/attacks"])
    def test_attacks(self, api: Api, path: str) -> None:
        answer = api.get(path)
        assert answer.status == 200
        assert answer.headers["content-type"] == HAL
        refs = {attack["ref"]: attack for attack in answer.body["attacks"]}
        assert set(refs["api_request:ApiRequest"]) == {"ref", "schema", "example"}
        assert "scripted:Scripted" in refs
        assert answer.body["_links"] == {"self": {"href": "/api/1/attacks/"}}

    @pytest.mark.parametrize("path", ["/api/1/planners/", "/api/1/planners"])
    def test_planners(self, api: Api, path: str) -> None:
        answer = api.get(path)
        assert answer.status == 200
        assert answer.headers["content-type"] == HAL
        refs = [planner["ref"] for planner in answer.body["planners"]]
        assert refs == [
            "exact_planner:ExactPlanner",
            "frequency_planner:FrequencyPlanner",
            "recurring_planner:RecurringPlanner",
            "simple_planner:SimplePlanner",
        ]
        assert answer.body["_links"]["self"]["href"] == "/api/1/planners/"


class TestCreatePlan:
    def test_created_with_location_and_scheduled(
        self, api: Api, scheduler: RecordingScheduler
    ) -> None:
        answer = api.post("/api/1/plans/", simple_plan(times=3))
        assert answer.status == 200
        assert answer.headers["content-type"] == HAL
        plan_id = answer.body["id"]
        assert answer.body["msg"] == "ok"
        assert answer.body["_links"] == {"self": {"href": f"/api/1/plans/{plan_id}"}}
        assert answer.headers["location"] == f"/api/1/plans/{plan_id}"
        assert len(scheduler.scheduled) == 3

    def test_without_trailing_slash(self, api: Api) -> None:
        assert api.post("/api/1/plans", exact_plan()).status == 200

    def test_curl_without_content_type_header_works(self, api: Api) -> None:
        import json

        answer = api.post(
            "/api/1/plans/",
            raw=json.dumps(exact_plan()).encode(),
            content_type="application/x-www-form-urlencoded",
        )
        assert answer.status == 200

    @pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe"])
    def test_malformed_json(self, api: Api, raw: bytes) -> None:
        answer = api.post("/api/1/plans/", raw=raw)
        assert answer.status == 400
        assert answer.headers["content-type"] == JSON
        assert answer.body == {"msg": "payload must be a valid json"}

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            ([], "plan"),
            ({"attack": {"ref": "x"}, "planner": {"ref": "y", "args": {}}}, "name"),
            ({"name": "n", "planner": {"ref": "y", "args": {}}}, "attack"),
            ({"name": "n", "attack": {"ref": "x"}}, "planner"),
            ({"name": 3, "attack": {"ref": "x"}, "planner": {"ref": "y", "args": {}}}, "plan.name"),
            (
                {"name": "n", "attack": {"ref": 7}, "planner": {"ref": "y", "args": {}}},
                "plan.attack.ref",
            ),
        ],
    )
    def test_invalid_payload_names_the_field(self, api: Api, payload: Any, field: str) -> None:
        answer = api.post("/api/1/plans/", payload)
        assert answer.status == 400
        assert answer.body["msg"].startswith("invalid payload")
        assert field in answer.body["msg"]

    def test_unknown_planner(self, api: Api, engine: Engine) -> None:
        payload = simple_plan()
        payload["planner"]["ref"] = "nope:Planner"
        answer = api.post("/api/1/plans/", payload)
        assert answer.status == 400
        assert answer.body["msg"].startswith("invalid planner 'nope:Planner'")
        assert "simple_planner:SimplePlanner" in answer.body["msg"]

    @pytest.mark.parametrize("ref", ["nope:Attack", "os:system", "garbage", "a:b:c"])
    def test_unknown_or_malformed_attack(self, api: Api, ref: str) -> None:
        payload = simple_plan()
        payload["attack"]["ref"] = ref
        answer = api.post("/api/1/plans/", payload)
        assert answer.status == 400
        assert answer.body["msg"].startswith(f"invalid attack {ref!r}")

    def test_dotted_refs_resolve(self, api: Api) -> None:
        payload = exact_plan()
        payload["planner"]["ref"] = "exact_planner.ExactPlanner"
        assert api.post("/api/1/plans/", payload).status == 200

    @pytest.mark.parametrize(
        ("args", "field"),
        [
            ({"min_time": "10:00", "max_time": "18:00"}, "times"),
            ({"min_time": "10", "max_time": "18:00", "times": 1}, "planner.args.min_time"),
            ({"min_time": "10:00", "max_time": "25:00", "times": 1}, "planner.args.max_time"),
            ({"min_time": "10:00", "max_time": "18:00", "times": "3"}, "planner.args.times"),
            ({"min_time": "10:00", "max_time": "18:00", "times": 1.5}, "planner.args.times"),
            ({"min_time": "10:00", "max_time": "18:00", "times": 0}, "planner.args.times"),
        ],
    )
    def test_planner_args_are_validated(
        self, api: Api, args: dict[str, Any], field: str, scheduler: RecordingScheduler
    ) -> None:
        payload = simple_plan()
        payload["planner"]["args"] = args
        answer = api.post("/api/1/plans/", payload)
        assert answer.status == 400
        assert answer.body["msg"].startswith("invalid payload")
        assert field in answer.body["msg"]
        assert scheduler.scheduled == {}

    def test_attack_schema_applies_to_the_whole_attack(self, api: Api) -> None:
        payload = exact_plan()
        payload["attack"]["args"] = {"mode": "explode"}
        answer = api.post("/api/1/plans/", payload)
        assert answer.status == 400
        assert "attack.args.mode" in answer.body["msg"]

    @pytest.mark.parametrize(
        ("payload", "words"),
        [
            (exact_plan(date="2026-12-01T09:59:00+01:00"), "in the past"),
            (exact_plan(date="yesterday"), "Invalid date format"),
            (simple_plan(min_time="17:00", max_time="11:00"), "must be after"),
            (simple_plan(min_time="08:00", max_time="09:00"), "nothing is left"),
            (simple_plan(times=501), "over the limit of 500"),
        ],
    )
    def test_unplannable_args_store_and_schedule_nothing(
        self,
        api: Api,
        payload: dict[str, Any],
        words: str,
        scheduler: RecordingScheduler,
    ) -> None:
        answer = api.post("/api/1/plans/", payload)
        assert answer.status == 400
        assert words in answer.body["msg"]
        assert scheduler.scheduled == {}
        assert api.get("/api/1/plans/?all=true").body["plans"] == []
        assert api.get("/api/1/executors/").body["_embedded"]["executors"] == []

    def test_secrets_are_never_shown(self, api: Api) -> None:
        payload = exact_plan(token="hunter2")
        plan_id = create(api, payload)
        shown = api.get(f"/api/1/plans/{plan_id}")
        assert "hunter2" not in str(shown.body)
        assert shown.body["attack"]["args"]["token"] == "<redacted>"


class TestListPlans:
    def test_default_is_plans_with_pending_executors(
        self, api: Api, engine: Engine, clock: FixedClock
    ) -> None:
        done = create(api, exact_plan(date="2026-12-01T10:30:00+01:00"))
        pending = create(api, simple_plan(times=2))
        executor = engine.plans.get(done).executors.items[0]
        clock.current = executor.next_run_time
        engine.runner.run(executor.id)

        listed = api.get("/api/1/plans/")
        assert listed.status == 200
        assert listed.headers["content-type"] == HAL
        assert [plan["id"] for plan in listed.body["plans"]] == [pending]
        assert listed.body["_links"]["self"]["href"] == "/api/1/plans/"
        item = listed.body["plans"][0]
        assert item["executors_count"] == 2
        assert item["executed"] is False
        assert item["next_execution"].startswith("2026-12-01T1")
        assert item["next_execution"].endswith("+01:00")
        assert item["created"] == NOW
        assert item["_links"]["self"]["href"] == f"/api/1/plans/{pending}"
        assert item["_links"]["delete"]["href"] == f"/api/1/plans/{pending}"

    @pytest.mark.parametrize("word", ["true", "TRUE", "yes", "On", "y", "1"])
    def test_all_shows_executed_plans_too(
        self, api: Api, engine: Engine, clock: FixedClock, word: str
    ) -> None:
        done = create(api, exact_plan(date="2026-12-01T10:30:00+01:00"))
        executor = engine.plans.get(done).executors.items[0]
        clock.current = executor.next_run_time
        engine.runner.run(executor.id)
        listed = api.get(f"/api/1/plans?all={word}")
        [plan] = listed.body["plans"]
        assert plan["id"] == done
        assert plan["executed"] is True
        assert plan["next_execution"] is None
        assert plan["status_counts"]["succeeded"] == 1
        assert listed.body["_links"]["self"]["href"] == f"/api/1/plans/?all={word}"

    @pytest.mark.parametrize("word", ["false", "no", "0", "maybe"])
    def test_other_words_mean_pending_only(
        self, api: Api, engine: Engine, clock: FixedClock, word: str
    ) -> None:
        done = create(api, exact_plan(date="2026-12-01T10:30:00+01:00"))
        executor = engine.plans.get(done).executors.items[0]
        clock.current = executor.next_run_time
        engine.runner.run(executor.id)
        assert api.get(f"/api/1/plans/?all={word}").body["plans"] == []


class TestGetPlan:
    def test_details_with_counts_and_sorted_executors(self, api: Api) -> None:
        plan_id = create(api, simple_plan(times=4))
        answer = api.get(f"/api/1/plans/{plan_id}")
        assert answer.status == 200
        assert answer.headers["content-type"] == HAL
        body = answer.body
        assert body["id"] == plan_id
        assert body["name"] == "Terminate random running instance"
        assert body["executors_count"] == 4
        assert body["executed"] is False
        assert body["status_counts"]["scheduled"] == 4
        executors = body["_embedded"]["executors"]
        times = [executor["next_run_time"] for executor in executors]
        assert times == sorted(times)
        assert body["next_execution"] == times[0]
        for executor in executors:
            assert executor["plan_id"] == plan_id
            assert executor["executed"] is False
            assert executor["_links"]["self"]["href"] == f"/api/1/executors/{executor['id']}"

    def test_unknown_id_is_404_json(self, api: Api) -> None:
        answer = api.get("/api/1/plans/nope")
        assert answer.status == 404
        assert answer.headers["content-type"] == JSON
        assert answer.body == {"msg": "plan not found nope"}


class TestDeletePlan:
    def test_deletes_plan_executors_and_schedules(
        self, api: Api, scheduler: RecordingScheduler
    ) -> None:
        plan_id = create(api, simple_plan(times=3))
        assert len(scheduler.scheduled) == 3
        answer = api.delete(f"/api/1/plans/{plan_id}")
        assert answer.status == 200
        assert answer.body == {"msg": f"Plan {plan_id} successfully deleted"}
        assert scheduler.scheduled == {}
        assert api.get(f"/api/1/plans/{plan_id}").status == 404
        assert api.get("/api/1/executors/").body["_embedded"]["executors"] == []

    def test_unknown_id_is_404_json(self, api: Api) -> None:
        answer = api.delete("/api/1/plans/nope")
        assert answer.status == 404
        assert answer.body == {"msg": "plan not found nope"}


class TestListExecutors:
    def test_pending_by_default_sorted_by_time(
        self, api: Api, engine: Engine, clock: FixedClock
    ) -> None:
        create(api, simple_plan(times=3))
        create(api, exact_plan(date="2026-12-01T10:30:00+01:00"))
        answer = api.get("/api/1/executors/")
        assert answer.status == 200
        assert answer.headers["content-type"] == HAL
        executors = answer.body["_embedded"]["executors"]
        assert len(executors) == 4
        times = [executor["next_run_time"] for executor in executors]
        assert times == sorted(times)
        assert all(executor["executed"] is False for executor in executors)
        assert answer.body["_links"]["self"]["href"] == "/api/1/executors/"

        first = executors[0]
        clock.current = engine.executors.get(first["id"]).next_run_time
        engine.runner.run(first["id"])
        pending = api.get("/api/1/executors").body["_embedded"]["executors"]
        assert [e["id"] for e in pending] == [e["id"] for e in executors[1:]]
        executed = api.get("/api/1/executors/?executed=true")
        [done] = executed.body["_embedded"]["executors"]
        assert done["id"] == first["id"]
        assert done["executed"] is True
        assert done["status"] == "succeeded"
        assert executed.body["_links"]["self"]["href"] == "/api/1/executors/?executed=true"


class TestGetExecutor:
    def test_outcome_is_shown(self, api: Api, engine: Engine, clock: FixedClock) -> None:
        plan_id = create(api, exact_plan())
        executor_id = engine.plans.get(plan_id).executors.items[0].id
        before = api.get(f"/api/1/executors/{executor_id}")
        assert before.status == 200
        assert before.headers["content-type"] == HAL
        assert before.body["status"] == "scheduled"
        assert before.body["next_run_time"] == "2026-12-01T12:00:00+01:00"
        assert before.body["started_at"] is None
        clock.current = engine.executors.get(executor_id).next_run_time
        engine.runner.run(executor_id)
        after = api.get(f"/api/1/executors/{executor_id}").body
        assert after["status"] == "succeeded"
        assert after["executed"] is True
        assert after["started_at"] == "2026-12-01T12:00:00+01:00"
        assert after["result"] == {"did": "ok", "executor": executor_id}
        assert after["error"] is None
        assert after["_links"]["self"]["href"] == f"/api/1/executors/{executor_id}"
        assert after["_links"]["plan"]["href"] == f"/api/1/plans/{plan_id}"

    def test_unknown_id_is_404_json(self, api: Api) -> None:
        answer = api.get("/api/1/executors/nope")
        assert answer.status == 404
        assert answer.body == {"msg": "executor not found nope"}


class TestRescheduleExecutor:
    def executor_id(self, api: Api, engine: Engine) -> str:
        plan_id = create(api, exact_plan())
        return engine.plans.get(plan_id).executors.items[0].id

    @pytest.mark.parametrize(
        ("date", "shown"),
        [
            ("2026-12-02T19:19", "2026-12-02T19:19:00+01:00"),
            ("2026-12-02T19:19:00+00:00", "2026-12-02T20:19:00+01:00"),
        ],
    )
    def test_moves_the_executor_and_its_schedule(
        self, api: Api, engine: Engine, scheduler: RecordingScheduler, date: str, shown: str
    ) -> None:
        executor_id = self.executor_id(api, engine)
        answer = api.put(
            f"/api/1/executors/{executor_id}", {"type": "date", "args": {"date": date}}
        )
        assert answer.status == 200
        assert answer.headers["content-type"] == HAL
        assert answer.body["next_run_time"] == shown
        assert answer.body["executed"] is False
        assert answer.body["_links"]["self"]["href"] == f"/api/1/executors/{executor_id}"
        assert api.get(f"/api/1/executors/{executor_id}").body["next_run_time"] == shown
        assert scheduler.scheduled[executor_id] == datetime.fromisoformat(shown)

    @pytest.mark.parametrize(
        ("body", "words"),
        [
            ({"type": "cron", "args": {"date": "2026-12-02T19:19"}}, "Invalid trigger type"),
            ({"args": {"date": "2026-12-02T19:19"}}, "Invalid trigger type"),
            ({"type": "date", "args": {"date": "next tuesday"}}, "Invalid date format"),
            ({"type": "date", "args": {}}, "Invalid date format"),
            ({"type": "date", "args": {"date": "2026-12-01T09:00"}}, "in the past"),
        ],
    )
    def test_bad_triggers_are_400(
        self, api: Api, engine: Engine, body: dict[str, Any], words: str
    ) -> None:
        executor_id = self.executor_id(api, engine)
        answer = api.put(f"/api/1/executors/{executor_id}", body)
        assert answer.status == 400
        assert answer.headers["content-type"] == JSON
        assert words in answer.body["msg"]

    def test_malformed_json_is_400(self, api: Api, engine: Engine) -> None:
        executor_id = self.executor_id(api, engine)
        answer = api.put(f"/api/1/executors/{executor_id}", raw=b"{")
        assert answer.status == 400
        assert answer.body == {"msg": "payload must be a valid json"}

    def test_unknown_executor_is_404(self, api: Api) -> None:
        answer = api.put("/api/1/executors/nope", {"type": "date", "args": {"date": "2027-01-01"}})
        assert answer.status == 404
        assert answer.body == {"msg": "executor not found nope"}

    def test_an_executor_that_already_ran_is_409(
        self, api: Api, engine: Engine, clock: FixedClock
    ) -> None:
        executor_id = self.executor_id(api, engine)
        clock.current = engine.executors.get(executor_id).next_run_time
        engine.runner.run(executor_id)
        answer = api.put(
            f"/api/1/executors/{executor_id}", {"type": "date", "args": {"date": "2027-01-01"}}
        )
        assert answer.status == 409
        assert "already succeeded" in answer.body["msg"]
        assert engine.executors.get(executor_id).status is ExecutorStatus.SUCCEEDED


class TestDeleteExecutor:
    def test_deletes_executor_and_schedule_and_fixes_counts(
        self, api: Api, engine: Engine, scheduler: RecordingScheduler
    ) -> None:
        plan_id = create(api, simple_plan(times=2))
        first, second = engine.plans.get(plan_id).executors.items
        answer = api.delete(f"/api/1/executors/{first.id}")
        assert answer.status == 200
        assert answer.body == {"msg": f"Executor {first.id} successfully deleted"}
        assert list(scheduler.scheduled) == [second.id]
        assert api.get(f"/api/1/executors/{first.id}").status == 404
        plan = api.get(f"/api/1/plans/{plan_id}").body
        assert plan["executors_count"] == 1
        assert [e["id"] for e in plan["_embedded"]["executors"]] == [second.id]

    def test_unknown_id_is_404(self, api: Api) -> None:
        answer = api.delete("/api/1/executors/nope")
        assert answer.status == 404
        assert answer.body == {"msg": "executor not found nope"}


def test_unexpected_errors_are_json_500_without_a_trace(
    api: Api, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(engine.plans, "list", explode)
    answer = api.get("/api/1/plans/")
    assert answer.status == 500
    assert answer.headers["content-type"] == JSON
    assert "secret internal detail" not in str(answer.body)
    assert "msg" in answer.body


def test_no_request_path_scans_a_table(
    api: Api, engine: Engine, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pynamodb.connection.base import Connection

    def refuse_scan(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a table Scan on a request path")

    monkeypatch.setattr(Connection, "scan", refuse_scan)
    plan_id = create(api, simple_plan(times=2))
    executor_id = api.get(f"/api/1/plans/{plan_id}").body["_embedded"]["executors"][0]["id"]
    clock.current = engine.executors.get(executor_id).next_run_time
    engine.runner.run(executor_id)
    paths = [
        "/api/1/plans/",
        "/api/1/plans/?all=true",
        f"/api/1/plans/{plan_id}",
        "/api/1/executors/",
        "/api/1/executors/?executed=true",
        f"/api/1/executors/{executor_id}",
    ]
    for path in paths:
        assert api.get(path).status == 200, path
    assert api.delete(f"/api/1/plans/{plan_id}").status == 200


def test_executed_executors_are_listed_most_recent_first(
    api: Api, engine: Engine, clock: FixedClock
) -> None:
    plan_id = create(api, simple_plan(times=3))
    executors = api.get(f"/api/1/plans/{plan_id}").body["_embedded"]["executors"]
    for executor in executors:
        clock.current = engine.executors.get(executor["id"]).next_run_time
        engine.runner.run(executor["id"])
    executed = api.get("/api/1/executors/?executed=1").body["_embedded"]["executors"]
    assert [e["id"] for e in executed] == [e["id"] for e in reversed(executors)]
