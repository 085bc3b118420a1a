"""SimplePlanner: N executors at random instants of today's time window."""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta
from typing import Any

from chalicelib.domain.errors import PlanningError
from chaosmonkey.planners import Planner


class SimplePlanner(Planner):
    """Split what is left of today's ``min_time``-``max_time`` window into ``times`` equal
    slices and schedule the attack at one random instant in each (engine timezone)."""

    ref = "simple_planner:SimplePlanner"
    schema = {
        "type": "object",
        "properties": {
            "min_time": {"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$"},
            "max_time": {"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$"},
            "times": {"type": "integer", "minimum": 1},
        },
        "required": ["min_time", "max_time", "times"],
    }
    example = {"ref": ref, "args": {"min_time": "10:00", "max_time": "18:00", "times": 3}}

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.random = random.Random()

    def plan(self, planner_config: dict[str, Any], attack_config: dict[str, Any]) -> None:
        for index, moment in enumerate(self.attack_times(planner_config["args"]), start=1):
            self._add_job(moment, f"{self.name}-{index}", attack_config)

    def attack_times(self, args: dict[str, Any]) -> list[datetime]:
        times = args["times"]
        if isinstance(times, bool) or not isinstance(times, int | float) or times != int(times):
            raise PlanningError(f"planner.args.times must be a whole number, not {times!r}")
        times = int(times)
        if times < 1:
            raise PlanningError(f"planner.args.times must be at least 1, not {times}")
        if self.max_executors is not None and times > self.max_executors:
            raise PlanningError(
                f"planner.args.times {times} is over the limit of {self.max_executors} per plan"
            )
        now = self.clock.now().astimezone(self.timezone)
        start = self._today_at(now, args["min_time"], "min_time")
        end = self._today_at(now, args["max_time"], "max_time")
        if end <= start:
            raise PlanningError(
                f"planner.args.max_time {args['max_time']!r} must be after "
                f"min_time {args['min_time']!r}"
            )
        start = max(start, now + timedelta(seconds=1))
        if end <= start:
            raise PlanningError(
                f"nothing is left of today's window {args['min_time']}-{args['max_time']} "
                f"(it is {now:%H:%M} in {self.timezone})"
            )
        slice_length = (end - start) / times
        return [
            start + slice_length * index + slice_length * self.random.random()
            for index in range(times)
        ]

    def _today_at(self, now: datetime, value: str, field: str) -> datetime:
        try:
            clock_time = time.fromisoformat(value)
        except ValueError:
            raise PlanningError(f"planner.args.{field} {value!r} is not HH:MM") from None
        return datetime.combine(now.date(), clock_time, tzinfo=self.timezone)
