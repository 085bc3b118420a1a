"""RecurringPlanner: ``times`` attacks at random instants of a daily window, on chosen
weekdays, from an optional start date to an optional end date."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, ClassVar

from chalicelib.domain.errors import PlanningError
from chalicelib.domain.recurrence import (
    SEED_LIMIT,
    WINDOW_PROPERTIES,
    Recurrence,
    completed_args,
    occurrence_name,
    parse_seed,
    upcoming,
)
from chaosmonkey.planners import Planner

# How far ahead of now the first of today's attacks may be when the engine does not set
# ``lead_time`` (its scheduler's minimum lead time): above EventBridge Scheduler's 180 s
# with the default plan deadline, with room for a slower creation.
DEFAULT_LEAD_TIME = timedelta(minutes=10)


class RecurringPlanner(Planner):
    """Every day of ``weekdays`` (from ``start_date`` to ``end_date`` when given), attack
    ``times`` times at random instants of the ``min_time``-``max_time`` window (engine
    timezone), one in each of ``times`` equal slices of it.

    ``plan`` proposes what is left of today's window; the engine expands each later day
    with ``expand`` (the same instants however often or late it does). The instants are
    drawn from ``seed``: drawn at creation when the args have none, and returned in
    ``recurrence_args``, the args the engine must store with the plan.
    """

    ref = "recurring_planner:RecurringPlanner"
    recurring: ClassVar[bool] = True
    schema = {
        "type": "object",
        "properties": {
            **WINDOW_PROPERTIES,
            "times": {"type": "integer", "minimum": 1, "description": "attacks per day"},
        },
        "required": ["weekdays", "min_time", "max_time", "times"],
        "additionalProperties": False,
    }
    example = {
        "ref": ref,
        "args": {
            "weekdays": ["mon", "tue", "wed", "thu", "fri"],
            "min_time": "10:00",
            "max_time": "16:00",
            "times": 2,
            "start_date": "2030-01-07",
            "end_date": "2030-03-29",
        },
    }

    def __init__(self, name: str) -> None:
        super().__init__(name)
        # The engine may set these: its scheduler's lead time, and the seed source.
        self.lead_time: timedelta = DEFAULT_LEAD_TIME
        self.seeds: random.Random = random.SystemRandom()
        # Set by ``plan``: the args to store with the plan (the given ones and the seed).
        self.recurrence_args: dict[str, Any] | None = None

    def plan(self, planner_config: dict[str, Any], attack_config: dict[str, Any]) -> None:
        recurrence = Recurrence.from_args(planner_config["args"])
        if self.max_executors is not None and recurrence.times > self.max_executors:
            raise PlanningError(
                f"planner.args.times {recurrence.times} is over the limit of "
                f"{self.max_executors} per plan"
            )
        now = self.clock.now()
        today = now.astimezone(self.timezone).date()
        recurrence.check_ahead(today)
        args = completed_args(planner_config["args"], self._draw_seed)
        self.recurrence_args = args
        instants = recurrence.occurrences_on(today, self.timezone, args["seed"])
        for index, moment in upcoming(instants, now + self.lead_time):
            self._add_job(moment, occurrence_name(self.name, today, index), attack_config)

    @classmethod
    def expand(cls, args: dict[str, Any], day: date, zone: tzinfo) -> list[datetime]:
        """The instants of ``day`` for a plan's stored args (with their ``seed``): sorted,
        aware, the same on every call. The engine drops those not ahead of now + its
        lead time and names each executor ``occurrence_key(plan_id, day, index)``."""
        seed = parse_seed(args.get("seed"))
        return Recurrence.from_args(args).occurrences_on(day, zone, seed)

    def _draw_seed(self) -> int:
        return self.seeds.randrange(SEED_LIMIT)
