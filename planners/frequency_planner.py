"""FrequencyPlanner: Netflix-style attack days, on average one every ``mean_days`` working
days and never closer than ``min_gap_days``, at one random instant of a daily window."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, ClassVar

from chalicelib.domain.recurrence import (
    MAX_MEAN_DAYS,
    SEED_LIMIT,
    WINDOW_PROPERTIES,
    Frequency,
    completed_args,
    occurrence_name,
    parse_seed,
    upcoming,
)
from chaosmonkey.planners import Planner

# As RecurringPlanner's: how far ahead of now today's attack may be when the engine does
# not set ``lead_time``.
DEFAULT_LEAD_TIME = timedelta(minutes=10)


class FrequencyPlanner(Planner):
    """Attack on working days (``weekdays``, default Monday to Friday) drawn from ``seed``:
    the gap between two attack days is ``max(1, min_gap_days)`` working days plus a
    geometric number, so it averages exactly ``mean_days`` (docs/planners.md). An attack
    day is attacked once, at a random instant of ``min_time``-``max_time``.

    Gaps are counted from ``start_date``; at creation the planner fills in the ones the
    args lack (``seed``, and ``start_date`` as today) and returns them in
    ``recurrence_args``, the args the engine must store with the plan, so that every day
    expands the same way and the schedule can be recomputed from the plan alone.
    """

    ref = "frequency_planner:FrequencyPlanner"
    recurring: ClassVar[bool] = True
    schema = {
        "type": "object",
        "properties": {
            **WINDOW_PROPERTIES,
            "mean_days": {
                "type": "number",
                "minimum": 1,
                "maximum": MAX_MEAN_DAYS,
                "description": "mean number of working days from one attack day to the next",
            },
            "min_gap_days": {
                "type": "integer",
                "minimum": 0,
                "description": "fewest working days from one attack day to the next (0 = 1)",
            },
        },
        "required": ["mean_days", "min_time", "max_time"],
        "additionalProperties": False,
    }
    example = {
        "ref": ref,
        "args": {"mean_days": 5, "min_gap_days": 2, "min_time": "10:00", "max_time": "16:00"},
    }

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.lead_time: timedelta = DEFAULT_LEAD_TIME
        self.seeds: random.Random = random.SystemRandom()
        self.recurrence_args: dict[str, Any] | None = None

    def plan(self, planner_config: dict[str, Any], attack_config: dict[str, Any]) -> None:
        now = self.clock.now()
        today = now.astimezone(self.timezone).date()
        # The args as given first, so that a refusal speaks of what the caller sent.
        Frequency.from_args(planner_config["args"]).check_ahead(today)
        args = completed_args(planner_config["args"], self._draw_seed, today)
        frequency = Frequency.from_args(args)
        self.recurrence_args = args
        instants = frequency.occurrences_on(today, self.timezone, args["seed"])
        for index, moment in upcoming(instants, now + self.lead_time):
            self._add_job(moment, occurrence_name(self.name, today, index), attack_config)

    @classmethod
    def expand(cls, args: dict[str, Any], day: date, zone: tzinfo) -> list[datetime]:
        """The instant of ``day`` (none, or one) for a plan's stored args (with their
        ``seed`` and ``start_date``); the same on every call."""
        seed = parse_seed(args.get("seed"))
        return Frequency.from_args(args).occurrences_on(day, zone, seed)

    def _draw_seed(self) -> int:
        return self.seeds.randrange(SEED_LIMIT)
