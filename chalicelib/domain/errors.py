"""Errors the engine raises; each carries its data and builds its own message.

EngineError
├── NotFound                 (HTTP 404)
│   ├── PlanNotFound
│   └── ExecutorNotFound
├── InvalidRequest           (HTTP 400)
│   ├── InvalidPayload
│   │   └── PayloadTooLarge  (HTTP 413: the request body is over the limit)
│   ├── UnknownPlugin
│   ├── PlanningError
│   ├── InvalidTrigger
│   ├── InvalidDate
│   └── InvalidCursor
├── Conflict                 (HTTP 409)
│   ├── ExecutorAlreadyRun
│   ├── ExecutorRunning      (a delete refused: its attack is running)
│   ├── InvalidTransition    (the executor state machine refused a change)
│   └── PlanExists           (an Idempotency-Key's plan is still being created, or
│                             the key was used with another request)
└── ServiceUnavailable       (HTTP 503)
    ├── StorageError
    │   └── OrphanExecutor   (an executor whose plan is gone; never reaches a client)
    └── SchedulingError
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

# How much of a caller's value a message may quote: enough to recognise it, never the
# megabyte a caller sent (nor, whole, a secret pasted into the wrong field).
MAX_SHOWN = 200
# A detail is a field path and a sentence that may quote a value.
MAX_DETAIL = MAX_SHOWN + 100


def clip(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…({len(text) - limit} more characters)"


def shown(value: object, limit: int = MAX_SHOWN) -> str:
    """``value`` as a message quotes it (its ``repr``), at most ``limit`` characters."""
    if isinstance(value, str) and len(value) > limit:
        # Only the head is quoted: the repr of a megabyte, made only to be cut, is waste.
        return f"{repr(value[:limit])[:limit]}…({len(value) - limit} more characters)"
    return clip(repr(value), limit)


class EngineError(Exception):
    """Base of every error the engine reports to a caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(EngineError):
    pass


class PlanNotFound(NotFound):
    def __init__(self, plan_id: str) -> None:
        super().__init__(f"plan not found {clip(plan_id)}")
        self.plan_id = plan_id


class ExecutorNotFound(NotFound):
    def __init__(self, executor_id: str) -> None:
        super().__init__(f"executor not found {clip(executor_id)}")
        self.executor_id = executor_id


class InvalidRequest(EngineError):
    pass


class InvalidPayload(InvalidRequest):
    def __init__(self, detail: str) -> None:
        super().__init__(f"invalid payload {clip(detail, MAX_DETAIL)}")
        self.detail = detail


class PayloadTooLarge(InvalidPayload):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"body: {size} bytes; the limit is {limit} bytes")
        self.size = size
        self.limit = limit


class UnknownPlugin(InvalidRequest):
    """A ref that names no loaded plugin of the expected kind."""

    def __init__(self, kind: str, ref: object, known: Iterable[str], why: str = "") -> None:
        known_list = ", ".join(sorted(known)) or "none"
        reason = f": {why}" if why else ""
        reason = clip(reason, MAX_DETAIL)
        super().__init__(f"invalid {kind} {shown(ref)}{reason}; known: {known_list}")
        self.kind = kind
        self.ref = ref


class PlanningError(InvalidRequest):
    """The planner's arguments cannot be turned into executors."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"cannot plan: {clip(detail, MAX_DETAIL)}")
        self.detail = detail


class InvalidTrigger(InvalidRequest):
    def __init__(self, trigger_type: object) -> None:
        super().__init__(f"Invalid trigger type {shown(trigger_type)}; only 'date' is supported")
        self.trigger_type = trigger_type


class InvalidDate(InvalidRequest):
    def __init__(self, value: object, detail: str = "expected ISO 8601") -> None:
        super().__init__(f"Invalid date format {shown(value)}: {clip(detail, MAX_DETAIL)}")
        self.value = value


class InvalidCursor(InvalidRequest):
    def __init__(self, cursor: object) -> None:
        super().__init__(
            f"invalid cursor {shown(str(cursor), 80)}: use the next link of the previous page"
        )


class Conflict(EngineError):
    pass


class InvalidTransition(Conflict):
    def __init__(self, executor_id: str, source: str, target: str) -> None:
        super().__init__(f"executor {executor_id} cannot go from {source} to {target}")
        self.executor_id = executor_id
        self.source = source
        self.target = target


class PlanExists(Conflict):
    def __init__(self, plan_id: str, detail: str) -> None:
        super().__init__(f"plan {plan_id} {detail}")
        self.plan_id = plan_id


class ExecutorAlreadyRun(Conflict):
    def __init__(self, executor_id: str, status: str) -> None:
        super().__init__(f"executor {executor_id} cannot be changed: it is already {status}")
        self.executor_id = executor_id
        self.status = status


class ExecutorRunning(Conflict):
    """A delete refused because the executor's attack is running (nothing was deleted)."""

    def __init__(self, executor_id: str, started_at: datetime | None) -> None:
        started = started_at.isoformat() if started_at is not None else "at an unknown time"
        super().__init__(
            f"executor {executor_id} is running (started {started}); "
            "it cannot be deleted until it ends"
        )
        self.executor_id = executor_id
        self.started_at = started_at


class ServiceUnavailable(EngineError):
    pass


class StorageError(ServiceUnavailable):
    def __init__(self, detail: str) -> None:
        super().__init__(f"storage failed: {detail}")


class OrphanExecutor(StorageError):
    """An executor whose plan item is gone: no transition of it can be recorded."""

    def __init__(self, executor_id: str, plan_id: str) -> None:
        super().__init__(f"executor {executor_id} has no plan {plan_id}")
        self.executor_id = executor_id
        self.plan_id = plan_id


class SchedulingError(ServiceUnavailable):
    """Not every schedule could be created; ``created`` names those that were."""

    def __init__(self, detail: str, created: Iterable[str] = ()) -> None:
        super().__init__(f"scheduling failed: {detail}")
        self.created = tuple(created)


class ProbeFailed(Exception):
    """A stop condition could not be evaluated (an alarm that does not exist, a health
    check that did not answer in time): the guard refuses. Not an API error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
