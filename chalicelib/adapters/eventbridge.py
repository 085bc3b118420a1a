"""The Scheduler port on Amazon EventBridge Scheduler: one one-shot schedule per executor.

Each executor gets a schedule named after its id, in the stage's schedule group, with an
``at(...)`` expression and an explicit timezone, no flexible window, the attack Lambda as
target (input ``{"executor_id": ...}``), the scheduler's invoke role, a retry policy that
gives up no later than the engine's allowed lateness, a dead-letter queue, and
``ActionAfterCompletion=DELETE`` so that fired schedules clean themselves up.

moto's Scheduler accepts almost anything, so names, expressions, timezones and ARNs are
validated here, before AWS sees them. Calls are paced (the account's CreateSchedule quota
is a rate), run a few at a time, and retried with jittered backoff when throttled.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from chalicelib.domain.errors import SchedulingError
from chalicelib.domain.model import Executor
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

    def wait(self) -> None:
        with self._lock:
            now = self._monotonic()
            slot = max(now, self._next)
            self._next = slot + self._interval
        if slot > now:
            self._sleep(slot - now)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class EventBridgeScheduler:
    """The Scheduler port on the ``scheduler`` API of one region and one schedule group.

    The client and the target are built on first use, so the attack Lambda (which never
    schedules) does not pay for them at cold start.
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
        # Never retry a delivery past the point where the runner would call it missed.
        self.maximum_event_age = min(allowed_lateness, MAX_EVENT_AGE)
        if concurrency < 1:
            raise ValueError(f"scheduler concurrency must be at least 1, not {concurrency}")
        self.concurrency = concurrency
        self.max_attempts = max(1, max_attempts)
        self._client_factory = client_factory
        self._target_factory = target_factory
        self._client: Any = None
        self._target: ScheduleTarget | None = None
        self._lock = threading.Lock()
        self._pacer = Pacer(rate_per_second, monotonic, sleep)
        self._sleep = sleep

    # -- the port ----------------------------------------------------------------------

    def create(self, executors: Sequence[Executor]) -> None:
        """Create every executor's schedule; SchedulingError if any could not be created.

        Definitions are all built (and validated) before the first call. Schedules that
        were created stay when another fails; the caller deletes them (PlanService does).
        """
        try:
            definitions = [self.definition(executor) for executor in executors]
        except ValueError as error:
            raise SchedulingError(str(error)) from error
        self._each("created", definitions, self._create_one)

    def update(self, executor: Executor) -> None:
        """Send the full definition: AWS resets every field an update leaves out."""
        try:
            definition = self.definition(executor)
        except ValueError as error:
            raise SchedulingError(str(error)) from error
        try:
            self._call("update_schedule", **definition, ClientToken=uuid.uuid4().hex)
        except ClientError as error:
            if _code(error) != "ResourceNotFoundException":
                raise SchedulingError(f"schedule {executor.id}: {error}") from error
            # It fired and deleted itself, or was removed by hand: the executor is still
            # scheduled in storage, so give it a schedule again.
            log.warning("schedule gone; creating it again", extra={"executor_id": executor.id})
            self._create_one(definition)

    def delete(self, executor_ids: Sequence[str]) -> None:
        """Delete schedules; one that already fired (and deleted itself) is not an error."""
        self._each("deleted", list(executor_ids), self._delete_one)

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
        """The complete CreateSchedule/UpdateSchedule request for one executor."""
        target = self.target
        return {
            "Name": validate_name("schedule name", executor.id),
            "GroupName": self.group,
            "ScheduleExpression": at_expression(executor.next_run_time, self.zone),
            "ScheduleExpressionTimezone": self.zone.key,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {
                "Arn": target.attack_function_arn,
                "RoleArn": target.role_arn,
                "Input": json.dumps({"executor_id": executor.id}),
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

    # -- calls ---------------------------------------------------------------------------

    def _create_one(self, definition: dict[str, Any]) -> None:
        # One token for all attempts: a retry after a lost answer is not a second create.
        self._call("create_schedule", **definition, ClientToken=uuid.uuid4().hex)

    def _delete_one(self, name: str) -> None:
        try:
            self._call(
                "delete_schedule", Name=name, GroupName=self.group, ClientToken=uuid.uuid4().hex
            )
        except ClientError as error:
            if _code(error) != "ResourceNotFoundException":
                raise

    def _call(self, operation: str, **request: Any) -> Any:
        method = getattr(self.client, operation)
        for attempt in range(1, self.max_attempts + 1):
            self._pacer.wait()
            try:
                return method(**request)
            except ClientError as error:
                if _code(error) not in RETRYABLE or attempt == self.max_attempts:
                    raise
                reason = _code(error)
            except (ConnectionClosedError, ReadTimeoutError) as error:
                if attempt == self.max_attempts:
                    raise
                reason = type(error).__name__
            delay = min(2.0, 0.1 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            log.info(
                "%s retried after %s",
                operation,
                reason,
                extra={"schedule": request.get("Name"), "attempt": attempt},
            )
            self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _each(self, verb: str, items: Sequence[Any], call: Callable[[Any], None]) -> None:
        """Run ``call`` on every item, a few at a time; stop starting new ones on a failure."""
        if not items:
            return
        failed = threading.Event()
        errors: list[BaseException] = []

        def guarded(item: Any) -> None:
            if failed.is_set():
                return
            try:
                call(item)
            except Exception as error:
                failed.set()
                errors.append(error)

        if len(items) == 1 or self.concurrency == 1:
            for item in items:
                guarded(item)
        else:
            with ThreadPoolExecutor(
                max_workers=min(self.concurrency, len(items)), thread_name_prefix="schedules"
            ) as pool:
                list(pool.map(guarded, items))
        if errors:
            raise SchedulingError(
                f"not every schedule could be {verb} ({len(errors)} failed of {len(items)}); "
                f"first error: {errors[0]}"
            )
