"""Recurring plans on the deployed path: DynamoStore and EventBridge Scheduler on moto,
the expander Lambda invoked as its EventBridge rule would, pause and resume through the
app, and the expander's policy granting every call it makes."""

from __future__ import annotations

import fnmatch
import json
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest
from botocore.exceptions import ClientError
from chalice.test import Client

from chalicelib.adapters.eventbridge import EventBridgeScheduler
from chalicelib.api.context import set_engine
from chalicelib.bootstrap import Engine, build_aws_engine
from chalicelib.domain.errors import SchedulingError
from chalicelib.domain.model import Executor
from chalicelib.domain.ports import ExecutorQuery
from chalicelib.domain.recurrence import occurrence_key
from tests.aws.conftest import ACCOUNT, REGION, FlakyClient, schedule_names
from tests.aws.test_reaper_lambda import (
    ROOT,
    dev_settings,
    granted,
    grants,
    iam_requests,
    schedule_arn,
)
from tests.conftest import FixedClock

MADRID = ZoneInfo("Europe/Madrid")
# Far enough ahead of the real date that EventBridge's own "is it ahead" checks, which
# the deployed engine makes on the system clock, pass whenever the suite runs.
MONDAY = date(2030, 1, 7)
TUESDAY = MONDAY + timedelta(days=1)


def recurring(name: str = "daily") -> dict[str, Any]:
    return {
        "name": name,
        "attack": {
            "ref": "api_request:ApiRequest",
            "args": {"endpoint": "http://127.0.0.1:9/", "method": "GET"},
        },
        "planner": {
            "ref": "recurring_planner:RecurringPlanner",
            "args": {
                "weekdays": ["mon", "tue", "wed", "thu", "fri"],
                "min_time": "11:00",
                "max_time": "16:00",
                "times": 2,
                "seed": 11,
            },
        },
    }


@pytest.fixture
def monday(clock: FixedClock) -> FixedClock:
    clock.current = datetime(2030, 1, 7, 10, 0, tzinfo=MADRID).astimezone(UTC)
    return clock


def executors_of(engine: Engine, plan_id: str) -> list[Executor]:
    query = ExecutorQuery(executed=None, plan_id=plan_id)
    return engine.store.list_executors(query, 500, None).items


def test_expansion_on_dynamodb_and_eventbridge_once_per_day(
    aws_engine_on: Callable[..., Engine], monday: FixedClock, scheduler_client: Any
) -> None:
    engine = aws_engine_on()
    plan = engine.plans.create(recurring())
    assert len(schedule_names(scheduler_client)) == 2
    assert engine.expansion.expand_due() == 2
    assert engine.expansion.expand_due() == 0
    found = executors_of(engine, plan.id)
    tuesday = [e for e in found if e.next_run_time.astimezone(MADRID).date() == TUESDAY]
    assert [e.id for e in tuesday] == [occurrence_key(plan.id, TUESDAY, i) for i in (0, 1)]
    assert schedule_names(scheduler_client) == sorted(e.id for e in found)
    stored = engine.store.get_plan(plan.id)
    assert stored is not None and stored.last_expanded == TUESDAY
    assert stored.next_expansion == datetime(2030, 1, 8, tzinfo=MADRID)
    assert stored.counts.pending == 4 and not stored.executed


