"""Recurring schedules, pure: which instants of a day a recurrence attacks, which days the
daily expansion must cover, and the executor identity of each occurrence.

Everything here is a function of its arguments (a seed, a day, a zone), never of the
clock or of a random source's state: the same day expanded twice, or late, or on another
machine, gives exactly the same instants and the same executor ids, so a repeated
expansion can be made a no-op by the store (a conditional put on the id).

Daylight saving time: an occurrence is drawn as a wall-clock time of the day's window,
in whole seconds, and becomes one instant. Wall times the clocks skip (Europe/Madrid's
02:00-03:00 on the last Sunday of March) are not part of that day's window, so a window
bound in the gap moves to the first valid instant after it; wall times that happen twice
(02:00-03:00 on the last Sunday of October) are taken once, at their first occurrence
(``fold=0``). Nothing raises, no two occurrences share an instant or a wall time.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from chalicelib.domain.errors import PlanningError
from chalicelib.domain.safety import WEEKDAYS
from chalicelib.domain.times import EARLIEST, LATEST

# Seeds are whole numbers below 2**53: exact in every JSON reader (JavaScript included).
SEED_LIMIT = 2**53
# The daily expansion of a day D is due from 00:00 (engine timezone) of the day before,
# so a day's executors exist (to see, move or delete) a whole day ahead of it.
EXPANSION_LEAD_DAYS = 1
# Executor ids of occurrences: uuid5 in this namespace of (plan id, day, index).
_OCCURRENCES = uuid.UUID("0b6f5c1e-7d1a-4c55-9a43-6d2f3f0e8b21")
_TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
_DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

# JSON Schema pieces the recurring planners share (their ``args``).
WINDOW_PROPERTIES: dict[str, Any] = {
    "min_time": {
        "type": "string",
        "pattern": _TIME_PATTERN,
        "description": "HH:MM, start of the daily window (engine timezone)",
    },
    "max_time": {
        "type": "string",
        "pattern": _TIME_PATTERN,
        "description": "HH:MM, end of the daily window (engine timezone), after min_time",
    },
    "weekdays": {
        "type": "array",
        "items": {"enum": list(WEEKDAYS)},
        "minItems": 1,
        "uniqueItems": True,
    },
    "start_date": {
        "type": "string",
        "pattern": _DATE_PATTERN,
        "description": "YYYY-MM-DD, first day that may be attacked",
    },
    "end_date": {
        "type": "string",
        "pattern": _DATE_PATTERN,
        "description": "YYYY-MM-DD, last day that may be attacked",
    },
    "seed": {
        "type": "integer",
        "minimum": 0,
        "maximum": SEED_LIMIT - 1,
        "description": "drawn at creation when absent, and stored with the plan",
    },
}


def unit(seed: int, *parts: object) -> float:
    """A number in [0, 1) that depends only on ``seed`` and ``parts``.

    SHA-256 of their text, not ``random.Random``: the value is defined by this line,
    whatever the Python version or the order in which days are expanded.
    """
    text = ":".join(str(part) for part in (seed, *parts))
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def occurrence_key(plan_id: str, day: date, index: int) -> str:
    """The executor id of a plan's ``index``-th occurrence (0-based, in the day's full
    list, before any is dropped for being past) on ``day``: equal for equal inputs, so
    storing it twice is storing it once."""
    return uuid.uuid5(_OCCURRENCES, f"{plan_id}/{day.isoformat()}/{index}").hex


def occurrence_name(plan_name: str, day: date, index: int) -> str:
    """The executor name of that occurrence: ``<plan name>-<YYYY-MM-DD>-<n>``, n from 1."""
    return f"{plan_name}-{day.isoformat()}-{index + 1}"


@dataclass(frozen=True)
class Window:
    """A daily ``start``-``end`` wall-clock window; ``end`` after ``start``."""

    start: time
    end: time

    @property
    def seconds(self) -> int:
        """Its length on a day without a clock change."""
        return _seconds(self.end) - _seconds(self.start)


@dataclass(frozen=True)
class Recurrence:
    """``times`` attacks on each of ``weekdays`` (0 = Monday) from ``start_date`` to
    ``end_date`` (either open), at instants of the daily ``window`` drawn from a seed."""

    weekdays: frozenset[int]
    window: Window
    times: int = 1
    start_date: date | None = None
    end_date: date | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, Any], times: int | None = None) -> Recurrence:
        """Read planner args (``weekdays``, ``min_time``, ``max_time``, ``times``,
        ``start_date``, ``end_date``); PlanningError naming the field when they cannot
        make a schedule. ``times`` overrides the args' (a planner with one per day)."""
        weekdays = parse_weekdays(args.get("weekdays"), "weekdays")
        window = parse_window(args.get("min_time"), args.get("max_time"))
        count = parse_times(args.get("times") if times is None else times, window)
        start = parse_day(args.get("start_date"), "start_date")
        end = parse_day(args.get("end_date"), "end_date")
        if start is not None and end is not None and end < start:
            raise PlanningError(
                f"planner.args.end_date {end.isoformat()!r} must not be before "
                f"start_date {start.isoformat()!r}"
            )
        return cls(weekdays, window, count, start, end)

    def is_active_on(self, day: date) -> bool:
        """True when ``day`` is one of the weekdays within start_date..end_date."""
        if self.start_date is not None and day < self.start_date:
            return False
        if self.end_date is not None and day > self.end_date:
            return False
        return day.weekday() in self.weekdays

    def check_ahead(self, today: date) -> None:
        """PlanningError when no active day is left from ``today`` on."""
        check_ahead(self.weekdays, self.start_date, self.end_date, today)

    def occurrences_on(self, day: date, zone: tzinfo, seed: int) -> list[datetime]:
        """The instants (aware, in ``zone``, sorted) attacked on ``day``; empty on a day
        that is not active. Deterministic in (seed, day)."""
        if not self.is_active_on(day):
            return []
        return draw_instants(self.window, day, zone, seed, self.times)


