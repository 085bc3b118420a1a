"""The safety guards' pure parts: the halt, a plan's safety options, the calendar, verdicts.

Every guard runs where the attack runs (the attack Lambda and local mode alike), and a
refusal ends the executor ``skipped`` with a reason that starts with the guard's name
(``halted:``, ``calendar:``, ``stop condition:``, ``min interval:``) and says what did
not happen and why. docs/safety.md lists them in the order they run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

# The weekday names of settings and plans, Monday first (datetime.weekday()).
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# The guards, in the order the runner checks them.
GUARD_ORDER = (
    "kill_switch",
    "halt",
    "calendar",
    "stop_conditions",
    "min_interval",
)

# The largest values a plan's safety options may hold.
MAX_ALARMS = 20
MAX_HEALTH_CHECKS = 5
MAX_HEALTH_TIMEOUT_SECONDS = 10.0
MAX_MIN_INTERVAL_SECONDS = 366 * 24 * 3600


@dataclass(frozen=True)
class Halt:
    """The engine's live halt: while ``halted``, every executor that comes due is skipped.

    ``since`` and ``by`` say when and by whom it was last changed (the IAM principal when
    deployed, "local" in local mode); ``reason`` is the halter's own words.
    """

    halted: bool = False
    reason: str | None = None
    since: datetime | None = None
    by: str | None = None


@dataclass(frozen=True)
class Verdict:
    """One guard's answer for one executor (or a preview): pass, or refuse and why."""

    guard: str
    passed: bool
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {
            "guard": self.guard,
            "verdict": "pass" if self.passed else "refuse",
            "reason": self.reason,
        }


@dataclass(frozen=True)
class HealthCheck:
    """An HTTP GET that must answer 2xx within ``timeout`` seconds for an attack to run."""

    url: str
    timeout: float = 5.0


@dataclass(frozen=True)
class MinInterval:
    """At most one attack per ``interval`` on the target group ``group``.

    ``group`` is "plan" (the plan's own executors, keyed by its id); ``tag:KEY`` (no
    ``=``): the value the attack's filters give that tag, so every plan attacking
    ``tag:App=web`` shares one clock whatever its other filters; or any other name
    plans share ("tag:App=web", "payments"): every plan naming it shares one clock.
    """

    interval: timedelta
    group: str = "plan"

    def key(self, plan_id: str, attack_args: Mapping[str, Any] | None = None) -> str:
        """The record the interval is kept on. ValueError for a ``tag:KEY`` group whose
        attack filters name no such tag (refused at plan time)."""
        if self.group == "plan":
            return f"plan:{plan_id}"
        return f"group:{self.group_name(attack_args)}"

    def group_name(self, attack_args: Mapping[str, Any] | None) -> str:
        """The group as shown in a reason: ``tag:KEY=VALUE`` for a ``tag:KEY`` group (its
        values sorted and joined by commas when the filter lists several)."""
        if not self.group.startswith("tag:") or "=" in self.group:
            return self.group
        filters = (attack_args or {}).get("filters")
        value = filters.get(self.group) if isinstance(filters, Mapping) else None
        if isinstance(value, str) and value:
            return f"{self.group}={value}"
        if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
            return f"{self.group}={','.join(sorted(value))}"
        raise ValueError(
            f"group {self.group!r} names the value of the attack's {self.group} filter, "
            "and its filters have none"
        )


@dataclass(frozen=True)
class PlanSafety:
    """A plan's own safety options (its body's ``safety`` object), already validated."""

    alarms: tuple[str, ...] = ()
    health_checks: tuple[HealthCheck, ...] = ()
    min_interval: MinInterval | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PlanSafety:
        """Read a stored (valid) ``safety`` object; None or empty is no options."""
        if not data:
            return cls()
        stop = data.get("stop_conditions") or {}
        checks = tuple(
            HealthCheck(str(check["url"]), float(check.get("timeout", 5.0)))
            for check in stop.get("health_checks") or ()
        )
        interval = data.get("min_interval")
        return cls(
            alarms=tuple(str(name) for name in stop.get("alarms") or ()),
            health_checks=checks,
            min_interval=(
                MinInterval(
                    timedelta(seconds=float(interval["seconds"])),
                    str(interval.get("group") or "plan"),
                )
                if interval
                else None
            ),
        )


