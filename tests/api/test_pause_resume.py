"""PUT /api/1/plans/<id>: pause and resume through the API, and the plan document's
recurrence fields (recurrence, paused, next_expansion, last_expanded)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from chalicelib.bootstrap import Engine
from tests.api.conftest import Api
from tests.conftest import FixedClock, RecordingScheduler

SCRIPTED = "scripted:Scripted"
TODAY = date(2026, 12, 1)  # the conftest's clock: 10:00 in Madrid
TOMORROW = TODAY + timedelta(days=1)


def recurring() -> dict[str, Any]:
    return {
        "name": "daily",
        "attack": {"ref": SCRIPTED, "args": {"mode": "ok"}},
        "planner": {
            "ref": "recurring_planner:RecurringPlanner",
            "args": {
                "weekdays": ["mon", "tue", "wed", "thu", "fri"],
                "min_time": "11:00",
                "max_time": "16:00",
                "times": 2,
                "seed": 42,
            },
        },
    }


def one_shot() -> dict[str, Any]:
    return {
        "name": "once",
        "attack": {"ref": SCRIPTED, "args": {"mode": "ok"}},
        "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": "2026-12-01T12:00"}},
    }


def created(api: Api, body: dict[str, Any]) -> str:
    answer = api.post("/api/1/plans/", body)
    assert answer.status == 200, answer.body
    return str(answer.body["id"])


def test_a_recurring_plan_shows_its_recurrence_and_next_expansion(api: Api) -> None:
    plan_id = created(api, recurring())
    document = api.get(f"/api/1/plans/{plan_id}").body
    assert document["recurrence"] == recurring()["planner"]["args"]
    assert document["paused"] is False
    assert document["next_expansion"] == "2026-12-01T00:00:00+01:00"
    assert document["last_expanded"] is None
    assert document["executed"] is False
    assert len(document["_embedded"]["executors"]) == 2


def test_a_one_shot_plan_has_no_recurrence(api: Api) -> None:
    document = api.get(f"/api/1/plans/{created(api, one_shot())}").body
    assert document["recurrence"] is None
    assert document["next_expansion"] is None and document["last_expanded"] is None
    assert document["paused"] is False


def test_pause_and_resume_a_recurring_plan(
    api: Api, engine: Engine, scheduler: RecordingScheduler
) -> None:
    plan_id = created(api, recurring())
    engine.expansion.expand_due()
    assert len(scheduler.scheduled) == 4

    paused = api.put(f"/api/1/plans/{plan_id}", {"paused": True})
    assert paused.status == 200
    assert paused.headers["content-type"] == "application/hal+json"
    assert paused.body["id"] == plan_id
    assert paused.body["paused"] is True and paused.body["next_expansion"] is None
    assert paused.body["_embedded"]["executors"] == []
    assert paused.body["status_counts"]["scheduled"] == 0
    assert scheduler.scheduled == {}
    assert engine.expansion.expand_due() == 0

    again = api.put(f"/api/1/plans/{plan_id}", {"paused": True})
    assert again.status == 200 and again.body["paused"] is True

    resumed = api.put(f"/api/1/plans/{plan_id}", {"paused": False})
    assert resumed.status == 200
    assert resumed.body["paused"] is False
    assert resumed.body["last_expanded"] == TOMORROW.isoformat()
    assert resumed.body["next_expansion"] == "2026-12-02T00:00:00+01:00"
    executors = resumed.body["_embedded"]["executors"]
    assert len(executors) == 4 and all(e["status"] == "scheduled" for e in executors)
    assert set(scheduler.scheduled) == {e["id"] for e in executors}


def test_pause_and_resume_a_one_shot_plan(
    api: Api, clock: FixedClock, scheduler: RecordingScheduler
) -> None:
    plan_id = created(api, one_shot())
    (first,) = api.get(f"/api/1/plans/{plan_id}").body["_embedded"]["executors"]
    assert api.put(f"/api/1/plans/{plan_id}", {"paused": True}).body["executors_count"] == 0
    assert scheduler.scheduled == {}
    resumed = api.put(f"/api/1/plans/{plan_id}", {"paused": False}).body
    (again,) = resumed["_embedded"]["executors"]
    assert again["id"] != first["id"]
    assert again["next_run_time"] == first["next_run_time"] == "2026-12-01T12:00:00+01:00"
    assert list(scheduler.scheduled) == [again["id"]]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"paused": "true"}, "invalid payload plan.paused: 'true' is not of type 'boolean'"),
        ({"paused": 1}, "invalid payload plan.paused: 1 is not of type 'boolean'"),
        ({}, "invalid payload plan: 'paused' is a required property"),
        (
            {"paused": True, "dry_run": True},
            "invalid payload plan: Additional properties are not allowed "
            "('dry_run' was unexpected)",
        ),
    ],
)
def test_a_bad_body_is_refused_naming_the_field(
    api: Api, scheduler: RecordingScheduler, body: Any, message: str
) -> None:
    plan_id = created(api, recurring())
    before = dict(scheduler.scheduled)
    answer = api.put(f"/api/1/plans/{plan_id}", body)
    assert answer.status == 400
    assert answer.body == {"msg": message}
    assert scheduler.scheduled == before
    assert api.get(f"/api/1/plans/{plan_id}").body["paused"] is False


def test_a_body_that_is_not_json_is_refused(api: Api) -> None:
    plan_id = created(api, recurring())
    answer = api.put(f"/api/1/plans/{plan_id}", raw=b"{paused")
    assert answer.status == 400
    assert answer.body == {"msg": "payload must be a valid json"}


def test_an_unknown_plan_is_404(api: Api) -> None:
    answer = api.put("/api/1/plans/nope", {"paused": True})
    assert answer.status == 404
    assert "nope" in answer.body["msg"]
