"""The safety guards on the deployed path: the attack Lambda, invoked as EventBridge
Scheduler would, on DynamoDB (moto) with CloudWatch (moto) as the stop conditions' source."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from chalice.test import Client

from chalicelib.api.context import set_engine
from chalicelib.bootstrap import Engine
from chalicelib.domain.model import Executor, ExecutorStatus, Plan
from chalicelib.services.safety import HaltRequest
from tests.aws.conftest import REGION, Target
from tests.conftest import FixedClock

NOT_RUN = "the attack did not run"
T = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)  # 10:30 in Madrid
PRINCIPAL = "arn:aws:sts::123456789012:assumed-role/chaos-operators/alice"


@pytest.fixture
def engine(chalice_app: Any, aws_engine_on: Callable[..., Engine]) -> Engine:
    """The deployed engine (DynamoDB and EventBridge Scheduler on moto) behind the app."""
    built = aws_engine_on()
    set_engine(chalice_app, built)
    return built


def add_plan(
    engine: Engine, target: Target, *times: datetime, safety: dict[str, Any] | None = None
) -> tuple[Plan, list[Executor]]:
    """A committed plan whose attack calls the loopback target, one executor per time."""
    attack = {"ref": "api_request:ApiRequest", "args": {"endpoint": target.url, "method": "GET"}}
    plan = Plan(
        id=uuid.uuid4().hex,
        name="guarded on AWS",
        created=T - timedelta(hours=1),
        planner={"ref": "exact_planner:ExactPlanner", "args": {}},
        attack=attack,
        safety=safety,
    )
    executors = [
        Executor(
            id=uuid.uuid4().hex,
            plan_id=plan.id,
            name=f"guarded {number}",
            next_run_time=at,
            attack=attack,
        )
        for number, at in enumerate(times)
    ]
    engine.store.add_plan(plan, executors)
    engine.store.commit_plan(plan.id)
    return plan, executors


def deliver(app: Any, clock: FixedClock, executor: Executor) -> str:
    """Invoke the attack Lambda for the executor on its second; its answered status."""
    clock.current = executor.next_run_time
    with Client(app) as client:
        payload = client.lambda_.invoke("attack", {"executor_id": executor.id}).payload
    return str(payload["status"])


def stored(engine: Engine, executor: Executor) -> Executor:
    found = engine.store.get_executor(executor.id)
    assert found is not None
    return found


def test_the_halt_skips_every_due_executor_and_lifting_it_replays_none(
    chalice_app: Any, engine: Engine, clock: FixedClock, http_target: Target
) -> None:
    _, (during, again, after) = add_plan(
        engine, http_target, T, T + timedelta(minutes=1), T + timedelta(minutes=10)
    )
    clock.current = T - timedelta(minutes=5)
    engine.halt.set(HaltRequest(True, "region failover in progress"), by=PRINCIPAL)

    assert deliver(chalice_app, clock, during) == "skipped"
    assert deliver(chalice_app, clock, again) == "skipped"
    halted = (
        f'halted: "region failover in progress", set by {PRINCIPAL} since '
        f"2026-12-01T10:25:00+01:00; {NOT_RUN}"
    )
    assert stored(engine, during).reason == halted
    assert stored(engine, again).reason == halted
    assert http_target.hits == []

    clock.current = T + timedelta(minutes=5)
    engine.halt.set(HaltRequest(False, None), by=PRINCIPAL)
    # A retried delivery of a skipped executor runs nothing: skipped is terminal.
    assert deliver(chalice_app, clock, during) == "skipped"
    assert deliver(chalice_app, clock, after) == "succeeded"
    assert http_target.hits == ["/attack"]
    assert stored(engine, during).status is ExecutorStatus.SKIPPED
    plan = engine.store.get_plan(during.plan_id)
    assert plan is not None
    assert (plan.counts.of(ExecutorStatus.SKIPPED), plan.counts.of(ExecutorStatus.SUCCEEDED)) == (
        2,
        1,
    )


def test_an_alarm_in_alarm_stops_the_attack_until_it_clears(
    chalice_app: Any, engine: Engine, clock: FixedClock, http_target: Target
) -> None:
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    cloudwatch.put_metric_alarm(
        AlarmName="checkout-p99-latency",
        MetricName="Latency",
        Namespace="AWS/ApplicationELB",
        Statistic="Average",
        Period=60,
        EvaluationPeriods=1,
        Threshold=0.5,
        ComparisonOperator="GreaterThanThreshold",
    )
    # https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_SetAlarmState.html
    cloudwatch.set_alarm_state(
        AlarmName="checkout-p99-latency", StateValue="ALARM", StateReason="test"
    )
    safety = {"stop_conditions": {"alarms": ["checkout-p99-latency"]}}
    _, (first, second) = add_plan(engine, http_target, T, T + timedelta(minutes=10), safety=safety)

    assert deliver(chalice_app, clock, first) == "skipped"
    assert stored(engine, first).reason == (
        f"stop condition: alarm 'checkout-p99-latency' is in ALARM; {NOT_RUN}"
    )
    assert http_target.hits == []

    cloudwatch.set_alarm_state(AlarmName="checkout-p99-latency", StateValue="OK", StateReason="t")
    assert deliver(chalice_app, clock, second) == "succeeded"
    assert http_target.hits == ["/attack"]


def test_the_minimum_interval_is_kept_in_dynamodb_across_deliveries(
    chalice_app: Any, engine: Engine, clock: FixedClock, http_target: Target
) -> None:
    safety = {"min_interval": {"seconds": 900, "group": "tag:App=checkout"}}
    _, (first, too_soon) = add_plan(
        engine, http_target, T, T + timedelta(minutes=14, seconds=59), safety=safety
    )
    _, (other_plan,) = add_plan(engine, http_target, T + timedelta(minutes=15), safety=safety)

    assert deliver(chalice_app, clock, first) == "succeeded"
    assert deliver(chalice_app, clock, too_soon) == "skipped"
    assert stored(engine, too_soon).reason == (
        "min interval: the last attack on group 'tag:App=checkout' was at "
        f"2026-12-01T10:30:00+01:00, less than 900 s before; {NOT_RUN}"
    )
    assert deliver(chalice_app, clock, other_plan) == "succeeded"
    assert http_target.hits == ["/attack", "/attack"]
    assert engine.store.last_attack("group:tag:App=checkout") == T + timedelta(minutes=15)
