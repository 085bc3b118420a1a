"""The Clock port on the system clock."""

from __future__ import annotations

import time
from datetime import datetime

from chalicelib.domain.times import utc_now


class SystemClock:
    def now(self) -> datetime:
        return utc_now()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
