"""Plans, executors and the executor state machine."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from chalicelib.domain.errors import InvalidTransition

# Re-exported (the "as" form mypy --strict reads as explicit): callers that redacted
# through the model keep working.
from chalicelib.domain.redaction import REDACTED as REDACTED  # noqa: PLC0414
from chalicelib.domain.redaction import redact as redact  # noqa: PLC0414


class ExecutorStatus(enum.Enum):
    """Where an executor is in its life; see DESIGN.md section 5."""

    SCHEDULED = "scheduled"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    MISSED = "missed"

    @property
    def is_terminal(self) -> bool:
        return self not in (ExecutorStatus.SCHEDULED, ExecutorStatus.RUNNING)

    @property
    def is_pending(self) -> bool:
        return not self.is_terminal


# The only transitions an executor may make. Everything else is a bug or a race.
ALLOWED_TRANSITIONS: dict[ExecutorStatus, frozenset[ExecutorStatus]] = {
    ExecutorStatus.SCHEDULED: frozenset(
        {ExecutorStatus.RUNNING, ExecutorStatus.SKIPPED, ExecutorStatus.MISSED}
    ),
    ExecutorStatus.RUNNING: frozenset(
        {ExecutorStatus.SUCCEEDED, ExecutorStatus.FAILED, ExecutorStatus.SKIPPED}
    ),
}


# A delivery may come early: EventBridge Scheduler fires anywhere in the minute of its
# at() time, so the deployed engine schedules the minute *before* an executor's minute and
# the runner waits for the executor's second. A delivery earlier than this before the
# executor's time is not one of its schedule's (the executor was moved later): it is
# ignored, and the current schedule delivers it. No executor is ever claimed before its
# ``next_run_time``.
EARLY_DELIVERY_WINDOW = timedelta(seconds=125)

# The fields a transition may change besides the status.
OUTCOME_FIELDS = frozenset({"started_at", "finished_at", "result", "error", "reason"})


def can_transition(source: ExecutorStatus, target: ExecutorStatus) -> bool:
    return target in ALLOWED_TRANSITIONS.get(source, frozenset())


@dataclass(frozen=True)
class ProposedExecutor:
    """One run of an attack that a planner proposes; the engine stores and schedules it."""

    run_at: datetime
    name: str
    attack: dict[str, Any]


@dataclass
class Executor:
    """One scheduled run of an attack and, once it ran, its outcome."""

    id: str
    plan_id: str
    name: str
    next_run_time: datetime
    attack: dict[str, Any]
    status: ExecutorStatus = ExecutorStatus.SCHEDULED
    dry_run: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = None
    error: str | None = None
    reason: str | None = None

    @property
    def executed(self) -> bool:
        return self.status.is_terminal

    def moved_to(self, target: ExecutorStatus, changes: dict[str, Any]) -> Executor:
        """This executor after a transition to ``target``; the state machine's rule.

        InvalidTransition when the executor cannot make it; ValueError for a change to a
        field that is not part of an outcome. Stores write exactly what this returns.
        """
        if not can_transition(self.status, target):
            raise InvalidTransition(self.id, self.status.value, target.value)
        unknown = set(changes) - OUTCOME_FIELDS
        if unknown:
            raise ValueError(f"a transition cannot change {', '.join(sorted(unknown))}")
        return replace(self, status=target, **changes)


@dataclass
class StatusCounts:
    """How many executors of a plan are in each status."""

    counts: dict[ExecutorStatus, int] = field(default_factory=dict)

    def of(self, status: ExecutorStatus) -> int:
        return self.counts.get(status, 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def pending(self) -> int:
        return sum(n for status, n in self.counts.items() if status.is_pending)

    def as_dict(self) -> dict[str, int]:
        return {status.value: self.of(status) for status in ExecutorStatus}


@dataclass
class Plan:
    """A named planner + attack pair and the executors it produced."""

    id: str
    name: str
    created: datetime
    planner: dict[str, Any]
    attack: dict[str, Any]
    dry_run: bool = False
    counts: StatusCounts = field(default_factory=StatusCounts)
    # A plan is stored uncommitted, its schedules are created, and only then is it
    # committed. No executor of an uncommitted plan is ever claimed, so a creation that
    # died half way (its Lambda killed, its undo cut short) can run no attack; the reaper
    # removes such plans.
    committed: bool = True
    # With an Idempotency-Key: a digest of the request that created the plan, so that a
    # retry with the same key and another body is refused instead of answered.
    fingerprint: str | None = None
    # The soonest pending executor's time, as the store knows it (None when none is).
    next_execution: datetime | None = None
    # The plan body's ``safety`` object as validated (stop conditions, minimum interval;
    # ``domain.safety.PlanSafety.from_dict`` reads it); None when the plan gave none.
    safety: dict[str, Any] | None = None
    # Recurring plans (a planner with ``recurring = True``; issue 11): ``last_expanded``
    # is the last day whose executors the daily expansion created (None: only the
    # creation day's); ``next_expansion`` when it is next due (None: not recurring,
    # paused, or past its end). A paused plan has no pending schedules and no expansion.
    paused: bool = False
    last_expanded: date | None = None
    next_expansion: datetime | None = None

    @property
    def executors_count(self) -> int:
        return self.counts.total

    @property
    def executed(self) -> bool:
        """True when none of the plan's executors is still pending and no expansion will
        add more (an active recurring plan is never executed)."""
        return self.counts.pending == 0 and self.next_expansion is None
