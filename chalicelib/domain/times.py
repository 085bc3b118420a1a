"""Parsing and formatting of the dates the API and the planners exchange."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo

from chalicelib.domain.errors import InvalidDate


def parse_datetime(value: object, default_zone: tzinfo) -> datetime:
    """Parse an ISO 8601 date; one without an offset is taken in ``default_zone``."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidDate(value, "expected an ISO 8601 date string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as error:
        raise InvalidDate(value, str(error)) from None
    return localize(parsed, default_zone)


def localize(moment: datetime, zone: tzinfo) -> datetime:
    """Give a naive datetime the zone's offset; keep an aware one as it is."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        return moment.replace(tzinfo=zone)
    return moment


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
