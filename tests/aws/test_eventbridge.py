"""The EventBridge Scheduler adapter against moto's Scheduler API."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from chalicelib.adapters.eventbridge import (
    EventBridgeScheduler,
    Pacer,
    ScheduleTarget,
    at_expression,
    fill_arn,
    fire_minute,
    validate_expression,
)
from chalicelib.domain.errors import SchedulingError
from chalicelib.domain.model import EARLY_DELIVERY_WINDOW, Executor
from chalicelib.domain.times import Deadline, parse_datetime
from tests.aws.conftest import (
    GROUP,
    TARGET,
    FlakyClient,
    Sleeps,
    schedule_names,
    throttled,
)

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


def refused(operation: str, code: str = "ValidationException") -> Exception:
    error: Exception = ClientError({"Error": {"Code": code, "Message": "no"}}, operation)
    return error


class Ticking:
    """A monotonic clock that moves on only when told (by calls, or by sleeps)."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value


# -- the schedule definition ---------------------------------------------------------------


def test_create_writes_the_whole_definition(make_scheduler: MakeScheduler, scheduler_client: Any):
    make_scheduler().create([executor()])

    schedule = scheduler_client.get_schedule(Name=executor().id, GroupName=GROUP)
    # The minute before the executor's: Scheduler fires anywhere in the at() minute.
    assert schedule["ScheduleExpression"] == "at(2026-12-01T10:14:00)"
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["State"] == "ENABLED"
    target = schedule["Target"]
    assert target["Arn"] == TARGET.attack_function_arn
    assert target["RoleArn"] == TARGET.role_arn
    assert json.loads(target["Input"]) == {
        "executor_id": executor().id,
        "run_at": "2026-12-01T10:15:30+00:00",
    }
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 600, "MaximumRetryAttempts": 185}
    assert target["DeadLetterConfig"] == {"Arn": TARGET.dead_letter_arn}


@pytest.mark.parametrize(
    ("due", "expression"),
    [
        ("2026-12-01T10:15:00", "at(2026-12-01T10:14:00)"),
        ("2026-12-01T10:15:01", "at(2026-12-01T10:14:00)"),
        ("2026-12-01T10:15:59.5", "at(2026-12-01T10:14:00)"),
        ("2026-12-01T10:16:00", "at(2026-12-01T10:15:00)"),
        ("2026-12-02T00:00:30", "at(2026-12-01T23:59:00)"),  # across midnight
    ],
)
def test_the_schedule_fires_in_the_minute_before_the_executors(
    make_scheduler: MakeScheduler, due: str, expression: str
):
    moment = datetime.fromisoformat(due).replace(tzinfo=UTC)
    definition = make_scheduler().definition(executor(when=moment))
    assert definition["ScheduleExpression"] == expression


def test_every_moment_of_the_fire_minute_is_early_but_inside_the_runners_window():
    # "60 second precision": a schedule for 1:00 invokes between 1:00:00 and 1:00:59
    # (https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html).
    for second in range(60):
        for micro in (0, 999_999):
            due = datetime(2026, 12, 1, 10, 15, second, micro, tzinfo=UTC)
            fires = fire_minute(due)
            earliest, latest = fires, fires + timedelta(seconds=59, microseconds=999_999)
            assert latest < due, "a delivery must never come after the executor's time"
            assert due - earliest <= EARLY_DELIVERY_WINDOW, "the runner must not ignore it"


def test_run_at_in_the_input_is_the_executors_time_in_utc(make_scheduler: MakeScheduler):
    madrid = datetime(2026, 12, 1, 11, 15, 30, tzinfo=ZoneInfo("Europe/Madrid"))
    definition = make_scheduler().definition(executor(when=madrid))
    run_at = json.loads(definition["Target"]["Input"])["run_at"]
    assert run_at == "2026-12-01T10:15:30+00:00"
    assert parse_datetime(run_at, UTC) == madrid


def test_expressions_in_another_timezone_use_its_wall_time(make_scheduler: MakeScheduler):
    definition = make_scheduler(timezone_name="Europe/Madrid").definition(executor())
    assert definition["ScheduleExpression"] == "at(2026-12-01T11:14:00)"
    assert definition["ScheduleExpressionTimezone"] == "Europe/Madrid"


# -- never an at() in the past ---------------------------------------------------------------


def test_a_schedule_whose_minute_has_begun_is_refused_before_any_call(
    make_scheduler: MakeScheduler, scheduler_client: Any
):
    client = FlakyClient(scheduler_client, lambda *_: None)
    # At 10:14:00 the at() of an executor due at 10:15:30 (10:14:00) is no longer ahead.
    late = make_scheduler(client, now=lambda: datetime(2026, 12, 1, 10, 14, tzinfo=UTC))
    with pytest.raises(SchedulingError, match="has begun"):
        late.create([executor(1), executor(0)])
    assert client.calls == []

    in_time = make_scheduler(client, now=lambda: datetime(2026, 12, 1, 10, 13, 59, tzinfo=UTC))
    in_time.create([executor(0)])
    assert schedule_names(scheduler_client) == [executor(0).id]


