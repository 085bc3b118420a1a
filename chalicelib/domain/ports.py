"""The ports the services depend on; adapters implement them.

Every port has two implementations, tested by one contract suite each (``tests/contract``):
``SqliteStore`` (local mode) and ``DynamoStore`` (deployed, and ``--store moto``);
``LocalScheduler`` (APScheduler) and ``EventBridgeScheduler``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from chalicelib.domain.events import Event, EventKind
from chalicelib.domain.model import Executor, ExecutorStatus, Plan
from chalicelib.domain.safety import Halt
from chalicelib.domain.times import Deadline

T = TypeVar("T")

# The largest page a list request may ask for.
MAX_PAGE_SIZE = 500


class Clock(Protocol):
    """The current instant, and waiting; a port so that planners and lateness are testable."""

    def now(self) -> datetime:
        """An aware datetime."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a fixed clock in tests just moves on)."""
        ...


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list; ``cursor`` (opaque) asks for the next one, None at the end."""

    items: list[T]
    cursor: str | None = None


@dataclass(frozen=True)
class ExecutorQuery:
    """Which executors a list holds, and in which order.

    ``executed``: False pending only (``scheduled``/``running``), True terminal only,
    None both. ``statuses`` narrows further (empty: any). ``due_from`` (inclusive) and
    ``due_until`` (exclusive) bound ``next_run_time``. Order is by ``next_run_time`` then
    id; ``latest_first`` reverses it.
    """

    executed: bool | None = False
    plan_id: str | None = None
    statuses: frozenset[ExecutorStatus] = field(default_factory=frozenset)
    due_from: datetime | None = None
    due_until: datetime | None = None
    latest_first: bool = False


@dataclass(frozen=True)
class PlanQuery:
    """Which committed plans a list holds: pending (some executor still pending) and/or
    executed. Newest ``created`` first, then id."""

    pending: bool = True
    executed: bool = False


class Store(Protocol):
    """Durable plans and executors. Reads on request paths read only what they return
    (an index range, never a whole table), so no request's cost grows with the store.
    """

    def close(self) -> None:
        """Release connections and files; the store is not used afterwards."""
        ...

    # -- plans -------------------------------------------------------------------------

    def add_plan(self, plan: Plan, executors: Sequence[Executor]) -> None:
        """Write an *uncommitted* plan (whatever ``plan.committed`` says) and its executors.

        PlanExists (nothing written) when a plan with ``plan.id`` exists. On any other
        failure raise StorageError after removing every part written.
        """
        ...

    def commit_plan(self, plan_id: str) -> None:
        """Mark a stored plan committed: from now on its executors can be claimed."""
        ...

    def get_plan(self, plan_id: str) -> Plan | None:
        """The plan, committed or not, with its counts and ``next_execution``."""
        ...

    def list_plans(self, query: PlanQuery, limit: int, cursor: str | None) -> Page[Plan]:
        """Committed plans matching ``query``, each with its counts and ``next_execution``,
        in a bounded number of reads whatever the number of plans (no read per plan).
        InvalidCursor for a cursor this store did not make for this query."""
        ...

    def list_abandoned_plans(self, created_before: datetime, limit: int) -> list[Plan]:
        """Uncommitted plans created before ``created_before``: creations that died."""
        ...

    def delete_plan(self, plan: Plan) -> None:
        """Delete a plan and all of its executors, unless one of them is running.

        ExecutorRunning (naming a running executor and when it started), and nothing
        deleted, while any executor of the plan is ``running``. The check and the delete
        are one serialized step against claims: a claim that wins makes this refuse, and
        a claim of any of its executors after this returns no longer runs anything (False
        or OrphanExecutor).
        """
        ...

    # -- recurring plans ---------------------------------------------------------------

    def list_due_expansions(self, now: datetime, limit: int) -> list[str]:
        """Ids of committed plans whose ``next_expansion`` is at or before ``now``, soonest
        first, at most ``limit``. Reads only such plans (an index of plans that have a
        ``next_expansion``), never all plans."""
        ...

    def add_executors(self, plan_id: str, executors: Sequence[Executor]) -> list[str]:
        """Add ``executors`` (status scheduled) to the committed plan ``plan_id``; one whose
        id is already stored is left as it is, so a repeated expansion adds nothing.
        Returns the ids added; the plan's counts and ``next_execution`` follow exactly.
        PlanNotFound when the plan does not exist."""
        ...

    def set_expansion(
        self,
        plan_id: str,
        expected_last: date | None,
        last_expanded: date | None,
        next_expansion: datetime | None,
    ) -> bool:
        """Move a plan's expansion state forward: a conditional write, done (True) only
        while the stored ``last_expanded`` is ``expected_last`` and the plan is not
        paused; False (nothing written) otherwise. PlanNotFound when it does not exist."""
        ...

    def set_paused(
        self,
        plan_id: str,
        paused: bool,
        last_expanded: date | None,
        next_expansion: datetime | None,
    ) -> Plan:
        """Set a plan's ``paused`` flag and its expansion state together; returns the plan.
        PlanNotFound when it does not exist."""
        ...

    # -- safety ------------------------------------------------------------------------

    def get_halt(self) -> Halt:
        """The engine's halt as last set; ``Halt()`` (not halted) when never set."""
        ...

    def set_halt(self, halt: Halt) -> Halt:
        """Store ``halt`` (replacing the previous one) and return it as stored."""
        ...

    def record_attack(self, group: str, at: datetime, min_interval: timedelta) -> datetime | None:
        """Record an attack on the target group ``group`` at ``at`` unless one is too recent.

        One conditional write: when the last attack recorded for ``group`` is later than
        ``at - min_interval``, nothing is written and its time is returned; otherwise
        ``at`` becomes the group's last attack and None is returned. Of two concurrent
        calls for one group whose times are closer than ``min_interval``, exactly one
        records (None) and the other is refused.
        """
        ...

    def last_attack(self, group: str) -> datetime | None:
        """The last attack recorded for ``group`` (a preview reads it; nothing written)."""
        ...

    # -- executors ---------------------------------------------------------------------

    def get_executor(self, executor_id: str) -> Executor | None: ...

    def list_executors(
        self, query: ExecutorQuery, limit: int, cursor: str | None
    ) -> Page[Executor]:
        """Executors matching ``query``, in its order, paged: every executor is on exactly
        one page even while others are added. InvalidCursor for a cursor this store did
        not make for this query. Executors of uncommitted plans are left out, except with
        ``plan_id``: then that plan's, committed or not (to undo or reap it)."""
        ...

    def list_running(self, started_before: datetime, limit: int) -> list[str]:
        """Ids of executors still ``running`` that started before ``started_before``.

        At most ``limit``, oldest first; a caller that wants every one calls again after
        handling these. Ids, not executors: a record that cannot be read must not stop
        the reaper from reading the others.
        """
        ...

    def list_undelivered(self, due_before: datetime, limit: int) -> list[str]:
        """Ids of executors still ``scheduled`` whose time is before ``due_before``."""
        ...

    def delete_executor(self, executor: Executor) -> bool:
        """Delete one executor that is not running and take it off its plan's counts.

        ExecutorRunning (nothing deleted) when ``executor.status`` is ``running``. False
        (and nothing deleted) when its stored status is no longer ``executor.status``:
        the caller reads it again. The delete is conditional on the stored status, as a
        claim is, so of a claim and a delete of a scheduled executor exactly one wins: a
        claim after the delete finds nothing (False).
        """
        ...

    def purge_executor(self, executor_id: str) -> None:
        """Remove an executor record that no transition can handle (its plan is gone, or
        it cannot be read), touching no plan. No error if it does not exist."""
        ...

    def move_executor(self, executor_id: str, run_at: datetime) -> Executor:
        """Change a scheduled executor's time; ExecutorAlreadyRun if it is not scheduled."""
        ...

    def transition(
        self,
        executor: Executor,
        target: ExecutorStatus,
        changes: dict[str, Any],
    ) -> bool:
        """Move an executor from its current status to ``target`` if nobody else did.

        The new values are ``executor.moved_to(target, changes)`` (InvalidTransition if
        the state machine forbids it). A conditional write: returns False (and writes
        nothing) when the stored status or ``next_run_time`` is no longer the
        executor's, or, for a claim (``scheduled -> running``), when its plan is not
        committed. On success the plan's counts follow, exactly, and ``executor`` holds
        the new values. Conflicts and throttling are retried inside the store; only a
        failure that retrying cannot fix raises StorageError. OrphanExecutor when the
        executor's plan does not exist.
        """
        ...