# The working days of a frequency schedule when its args name none.
WORKING_DAYS = frozenset(range(5))
# The longest mean gap, in working days (about 40 years of working days).
MAX_MEAN_DAYS = 10_000


@dataclass(frozen=True)
class Frequency:
    """Netflix-style attack days: on average one every ``mean_days`` working days, never
    two less than ``min_gap_days`` working days apart, at one instant of the daily
    ``window``. Working days are ``weekdays`` from ``start_date`` (the day the gaps are
    counted from) to ``end_date``.

    The distribution (docs/planners.md): the gap between two attack days, in working
    days, is ``g + G`` where ``g = max(1, min_gap_days)`` and G is geometric on 0, 1, 2...
    with success probability ``p = 1 / (mean_days - g + 1)``, so its mean is exactly
    ``mean_days``. It is drawn one working day at a time: once ``g`` working days have
    passed since the last attack day (or before the first one), a working day is an
    attack day when ``unit(seed, day, "attack") < p``.
    """

    mean_days: float
    min_gap_days: int
    weekdays: frozenset[int]
    window: Window
    start_date: date | None = None
    end_date: date | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> Frequency:
        """Read planner args; PlanningError naming the field when they cannot be planned."""
        mean = args.get("mean_days")
        if isinstance(mean, bool) or not isinstance(mean, int | float) or not mean >= 1:
            raise PlanningError(
                f"planner.args.mean_days must be a number of at least 1, not {mean!r} "
                "(one attack day at most per day; use a window with more times instead)"
            )
        if not mean <= MAX_MEAN_DAYS:  # also refuses an infinite one (json reads Infinity)
            raise PlanningError(
                f"planner.args.mean_days must be at most {MAX_MEAN_DAYS}, not {mean!r}"
            )
        gap = args.get("min_gap_days", 1)
        if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
            raise PlanningError(
                f"planner.args.min_gap_days must be a whole number of at least 0, not {gap!r}"
            )
        if gap > mean:
            raise PlanningError(
                f"planner.args.min_gap_days {gap} must not be more than mean_days {mean}"
            )
        weekdays = (
            WORKING_DAYS
            if args.get("weekdays") is None
            else parse_weekdays(args["weekdays"], "weekdays")
        )
        window = parse_window(args.get("min_time"), args.get("max_time"))
        recurrence = Recurrence.from_args(
            {**args, "weekdays": [WEEKDAYS[d] for d in sorted(weekdays)]}, times=1
        )
        return cls(float(mean), gap, weekdays, window, recurrence.start_date, recurrence.end_date)

    def check_ahead(self, today: date) -> None:
        """PlanningError when no working day is left from ``today`` on."""
        check_ahead(self.weekdays, self.start_date, self.end_date, today)

    @property
    def probability(self) -> float:
        """The chance that a working day past the minimum gap is an attack day."""
        return 1 / (self.mean_days - max(1, self.min_gap_days) + 1)

    def attack_days(self, start: date, end: date, seed: int) -> list[date]:
        """The attack days from ``start`` (where gaps are counted from) to ``end``."""
        return attack_days(
            start,
            end,
            seed,
            mean_days=self.mean_days,
            min_gap_days=self.min_gap_days,
            weekdays=self.weekdays,
            end_date=self.end_date,
        )

    def occurrences_on(self, day: date, zone: tzinfo, seed: int) -> list[datetime]:
        """The one instant of ``day`` when it is an attack day, else nothing. Needs
        ``start_date`` (the planner records the creation day when the args have none)."""
        if self.start_date is None:
            raise PlanningError("planner.args.start_date is needed to count working days")
        if day < self.start_date or day.weekday() not in self.weekdays:
            return []
        if self.attack_days(self.start_date, day, seed)[-1:] != [day]:
            return []
        return draw_instants(self.window, day, zone, seed, 1)


