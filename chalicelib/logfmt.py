"""Log lines that carry the structured fields (plan id, executor id, ...) given in ``extra``."""

from __future__ import annotations

import logging

_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class FieldsFormatter(logging.Formatter):
    """``<time> <level> <logger>: <message> key=value ...``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if fields:
            text += " " + " ".join(f"{key}={value}" for key, value in sorted(fields.items()))
        return text


def configure(level: int = logging.INFO) -> None:
    """Send the engine's logs to stderr with their fields (idempotent)."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, FieldsFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(FieldsFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("botocore", "urllib3", "apscheduler", "werkzeug", "moto", "pynamodb"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