class Probes(Protocol):
    """What stop conditions ask the world: CloudWatch alarm states and HTTP health checks.

    Each raises ProbeFailed (domain.errors) with a one-line reason when it cannot
    answer; a guard that cannot be evaluated refuses (fails closed).
    """

    def alarms_in_alarm(self, names: Sequence[str]) -> list[str]:
        """Those of the named CloudWatch alarms that are in the ALARM state.

        ProbeFailed when any named alarm does not exist (a typo must not pass) or the
        states cannot be read."""
        ...

    def health_status(self, url: str, timeout: float) -> int:
        """The HTTP status a GET of ``url`` answers within ``timeout`` seconds (no
        redirects followed; the outbound guard applies). ProbeFailed when it does not
        answer in time or cannot be reached."""
        ...


class Scheduler(Protocol):
    """Calls the executor runner with an executor id at the executor's time."""

    @property
    def min_lead_time(self) -> timedelta:
        """How far ahead an executor must be due for this scheduler to deliver it on time."""
        ...

    def max_executors_within(self, seconds: float) -> int | None:
        """How many schedules can surely be created *and* undone in ``seconds``; None for
        no bound."""
        ...

    def start(self) -> None:
        """Begin delivering (local mode); nothing for a scheduler AWS runs."""
        ...

    def shutdown(self) -> None:
        """Stop delivering and wait for deliveries in progress."""
        ...

    def create(self, executors: Sequence[Executor], deadline: Deadline | None = None) -> None:
        """Schedule every executor; SchedulingError if any could not be scheduled by the
        deadline, with ``created`` naming exactly the schedules that were created (they
        stay; the caller removes them with ``delete``)."""
        ...

    def update(self, executor: Executor) -> None:
        """Move an executor's schedule to its (new) next_run_time."""
        ...

    def delete(self, executor_ids: Sequence[str], deadline: Deadline | None = None) -> None:
        """Remove schedules; one that does not exist (already fired) is not an error."""
        ...