def attack_days(
    start: date,
    end: date,
    seed: int,
    *,
    mean_days: float,
    min_gap_days: int = 1,
    weekdays: frozenset[int] = WORKING_DAYS,
    end_date: date | None = None,
) -> list[date]:
    """The attack days of a frequency schedule from ``start`` to ``end`` (both included;
    nothing after ``end_date``), gaps counted in working days (``weekdays``) from
    ``start``. Pure: the same arguments give the same days, and a longer ``end`` only
    adds days after the shorter one's. See ``Frequency`` for the distribution."""
    gap = max(1, min_gap_days)
    probability = 1 / (mean_days - gap + 1)
    if end_date is not None:
        end = min(end, end_date)
    days: list[date] = []
    last: int | None = None
    index = 0
    day = start
    while day <= end:
        if day.weekday() in weekdays:
            ready = last is None or index - last >= gap
            if ready and unit(seed, day.isoformat(), "attack") < probability:
                days.append(day)
                last = index
            index += 1
        day += timedelta(days=1)
    return days


def first_active_day(
    weekdays: frozenset[int], start: date | None, end: date | None, since: date
) -> date | None:
    """The first of ``weekdays`` on or after ``since`` within start..end; None if none."""
    day = since if start is None else max(since, start)
    for _ in range(7):
        if end is not None and day > end:
            return None
        if day.weekday() in weekdays:
            return day
        day += timedelta(days=1)
    return None


def check_ahead(
    weekdays: frozenset[int], start: date | None, end: date | None, today: date
) -> None:
    """Refuse, at creation, a schedule that can never attack again from ``today``."""
    if end is not None and end < today:
        raise PlanningError(
            f"planner.args.end_date {end.isoformat()!r} is in the past (today is "
            f"{today.isoformat()} in the engine timezone)"
        )
    if first_active_day(weekdays, start, end, today) is None:
        since = today if start is None else max(today, start)
        raise PlanningError(
            f"planner.args.weekdays: no day from {since.isoformat()} to end_date is one of them"
        )


def draw_instants(
    window: Window, day: date, zone: tzinfo, seed: int, times: int, *, stream: str = "time"
) -> list[datetime]:
    """``times`` distinct instants of ``window`` on ``day``, one drawn uniformly (in whole
    seconds of wall time) in each of ``times`` equal slices of the day's valid window.

    Wall times in a daylight-saving gap are not valid and are never drawn; a repeated
    wall time is taken at its first occurrence. When the valid window has fewer seconds
    than ``times`` (a window swallowed by the gap), the instants are packed one second
    apart from the first valid instant at or after its start.
    """
    start = datetime.combine(day, window.start)
    end = datetime.combine(day, window.end)
    segments = _valid_segments(start, end, zone)
    length = sum(int((high - low).total_seconds()) for low, high in segments)
    if length < times:
        # In UTC: arithmetic on an aware datetime of a zone is wall-clock arithmetic.
        first = _first_valid_at_or_after(start, zone).astimezone(UTC)
        return [(first + timedelta(seconds=index)).astimezone(zone) for index in range(times)]
    instants = []
    for index in range(times):
        low = index * length // times
        high = (index + 1) * length // times
        offset = low + int(unit(seed, day.isoformat(), stream, index) * (high - low))
        instants.append(_resolve(_wall_at(segments, offset), zone))
    return instants