def test_the_at_is_checked_again_just_before_each_call(
    make_scheduler: MakeScheduler, scheduler_client: Any
):
    now = [datetime(2026, 12, 1, 10, 0, tzinfo=UTC)]

    def slow(operation: str, number: int, request: dict[str, Any]) -> None:
        now[0] = datetime(2026, 12, 1, 10, 14, 30, tzinfo=UTC)  # the first call took long

    client = FlakyClient(scheduler_client, slow)
    scheduler = make_scheduler(client, now=lambda: now[0], concurrency=1)
    with pytest.raises(SchedulingError, match="has begun") as caught:
        # The second executor (10:15:30, at() 10:14:00) is no longer ahead.
        scheduler.create([executor(1), executor(0)])
    assert caught.value.created == (executor(1).id,)
    assert [request["Name"] for _, request in client.calls] == [executor(1).id]


def test_an_update_to_a_minute_that_has_begun_is_refused(make_scheduler: MakeScheduler):
    scheduler = make_scheduler(now=lambda: datetime(2026, 12, 1, 10, 14, 1, tzinfo=UTC))
    with pytest.raises(SchedulingError, match="has begun"):
        scheduler.update(executor())


# -- lead time and capacity ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("deadline", "lead"), [(25, 180), (40, 180), (55, 180), (56, 240), (10, 180), (120, 300)]
)
def test_min_lead_time_follows_the_plan_deadline(
    make_scheduler: MakeScheduler, deadline: int, lead: int
):
    scheduler = make_scheduler(plan_deadline=timedelta(seconds=deadline))
    assert scheduler.min_lead_time == timedelta(seconds=lead)


@pytest.mark.parametrize("deadline", [5, 25, 29, 56])
def test_an_executor_due_after_the_min_lead_time_is_ahead_of_the_last_possible_call(
    make_scheduler: MakeScheduler, deadline: int
):
    scheduler = make_scheduler(plan_deadline=timedelta(seconds=deadline))
    for phase in range(0, 60_000_000, 250_000):  # the request at every quarter second
        request = datetime(2026, 12, 1, 10, 0, tzinfo=UTC) + timedelta(microseconds=phase)
        due = request + scheduler.min_lead_time
        last_call = request + timedelta(seconds=deadline)
        assert fire_minute(due) > last_call + timedelta(seconds=5)


@pytest.mark.parametrize(
    ("rate", "seconds", "most"),
    [(40, 25, 400), (40, 10, 160), (1000, 25, 10_000), (50, 0, 0), (3, 1, 1)],
)
def test_the_executor_limit_leaves_time_to_undo_and_to_retry(
    make_scheduler: MakeScheduler, rate: float, seconds: float, most: int
):
    # floor(rate * seconds / 2 * 0.8): half the time each way, 20 % kept for retries.
    assert make_scheduler(rate_per_second=rate).max_executors_within(seconds) == most


def test_an_unpaced_scheduler_has_no_executor_limit(make_scheduler: MakeScheduler):
    assert make_scheduler(rate_per_second=0).max_executors_within(25) is None


def test_start_and_shutdown_do_nothing(make_scheduler: MakeScheduler, scheduler_client: Any):
    client = FlakyClient(scheduler_client, lambda *_: None)
    scheduler = make_scheduler(client)
    scheduler.start()
    scheduler.shutdown()
    assert client.calls == []


# -- failures: exactly what was created -----------------------------------------------------


def test_a_failure_names_exactly_the_schedules_created(
    make_scheduler: MakeScheduler, scheduler_client: Any
):
    client = FlakyClient(
        scheduler_client,
        lambda op, n, _: refused(op) if op == "create_schedule" and n == 3 else None,
    )
    with pytest.raises(SchedulingError, match="2 of 6 schedules created; 1 failed") as caught:
        make_scheduler(client, concurrency=1).create([executor(i) for i in range(6)])
    assert caught.value.created == (executor(0).id, executor(1).id)
    assert sorted(caught.value.created) == schedule_names(scheduler_client)
    assert len(client.calls) == 3  # nothing started after the failure


def test_a_call_whose_answer_was_lost_counts_as_created(
    make_scheduler: MakeScheduler, scheduler_client: Any
):
    def lost(operation: str, number: int, request: dict[str, Any]) -> Exception | None:
        if number == 2:
            scheduler_client.create_schedule(**request)  # AWS acted; the answer never came
            return ReadTimeoutError(endpoint_url="https://scheduler")
        return None

    client = FlakyClient(scheduler_client, lost)
    with pytest.raises(SchedulingError) as caught:
        make_scheduler(client, concurrency=1, max_attempts=1).create(
            [executor(i) for i in range(4)]
        )
    assert caught.value.created == (executor(0).id, executor(1).id)
    assert sorted(caught.value.created) == schedule_names(scheduler_client)


