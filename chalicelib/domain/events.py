"""The audit trail's model: what happened to plans, executors and the halt, by whom, when.

An ``Event`` is written once and never changed. It is not tied to the plans table: a
plan's events outlive the plan (deleting a plan is itself an event), until the events'
own retention. ``changes`` says what changed, and never holds a secret: ``Event.record``
masks it with ``domain.redaction`` before anything stores or sends it.

Paging keys are shared by both event logs: an event's ``order`` is ``<time>#<id>``
(``to_storage`` time, which sorts like the instant), newest first; a cursor holds the
last key a page covered and a digest of its query, so it is refused for another query.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chalicelib.domain.errors import InvalidCursor, InvalidRequest
from chalicelib.domain.redaction import redact
from chalicelib.domain.times import to_storage

# A cursor key longer than an order key can be is not one of ours.
MAX_CURSOR_KEY = 512


class EventKind(enum.Enum):
    """What an event records. The value is the name the API shows and filters by."""

    PLAN_CREATED = "plan.created"
    PLAN_PAUSED = "plan.paused"
    PLAN_RESUMED = "plan.resumed"
    PLAN_DELETED = "plan.deleted"
    EXECUTOR_MOVED = "executor.moved"
    EXECUTOR_DELETED = "executor.deleted"
    EXECUTOR_STARTED = "executor.started"
    EXECUTOR_FINISHED = "executor.finished"
    HALT_CHANGED = "halt.changed"

    @classmethod
    def named(cls, name: str) -> EventKind:
        """The kind called ``name``; InvalidRequest naming the known kinds otherwise."""
        try:
            return cls(name)
        except ValueError:
            known = ", ".join(kind.value for kind in cls)
            shown = name if len(name) <= 40 else name[:40] + "..."
            raise InvalidRequest(f"unknown event kind {shown!r}; known: {known}") from None


# The kinds that are also sent as notifications (docs/events.md).
NOTIFIED_KINDS = frozenset(
    {EventKind.EXECUTOR_STARTED, EventKind.EXECUTOR_FINISHED, EventKind.HALT_CHANGED}
)


@dataclass(frozen=True)
class Event:
    """One entry of the audit trail.

    ``time`` is aware; ``actor`` is who caused it (the IAM principal when deployed,
    "local" or the token's name in local mode, "engine" for what the runner does on
    its own); ``plan_id`` / ``executor_id`` are None when the event concerns neither
    (a halt change). Build events with ``record`` so that ``changes`` is masked.
    """

    id: str
    time: datetime
    kind: EventKind
    actor: str
    plan_id: str | None = None
    executor_id: str | None = None
    changes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            raise ValueError(f"event {self.id}: its time must be aware, not {self.time}")

    @classmethod
    def record(
        cls,
        kind: EventKind,
        time: datetime,
        actor: str,
        *,
        plan_id: str | None = None,
        executor_id: str | None = None,
        changes: dict[str, Any] | None = None,
    ) -> Event:
        """A new event with a fresh id and its ``changes`` masked (secrets never stored)."""
        masked = redact(dict(changes or {}))
        return cls(
            id=uuid.uuid4().hex,
            time=time,
            kind=kind,
            actor=actor or "unknown",
            plan_id=plan_id,
            executor_id=executor_id,
            changes=masked,
        )

    @property
    def order(self) -> str:
        """The event's place in the newest-first order (compared as text, descending)."""
        return order_key(self.time, self.id)


def order_key(time: datetime, event_id: str) -> str:
    return f"{to_storage(time)}#{event_id}"


def query_digest(plan_id: str | None, kind: EventKind | None) -> str:
    """A digest of an event list's filters, the same in every process."""
    text = json.dumps(
        {"list": "events", "plan_id": plan_id, "kind": kind.value if kind else None},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def encode_cursor(digest: str, key: str) -> str:
    """An opaque cursor: the last order key a page covered, and which query it is for."""
    raw = json.dumps({"q": digest, "k": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: object, digest: str) -> str:
    """The order key a cursor resumes after; InvalidCursor unless it was made for this
    query (by either event log: both use these keys)."""
    try:
        if not isinstance(cursor, str):
            raise TypeError(type(cursor).__name__)
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (binascii.Error, TypeError, ValueError, UnicodeError):
        raise InvalidCursor(cursor) from None
    if not isinstance(data, dict) or data.get("q") != digest:
        raise InvalidCursor(cursor)
    key = data.get("k")
    if not isinstance(key, str) or not 0 < len(key) <= MAX_CURSOR_KEY or "#" not in key:
        raise InvalidCursor(cursor)
    return key
