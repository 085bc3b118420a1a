"""The ports the services depend on; adapters implement them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from chalicelib.domain.model import Executor, ExecutorStatus, Plan


class Clock(Protocol):
    """The current instant; a port so that planners and lateness are testable."""

    def now(self) -> datetime:
        """An aware datetime."""
        ...


class Store(Protocol):
    """Durable plans and executors. Reads on request paths use Query, never Scan."""

    def add_plan(self, plan: Plan, executors: Sequence[Executor]) -> None:
        """Write a plan and its executors; raise StorageError after removing any part written."""
        ...

    def get_plan(self, plan_id: str) -> Plan | None: ...

    def list_plans(self, include_executed: bool, limit: int) -> list[Plan]:
        """Newest first; only plans with pending executors unless include_executed."""
        ...

    def delete_plan(self, plan: Plan, executors: Sequence[Executor]) -> None:
        """Delete a plan and the given executors (all of its executors)."""
        ...

    def get_executor(self, executor_id: str) -> Executor | None: ...

    def list_executors(self, executed: bool, limit: int) -> list[Executor]:
        """Pending executors of all plans, soonest first; or executed ones, latest first."""
        ...

    def list_running(self, started_before: datetime, limit: int) -> list[Executor]:
        """Executors still ``running`` that started before ``started_before``.

        At most ``limit``, in order of their time; a Query that reads a bounded number of
        items, so a caller that wants every one calls again after handling these.
        """
        ...

    def list_undelivered(self, due_before: datetime, limit: int) -> list[Executor]:
        """Executors still ``scheduled`` whose time is before ``due_before``; bounded alike."""
        ...

    def list_plan_executors(self, plan_id: str, limit: int) -> list[Executor]:
        """One plan's executors by next_run_time."""
        ...

    def next_pending_time(self, plan_id: str) -> datetime | None: ...

    def delete_executor(self, executor: Executor) -> bool:
        """Delete one executor and take it off its plan's counts.

        False (and nothing deleted) when its stored status is no longer ``executor.status``.
        """
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

        A conditional write: returns False (and writes nothing) when the stored status is
        no longer ``executor.status``. On success the plan's counts follow and
        ``executor`` holds the new values.
        """
        ...


class Scheduler(Protocol):
    """Calls the executor runner with an executor id at the executor's time."""

    def create(self, executors: Sequence[Executor]) -> None:
        """Schedule every executor; raise SchedulingError if any could not be scheduled.

        Schedules already created stay; the caller removes them with ``delete``.
        """
        ...

    def update(self, executor: Executor) -> None:
        """Move an executor's schedule to its (new) next_run_time."""
        ...

    def delete(self, executor_ids: Sequence[str]) -> None:
        """Remove schedules; one that does not exist (already fired) is not an error."""
        ...