def test_two_concurrent_expansions_on_dynamodb_give_one_set(
    aws_engine_on: Callable[..., Engine], monday: FixedClock, scheduler_client: Any
) -> None:
    plan = aws_engine_on().plans.create(recurring())
    engines = [aws_engine_on(), aws_engine_on()]
    barrier = threading.Barrier(2, timeout=20)
    results: list[int] = []

    def run(engine: Engine) -> None:
        barrier.wait()
        results.append(engine.expansion.expand_due())

    threads = [threading.Thread(target=run, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(results) == 2
    found = executors_of(engines[0], plan.id)
    assert len(found) == 4
    assert schedule_names(scheduler_client) == sorted(e.id for e in found)
    stored = engines[0].store.get_plan(plan.id)
    assert stored is not None and stored.counts.pending == 4


def test_a_run_that_died_after_scheduling_is_finished_by_the_next(
    aws_engine_on: Callable[..., Engine], monday: FixedClock, scheduler_client: Any
) -> None:
    """Its executors and schedules exist, its commit does not: the next run adds none,
    creates the existing schedules again (success) and commits."""
    engine = aws_engine_on()
    plan = engine.plans.create(recurring())
    stored = engine.store

    class Dying:
        def __getattr__(self, name: str) -> Any:
            return getattr(stored, name)

        def set_expansion(self, *args: Any) -> bool:
            raise RuntimeError("the Lambda timed out")

    engine.expansion.store = Dying()
    assert engine.expansion.expand_due() == 0
    engine.expansion.store = stored
    assert len(schedule_names(scheduler_client)) == 4
    assert engine.expansion.expand_due() == 0
    assert len(executors_of(engine, plan.id)) == 4
    assert schedule_names(scheduler_client) == sorted(e.id for e in executors_of(engine, plan.id))
    after = engine.store.get_plan(plan.id)
    assert after is not None and after.last_expanded == TUESDAY


def test_creating_a_schedule_that_exists_is_success_and_another_conflict_is_not(
    make_scheduler: Callable[..., EventBridgeScheduler], scheduler_client: Any
) -> None:
    executor = Executor(
        id="e" * 32,
        plan_id="p" * 32,
        name="twice",
        next_run_time=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
        attack={"ref": "api_request:ApiRequest", "args": {}},
    )
    scheduler = make_scheduler()
    scheduler.create([executor])
    scheduler.create([executor])  # ConflictException "... already exists": done
    assert schedule_names(scheduler_client) == [executor.id]

    def busy(operation: str, number: int, request: dict[str, Any]) -> Exception | None:
        if operation != "create_schedule":
            return None
        return ClientError(
            {"Error": {"Code": "ConflictException", "Message": "a change is in progress"}},
            "CreateSchedule",
        )

    flaky = make_scheduler(FlakyClient(scheduler_client, busy))
    with pytest.raises(SchedulingError) as refused:
        flaky.create([executor])
    assert "a change is in progress" in refused.value.message


def test_pause_and_resume_through_the_app_on_moto(
    aws_engine_on: Callable[..., Engine],
    monday: FixedClock,
    scheduler_client: Any,
    chalice_app: Any,
) -> None:
    engine = aws_engine_on()
    plan = engine.plans.create(recurring())
    engine.expansion.expand_due()
    assert len(schedule_names(scheduler_client)) == 4
    set_engine(chalice_app, engine)
    with Client(chalice_app) as client:

        def put(body: Any) -> tuple[int, Any]:
            answer = client.http.put(
                f"/api/1/plans/{plan.id}",
                body=json.dumps(body),
                headers={"Content-Type": "application/json"},
            )
            return answer.status_code, json.loads(answer.body)

        status, paused = put({"paused": True})
        assert status == 200 and paused["paused"] is True
        assert paused["next_expansion"] is None and paused["executors_count"] == 0
        assert schedule_names(scheduler_client) == []
        assert executors_of(engine, plan.id) == []
        assert engine.expansion.expand_due() == 0
        monday.advance(days=1)
        assert engine.expansion.expand_due() == 0

        status, resumed = put({"paused": False})
        assert status == 200 and resumed["paused"] is False
        # Tuesday 10:00: Tuesday's window and Wednesday's.
        assert resumed["last_expanded"] == "2030-01-09"
        found = executors_of(engine, plan.id)
        assert len(found) == 4
        assert all(e.next_run_time > monday.now() for e in found)
        assert schedule_names(scheduler_client) == sorted(e.id for e in found)

        status, refused = put({"paused": "no"})
        assert status == 400
        assert refused == {"msg": "invalid payload plan.paused: 'no' is not of type 'boolean'"}
        assert put({"paused": False})[0] == 200  # resuming an active plan: no change
        assert len(executors_of(engine, plan.id)) == 4


def invoke_expander(app: Any) -> Any:
    with Client(app) as client:
        event = client.events.generate_cw_event(
            source="aws.events",
            detail_type="Scheduled Event",
            detail={},
            resources=[f"arn:aws:events:{REGION}:{ACCOUNT}:rule/chaos-monkey-engine-dev-expander"],
            region=REGION,
        )
        return client.lambda_.invoke("expander", event).payload


def test_the_expander_lambda_expands_and_is_granted_every_call_it_makes(
    aws: None,
    chalice_app: Any,
    monday: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine a deployed expander builds (build_aws_engine from the dev stage's
    variables, on moto), its handler invoked as the rule would, every AWS call recorded
    at botocore and checked against .chalice/policy-expander-dev.json (test_package
    proves prod's and the template's grant the same actions)."""
    from botocore.client import BaseClient

    from chalicelib.adapters.dynamo import DynamoStore
    from chalicelib.adapters.dynamo_events import DynamoEventLog

    settings = dev_settings()
    DynamoStore(settings).create_tables()
    # The audit trail as deployed: the API's changes below are recorded in it.
    DynamoEventLog(settings).create_table()
    boto3.client("scheduler", region_name=REGION).create_schedule_group(
        Name=settings.schedule_group
    )
    monkeypatch.setattr("chalicelib.bootstrap.SystemClock", lambda: monday)
    engine = build_aws_engine(settings)
    set_engine(chalice_app, engine)
    plan = engine.plans.create(recurring())
    # A run that died after storing one of Tuesday's executors: this one schedules it.
    (instant, _) = engine.planners.resolve(plan.planner["ref"]).expand(  # type: ignore[attr-defined]
        engine.store.get_plan(plan.id).planner["args"],  # type: ignore[union-attr]
        TUESDAY,
        MADRID,
    )
    left = Executor(
        id=occurrence_key(plan.id, TUESDAY, 0),
        plan_id=plan.id,
        name="daily-2030-01-08-1",
        next_run_time=instant,
        attack=plan.attack,
    )
    assert engine.store.add_executors(plan.id, [left]) == [left.id]
    # A pause landing during a run, after the plan was read: the run's removal path runs.
    paused = engine.plans.create(recurring("paused meanwhile"))
    real_add_executors = engine.store.add_executors
    pausing = threading.Event()

    def pause_first(plan_id: str, executors: Any) -> list[str]:
        if plan_id == paused.id:
            pausing.set()  # the API's calls, not the expander's: not recorded
            try:
                engine.plans.update(paused.id, {"paused": True})
            finally:
                pausing.clear()
        return real_add_executors(plan_id, executors)

    calls: list[tuple[str, str, dict[str, Any]]] = []
    lock = threading.Lock()
    real_call = BaseClient._make_api_call

    def recording(self: BaseClient, operation: str, request: dict[str, Any]) -> Any:
        service = self.meta.service_model.service_name
        if not pausing.is_set():
            with lock:
                calls.append((service, operation, json.loads(json.dumps(request, default=str))))
        return real_call(self, operation, request)

    with monkeypatch.context() as patch:
        patch.setattr(engine.store, "add_executors", pause_first)
        patch.setattr(BaseClient, "_make_api_call", recording)
        assert invoke_expander(chalice_app) == {"expanded": 1}  # and one rescheduled

    assert len(executors_of(engine, plan.id)) == 4
    assert executors_of(engine, paused.id) == []
    expanded = engine.store.get_plan(plan.id)
    assert expanded is not None and expanded.last_expanded == TUESDAY
    expander_calls = [c for c in calls if c[1] != "GetCallerIdentity"]
    needed = {
        pair
        for service, operation, request in expander_calls
        for pair in iam_requests(service, operation, request)
    }
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/chaos-monkey-engine-dev-"
    executors, plans = table + "executors", table + "plans"
    group = settings.schedule_group
    tuesday = [occurrence_key(plan.id, TUESDAY, i) for i in (0, 1)]
    assert ("scheduler:CreateSchedule", schedule_arn(group, left.id)) in needed
    assert {
        ("dynamodb:Query", plans + "/index/by_expansion"),
        ("dynamodb:GetItem", executors),
        ("dynamodb:GetItem", plans),
        ("dynamodb:PutItem", executors),
        ("dynamodb:UpdateItem", plans),
        *(("scheduler:CreateSchedule", schedule_arn(group, name)) for name in tuesday),
    } <= needed
    assert ("dynamodb:DeleteItem", executors) in needed  # what the paused run added
    policy = json.loads((ROOT / ".chalice" / "policy-expander-dev.json").read_text())
    for action, resource in sorted(needed):
        assert granted(policy, action, resource), f"{action} on {resource} is not granted"
    for action, pattern in sorted(grants(policy, ("dynamodb", "scheduler"))):
        assert any(
            action == used and fnmatch.fnmatchcase(resource, pattern) for used, resource in needed
        ), f"{action} on {pattern} is granted but never needed"
    assert not granted(policy, "dynamodb:DeleteItem", plans)
    # An expansion records no event (nor sends anything): no grant on the audit trail.
    events = table + "events"
    assert not [pair for pair in needed if pair[1].startswith(events)]
    assert {service for service, _, _ in expander_calls} == {"dynamodb", "scheduler"}
    assert not granted(policy, "dynamodb:PutItem", events)
    assert not granted(policy, "dynamodb:Query", events + "/index/by_time")
    assert engine.audit is not None
    recorded = engine.audit.events.list(None, None, 50, None).items
    assert {event.kind.value for event in recorded} == {"plan.created", "plan.paused"}
