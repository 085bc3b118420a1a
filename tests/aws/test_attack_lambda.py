"""The attack Lambda, invoked as EventBridge Scheduler would, through Chalice's test client."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.api.context import set_engine
from chalicelib.bootstrap import Engine, build_aws_engine
from chalicelib.domain.model import Executor, ExecutorStatus
from chalicelib.settings import Settings
from tests.aws.conftest import Target
from tests.conftest import FixedClock


@pytest.fixture
def planned(
    chalice_app: Any, aws_engine_on: Callable[..., Engine], http_target: Target
) -> tuple[Engine, Executor]:
    """An engine on moto with one plan whose attack calls the local HTTP target."""
    engine = aws_engine_on()
    set_engine(chalice_app, engine)
    plan = engine.plans.create(
        {
            "name": "one",
            "attack": {
                "ref": "api_request:ApiRequest",
                "args": {"endpoint": http_target.url, "method": "GET"},
            },
            "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": "2026-12-01T09:30Z"}},
        }
    )
    (executor,) = engine.plans.get(plan.id).executors.items
    return engine, executor


def invoke(app: Any, event: Any) -> Any:
    with Client(app) as client:
        return client.lambda_.invoke("attack", event).payload


def test_a_delivery_runs_the_attack_once_and_records_it(
    chalice_app: Any, planned: tuple[Engine, Executor], clock: FixedClock, http_target: Target
):
    engine, executor = planned
    clock.current = executor.next_run_time + timedelta(seconds=3)

    first = invoke(chalice_app, {"executor_id": executor.id})
    second = invoke(chalice_app, {"executor_id": executor.id})  # a duplicate delivery

    assert first == {"executor_id": executor.id, "status": "succeeded"}
    assert second == {"executor_id": executor.id, "status": "succeeded"}
    assert http_target.hits == ["/attack"]
    stored = engine.store.get_executor(executor.id)
    assert stored is not None
    assert stored.status is ExecutorStatus.SUCCEEDED
    assert stored.result["status_code"] == 200
    plan = engine.store.get_plan(executor.plan_id)
    assert plan is not None
    assert plan.executed


def test_a_delivery_later_than_the_allowed_lateness_is_missed(
    chalice_app: Any, planned: tuple[Engine, Executor], clock: FixedClock, http_target: Target
):
    engine, executor = planned
    assert engine.runner.allowed_lateness == timedelta(minutes=2)  # from the settings
    clock.current = executor.next_run_time + timedelta(minutes=2, seconds=1)

    assert invoke(chalice_app, {"executor_id": executor.id})["status"] == "missed"
    assert http_target.hits == []
    stored = engine.store.get_executor(executor.id)
    assert stored is not None
    assert stored.status is ExecutorStatus.MISSED
    assert "121 s late" in (stored.reason or "")


def test_a_delivery_just_inside_the_allowed_lateness_runs(
    chalice_app: Any, planned: tuple[Engine, Executor], clock: FixedClock, http_target: Target
):
    _, executor = planned
    clock.current = executor.next_run_time + timedelta(minutes=1, seconds=59)
    assert invoke(chalice_app, {"executor_id": executor.id})["status"] == "succeeded"
    assert http_target.hits == ["/attack"]


def test_an_unknown_executor_is_logged_not_raised(
    chalice_app: Any, planned: tuple[Engine, Executor], caplog: pytest.LogCaptureFixture
):
    with caplog.at_level(logging.WARNING):
        payload = invoke(chalice_app, {"executor_id": "f" * 32})
    assert payload == {"executor_id": "f" * 32, "status": "unknown"}
    assert any("no such executor" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("event", [{}, {"executor_id": ""}, {"executor_id": 7}, ["x"]])
def test_an_event_without_an_executor_id_is_rejected(
    chalice_app: Any, planned: tuple[Engine, Executor], event: Any, http_target: Target
):
    assert invoke(chalice_app, event) == {"executor_id": None, "status": "rejected"}
    assert http_target.hits == []


def test_the_deployed_engine_takes_lateness_and_retry_window_from_the_environment(aws: None):
    settings = Settings.from_env(
        {
            "CME_ALLOWED_LATENESS_SECONDS": "90",
            "CME_SCHEDULE_GROUP": "chaos-monkey-engine-dev",
            "AWS_REGION": "eu-west-1",
        }
    )
    engine = build_aws_engine(settings)
    assert engine.runner.allowed_lateness == timedelta(seconds=90)
    assert engine.scheduler.maximum_event_age == timedelta(seconds=90)  # type: ignore[attr-defined]
    assert engine.scheduler.group == "chaos-monkey-engine-dev"  # type: ignore[attr-defined]