def days_to_expand(
    last_expanded: date | None, today: date, created: date, end_date: date | None = None
) -> list[date]:
    """The days the daily expansion must cover now, in order, each once.

    Every day after the last expanded one (the creation day counts as expanded: creation
    plans what is left of it) up to and including tomorrow, but never a day before
    ``today``: after a downtime the missed days are skipped, today is expanded (its
    instants already past must be dropped by the caller), then tomorrow. Nothing after
    ``end_date``. Empty when tomorrow is already expanded.
    """
    done = created if last_expanded is None else max(last_expanded, created)
    first = max(done + timedelta(days=1), today)
    last = today + timedelta(days=EXPANSION_LEAD_DAYS)
    if end_date is not None:
        last = min(last, end_date)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def next_expansion(
    last_expanded: date | None,
    today: date,
    created: date,
    zone: tzinfo,
    end_date: date | None = None,
) -> datetime | None:
    """When the next daily expansion is due (the plan document's ``next_expansion``).

    The rule: day D is expanded from 00:00 (``zone``) of day D - 1, so its executors
    exist a whole day ahead. The next day to expand is the first of
    ``days_to_expand``'s days (the day after the last expanded, never before today),
    or the day after tomorrow when tomorrow is done. The
    answer is in the past when an expansion is overdue (the job has not run yet: it will
    on its next run). None once ``end_date`` has been expanded.
    """
    done = created if last_expanded is None else max(last_expanded, created)
    day = max(done + timedelta(days=1), today)
    if end_date is not None and day > end_date:
        return None
    due = day - timedelta(days=EXPANSION_LEAD_DAYS)
    return _first_valid_at_or_after(datetime.combine(due, time(0, 0)), zone)


def upcoming(instants: list[datetime], after: datetime) -> list[tuple[int, datetime]]:
    """The (index, instant) pairs of a day's occurrences strictly after ``after`` (now +
    the scheduler's lead time): the index is kept, since it names the executor."""
    # In UTC: two datetimes of one zone compare by wall time, which a fall-back repeats.
    cutoff = after.astimezone(UTC)
    return [
        (index, moment) for index, moment in enumerate(instants) if moment.astimezone(UTC) > cutoff
    ]


def completed_args(
    args: Mapping[str, Any], draw_seed: Callable[[], int], today: date | None = None
) -> dict[str, Any]:
    """``args`` with what a recurring plan must store to expand its later days the same
    way: a ``seed`` (drawn with ``draw_seed`` when absent) and, given ``today``, a
    ``start_date`` (today when absent). The given values are kept as they are."""
    completed = dict(args)
    if completed.get("seed") is None:
        completed["seed"] = draw_seed()
    parse_seed(completed["seed"])
    if today is not None and completed.get("start_date") is None:
        completed["start_date"] = today.isoformat()
    return completed


# -- argument parsing ------------------------------------------------------------------


def parse_weekdays(value: object, field: str) -> frozenset[int]:
    if not isinstance(value, list | tuple) or not value:
        raise PlanningError(f"planner.args.{field} must be a non-empty list of {_names()}")
    days = []
    for item in value:
        if item not in WEEKDAYS:
            raise PlanningError(f"planner.args.{field}: {item!r} is not one of {_names()}")
        days.append(WEEKDAYS.index(item))
    if len(set(days)) != len(days):
        raise PlanningError(f"planner.args.{field} names a day twice")
    return frozenset(days)


def parse_window(low: object, high: object) -> Window:
    start = parse_clock(low, "min_time")
    end = parse_clock(high, "max_time")
    if end <= start:
        raise PlanningError(f"planner.args.max_time {high!r} must be after min_time {low!r}")
    return Window(start, end)


def parse_clock(value: object, field: str) -> time:
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        raise PlanningError(f"planner.args.{field} {value!r} is not HH:MM")
    try:
        return time.fromisoformat(value)
    except ValueError:
        raise PlanningError(f"planner.args.{field} {value!r} is not HH:MM") from None


