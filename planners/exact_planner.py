"""ExactPlanner: one executor at an exact date."""

from __future__ import annotations

from typing import Any

from chalicelib.domain.errors import PlanningError
from chalicelib.domain.times import parse_datetime
from chaosmonkey.planners import Planner


class ExactPlanner(Planner):
    """Schedule the attack once, at ``date`` (ISO 8601; without offset, engine timezone)."""

    ref = "exact_planner:ExactPlanner"
    schema = {
        "type": "object",
        "properties": {
            "date": {
                "type": "string",
                "minLength": 1,
                "description": "ISO 8601 date; without an offset it is in the engine timezone",
            }
        },
        "required": ["date"],
    }
    example = {"ref": ref, "args": {"date": "2030-06-21T15:30:12+02:00"}}

    def plan(self, planner_config: dict[str, Any], attack_config: dict[str, Any]) -> None:
        raw = planner_config["args"]["date"]
        date = parse_datetime(raw, self.timezone)
        if date <= self.clock.now():
            raise PlanningError(f"planner.args.date {raw!r} is in the past")
        self._add_job(date, self.name, attack_config)
