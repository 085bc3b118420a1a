"""Log lines that carry the structured fields (plan id, executor id, ...) given in ``extra``,
with every secret masked (:mod:`chalicelib.domain.redaction`), whoever logged it."""

from __future__ import annotations

import logging
import os
from typing import Any

from chalicelib.domain.redaction import REDACTED, is_sensitive, redact, redact_text

_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

# Third-party loggers that print URLs (query strings included), headers or bodies at
# DEBUG/INFO: urllib3.connectionpool logs every request line, botocore its signed
# requests, paramiko its transport. WARNING keeps their failures and drops the traffic.
QUIETED = (
    "botocore",
    "boto3",
    "urllib3",
    "requests",
    "paramiko",
    "libcloud",
    "apscheduler",
    "werkzeug",
    "moto",
    # moto's HTTP mock (local mode): logs every passed-through URL, a webhook's path too.
    "responses",
    "pynamodb",
)


class FieldsFormatter(logging.Formatter):
    """``<time> <level> <logger>: <message> key=value ...``, secrets masked."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        if fields:
            text += " " + " ".join(
                f"{key}={_field(key, value)}" for key, value in sorted(fields.items())
            )
        # Again on the whole line: a traceback quotes what the exception held.
        return redact_text(text)


def _field(key: str, value: Any) -> Any:
    return REDACTED if is_sensitive(key) else redact(value)


def scrub(record: logging.LogRecord) -> logging.LogRecord:
    """Mask the secrets of ``record`` in place: its message (formatted now, so that no
    handler formats the raw arguments later) and its structured fields."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: leave it to logging's own error report
        return record
    record.msg = redact_text(message)
    record.args = None
    for key, value in list(vars(record).items()):
        if key not in _STANDARD:
            setattr(record, key, _field(key, value))
    return record


class RedactingFilter(logging.Filter):
    """A handler filter that masks secrets in every record it lets through."""

    def filter(self, record: logging.LogRecord) -> bool:
        scrub(record)
        return True


def install_scrubbing() -> None:
    """Mask secrets in every log record of the process as it is created (idempotent).

    A filter on one handler is not enough: a record reaches every handler of every
    logger it propagates through (the Lambda runtime's, a test's), and third-party
    libraries log through their own loggers; the record factory sees them all, and
    only records at an enabled level are ever created.
    """
    factory = logging.getLogRecordFactory()
    if getattr(factory, "scrubs_secrets", False):
        return

    def scrubbing_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return scrub(factory(*args, **kwargs))

    scrubbing_factory.scrubs_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(scrubbing_factory)


def quiet_third_parties() -> None:
    """Loggers that print URLs, headers or API responses stay at WARNING or above."""
    for noisy in QUIETED:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def configure(level: int = logging.INFO) -> None:
    """Send the engine's logs to stderr with their fields, secrets masked (idempotent)."""
    install_scrubbing()
    root = logging.getLogger()
    if any(isinstance(h.formatter, FieldsFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(FieldsFormatter())
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(level)
    quiet_third_parties()
    if os.environ.get("LIBCLOUD_DEBUG"):
        # Libcloud reads it when imported and then writes every request and response,
        # credentials included, to that file, past any logger: say so, loudly.
        logging.getLogger(__name__).warning(
            "LIBCLOUD_DEBUG is set: Libcloud writes every request, credentials included, "
            "to %s; unset it",
            os.environ["LIBCLOUD_DEBUG"],
        )
