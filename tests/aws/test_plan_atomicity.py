"""Plan creation through the API is all or nothing on EventBridge Scheduler and DynamoDB."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
from chalice.test import Client

from chalicelib.api.context import set_engine
from chalicelib.bootstrap import Engine
from tests.aws.conftest import REGION, FlakyClient, schedule_names, throttled

TIMES = 25
PLAN = {
    "name": "many",
    "attack": {
        "ref": "api_request:ApiRequest",
        "args": {"endpoint": "http://127.0.0.1:9/", "method": "GET"},
    },
    # The fixed clock says 10:00 in Madrid: the window is still ahead.
    "planner": {
        "ref": "simple_planner:SimplePlanner",
        "args": {"min_time": "11:00", "max_time": "18:00", "times": TIMES},
    },
}


def item_count(table: str) -> int:
    return int(boto3.client("dynamodb", region_name=REGION).scan(TableName=table)["Count"])


def post_plan(app: Any) -> Any:
    with Client(app) as client:
        return client.http.post(
            "/api/1/plans",
            headers={"Content-Type": "application/json"},
            body=json.dumps(PLAN),
        )


def test_plan_with_many_executors_gets_one_schedule_each(
    chalice_app: Any, aws_engine_on: Callable[..., Engine], scheduler_client: Any
):
    engine = aws_engine_on()
    set_engine(chalice_app, engine)
    response = post_plan(chalice_app)

    assert response.status_code == 200, response.body
    plan_id = json.loads(response.body)["id"]
    executors = engine.plans.get(plan_id, limit=100).executors.items
    assert len(executors) == TIMES
    assert schedule_names(scheduler_client) == sorted(executor.id for executor in executors)


def test_a_throttled_twentieth_create_leaves_nothing_behind(
    chalice_app: Any, aws_engine_on: Callable[..., Engine], scheduler_client: Any
):
    doomed: list[str] = []

    def fail(operation: str, number: int, request: dict[str, Any]) -> Exception | None:
        # The 20th CreateSchedule, and every retry of it, is throttled.
        if operation == "create_schedule" and (number == 20 or request["Name"] in doomed):
            doomed.append(request["Name"])
            return throttled(operation)
        return None

    flaky = FlakyClient(scheduler_client, fail)
    engine = aws_engine_on(flaky)
    set_engine(chalice_app, engine)
    response = post_plan(chalice_app)

    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/json"
    body = json.loads(response.body)
    assert set(body) == {"msg"}
    # A generic sentence: botocore's text (and the schedule's name) go to the log only.
    assert body["msg"].startswith("scheduling failed; try again")
    assert "ThrottlingException" not in body["msg"]
    # It was retried (the same schedule, more than once) before the plan gave up.
    assert len(doomed) == engine.scheduler.max_attempts  # type: ignore[attr-defined]
    created = [r["Name"] for op, r in flaky.calls if op == "create_schedule"]
    assert len(set(created)) >= 20  # some schedules really were created, then removed
    assert schedule_names(scheduler_client) == []
    assert item_count(engine.settings.plans_table) == 0
    assert item_count(engine.settings.executors_table) == 0
    with Client(chalice_app) as client:
        listed = json.loads(client.http.get("/api/1/plans?all=true").body)
    assert listed["plans"] == []
