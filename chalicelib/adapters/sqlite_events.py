"""The EventLog port on its own SQLite file: local mode's audit trail.

A file of its own (``events.sqlite3`` beside the store's), so that appending an event
never waits behind the store's writers (SQLite has one writer per file), and the store's
schema and the events' can change apart. Schema (times are ``to_storage`` strings, which
sort like the instants they name)::

    events  id PK, time, kind, actor, plan_id, executor_id, changes (JSON)

Indexes are shaped like the reads, newest first, so that a page reads what it returns:
``(time, id)`` for the whole trail and for purging, ``(plan_id, time, id)`` for one plan
(its kinds filtered there: a plan has few events), ``(kind, time, id)`` for one kind.
Paging is by keyset: a cursor holds the last ``<time>#<id>`` a page covered.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from chalicelib.domain.errors import StorageError
from chalicelib.domain.events import (
    Event,
    EventKind,
    decode_cursor,
    encode_cursor,
    query_digest,
)
from chalicelib.domain.ports import Page
from chalicelib.domain.times import from_storage, to_storage

log = logging.getLogger(__name__)

EVENTS_FILE = "events.sqlite3"
SCHEMA_VERSION = 1
# purge_expired deletes in transactions of this many rows, so that it never holds the
# write lock for long.
PURGE_BATCH = 500

_SCHEMA = (
    """
    CREATE TABLE events (
        id TEXT PRIMARY KEY,
        time TEXT NOT NULL,
        kind TEXT NOT NULL,
        actor TEXT NOT NULL,
        plan_id TEXT,
        executor_id TEXT,
        changes TEXT NOT NULL
    )
    """,
    "CREATE INDEX events_by_time ON events (time DESC, id DESC)",
    "CREATE INDEX events_by_plan ON events (plan_id, time DESC, id DESC)",
    "CREATE INDEX events_by_kind ON events (kind, time DESC, id DESC)",
)
_COLUMNS = "id, time, kind, actor, plan_id, executor_id, changes"
# bandit B608 (and ruff S608): the columns are this module's constant; values are ?.
_INSERT = f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"  # noqa: S608  # nosec B608


class SqliteEventLog:
    """The EventLog port on one SQLite file (created with its schema if missing).

    One connection, used by one thread at a time: an append is a single insert and a
    list a single index range, each a fraction of a millisecond, so a pool would buy
    nothing here.
    """

    def __init__(
        self,
        path: str | Path,
        retention: timedelta = timedelta(days=365),
        busy_timeout: float = 10.0,
    ) -> None:
        self.path = Path(path)
        self.retention = retention
        self._lock = threading.Lock()
        try:
            self._connection = sqlite3.connect(
                self.path,
                timeout=busy_timeout,
                isolation_level=None,  # transactions are explicit
                check_same_thread=False,  # guarded by self._lock
            )
        except sqlite3.Error as error:
            raise StorageError(f"could not open {self.path}: {error}") from error
        self._closed = False
        try:
            with self._locked("create the events schema") as connection:
                connection.execute("PRAGMA journal_mode = WAL")
                # With WAL, NORMAL loses no committed transaction on a crash of the process.
                connection.execute("PRAGMA synchronous = NORMAL")
                self._create_schema(connection)
        except BaseException:
            self._connection.close()
            raise

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._connection.close()

    @contextmanager
    def _locked(self, what: str) -> Iterator[sqlite3.Connection]:
        try:
            with self._lock:
                if self._closed:
                    raise StorageError(f"the event log {self.path} is closed")
                yield self._connection
        except sqlite3.Error as error:
            if self._connection.in_transaction:
                self._connection.rollback()
            raise StorageError(f"could not {what}: {error}") from error

    @staticmethod
    def _create_schema(connection: sqlite3.Connection) -> None:
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise StorageError(
                    f"the event log holds schema version {version}; this engine reads "
                    f"version {SCHEMA_VERSION}"
                )
            if version == 0:
                for statement in _SCHEMA:
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            connection.rollback()
            raise
        connection.commit()

    def append(self, event: Event) -> None:
        try:
            row = (
                event.id,
                to_storage(event.time),
                event.kind.value,
                event.actor,
                event.plan_id,
                event.executor_id,
                json.dumps(event.changes, separators=(",", ":"), allow_nan=False, default=str),
            )
        except (TypeError, ValueError) as error:
            raise StorageError(f"could not store event {event.id}: {error}") from error
        with self._locked(f"store event {event.id}") as connection:
            connection.execute(_INSERT, row)

    def list(
        self, plan_id: str | None, kind: EventKind | None, limit: int, cursor: str | None
    ) -> Page[Event]:
        if limit < 1:
            raise ValueError(f"a list's limit must be at least 1, not {limit}")
        digest = query_digest(plan_id, kind)
        after = decode_cursor(cursor, digest) if cursor is not None else None
        conditions: list[str] = []
        parameters: list[Any] = []
        if plan_id is not None:
            index = "events_by_plan"
            conditions.append("plan_id = ?")
            parameters.append(plan_id)
            if kind is not None:
                conditions.append("kind = ?")
                parameters.append(kind.value)
        elif kind is not None:
            index = "events_by_kind"
            conditions.append("kind = ?")
            parameters.append(kind.value)
        else:
            index = "events_by_time"
        if after is not None:
            time, _, event_id = after.partition("#")
            conditions.append("(time, id) < (?, ?)")
            parameters.extend([time, event_id])
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        # bandit B608: the index name and the conditions are this module's literals.
        sql = (
            f"SELECT {_COLUMNS} FROM events INDEXED BY {index}{where} "  # noqa: S608  # nosec B608
            "ORDER BY time DESC, id DESC LIMIT ?"
        )
        with self._locked("list events") as connection:
            rows = connection.execute(sql, [*parameters, limit + 1]).fetchall()
        events = [_event(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor(digest, events[-1].order)
        return Page(events, next_cursor)

    def purge_expired(self, now: datetime) -> int:
        """Delete events older than ``retention`` before ``now``, a batch per transaction."""
        cutoff = to_storage(now - self.retention)
        purged = 0
        while True:
            with self._locked("purge expired events") as connection:
                deleted = connection.execute(
                    "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events "
                    "INDEXED BY events_by_time WHERE time < ? LIMIT ?)",
                    (cutoff, PURGE_BATCH),
                ).rowcount
            purged += deleted
            if deleted < PURGE_BATCH:
                break
        if purged:
            log.info("purged expired events", extra={"events": purged})
        return purged


def _event(row: tuple[Any, ...]) -> Event:
    event_id, time, kind, actor, plan_id, executor_id, changes = row
    try:
        return Event(
            id=event_id,
            time=from_storage(time),
            kind=EventKind(kind),
            actor=actor,
            plan_id=plan_id,
            executor_id=executor_id,
            changes=json.loads(changes),
        )
    except (TypeError, ValueError) as error:
        raise StorageError(f"event {event_id} cannot be read: {error}") from error