class EventLog(Protocol):
    """The audit trail's storage: events appended once, listed newest first.

    Not tied to the plans: a plan's events are kept after it is deleted, until the log's
    own retention (``purge_expired`` locally, DynamoDB's TTL when deployed). Reads are
    bounded like the Store's: an index range, never a whole table.
    """

    def append(self, event: Event) -> None:
        """Store one event (StorageError when it cannot be stored)."""
        ...

    def list(
        self, plan_id: str | None, kind: EventKind | None, limit: int, cursor: str | None
    ) -> Page[Event]:
        """Events of ``plan_id`` and/or ``kind`` (None: any), newest first (time, then id),
        paged: every event is on exactly one page even while others are appended.
        InvalidCursor for a cursor this log did not make for these filters. A page may
        hold fewer than ``limit`` events (even none) and still a cursor, when a read had
        to stop early; the list ends when ``cursor`` is None."""
        ...

    def purge_expired(self, now: datetime) -> int:
        """Delete the events older than the retention; how many (0 where TTL does it)."""
        ...

    def close(self) -> None:
        """Release connections and files; the log is not used afterwards."""
        ...


class Notifier(Protocol):
    """Where the engine tells the world what happened (a webhook, an SNS topic)."""

    def send(self, message: dict[str, Any]) -> None:
        """Deliver one small JSON message. Never raises: a failed delivery is logged
        (without secrets) and dropped, so that it never changes what the engine does."""
        ...