# The JSON schema of a plan body's ``safety`` object.
SAFETY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "stop_conditions": {
            "type": "object",
            "properties": {
                "alarms": {
                    "type": "array",
                    "description": "CloudWatch alarm names: no attack while any is in ALARM",
                    "items": {"type": "string", "minLength": 1, "maxLength": 255},
                    "maxItems": MAX_ALARMS,
                    "uniqueItems": True,
                },
                "health_checks": {
                    "type": "array",
                    "description": "URLs that must answer 2xx in time for an attack to run",
                    "items": {
                        "type": "object",
                        "properties": {
                            "url": {
                                "type": "string",
                                "pattern": "^https?://",
                                "maxLength": 2048,
                            },
                            "timeout": {
                                "type": "number",
                                "exclusiveMinimum": 0,
                                "maximum": MAX_HEALTH_TIMEOUT_SECONDS,
                            },
                        },
                        "required": ["url"],
                        "additionalProperties": False,
                    },
                    "maxItems": MAX_HEALTH_CHECKS,
                },
            },
            "additionalProperties": False,
        },
        "min_interval": {
            "type": "object",
            "description": "at most one attack per `seconds` on the target group",
            "properties": {
                "seconds": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": MAX_MIN_INTERVAL_SECONDS,
                },
                "group": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 256,
                    "description": '"plan" (default); "tag:KEY": the value the attack\'s '
                    'filters give that tag; or a name plans share, e.g. "payments"',
                },
            },
            "required": ["seconds"],
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Calendar:
    """When attacks may run, in the engine's timezone: weekdays, an hour window, and
    blackout dates. ``hours`` is ``(first, end)``: from ``first``:00 up to, not
    including, ``end``:00 (0 to 24); ``(0, 24)`` is the whole day."""

    weekdays: frozenset[int] = field(default_factory=lambda: frozenset(range(7)))
    hours: tuple[int, int] = (0, 24)
    blackout: frozenset[date] = field(default_factory=frozenset)

    @property
    def always(self) -> bool:
        return len(self.weekdays) == 7 and self.hours == (0, 24) and not self.blackout

    def refusal(self, local: datetime) -> str | None:
        """Why an attack at ``local`` (in the engine's timezone) is outside the calendar,
        None when it is inside."""
        day = local.date()
        if day in self.blackout:
            return f"calendar: {day.isoformat()} is a blackout date"
        if local.weekday() not in self.weekdays:
            allowed = ", ".join(WEEKDAYS[d] for d in sorted(self.weekdays)) or "none"
            return (
                f"calendar: {WEEKDAYS[local.weekday()]} {day.isoformat()} is not an allowed "
                f"weekday (allowed: {allowed})"
            )
        first, end = self.hours
        if not first <= local.hour < end:
            return (
                f"calendar: {local.strftime('%H:%M')} is outside the allowed hours "
                f"{first:02d}:00-{end:02d}:00"
            )
        return None

    def describe(self) -> str:
        days = ", ".join(WEEKDAYS[d] for d in sorted(self.weekdays))
        text = f"weekdays {days}, hours {self.hours[0]:02d}:00-{self.hours[1]:02d}:00"
        if self.blackout:
            text += f", {len(self.blackout)} blackout date(s)"
        return text


def parse_tag(text: str) -> tuple[str, str | None] | None:
    """A tag setting: ``key=value`` (that value), ``key`` (any value) or empty (none).

    ValueError for a key that is empty."""
    text = text.strip()
    if not text:
        return None
    key, sep, value = text.partition("=")
    if not key.strip():
        raise ValueError(f"{text!r} names no tag key")
    return key.strip(), value.strip() if sep else None


def _tag_text(tag: tuple[str, str | None]) -> str:
    key, value = tag
    return key if value is None else f"{key}={value}"


@dataclass(frozen=True)
class TargetTags:
    """Which targets the engine itself may attack, by their tags, whatever a plan says.

    ``opt_in``: a target must carry this tag (``(key, None)``: with any value);
    ``exclude``: a target that carries it is never attacked. Either may be None (off).
    Targets that have no tags at all (SSH hosts named by address) are named by the plan
    itself and pass: see docs/safety.md.
    """

    opt_in: tuple[str, str | None] | None = ("chaos-monkey-engine", "target")
    exclude: tuple[str, str | None] | None = ("chaos-monkey-engine-exclude", None)

    def why_spared(self, tags: Mapping[str, str] | None) -> str | None:
        """Why a target with ``tags`` must not be attacked; None when it may be.
        ``tags`` None: the target has no tags to read (a host named by address)."""
        if tags is None:
            return None
        if self.exclude is not None and _carries(tags, self.exclude):
            return f"carries the exclude tag {_tag_text(self.exclude)}"
        if self.opt_in is not None and not _carries(tags, self.opt_in):
            return f"lacks the opt-in tag {_tag_text(self.opt_in)}"
        return None

    def describe(self) -> str:
        parts = []
        parts.append(f"opt-in tag {_tag_text(self.opt_in)}" if self.opt_in else "no opt-in tag")
        parts.append(f"exclude tag {_tag_text(self.exclude)}" if self.exclude else "no exclude tag")
        return ", ".join(parts)


def _carries(tags: Mapping[str, str], tag: tuple[str, str | None]) -> bool:
    key, value = tag
    return key in tags and (value is None or tags[key] == value)
