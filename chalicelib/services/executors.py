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
from chalicelib.domain.ports import Clock, Scheduler, Store
from chalicelib.domain.times import ceil_to_second, parse_datetime

log = logging.getLogger(__name__)


@dataclass
class ExecutorService:
    store: Store
    scheduler: Scheduler
    clock: Clock
    timezone: tzinfo
    list_limit: int

    def get(self, executor_id: str) -> Executor:
        executor = self.store.get_executor(executor_id)
        if executor is None:
            raise ExecutorNotFound(executor_id)
        return executor

    def list(self, executed: bool) -> list[Executor]:
        return self.store.list_executors(executed, self.list_limit)

    def reschedule(self, executor_id: str, trigger: Any) -> Executor:
        """Move a scheduled executor to the date of a ``{"type": "date", ...}`` trigger."""
        if not isinstance(trigger, dict):
            raise InvalidPayload("trigger: expected a JSON object")
        if trigger.get("type") != "date":
            raise InvalidTrigger(trigger.get("type"))
        args = trigger.get("args")
        if not isinstance(args, dict) or "date" not in args:
            raise InvalidDate(None, "args.date is required")
        run_at = ceil_to_second(parse_datetime(args["date"], self.timezone))
        if run_at <= self.clock.now():
            raise InvalidRequest(f"date {args['date']!r} is in the past")
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
        return moved

    def delete(self, executor_id: str) -> None:
        for _ in range(5):
            executor = self.get(executor_id)
            self.scheduler.delete([executor_id])
            if self.store.delete_executor(executor):
                log.info(
                    "executor deleted",
                    extra={"executor_id": executor_id, "plan_id": executor.plan_id},
                )
                return
        raise ExecutorAlreadyRun(executor_id, "changing; try again")
