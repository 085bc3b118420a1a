"""The Clock port on the system clock."""

from __future__ import annotations

from datetime import datetime

from chalicelib.domain.times import utc_now


class SystemClock:
    def now(self) -> datetime:
        return utc_now()
