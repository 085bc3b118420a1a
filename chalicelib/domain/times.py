"""Parsing and formatting of the dates the API and the planners exchange.

Every date a caller or a planner gives is checked here: it must name one instant (a local
time in a daylight-saving gap names none: InvalidDate; one in the repeated hour of a
fall-back names two, and the first, ``fold=0``, is taken) between ``EARLIEST`` and
``LATEST``, so that every stored date can be shown in any zone (a date near year 9999
overflows when an offset is applied).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo

from chalicelib.domain.errors import InvalidDate

# The range of instants a plan may name (UTC): far enough for any real schedule, and far
# from datetime's limits.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
# A longer text is not a date; it is not parsed (nor echoed whole).
MAX_DATE_TEXT = 64


def parse_datetime(value: object, default_zone: tzinfo) -> datetime:
    """Parse an ISO 8601 date; one without an offset is taken in ``default_zone``.

    InvalidDate for anything else, for a local time that does not exist in the zone and
    for an instant outside ``EARLIEST``..``LATEST``.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidDate(value, "expected an ISO 8601 date string")
    if len(value) > MAX_DATE_TEXT:
        raise InvalidDate(value[:MAX_DATE_TEXT] + "...", "too long for a date")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as error:
        raise InvalidDate(value, str(error)) from None
    return localize(parsed, default_zone, shown=value)


def localize(moment: datetime, zone: tzinfo, shown: object = None) -> datetime:
    """Give a naive datetime the zone's offset; keep an aware one as it is.

    InvalidDate (quoting ``shown``, or the date) when a naive time falls in the zone's
    daylight-saving gap or the instant is outside ``EARLIEST``..``LATEST``. A naive time
    in a fall-back's repeated hour is taken at its first occurrence (``fold=0``).
    """
    quoted = moment.isoformat() if shown is None else shown
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=zone, fold=0)
        try:
            round_trip = moment.astimezone(UTC).astimezone(zone)
        except (OverflowError, ValueError):
            raise InvalidDate(quoted, _RANGE) from None
        if round_trip.replace(tzinfo=None) != moment.replace(tzinfo=None):
            raise InvalidDate(
                quoted,
                f"{moment.replace(tzinfo=None).isoformat()} does not exist in {zone} (the "
                "clocks skip it for daylight saving time); give another time or an offset",
            )
    check_range(moment, quoted)
    return moment


_RANGE = f"dates must be from {EARLIEST.year} to {LATEST.year - 1} (UTC)"


def check_range(moment: datetime, shown: object = None) -> None:
    """InvalidDate unless ``moment`` (aware) is within ``EARLIEST``..``LATEST``."""
    try:
        instant = moment.astimezone(UTC)
    except (OverflowError, ValueError):
        instant = None
    if instant is None or not EARLIEST <= instant < LATEST:
        raise InvalidDate(moment.isoformat() if shown is None else shown, _RANGE)


def to_storage(moment: datetime) -> str:
    """A fixed-width UTC string that sorts like the instant it names."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_storage(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def to_api(moment: datetime | None, zone: tzinfo) -> str | None:
    """ISO 8601 with the offset of the engine's timezone, to the second."""
    if moment is None:
        return None
    return moment.astimezone(zone).replace(microsecond=0).isoformat()


def ceil_to_second(moment: datetime) -> datetime:
    """Scheduler expressions have one-second resolution; never round into the past."""
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


def utc_now() -> datetime:
    return datetime.now(UTC)


class Deadline:
    """A moment on the monotonic clock by which a piece of work must be done or undone."""

    def __init__(self, seconds: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._end = monotonic() + seconds

    @classmethod
    def never(cls) -> Deadline:
        return cls(float("inf"))

    def remaining(self) -> float:
        """Seconds left; negative once it has passed."""
        return self._end - self._monotonic()

    @property
    def has_passed(self) -> bool:
        return self.remaining() <= 0
