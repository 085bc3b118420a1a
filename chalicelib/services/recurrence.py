"""The daily expansion of recurring plans: each due plan's next days become executors.

A recurring plan (a planner whose class says ``recurring = True``) stores its args with a
seed; ``expand(args, day, zone)`` turns a day into instants, the same on every call
(``domain/recurrence.py``). The expansion job (a scheduled Lambda deployed, a
LocalScheduler job locally) calls ``expand_due``; for every plan whose
``next_expansion`` has come it creates the executors of each day of
``days_to_expand`` that are still ahead of now + the scheduler's lead time, and then
moves the plan's ``last_expanded`` on with a conditional write.

Why it happens exactly once per day, however often, late or concurrently it runs:

- an occurrence's executor id is ``occurrence_key(plan id, day, index)``, and the store
  adds an id that exists as a no-op (``add_executors``), so two runs over one day add
  one set between them;
- a run that stored executors but died before creating their schedules is healed by the
  next one, which finds them stored and still scheduled and creates their schedules (a
  schedule that already exists is success for both schedulers);
- ``set_expansion`` is conditional on the ``last_expanded`` the run read and on the
  plan not being paused: a run that lost that race because the plan was paused removes
  what it added (a pause must leave no schedule behind); one that lost it to another run
  keeps its executors, which are that other run's too.

Days before today are never expanded (after a downtime the missed days are skipped), and
no executor is ever created in the past or closer than the scheduler's lead time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Protocol

from chalicelib.domain.model import Executor, ExecutorStatus, Plan
from chalicelib.domain.ports import Clock, Scheduler, Store
from chalicelib.domain.recurrence import (
    days_to_expand,
    next_expansion,
    occurrence_key,
    occurrence_name,
    parse_day,
    upcoming,
)
from chalicelib.domain.times import Deadline, ceil_to_second
from chalicelib.plugins.contract import Planner
from chalicelib.plugins.registry import PluginSet

log = logging.getLogger(__name__)

# Plans read per list of due expansions.
EXPANSION_BATCH = 100
# An upper bound on the lists one run reads (each after the previous batch was handled).
MAX_ROUNDS = 1000


class RecurringPlannerClass(Protocol):
    """What the engine needs of a recurring planner's class (RecurringPlanner's form)."""

    recurring: bool

    @classmethod
    def expand(cls, args: dict[str, Any], day: date, zone: tzinfo) -> list[datetime]: ...


def recurring_class(planner_class: type[Planner]) -> RecurringPlannerClass | None:
    """The planner class as a recurring one, or None when it is a one-shot planner."""
    if getattr(planner_class, "recurring", False) is True and callable(
        getattr(planner_class, "expand", None)
    ):
        return planner_class  # type: ignore[return-value]
    return None


def end_date_of(args: Mapping[str, Any]) -> date | None:
    """A recurring plan's last day (its args' ``end_date``), None when open."""
    return parse_day(args.get("end_date"), "end_date")


def first_expansion(created: datetime, args: Mapping[str, Any], zone: tzinfo) -> datetime | None:
    """The ``next_expansion`` of a recurring plan created at ``created``: creation plans
    what is left of its day, so that day counts as expanded."""
    today = created.astimezone(zone).date()
    return next_expansion(None, today, today, zone, end_date_of(args))


def occurrence_ids(
    planner_class: RecurringPlannerClass,
    plan_id: str,
    args: dict[str, Any],
    day: date,
    zone: tzinfo,
) -> dict[datetime, str]:
    """The executor id of each of ``day``'s instants (keyed by the instant in whole
    seconds), so that executors created with the plan have the ids the expansion
    would give them: a resumed plan re-expanding that day adds no second one."""
    return {
        ceil_to_second(moment): occurrence_key(plan_id, day, index)
        for index, moment in enumerate(planner_class.expand(args, day, zone))
    }


@dataclass
class ExpansionService:
    """Expands recurring plans into executors, day by day (see the module docstring)."""

    store: Store
    scheduler: Scheduler
    planners: PluginSet[Planner]
    clock: Clock
    timezone: tzinfo
    # How long one day's schedules may take to create (the plan deadline).
    deadline: timedelta = timedelta(seconds=25)
    batch: int = EXPANSION_BATCH

    def expand_due(self) -> int:
        """Expand every plan whose expansion is due; returns how many executors it added.

        A plan that cannot be expanded (its planner gone, its store item unreadable, its
        schedules refused) is logged and passed over; it stays due, so the next run
        tries it again.
        """
        now = self.clock.now()
        added = 0
        failed: set[str] = set()
        handled: set[str] = set()
        for _ in range(MAX_ROUNDS):
            due = self.store.list_due_expansions(now, self.batch + len(failed))
            fresh = [plan_id for plan_id in due if plan_id not in handled]
            if not fresh:
                break
            for plan_id in fresh:
                handled.add(plan_id)
                try:
                    added += self.expand_plan(plan_id)
                except Exception:
                    failed.add(plan_id)
                    log.exception("could not expand a recurring plan", extra={"plan_id": plan_id})
        if added:
            log.info("recurring plans expanded", extra={"executors": added})
        return added

    def expand_plan(self, plan_id: str) -> int:
        """Expand one plan's days that are due now; returns how many executors it added.

        Nothing for a plan that is gone, uncommitted, paused or not recurring.
        """
        plan = self.store.get_plan(plan_id)
        if plan is None or not plan.committed or plan.paused:
            return 0
        planner_class = recurring_class(self.planners.resolve(plan.planner.get("ref")))
        if planner_class is None:
            # A plan that is no longer recurring (its planner changed): stop expanding it.
            self.store.set_expansion(plan.id, plan.last_expanded, plan.last_expanded, None)
            log.warning("plan is not recurring; expansion stopped", extra={"plan_id": plan.id})
            return 0
        args = dict(plan.planner.get("args") or {})
        end = end_date_of(args)
        today = self.clock.now().astimezone(self.timezone).date()
        last = plan.last_expanded
        # The creation day counts as expanded until the expansion has run; afterwards
        # ``last_expanded`` is the truth (a resumed plan sets it to yesterday).
        done = plan.created.astimezone(self.timezone).date() if last is None else last
        days = days_to_expand(last, today, done, end)
        added = 0
        for day in days:
            new = self._expand_day(plan, planner_class, args, day)
            following = next_expansion(day, today, day, self.timezone, end)
            if not self.store.set_expansion(plan.id, last, day, following):
                # What this run added stays only when another run moved the plan on.
                return added + (len(new) if self._lost_race(plan.id, new) else 0)
            last = day
            added += len(new)
            log.info(
                "plan expanded",
                extra={"plan_id": plan.id, "day": day.isoformat(), "executors": len(new)},
            )
        if not days:
            # Nothing left to expand (past its end_date, or already ahead): say so.
            following = next_expansion(last, today, done, self.timezone, end)
            if following != plan.next_expansion:
                self.store.set_expansion(plan.id, last, last, following)
        return added

    def _expand_day(
        self,
        plan: Plan,
        planner_class: RecurringPlannerClass,
        args: dict[str, Any],
        day: date,
    ) -> list[Executor]:
        """Store and schedule ``day``'s executors still ahead; returns those this run
        added. Those another run added (or a run that died before scheduling them) get
        their schedules created again: creating an existing schedule is success."""
        cutoff = self.clock.now() + self.scheduler.min_lead_time
        instants = planner_class.expand(args, day, self.timezone)
        executors = [
            Executor(
                id=occurrence_key(plan.id, day, index),
                plan_id=plan.id,
                name=occurrence_name(plan.name, day, index),
                next_run_time=ceil_to_second(moment),
                attack=plan.attack,
                dry_run=plan.dry_run,
            )
            for index, moment in upcoming(instants, cutoff)
        ]
        if not executors:
            return []
        added_ids = set(self.store.add_executors(plan.id, executors))
        added = [executor for executor in executors if executor.id in added_ids]
        stored = self._still_unscheduled(
            [executor.id for executor in executors if executor.id not in added_ids], plan.id
        )
        schedule = [*added, *(e for e in stored if e.next_run_time > cutoff)]
        if schedule:
            self.scheduler.create(schedule, Deadline(self.deadline.total_seconds()))
        return added

    def _still_unscheduled(self, executor_ids: Sequence[str], plan_id: str) -> list[Executor]:
        """The stored executors among ``executor_ids`` that are still ``scheduled``."""
        found = []
        for executor_id in executor_ids:
            executor = self.store.get_executor(executor_id)
            if (
                executor is not None
                and executor.plan_id == plan_id
                and executor.status is ExecutorStatus.SCHEDULED
            ):
                found.append(executor)
        return found

    def _lost_race(self, plan_id: str, added: list[Executor]) -> bool:
        """``set_expansion`` was refused: the plan was paused (or deleted) meanwhile, or
        another run moved it on. After a pause, what this run added must go (a paused
        plan has no pending schedules); after another run, it is that run's work too.
        True when what this run added was kept."""
        plan = self.store.get_plan(plan_id)
        if plan is not None and not plan.paused:
            log.info("plan expanded meanwhile by another run", extra={"plan_id": plan_id})
            return True
        removed = [executor.id for executor in added if self._remove(executor, plan)]
        # After the store, as everywhere: a schedule firing meanwhile finds no executor.
        self.scheduler.delete([executor.id for executor in added])
        log.info(
            "plan paused during its expansion; what it added was removed",
            extra={"plan_id": plan_id, "executors": len(removed)},
        )
        return False

    def _remove(self, executor: Executor, plan: Plan | None) -> bool:
        if plan is None:
            self.store.purge_executor(executor.id)
            return True
        return self.store.delete_executor(executor)
