"""Read, move and delete executors."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from chalicelib.domain.errors import (
    ExecutorAlreadyRun,
    ExecutorNotFound,
    InvalidDate,
    InvalidPayload,
    InvalidRequest,
    InvalidTrigger,
)
from chalicelib.domain.model import Executor, ExecutorStatus
from chalicelib.domain.ports import MAX_PAGE_SIZE, Clock, ExecutorQuery, Page, Scheduler, Store
from chalicelib.domain.times import ceil_to_second, parse_datetime
from chalicelib.services.audit import AuditTrail

log = logging.getLogger(__name__)

# How often a delete is tried again when the executor changed status between the read
# and the conditional delete (it was claimed, or it finished, meanwhile).
DELETE_ATTEMPTS = 5


@dataclass
class ExecutorService:
    store: Store
    scheduler: Scheduler
    clock: Clock
    timezone: tzinfo
    list_limit: int
    # Every move and delete is an event; None: none.
    audit: AuditTrail | None = None

    def get(self, executor_id: str) -> Executor:
        executor = self.store.get_executor(executor_id)
        if executor is None:
            raise ExecutorNotFound(executor_id)
        return executor

    def list(
        self, query: ExecutorQuery, limit: int | None = None, cursor: str | None = None
    ) -> Page[Executor]:
        size = self.list_limit if limit is None else max(1, min(limit, MAX_PAGE_SIZE))
        return self.store.list_executors(query, size, cursor)

    def reschedule(self, executor_id: str, trigger: Any, actor: str = "local") -> Executor:
        """Move a scheduled executor to the date of a ``{"type": "date", ...}`` trigger."""
        if not isinstance(trigger, dict):
            raise InvalidPayload("trigger: expected a JSON object")
        if trigger.get("type") != "date":
            raise InvalidTrigger(trigger.get("type"))
        args = trigger.get("args")
        if not isinstance(args, dict) or "date" not in args:
            raise InvalidDate(None, "args.date is required")
        run_at = ceil_to_second(parse_datetime(args["date"], self.timezone))
        now = self.clock.now()
        if run_at <= now:
            raise InvalidRequest(f"date {args['date']!r} is in the past")
        lead = self.scheduler.min_lead_time
        if run_at - now < lead:
            raise InvalidRequest(
                f"date {args['date']!r} is less than the minimum lead time "
                f"({int(lead.total_seconds())} s) ahead"
            )
        current = self.get(executor_id)
        if current.status is not ExecutorStatus.SCHEDULED:
            raise ExecutorAlreadyRun(executor_id, current.status.value)
        moved = self.store.move_executor(executor_id, run_at)
        try:
            self.scheduler.update(moved)
        except Exception:
            # Keep storage and the schedule telling the same story.
            self.store.move_executor(executor_id, current.next_run_time)
            raise
        log.info("executor moved", extra={"executor_id": executor_id, "plan_id": moved.plan_id})
        if self.audit is not None:
            self.audit.executor_moved(moved, current.next_run_time, actor)
        return moved

    def delete(self, executor_id: str, actor: str = "local") -> None:
        """Delete an executor that is not running; ExecutorRunning (nothing deleted) while
        its attack runs. The store's delete and the runner's claim are conditional on the
        same stored status, so one of them wins: a claim after the delete finds nothing."""
        for _ in range(DELETE_ATTEMPTS):
            executor = self.get(executor_id)
            if self.store.delete_executor(executor):
                # After the store: a schedule that fires before this finds no executor.
                self.scheduler.delete([executor_id])
                log.info(
                    "executor deleted",
                    extra={"executor_id": executor_id, "plan_id": executor.plan_id},
                )
                if self.audit is not None:
                    self.audit.executor_deleted(executor, actor)
                return
        raise ExecutorAlreadyRun(executor_id, "changing; try again")