def test_creation_stops_at_half_the_deadline(make_scheduler: MakeScheduler, scheduler_client: Any):
    monotonic = Ticking()

    def one_second_each(*_: Any) -> None:
        monotonic.value += 1.0

    client = FlakyClient(scheduler_client, one_second_each)
    scheduler = make_scheduler(client, concurrency=1, monotonic=monotonic)
    deadline = Deadline(10, monotonic)
    with pytest.raises(SchedulingError, match="not tried \\(the deadline came\\)") as caught:
        scheduler.create([executor(i) for i in range(20)], deadline)
    # Calls start while more than 5 of the 10 s are left: at 0, 1, 2, 3 and 4 s.
    assert len(client.calls) == 5
    assert caught.value.created == tuple(executor(i).id for i in range(5))
    assert sorted(caught.value.created) == schedule_names(scheduler_client)

    # The half that is left is enough to undo them.
    scheduler.delete(list(caught.value.created), deadline)
    assert schedule_names(scheduler_client) == []
    assert deadline.remaining() >= 0


def test_throttling_retries_stop_at_the_deadline(
    make_scheduler: MakeScheduler, scheduler_client: Any
):
    monotonic = Ticking()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        monotonic.value += seconds

    client = FlakyClient(scheduler_client, lambda op, *_: throttled(op))
    scheduler = make_scheduler(
        client, max_attempts=50, monotonic=monotonic, sleep=sleep, concurrency=1
    )
    with pytest.raises(SchedulingError, match="ThrottlingException") as caught:
        scheduler.create([executor()], Deadline(2, monotonic))
    assert caught.value.created == ()
    assert 1 < len(client.calls) < 50
    assert sum(slept) < 1.0  # never past the creation's half of the deadline


def test_delete_starts_no_call_after_the_deadline(
    make_scheduler: MakeScheduler, scheduler_client: Any
):
    make_scheduler().create([executor(0), executor(1)])
    monotonic = Ticking()
    client = FlakyClient(scheduler_client, lambda *_: None)
    scheduler = make_scheduler(client, monotonic=monotonic)
    passed = Deadline(0, monotonic)
    with pytest.raises(SchedulingError, match="0 of 2 schedules deleted") as caught:
        scheduler.delete([executor(0).id, executor(1).id], passed)
    assert client.calls == []
    assert caught.value.created == (executor(0).id, executor(1).id)  # both still exist


def test_delete_names_what_may_still_exist(make_scheduler: MakeScheduler, scheduler_client: Any):
    make_scheduler().create([executor(i) for i in range(3)])
    client = FlakyClient(
        scheduler_client,
        lambda op, n, _: refused(op, "AccessDeniedException") if n == 2 else None,
    )
    with pytest.raises(SchedulingError, match="AccessDeniedException") as caught:
        make_scheduler(client, concurrency=1).delete([executor(i).id for i in range(3)])
    assert caught.value.created == (executor(1).id, executor(2).id)
    assert schedule_names(scheduler_client) == [executor(1).id, executor(2).id]


# -- calls ---------------------------------------------------------------------------------


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
    assert update["Target"]["RoleArn"] == create["Target"]["RoleArn"]
    assert json.loads(update["Target"]["Input"])["run_at"] == "2026-12-01T12:15:30+00:00"
    schedule = scheduler_client.get_schedule(Name=moved.id, GroupName=GROUP)
    assert schedule["ScheduleExpression"] == "at(2026-12-01T12:14:00)"


def test_update_of_a_schedule_that_already_fired_creates_it_again(
    make_scheduler: MakeScheduler, scheduler_client: Any
):
    moved = executor()
    make_scheduler().update(moved)
    schedule = scheduler_client.get_schedule(Name=moved.id, GroupName=GROUP)
    assert schedule["ScheduleExpression"] == "at(2026-12-01T10:14:00)"


def test_delete_removes_schedules_and_tolerates_missing_ones(
    make_scheduler: MakeScheduler, scheduler_client: Any
):
    scheduler = make_scheduler(concurrency=3)
    scheduler.create([executor(index) for index in range(5)])
    scheduler.delete([executor(index).id for index in range(7)])  # 5 and 6 never existed
    assert schedule_names(scheduler_client) == []


def test_a_non_retryable_error_is_not_retried(
    make_scheduler: MakeScheduler, scheduler_client: Any, sleeps: Sleeps
):
    client = FlakyClient(scheduler_client, lambda op, *_: refused(op))
    with pytest.raises(SchedulingError, match="ValidationException"):
        make_scheduler(client).create([executor()])
    assert len(client.calls) == 1
    assert sleeps.seconds == []


def test_throttling_beyond_the_retries_fails_the_create(
    make_scheduler: MakeScheduler, scheduler_client: Any
):
    client = FlakyClient(scheduler_client, lambda op, *_: throttled(op))
    with pytest.raises(SchedulingError, match="ThrottlingException") as caught:
        make_scheduler(client, max_attempts=4).create([executor()])
    assert len(client.calls) == 4
    assert caught.value.created == ()  # a throttled call created nothing


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
        assert pacer.wait()
    assert slept == pytest.approx([0.1, 0.2])


def test_pacer_takes_no_slot_further_away_than_asked():
    now = [100.0]
    pacer = Pacer(1, monotonic=lambda: now[0], sleep=lambda _: None)
    assert pacer.wait()
    assert not pacer.wait(within=0.5)  # the next slot is 1 s away
    assert pacer.wait(within=1.0)  # and it was not taken by the refused wait