def parse_times(value: object, window: Window) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise PlanningError(f"planner.args.times must be a whole number, not {value!r}")
    count = int(value)
    if count < 1:
        raise PlanningError(f"planner.args.times must be at least 1, not {count}")
    if count > window.seconds:
        raise PlanningError(
            f"planner.args.times {count} is more than the {window.seconds} seconds of the "
            "window: attacks are at least a second apart"
        )
    return count


def parse_day(value: object, field: str) -> date | None:
    if value is None:
        return None
    try:
        day = date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise PlanningError(f"planner.args.{field} {value!r} is not a date (YYYY-MM-DD)")
    if not EARLIEST.date() <= day < LATEST.date():
        raise PlanningError(
            f"planner.args.{field} {value!r} must be from {EARLIEST.year} to {LATEST.year - 1}"
        )
    return day


def parse_seed(value: object, field: str = "seed") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
        raise PlanningError(
            f"planner.args.{field} must be a whole number from 0 to {SEED_LIMIT - 1}"
        )
    return value


def _names() -> str:
    return ", ".join(repr(name) for name in WEEKDAYS)


# -- wall time and instants --------------------------------------------------------------


def _seconds(clock: time) -> int:
    return clock.hour * 3600 + clock.minute * 60 + clock.second


def _resolve(wall: datetime, zone: tzinfo) -> datetime:
    """A valid wall time as an instant; a repeated one at its first occurrence."""
    return wall.replace(tzinfo=zone, fold=0)


def _exists(wall: datetime, zone: tzinfo) -> bool:
    moment = wall.replace(tzinfo=zone, fold=0)
    return moment.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall


def _gaps(start: datetime, end: datetime, zone: tzinfo) -> list[tuple[datetime, datetime]]:
    """The wall-time intervals [low, high) between ``start`` and ``end`` (naive) that
    the clocks skip in ``zone``: found from the UTC offset changes of the span's
    instants (checked hourly, then bisected to the second)."""
    first = (start - timedelta(days=1)).replace(tzinfo=UTC)
    last = (end + timedelta(days=1)).replace(tzinfo=UTC)
    gaps = []
    step = timedelta(hours=1)
    low = first
    while low < last:
        high = min(low + step, last)
        before, after = _offset(low, zone), _offset(high, zone)
        if before != after:
            change = _bisect(low, high, zone)
            if after > before:
                gap_start = (change + before).replace(tzinfo=None)
                gaps.append((gap_start, gap_start + (after - before)))
        low = high
    return [(a, b) for a, b in gaps if b > start and a < end]


def _offset(instant: datetime, zone: tzinfo) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    return offset if offset is not None else timedelta(0)


def _bisect(low: datetime, high: datetime, zone: tzinfo) -> datetime:
    """The first instant in (low, high] whose offset is ``high``'s, to the second."""
    before = _offset(low, zone)
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle <= low:
            middle = low + timedelta(seconds=1)
        if _offset(middle, zone) == before:
            low = middle
        else:
            high = middle
    return high


def _valid_segments(
    start: datetime, end: datetime, zone: tzinfo
) -> list[tuple[datetime, datetime]]:
    """[start, end) without the wall times the clocks skip."""
    segments = [(start, end)]
    for gap_low, gap_high in _gaps(start, end, zone):
        cut = []
        for low, high in segments:
            if gap_high <= low or gap_low >= high:
                cut.append((low, high))
                continue
            if low < gap_low:
                cut.append((low, gap_low))
            if gap_high < high:
                cut.append((gap_high, high))
        segments = cut
    return segments


def _wall_at(segments: list[tuple[datetime, datetime]], offset: int) -> datetime:
    """The wall time ``offset`` seconds into the valid segments."""
    for low, high in segments:
        length = int((high - low).total_seconds())
        if offset < length:
            return low + timedelta(seconds=offset)
        offset -= length
    raise ValueError("offset beyond the window")  # pragma: no cover - callers bound it


def _first_valid_at_or_after(wall: datetime, zone: tzinfo) -> datetime:
    """``wall`` as an instant, or, in a gap, the first valid instant after the gap."""
    if _exists(wall, zone):
        return _resolve(wall, zone)
    for gap_low, gap_high in _gaps(wall, wall + timedelta(seconds=1), zone):
        if gap_low <= wall < gap_high:
            return _resolve(gap_high, zone)
    # A gap the hourly scan could not see (never for real zones): the offset before it.
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC).astimezone(zone)
