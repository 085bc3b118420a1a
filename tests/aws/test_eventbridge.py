"""The EventBridge Scheduler adapter against moto's Scheduler API."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from botocore.exceptions import ClientError

from chalicelib.adapters.eventbridge import (
    EventBridgeScheduler,
    Pacer,
    ScheduleTarget,
    at_expression,
    fill_arn,
    validate_expression,
)
from chalicelib.domain.errors import SchedulingError
from chalicelib.domain.model import Executor
from tests.aws.conftest import GROUP, TARGET, FlakyClient, Sleeps, schedule_names, throttled

MakeScheduler = Callable[..., EventBridgeScheduler]
WHEN = datetime(2026, 12, 1, 10, 15, 30, tzinfo=UTC)


def executor(index: int = 0, when: datetime = WHEN) -> Executor:
    return Executor(
        id=f"{index:032x}",
        plan_id="p" * 32,
        name=f"attack-{index}",
        next_run_time=when + timedelta(minutes=index),
        attack={"ref": "api_request:ApiRequest", "args": {}},
    )


def test_create_writes_the_whole_definition(make_scheduler: MakeScheduler, scheduler_client: Any):
    make_scheduler().create([executor()])

    schedule = scheduler_client.get_schedule(Name=executor().id, GroupName=GROUP)
    assert schedule["ScheduleExpression"] == "at(2026-12-01T10:15:30)"
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["State"] == "ENABLED"
    target = schedule["Target"]
    assert target["Arn"] == TARGET.attack_function_arn
    assert target["RoleArn"] == TARGET.role_arn
    assert json.loads(target["Input"]) == {"executor_id": executor().id}
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 600, "MaximumRetryAttempts": 185}
    assert target["DeadLetterConfig"] == {"Arn": TARGET.dead_letter_arn}


def test_every_create_carries_a_client_token(make_scheduler: MakeScheduler, scheduler_client: Any):
    client = FlakyClient(scheduler_client, lambda *_: None)
    make_scheduler(client).create([executor(0), executor(1)])
    tokens = [request["ClientToken"] for _, request in client.calls]
    assert len(tokens) == 2
    assert len(set(tokens)) == 2


def test_a_retried_create_reuses_its_client_token(
    make_scheduler: MakeScheduler, scheduler_client: Any, sleeps: Sleeps
):
    client = FlakyClient(scheduler_client, lambda op, n, _: throttled(op) if n <= 2 else None)
    make_scheduler(client).create([executor()])

    tokens = {request["ClientToken"] for _, request in client.calls}
    assert len(client.calls) == 3
    assert len(tokens) == 1
    assert len(sleeps.seconds) == 2
    assert 0.05 <= sleeps.seconds[0] <= 0.1  # jittered exponential backoff
    assert 0.1 <= sleeps.seconds[1] <= 0.2
    assert schedule_names(scheduler_client) == [executor().id]


@pytest.mark.parametrize(
    ("lateness", "age"),
    [(timedelta(seconds=60), 60), (timedelta(minutes=10), 600), (timedelta(days=3), 86400)],
)
def test_retry_window_is_never_longer_than_the_allowed_lateness(
    make_scheduler: MakeScheduler, lateness: timedelta, age: int
):
    definition = make_scheduler(allowed_lateness=lateness).definition(executor())
    assert definition["Target"]["RetryPolicy"]["MaximumEventAgeInSeconds"] == age
    assert age <= lateness.total_seconds()


def test_lateness_shorter_than_the_scheduler_can_honour_is_refused(make_scheduler: MakeScheduler):
    with pytest.raises(ValueError, match="at least 60"):
        make_scheduler(allowed_lateness=timedelta(seconds=30))


def test_update_sends_the_full_definition(make_scheduler: MakeScheduler, scheduler_client: Any):
    client = FlakyClient(scheduler_client, lambda *_: None)
    scheduler = make_scheduler(client)
    moved = executor()
    scheduler.create([moved])
    moved.next_run_time = WHEN + timedelta(hours=2)
    scheduler.update(moved)

    (create_op, create), (update_op, update) = client.calls
    assert (create_op, update_op) == ("create_schedule", "update_schedule")
    assert set(update) == set(create)
    assert update["Target"] == create["Target"]
    schedule = scheduler_client.get_schedule(Name=moved.id, GroupName=GROUP)
    assert schedule["ScheduleExpression"] == "at(2026-12-01T12:15:30)"


def test_update_of_a_schedule_that_already_fired_creates_it_again(
    make_scheduler: MakeScheduler, scheduler_client: Any
):
    moved = executor()
    make_scheduler().update(moved)
    schedule = scheduler_client.get_schedule(Name=moved.id, GroupName=GROUP)
    assert schedule["ScheduleExpression"] == "at(2026-12-01T10:15:30)"


def test_delete_removes_schedules_and_tolerates_missing_ones(
    make_scheduler: MakeScheduler, scheduler_client: Any
):
    scheduler = make_scheduler(concurrency=3)
    scheduler.create([executor(index) for index in range(5)])
    scheduler.delete([executor(index).id for index in range(7)])  # 5 and 6 never existed
    assert schedule_names(scheduler_client) == []


def test_delete_reports_real_failures(make_scheduler: MakeScheduler, scheduler_client: Any):
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "Delete")
    client = FlakyClient(
        scheduler_client, lambda op, *_: denied if op == "delete_schedule" else None
    )
    scheduler = make_scheduler(client)
    scheduler.create([executor()])
    with pytest.raises(SchedulingError, match="AccessDeniedException"):
        scheduler.delete([executor().id])


def test_a_non_retryable_error_is_not_retried(
    make_scheduler: MakeScheduler, scheduler_client: Any, sleeps: Sleeps
):
    invalid = ClientError({"Error": {"Code": "ValidationException", "Message": "bad"}}, "Create")
    client = FlakyClient(scheduler_client, lambda *_: invalid)
    with pytest.raises(SchedulingError, match="ValidationException"):
        make_scheduler(client).create([executor()])
    assert len(client.calls) == 1
    assert sleeps.seconds == []


def test_throttling_beyond_the_retries_fails_the_create(
    make_scheduler: MakeScheduler, scheduler_client: Any
):
    client = FlakyClient(scheduler_client, lambda op, *_: throttled(op))
    with pytest.raises(SchedulingError, match="ThrottlingException"):
        make_scheduler(client, max_attempts=4).create([executor()])
    assert len(client.calls) == 4


def test_creates_run_concurrently_but_never_more_than_the_bound(
    make_scheduler: MakeScheduler, scheduler_client: Any
):
    bound = 4
    barrier = threading.Barrier(bound, timeout=10)
    active = 0
    peak = 0
    lock = threading.Lock()

    def observe(operation: str, number: int, request: dict[str, Any]) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            if number <= bound:
                barrier.wait()  # only passes if `bound` calls are in flight at once
        finally:
            with lock:
                active -= 1

    client = FlakyClient(scheduler_client, observe)
    make_scheduler(client, concurrency=bound).create([executor(i) for i in range(30)])
    assert peak == bound
    assert len(schedule_names(scheduler_client)) == 30


def test_a_failure_stops_new_creates(make_scheduler: MakeScheduler, scheduler_client: Any):
    invalid = ClientError({"Error": {"Code": "ValidationException", "Message": "bad"}}, "Create")
    client = FlakyClient(scheduler_client, lambda op, n, _: invalid if n == 3 else None)
    with pytest.raises(SchedulingError, match="1 failed of 50"):
        make_scheduler(client, concurrency=1).create([executor(i) for i in range(50)])
    assert len(client.calls) == 3


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("attack_function_arn", "", "CME_ATTACK_FUNCTION_ARN is not set"),
        ("role_arn", "arn:aws:iam::123:role/x", "CME_SCHEDULER_ROLE_ARN"),
        ("dead_letter_arn", "arn:aws:sns:eu-west-1:123456789012:x", "CME_DEAD_LETTER_ARN"),
        ("attack_function_arn", "arn:aws:lambda:{region}:{account}:function:x", "ATTACK"),
    ],
)
def test_bad_target_arns_are_refused_before_any_call(
    make_scheduler: MakeScheduler, scheduler_client: Any, field: str, value: str, message: str
):
    target = ScheduleTarget(**{**TARGET.__dict__, field: value})
    client = FlakyClient(scheduler_client, lambda *_: None)
    with pytest.raises(SchedulingError, match=message):
        make_scheduler(client, target_factory=lambda: target).create([executor()])
    assert client.calls == []


def test_bad_schedule_names_are_refused_before_any_call(
    make_scheduler: MakeScheduler, scheduler_client: Any
):
    client = FlakyClient(scheduler_client, lambda *_: None)
    bad = executor()
    bad.id = "plan/../x"
    with pytest.raises(SchedulingError, match="schedule name"):
        make_scheduler(client).create([executor(1), bad])
    assert client.calls == []


@pytest.mark.parametrize("group", ["", "a" * 65, "with space", "slash/group"])
def test_bad_group_names_are_refused(make_scheduler: MakeScheduler, group: str):
    with pytest.raises(ValueError, match="schedule group"):
        make_scheduler(group=group)


def test_unknown_timezone_is_refused(make_scheduler: MakeScheduler):
    with pytest.raises(ValueError, match="unknown timezone"):
        make_scheduler(timezone_name="Mars/Olympus")


def test_expressions_in_another_timezone_use_its_wall_time(make_scheduler: MakeScheduler):
    definition = make_scheduler(timezone_name="Europe/Madrid").definition(executor())
    assert definition["ScheduleExpression"] == "at(2026-12-01T11:15:30)"
    assert definition["ScheduleExpressionTimezone"] == "Europe/Madrid"


def test_ambiguous_wall_times_are_refused():
    madrid = ZoneInfo("Europe/Madrid")
    # 2026-10-25 02:30 happens twice in Madrid (clocks go back at 03:00 CEST).
    twice = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a unique wall time"):
        at_expression(twice, madrid)
    assert at_expression(twice, ZoneInfo("UTC")) == "at(2026-10-25T00:30:00)"


@pytest.mark.parametrize(
    "expression",
    [
        "rate(5 minutes)",
        "at(2026-02-30T10:00:00)",
        "at(2026-12-01 10:00:00)",
        "at(2026-12-01T10:00)",
    ],
)
def test_only_real_at_expressions_pass(expression: str):
    with pytest.raises(ValueError, match="schedule expression"):
        validate_expression(expression)


def test_fill_arn():
    template = "arn:{partition}:lambda:{region}:{account}:function:f"
    assert fill_arn(template, "aws-cn", "cn-north-1", "123456789012") == (
        "arn:aws-cn:lambda:cn-north-1:123456789012:function:f"
    )


def test_pacer_spaces_calls_at_the_rate():
    now = [100.0]
    slept: list[float] = []

    def sleep(delay: float) -> None:
        slept.append(delay)

    pacer = Pacer(10, monotonic=lambda: now[0], sleep=sleep)
    for _ in range(3):
        pacer.wait()
    assert slept == pytest.approx([0.1, 0.2])
