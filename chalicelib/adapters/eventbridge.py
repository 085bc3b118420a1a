"""The Scheduler port on Amazon EventBridge Scheduler: one one-shot schedule per executor.

Each executor gets a schedule named after its id, in the stage's schedule group, with an
``at(...)`` expression in UTC, no flexible window, the attack Lambda as target (input
``{"executor_id": ..., "run_at": ...}``), the scheduler's invoke role, a retry policy that
gives up no later than the engine's allowed lateness, a dead-letter queue, and
``ActionAfterCompletion=DELETE`` so that fired schedules clean themselves up.

Scheduler invokes "with 60 second precision": a schedule for 1:00 fires anywhere from
1:00:00 to 1:00:59 (Scheduler user guide, "Schedule types",
https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html). So the
``at()`` of an executor due at 09:31:45 is 09:30:00, the minute *before* its own: the
delivery lands 1-119 s early and the runner waits for the executor's second
(``EARLY_DELIVERY_WINDOW``); ``run_at`` lets it ignore a delivery of a time the executor
no longer has.

moto's Scheduler accepts almost anything, so names, expressions, timezones, ARNs and
times are validated here, before AWS sees them. Calls are paced (the account's
CreateSchedule quota is a rate), run a few at a time, retried with jittered backoff when
throttled, and never started past the caller's deadline.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ReadTimeoutError,
)

from chalicelib.domain.errors import SchedulingError
from chalicelib.domain.model import Executor
from chalicelib.domain.times import Deadline, utc_now
from chalicelib.settings import load_timezone

log = logging.getLogger(__name__)

NAME = re.compile(r"^[0-9a-zA-Z\-_.]{1,64}$")
AT_EXPRESSION = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
FUNCTION_ARN = re.compile(
    r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9_$-]+)?$"
)
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
QUEUE_ARN = re.compile(r"^arn:aws[a-z-]*:sqs:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,80}(\.fifo)?$")

# EventBridge Scheduler's bounds for a target's retry policy.
MIN_EVENT_AGE = timedelta(seconds=60)
MAX_EVENT_AGE = timedelta(hours=24)
MAX_RETRY_ATTEMPTS = 185

# Scheduler invokes a target anywhere in the minute of its at() ("60 second precision":
# https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html).
PRECISION = timedelta(seconds=60)
# Kept in the minimum lead time for the skew between this function's clock and AWS's.
CLOCK_SKEW_MARGIN = timedelta(seconds=5)
# Of the calls max_executors_within counts on, the share left for throttling retries.
RETRY_SHARE = 0.2

# Errors worth another try; anything else (validation, access denied) will not get better.
RETRYABLE = frozenset(
    {
        "ThrottlingException",
        "TooManyRequestsException",
        "InternalServerException",
        "ServiceUnavailableException",
        "RequestTimeoutException",
    }
)
# Errors that say the request was refused, so it changed nothing.
REFUSED = frozenset(
    {
        "ThrottlingException",
        "TooManyRequestsException",
        "ValidationException",
        "AccessDeniedException",
        "ConflictException",
        "ServiceQuotaExceededException",
        "ResourceNotFoundException",
    }
)


@dataclass(frozen=True)
class ScheduleTarget:
    """Where a schedule delivers: the attack function, the role it assumes, its DLQ."""

    attack_function_arn: str
    role_arn: str
    dead_letter_arn: str

    def validate(self) -> None:
        """ValueError naming the setting that holds a bad or missing ARN."""
        for value, pattern, variable in (
            (self.attack_function_arn, FUNCTION_ARN, "CME_ATTACK_FUNCTION_ARN"),
            (self.role_arn, ROLE_ARN, "CME_SCHEDULER_ROLE_ARN"),
            (self.dead_letter_arn, QUEUE_ARN, "CME_DEAD_LETTER_ARN"),
        ):
            if not value:
                raise ValueError(f"{variable} is not set")
            if not pattern.match(value):
                raise ValueError(f"{variable} {value!r} is not a valid ARN of its kind")


def fill_arn(template: str, partition: str, region: str, account: str) -> str:
    """Fill ``{partition}``, ``{region}`` and ``{account}`` in an ARN from the settings."""
    return (
        template.replace("{partition}", partition)
        .replace("{region}", region)
        .replace("{account}", account)
    )


def validate_name(kind: str, value: str) -> str:
    if not NAME.match(value):
        raise ValueError(f"{kind} {value!r} must be 1-64 letters, digits, '-', '_' or '.'")
    return value


def at_expression(moment: datetime, zone: ZoneInfo) -> str:
    """``at(yyyy-mm-ddThh:mm:ss)`` of ``moment`` as wall time in ``zone``.

    A wall time that a DST change makes ambiguous or skips cannot name one instant, so it
    is refused rather than silently moved by an hour.
    """
    if moment.tzinfo is None:
        raise ValueError(f"{moment.isoformat()} has no offset")
    wall = moment.astimezone(zone).replace(tzinfo=None)
    for fold in (0, 1):
        if wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) != moment.astimezone(UTC):
            raise ValueError(f"{wall.isoformat()} is not a unique wall time in {zone.key}")
    expression = f"at({wall.replace(microsecond=0).isoformat()})"
    validate_expression(expression)
    return expression


def fire_minute(run_at: datetime) -> datetime:
    """The at() instant for an executor due at ``run_at``: the start of the minute before
    its own, so that Scheduler's delivery, anywhere in that minute, comes 1-119 s early
    and never late."""
    if run_at.tzinfo is None:
        raise ValueError(f"{run_at.isoformat()} has no offset")
    return run_at.astimezone(UTC).replace(second=0, microsecond=0) - PRECISION


def validate_expression(expression: str) -> str:
    """Only the one-shot form we use: ``at(`` a real date and time to the second ``)``."""
    match = AT_EXPRESSION.match(expression)
    if not match:
        raise ValueError(f"schedule expression {expression!r} is not at(yyyy-mm-ddThh:mm:ss)")
    try:
        datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise ValueError(f"schedule expression {expression!r} names no real date") from None
    return expression


class Pacer:
    """Spaces calls ``1/rate`` seconds apart across threads (a rate quota, not a burst)."""

    def __init__(
        self,
        rate_per_second: float,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._interval = 1.0 / rate_per_second if rate_per_second > 0 else 0.0
        self._monotonic = monotonic
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self, within: float = math.inf) -> bool:
        """Wait for the next free slot; False (and no slot taken) if it is further away
        than ``within`` seconds."""
        with self._lock:
            now = self._monotonic()
            slot = max(now, self._next)
            if slot - now > within:
                return False
            self._next = slot + self._interval
        if slot > now:
            self._sleep(slot - now)
        return True


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _says_exists(error: ClientError) -> bool:
    """Whether a ConflictException is the one for a name in use ("... already exists"),
    not a conflicting change in progress."""
    text = str(error.response.get("Error", {}).get("Message", ""))
    return "already exist" in text.lower()


def _may_have_taken_effect(error: BaseException) -> bool:
    """Whether a failed call may still have changed something (its answer was lost, or
    the service failed after acting). A refusal changed nothing."""
    if isinstance(error, _Refused):
        return False
    if isinstance(error, ClientError):
        if _code(error) in REFUSED:
            return False
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return not (isinstance(status, int) and 400 <= status < 500)
    return True


class _Refused(Exception):
    """A request this adapter would not send."""


class _OutOfTime(Exception):
    """No time is left to start a call."""


class _Budget:
    """How long calls may still be started: until ``keep`` seconds are left of the
    deadline (none: no limit)."""

    def __init__(self, deadline: Deadline | None, keep: float = 0.0) -> None:
        self._deadline = deadline
        self._keep = keep

    def left(self) -> float:
        if self._deadline is None:
            return math.inf
        return self._deadline.remaining() - self._keep


@dataclass
class _Outcome:
    """What a batch of calls did: names done, names whose failure may have taken effect,
    errors, and how many were never started."""

    done: list[str] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    not_started: int = 0
    out_of_time: bool = False


class EventBridgeScheduler:
    """The Scheduler port on the ``scheduler`` API of one region and one schedule group.

    The client and the target are built on first use, so the attack Lambda (which never
    schedules) does not pay for them at cold start. ``plan_deadline`` is the time plan
    creation has (Settings.plan_deadline); ``now`` is the clock that decides whether an
    at() is still ahead.
    """

    def __init__(
        self,
        *,
        client_factory: Callable[[], Any],
        target_factory: Callable[[], ScheduleTarget],
        group: str,
        allowed_lateness: timedelta,
        timezone_name: str = "UTC",
        concurrency: int = 8,
        rate_per_second: float = 40.0,
        max_attempts: int = 6,
        plan_deadline: timedelta = timedelta(seconds=25),
        now: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.group = validate_name("schedule group", group)
        # UTC by default: an instant in UTC is never ambiguous across DST changes.
        self.zone = load_timezone(timezone_name)
        if allowed_lateness < MIN_EVENT_AGE:
            raise ValueError(
                f"the allowed lateness ({int(allowed_lateness.total_seconds())} s) is shorter "
                f"than EventBridge Scheduler's shortest retry window "
                f"({int(MIN_EVENT_AGE.total_seconds())} s); "
                "set CME_ALLOWED_LATENESS_SECONDS to at least 60"
            )
        # Never retry a delivery past the point where the runner would call it missed:
        # a delivery fires at most 59 s into the at() minute, which ends at least a
        # second before the executor's time, so fire + lateness < time + lateness.
        # RetryPolicy bounds: https://docs.aws.amazon.com/scheduler/latest/APIReference/API_RetryPolicy.html
        self.maximum_event_age = min(allowed_lateness, MAX_EVENT_AGE)
        if concurrency < 1:
            raise ValueError(f"scheduler concurrency must be at least 1, not {concurrency}")
        if plan_deadline <= timedelta(0):
            raise ValueError(f"the plan deadline must be positive, not {plan_deadline}")
        self.concurrency = concurrency
        self.rate_per_second = rate_per_second
        self.max_attempts = max(1, max_attempts)
        self.plan_deadline = plan_deadline
        self._client_factory = client_factory
        self._target_factory = target_factory
        self._client: Any = None
        self._target: ScheduleTarget | None = None
        self._lock = threading.Lock()
        self._pacer = Pacer(rate_per_second, monotonic, sleep)
        self._sleep = sleep
        self._now = now

    # -- the port ----------------------------------------------------------------------

    @property
    def min_lead_time(self) -> timedelta:
        """How far ahead an executor must be due: its at() must still be ahead when the
        CreateSchedule call reaches AWS.

        An executor due at second ``s`` (0-59) of its minute gets the at() of the minute
        before, ``60 + s`` seconds (at most 119 s, under 120 s) ahead of it. Plan
        creation sends its last CreateSchedule at the latest ``plan_deadline`` after the
        request. So an executor must be due more than 120 s + the deadline + a clock-skew
        margin (5 s) ahead, rounded up to whole minutes: 120 + 25 + 5 = 150 -> 180 s with
        the default 25 s deadline. AWS does not document what it does with an at() in the
        past; it is taken as refused, and ``definition`` never builds one.
        """
        needed = 2 * PRECISION + self.plan_deadline + CLOCK_SKEW_MARGIN
        return PRECISION * math.ceil(needed / PRECISION)

    def max_executors_within(self, seconds: float) -> int | None:
        """How many schedules can be created, and all deleted again, within ``seconds``.

        Creation and its undo share the time (``create`` stops starting calls at half of
        it), and both go through one pacer at ``rate_per_second``: ``rate * seconds / 2``
        calls each way, less RETRY_SHARE (20 %) kept for throttling retries. With the
        default 40/s and 25 s: 40 * 25 / 2 = 500, less 20 % = 400. None when unpaced.
        CreateSchedule and DeleteSchedule quotas:
        https://docs.aws.amazon.com/scheduler/latest/UserGuide/scheduler-quotas.html
        """
        if self.rate_per_second <= 0:
            return None
        each_way = self.rate_per_second * max(0.0, seconds) / 2
        return max(0, math.floor(each_way * (1 - RETRY_SHARE)))

    def start(self) -> None:
        """Nothing to start: AWS delivers."""

    def shutdown(self) -> None:
        """Nothing to stop: AWS delivers."""

    def create(self, executors: Sequence[Executor], deadline: Deadline | None = None) -> None:
        """Create every executor's schedule; SchedulingError if any could not be created.

        Definitions are all built (and validated) before the first call. With a
        deadline, no call (or retry) starts once half of what was left of it has gone:
        the other half is the undo's. On failure ``created`` names every schedule that
        was created, or may have been (a call whose answer was lost): deleting one that
        does not exist is harmless, leaving one behind is not. Those stay; the caller
        deletes them (PlanService does).
        """
        try:
            calls = [
                (executor.id, self._creator(executor, self.definition(executor)))
                for executor in executors
            ]
        except ValueError as error:
            raise SchedulingError(str(error)) from error
        budget = _Budget(deadline, keep=deadline.remaining() / 2 if deadline else 0.0)
        outcome = self._each(calls, budget)
        if outcome.errors or outcome.not_started:
            raise SchedulingError(
                self._failure("created", outcome, len(calls)),
                created=[*outcome.done, *outcome.uncertain],
            )

    def update(self, executor: Executor) -> None:
        """Send the full definition: AWS resets every field an update leaves out."""
        try:
            definition = self.definition(executor)
        except ValueError as error:
            raise SchedulingError(str(error)) from error
        budget = _Budget(None)
        try:
            self._call("update_schedule", budget, **definition, ClientToken=uuid.uuid4().hex)
        except (BotoCoreError, _Refused) as error:
            raise SchedulingError(f"schedule {executor.id}: {error}") from error
        except ClientError as error:
            if _code(error) != "ResourceNotFoundException":
                raise SchedulingError(f"schedule {executor.id}: {error}") from error
            # It fired and deleted itself, or was removed by hand: the executor is still
            # scheduled in storage, so give it a schedule again.
            log.warning("schedule gone; creating it again", extra={"executor_id": executor.id})
            try:
                self._creator(executor, definition)(budget)
            except (ClientError, BotoCoreError, _Refused) as again:
                raise SchedulingError(f"schedule {executor.id}: {again}") from again

    def delete(self, executor_ids: Sequence[str], deadline: Deadline | None = None) -> None:
        """Delete schedules; one that already fired (and deleted itself) is not an error.

        No call starts after the deadline. On failure ``created`` names the schedules
        that may still exist (every one not confirmed deleted).
        """
        names = list(executor_ids)
        outcome = self._each([(name, self._deleter(name)) for name in names], _Budget(deadline))
        if outcome.errors or outcome.not_started:
            deleted = set(outcome.done)
            raise SchedulingError(
                self._failure("deleted", outcome, len(names)),
                created=[name for name in names if name not in deleted],
            )

    # -- schedule definitions ------------------------------------------------------------

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    @property
    def target(self) -> ScheduleTarget:
        with self._lock:
            if self._target is None:
                target = self._target_factory()
                target.validate()
                self._target = target
            return self._target

    def definition(self, executor: Executor) -> dict[str, Any]:
        """The complete CreateSchedule/UpdateSchedule request for one executor.

        ValueError when its at() minute has begun: AWS would fire it late or refuse it.
        """
        target = self.target
        fires = fire_minute(executor.next_run_time)
        self._check_ahead(executor.id, executor.next_run_time, fires)
        run_at = executor.next_run_time.astimezone(UTC).isoformat()
        return {
            "Name": validate_name("schedule name", executor.id),
            "GroupName": self.group,
            "ScheduleExpression": at_expression(fires, self.zone),
            "ScheduleExpressionTimezone": self.zone.key,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {
                "Arn": target.attack_function_arn,
                "RoleArn": target.role_arn,
                "Input": json.dumps({"executor_id": executor.id, "run_at": run_at}),
                "RetryPolicy": {
                    "MaximumEventAgeInSeconds": int(self.maximum_event_age.total_seconds()),
                    "MaximumRetryAttempts": MAX_RETRY_ATTEMPTS,
                },
                "DeadLetterConfig": {"Arn": target.dead_letter_arn},
            },
            "ActionAfterCompletion": "DELETE",
            "State": "ENABLED",
            "Description": f"Chaos Monkey Engine executor {executor.id} of plan {executor.plan_id}",
        }

    def _check_ahead(self, name: str, run_at: datetime, fires: datetime) -> None:
        now = self._now()
        if fires <= now:
            raise ValueError(
                f"executor {name} is due at {run_at.astimezone(UTC).isoformat()}: its "
                f"schedule's minute ({fires.isoformat()}) has begun at "
                f"{now.astimezone(UTC).isoformat()}; executors must be due at least "
                f"{int(self.min_lead_time.total_seconds())} s ahead"
            )

    # -- calls ---------------------------------------------------------------------------

    def _creator(self, executor: Executor, definition: dict[str, Any]) -> Callable[[_Budget], None]:
        fires = fire_minute(executor.next_run_time)

        def create(budget: _Budget) -> None:
            # Checked again just before sending: a call may start long after the
            # definition was built, and AWS must never see an at() in the past.
            try:
                self._check_ahead(executor.id, executor.next_run_time, fires)
            except ValueError as error:
                raise _Refused(str(error)) from None
            # One token for all attempts: a retry after a lost answer is not a second create.
            try:
                self._call("create_schedule", budget, **definition, ClientToken=uuid.uuid4().hex)
            except ClientError as error:
                # A schedule of this name exists: the executor's, created by an earlier
                # attempt or by another run of the daily expansion (names are executor
                # ids, and an executor's schedule is only ever created for its current
                # time). Creating it is done. AWS answers ConflictException:
                # https://docs.aws.amazon.com/scheduler/latest/APIReference/API_CreateSchedule.html
                if _code(error) != "ConflictException" or not _says_exists(error):
                    raise
                log.info("schedule exists already", extra={"executor_id": executor.id})

        return create

    def _deleter(self, name: str) -> Callable[[_Budget], None]:
        def delete(budget: _Budget) -> None:
            try:
                self._call(
                    "delete_schedule",
                    budget,
                    Name=name,
                    GroupName=self.group,
                    ClientToken=uuid.uuid4().hex,
                )
            except ClientError as error:
                if _code(error) != "ResourceNotFoundException":
                    raise

        return delete

    def _call(self, operation: str, budget: _Budget, **request: Any) -> Any:
        """One call, retried with jittered backoff when throttled, never started (nor
        retried) after the budget runs out."""
        method = getattr(self.client, operation)
        last: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            if budget.left() <= 0 or not self._pacer.wait(budget.left()):
                if last is not None:
                    raise last
                raise _OutOfTime()
            try:
                return method(**request)
            except ClientError as error:
                if _code(error) not in RETRYABLE or attempt == self.max_attempts:
                    raise
                reason = _code(error)
                last = error
            except (ConnectionClosedError, ReadTimeoutError) as error:
                if attempt == self.max_attempts:
                    raise
                reason = type(error).__name__
                last = error
            delay = min(2.0, 0.1 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            if delay >= budget.left():
                raise last
            log.info(
                "%s retried after %s",
                operation,
                reason,
                extra={"schedule": request.get("Name"), "attempt": attempt},
            )
            self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _each(
        self, calls: Sequence[tuple[str, Callable[[_Budget], None]]], budget: _Budget
    ) -> _Outcome:
        """Make every call, a few at a time; stop starting new ones on a failure or when
        the budget runs out."""
        outcome = _Outcome()
        if not calls:
            return outcome
        stop = threading.Event()
        lock = threading.Lock()

        def guarded(item: tuple[str, Callable[[_Budget], None]]) -> None:
            name, call = item
            if stop.is_set():
                with lock:
                    outcome.not_started += 1
                return
            try:
                call(budget)
            except _OutOfTime:
                stop.set()
                with lock:
                    outcome.not_started += 1
                    outcome.out_of_time = True
            except Exception as error:
                stop.set()
                with lock:
                    outcome.errors.append(error)
                    if _may_have_taken_effect(error):
                        outcome.uncertain.append(name)
            else:
                with lock:
                    outcome.done.append(name)

        if len(calls) == 1 or self.concurrency == 1:
            for item in calls:
                guarded(item)
        else:
            with ThreadPoolExecutor(
                max_workers=min(self.concurrency, len(calls)), thread_name_prefix="schedules"
            ) as pool:
                list(pool.map(guarded, calls))
        return outcome

    @staticmethod
    def _failure(verb: str, outcome: _Outcome, total: int) -> str:
        parts = [f"{len(outcome.done)} of {total} schedules {verb}"]
        if outcome.errors:
            parts.append(f"{len(outcome.errors)} failed (first: {outcome.errors[0]})")
        if outcome.not_started:
            why = "the deadline came" if outcome.out_of_time else "after a failure"
            parts.append(f"{outcome.not_started} not tried ({why})")
        return "; ".join(parts)
