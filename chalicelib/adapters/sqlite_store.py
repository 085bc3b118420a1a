"""The Store port on one SQLite file: local mode's durable store of plans and executors.

Schema (times are ``to_storage`` strings, which sort like the instants they name)::

    plans      id PK, name, created, committed, fingerprint, planner/attack (JSON), dry_run,
               count_<status> (one column per status), settled_at,
               safety (JSON, the plan's safety options; NULL: none),
               paused, last_expanded (a date, YYYY-MM-DD), next_expansion (recurring plans),
               pending = count_scheduled + count_running > 0 OR next_expansion IS NOT NULL
               (generated: not ``Plan.executed``)
    executors  id PK, plan_id -> plans ON DELETE CASCADE, name, next_run_time, status,
               attack (JSON), dry_run, started_at, finished_at, result (JSON), error,
               reason, settled_at
    control    id PK: "halt" (halted, reason, since, changed_by) and "interval#<group>"
               (last_attack), the safety guards' shared state (DynamoDB's control table)

Indexes are shaped like the reads, so that no request reads more than it returns (plus a
handful of index entries), however many executors are stored:

- ``executors(status, next_run_time, id)``: the executor lists. A list over several
  statuses is a ``UNION ALL`` of one index range per status that SQLite *merges* in
  order and stops at the limit; ``list_undelivered`` is the ``scheduled`` range.
- ``executors(plan_id, status, next_run_time, id)``: a plan's executors (the same merge),
  its ``next_execution`` (a MIN per pending status), its deletion.
- ``executors(started_at, id) WHERE status = 'running'``: ``list_running``.
- ``plans(committed, pending, created, id)``: the plan list, newest first.
- ``plans(created, id) WHERE committed = 0``: ``list_abandoned_plans``.
- ``plans(next_expansion, id) WHERE next_expansion IS NOT NULL AND committed = 1``:
  ``list_due_expansions`` (only recurring plans are in it).
- ``executors(settled_at)`` and ``plans(settled_at)`` where set: ``purge_expired``.

Paging is by keyset: a cursor holds the last item's sort key and a digest of its query.
Writes that must be atomic are ``BEGIN IMMEDIATE`` transactions; the busy timeout is the
retry of a write that meets another (SQLite has one writer at a time).

The schema's version is ``PRAGMA user_version``. A file of an older version is migrated
in place when the store opens it (``_MIGRATIONS``), in one transaction, so a local data
directory keeps its plans across upgrades; a newer version is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from chalicelib.adapters.clock import SystemClock
from chalicelib.domain.errors import (
    ExecutorAlreadyRun,
    ExecutorNotFound,
    ExecutorRunning,
    InvalidCursor,
    OrphanExecutor,
    PlanExists,
    PlanNotFound,
    StorageError,
)
from chalicelib.domain.model import Executor, ExecutorStatus, Plan, StatusCounts
from chalicelib.domain.ports import Clock, ExecutorQuery, Page, PlanQuery
from chalicelib.domain.safety import Halt
from chalicelib.domain.times import from_storage, to_storage

log = logging.getLogger(__name__)

# 1: plans and executors. 2: plans.safety and the control table (issue 10). 3: recurring
# plans' paused, last_expanded and next_expansion, and ``pending`` counting the latter
# (issue 11).
SCHEMA_VERSION = 3
# Sorted, so that the SQL a query builds (and its plan) does not depend on set order.
PENDING_STATUSES = tuple(sorted(s.value for s in ExecutorStatus if s.is_pending))
TERMINAL_STATUSES = tuple(sorted(s.value for s in ExecutorStatus if s.is_terminal))
ALL_STATUSES = tuple(sorted(s.value for s in ExecutorStatus))
# purge_expired deletes in transactions of this many rows, so that it never holds the
# write lock for long while the server and the scheduler wait.
PURGE_BATCH = 500


def _count(status: ExecutorStatus | str) -> str:
    """The plans column counting executors in ``status`` (never user input)."""
    value = status.value if isinstance(status, ExecutorStatus) else status
    if value not in ALL_STATUSES:
        raise ValueError(f"unknown executor status {value!r}")
    return f"count_{value}"


_COUNT_COLUMNS = ", ".join(
    f"{_count(status)} INTEGER NOT NULL DEFAULT 0" for status in ALL_STATUSES
)

# The safety guards' shared state, one row per record (the DynamoDB control table's
# items): "halt" holds the engine's halt, "interval#<group>" a target group's last attack.
_CONTROL_TABLE = """
    CREATE TABLE control (
        id TEXT PRIMARY KEY,
        halted INTEGER,
        reason TEXT,
        since TEXT,
        changed_by TEXT,
        last_attack TEXT
    ) WITHOUT ROWID
    """
HALT_ID = "halt"

# Columns are in the order a migrated file has them (ALTER TABLE appends), so that a
# migrated file and a new one have the same schema.
_RECURRING_COLUMNS = "paused INTEGER NOT NULL DEFAULT 0, last_expanded TEXT, next_expansion TEXT"
# A plan is pending (not ``Plan.executed``) while an executor is, or while an expansion
# will add more: an active recurring plan is listed with the pending plans even on a day
# it has no executor.
_PENDING_COLUMN = (
    "pending INTEGER GENERATED ALWAYS AS "
    "(count_scheduled + count_running > 0 OR next_expansion IS NOT NULL) VIRTUAL"
)
_PLANS_BY_STATE = "CREATE INDEX plans_by_state ON plans (committed, pending, created, id)"
_PLANS_EXPANSION = (
    "CREATE INDEX plans_expansion ON plans (next_expansion, id) "
    "WHERE next_expansion IS NOT NULL AND committed = 1"
)

_SCHEMA = (
    f"""
    CREATE TABLE plans (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created TEXT NOT NULL,
        committed INTEGER NOT NULL,
        fingerprint TEXT,
        planner TEXT NOT NULL,
        attack TEXT NOT NULL,
        dry_run INTEGER NOT NULL,
        {_COUNT_COLUMNS},
        settled_at TEXT,
        safety TEXT,
        {_RECURRING_COLUMNS},
        {_PENDING_COLUMN}
    )
    """,
    _PLANS_BY_STATE,
    "CREATE INDEX plans_uncommitted ON plans (created, id) WHERE committed = 0",
    "CREATE INDEX plans_settled ON plans (settled_at) WHERE settled_at IS NOT NULL",
    _PLANS_EXPANSION,
    f"""
    CREATE TABLE executors (
        id TEXT PRIMARY KEY,
        plan_id TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        next_run_time TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ({", ".join(f"'{s}'" for s in ALL_STATUSES)})),
        attack TEXT NOT NULL,
        dry_run INTEGER NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        result TEXT,
        error TEXT,
        reason TEXT,
        settled_at TEXT
    )
    """,
    "CREATE INDEX executors_by_status ON executors (status, next_run_time, id)",
    "CREATE INDEX executors_by_plan ON executors (plan_id, status, next_run_time, id)",
    "CREATE INDEX executors_running ON executors (started_at, id) WHERE status = 'running'",
    "CREATE INDEX executors_settled ON executors (settled_at) WHERE settled_at IS NOT NULL",
    _CONTROL_TABLE,
)

# From each version to the next: what a file of that version lacks. Each runs in the
# transaction that opens the store, with user_version set at its end.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: ("ALTER TABLE plans ADD COLUMN safety TEXT", _CONTROL_TABLE),
    # A generated column cannot be altered: ``pending`` (and the index on it) is dropped
    # and added again with its new expression, after the columns it reads.
    2: (
        "DROP INDEX plans_by_state",
        "ALTER TABLE plans DROP COLUMN pending",
        *(
            f"ALTER TABLE plans ADD COLUMN {column.strip()}"
            for column in _RECURRING_COLUMNS.split(",")
        ),
        f"ALTER TABLE plans ADD COLUMN {_PENDING_COLUMN}",
        _PLANS_BY_STATE,
        _PLANS_EXPANSION,
    ),
}

_EXECUTOR_COLUMNS = (
    "e.id AS id, e.plan_id AS plan_id, e.name AS name, e.next_run_time AS next_run_time, "
    "e.status AS status, e.attack AS attack, e.dry_run AS dry_run, e.started_at AS started_at, "
    "e.finished_at AS finished_at, e.result AS result, e.error AS error, e.reason AS reason"
)
# The soonest pending executor's time: one index probe per pending status.
# bandit B608 (and ruff S608): the statuses are this module's constants, not input.
_NEXT_EXECUTION = (
    "(SELECT MIN(t) FROM ("  # noqa: S608  # nosec B608
    + " UNION ALL ".join(
        "SELECT MIN(x.next_run_time) AS t FROM executors AS x "  # noqa: S608  # nosec B608
        f"WHERE x.plan_id = p.id AND x.status = '{status}'"
        for status in PENDING_STATUSES
    )
    + "))"
)
_PLAN_COLUMNS = (
    "p.id AS id, p.name AS name, p.created AS created, p.committed AS committed, "
    "p.fingerprint AS fingerprint, p.planner AS planner, p.attack AS attack, "
    "p.dry_run AS dry_run, p.safety AS safety, p.paused AS paused, "
    "p.last_expanded AS last_expanded, p.next_expansion AS next_expansion, "
    + ", ".join(f"p.{_count(status)} AS {_count(status)}" for status in ALL_STATUSES)
    + f", {_NEXT_EXECUTION} AS next_execution"
)


# SQL text is built only from this module's constants; values are always parameters.
_SELECT_PLAN = f"SELECT {_PLAN_COLUMNS} FROM plans AS p"  # noqa: S608  # nosec B608
_SELECT_EXECUTOR = f"SELECT {_EXECUTOR_COLUMNS} FROM executors AS e"  # noqa: S608  # nosec B608
_INSERT_PLAN = (
    "INSERT INTO plans (id, name, created, committed, fingerprint, planner, attack, dry_run, "  # nosec B608
    + ", ".join(_count(status) for status in ALL_STATUSES)
    + ", settled_at, safety, paused, last_expanded, next_expansion) "
    + "VALUES (?, ?, ?, 0, ?, ?, ?, ?, "
    + ", ".join("?" * len(ALL_STATUSES))
    + ", ?, ?, ?, ?, ?)"
)
_INSERT_EXECUTOR = (
    "INSERT INTO executors (id, plan_id, name, next_run_time, status, attack, "
    "dry_run, started_at, finished_at, result, error, reason, settled_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True)
class Purged:
    """What one ``purge_expired`` removed."""

    plans: int
    executors: int


class _Pool:
    """Connections to one database file, shared by threads.

    A thread borrows an idle connection for one operation and gives it back. Not one
    connection per thread: the local HTTP server starts a thread per request, so that
    would open a connection per request. WAL lets the borrowed connections read while
    one of them writes.
    """

    def __init__(self, path: Path, busy_timeout: float, size: int) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,  # transactions are explicit (BEGIN IMMEDIATE)
            check_same_thread=False,  # used by one thread at a time, then returned
        )
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode = WAL")
        # With WAL, NORMAL loses no committed transaction on a crash of the process; only
        # a power cut can lose the last ones. Local mode accepts that for its speed.
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        return connection

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        if not self._slots.acquire(timeout=self._busy_timeout):
            raise StorageError(f"no free connection to {self._path} in {self._busy_timeout} s")
        try:
            with self._lock:
                if self._closed:
                    raise StorageError(f"the store of {self._path} is closed")
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                connection = self._open()
            try:
                yield connection
            finally:
                if connection.in_transaction:
                    connection.rollback()
                with self._lock:
                    if self._closed:
                        connection.close()
                    else:
                        self._idle.append(connection)
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


class SqliteStore:
    """The Store port on one SQLite file (created with its schema if missing)."""

    def __init__(
        self,
        path: str | Path,
        executed_retention: timedelta = timedelta(days=90),
        clock: Clock | None = None,
        busy_timeout: float = 10.0,
        max_connections: int = 8,
    ) -> None:
        self.path = Path(path)
        self.executed_retention = executed_retention
        # Only for the store's own bookkeeping: when an executor or plan settled, which
        # purge_expired compares with its retention.
        self._clock: Clock = clock or SystemClock()
        self._pool = _Pool(self.path, busy_timeout, max_connections)
        # SQLite has one writer at a time, and a writer that finds the lock taken sleeps
        # in its busy handler (1, 2, 5, 10, ... ms steps) rather than waking when the lock
        # frees: executors due in the same second then started tens of milliseconds, once
        # a second, late. Writers of this process queue here instead, and are woken at
        # once; the busy timeout still arbitrates with other processes.
        self._writer = threading.Lock()
        try:
            self._create_schema()
        except BaseException:
            self._pool.close()
            raise

    def close(self) -> None:
        self._pool.close()

    # -- transactions ------------------------------------------------------------------

    @contextmanager
    def _read(self, what: str) -> Iterator[sqlite3.Connection]:
        try:
            with self._pool.connection() as connection:
                yield connection
        except sqlite3.Error as error:
            raise StorageError(f"could not {what}: {error}") from error

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: it takes the write lock before reading, so
        the reads it makes cannot be changed by another writer before it commits."""
        try:
            with self._writer, self._pool.connection() as connection:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield connection
                except BaseException:
                    connection.rollback()
                    raise
                connection.commit()
        except sqlite3.Error as error:
            raise StorageError(f"could not {what}: {error}") from error

    def _create_schema(self) -> None:
        with self._write(f"create the schema in {self.path}") as connection:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version == 0:
                statements: list[str] = list(_SCHEMA)
            elif version in _MIGRATIONS:
                statements = [
                    statement
                    for step in range(version, SCHEMA_VERSION)
                    for statement in _MIGRATIONS[step]
                ]
                log.info(
                    "migrating the local store",
                    extra={"path": str(self.path), "from": version, "to": SCHEMA_VERSION},
                )
            else:
                raise StorageError(
                    f"{self.path} holds schema version {version}; this engine reads "
                    f"versions 1 to {SCHEMA_VERSION}"
                )
            for statement in statements:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- plans -------------------------------------------------------------------------

    def add_plan(self, plan: Plan, executors: Sequence[Executor]) -> None:
        counts = dict.fromkeys(ALL_STATUSES, 0)
        for executor in executors:
            counts[executor.status.value] += 1
        now = to_storage(self._clock.now())
        try:
            plan_row = (
                plan.id,
                plan.name,
                to_storage(plan.created),
                plan.fingerprint,
                _json(plan.planner),
                _json(plan.attack),
                int(plan.dry_run),
                *(counts[status] for status in ALL_STATUSES),
                # A plan with nothing pending (and nothing to expand) has settled already.
                None if _keeps(plan, counts) else now,
                None if plan.safety is None else _json(plan.safety),
                int(plan.paused),
                _optional_date(plan.last_expanded),
                _optional_time(plan.next_expansion),
            )
            executor_rows = [self._executor_row(executor, now) for executor in executors]
        except (TypeError, ValueError) as error:
            raise StorageError(f"could not store plan {plan.id}: {error}") from error
        with self._write(f"store plan {plan.id}") as connection:
            if connection.execute("SELECT 1 FROM plans WHERE id = ?", (plan.id,)).fetchone():
                raise PlanExists(plan.id, "already exists")
            connection.execute(_INSERT_PLAN, plan_row)
            connection.executemany(_INSERT_EXECUTOR, executor_rows)

    def commit_plan(self, plan_id: str) -> None:
        """PlanNotFound if no plan ``plan_id`` is stored."""
        with self._write(f"commit plan {plan_id}") as connection:
            cursor = connection.execute("UPDATE plans SET committed = 1 WHERE id = ?", (plan_id,))
            if cursor.rowcount == 0:
                raise PlanNotFound(plan_id)

    def get_plan(self, plan_id: str) -> Plan | None:
        with self._read(f"read plan {plan_id}") as connection:
            row = connection.execute(
                _SELECT_PLAN + " WHERE p.id = ?",
                (plan_id,),
            ).fetchone()
        return None if row is None else _plan(row)

    def list_plans(self, query: PlanQuery, limit: int, cursor: str | None) -> Page[Plan]:
        _check_limit(limit)
        digest = _digest(["plans", query.pending, query.executed])
        after = _decode_cursor(cursor, digest) if cursor is not None else None
        states = [state for state, wanted in ((1, query.pending), (0, query.executed)) if wanted]
        if not states:
            return Page([])
        arms: list[str] = []
        parameters: list[Any] = []
        for state in states:
            sql = _SELECT_PLAN + " WHERE p.committed = 1 AND p.pending = ?"
            parameters.append(state)
            if after is not None:
                sql += " AND (p.created, p.id) < (?, ?)"
                parameters.extend(after)
            arms.append(sql)
        sql = " UNION ALL ".join(arms) + " ORDER BY created DESC, id DESC LIMIT ?"
        with self._read("list plans") as connection:
            rows = connection.execute(sql, [*parameters, limit + 1]).fetchall()
        plans = [_plan(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = _encode_cursor(digest, [last["created"], last["id"]])
        return Page(plans, next_cursor)

    def list_abandoned_plans(self, created_before: datetime, limit: int) -> list[Plan]:
        """Oldest first."""
        _check_limit(limit)
        with self._read("list abandoned plans") as connection:
            rows = connection.execute(
                # INDEXED BY: without statistics SQLite may not pick the partial index.
                f"SELECT {_PLAN_COLUMNS} FROM plans AS p INDEXED BY plans_uncommitted "  # noqa: S608  # nosec B608
                "WHERE p.committed = 0 AND p.created < ? ORDER BY p.created, p.id LIMIT ?",
                (to_storage(created_before), limit),
            ).fetchall()
        return [_plan(row) for row in rows]

    def delete_plan(self, plan: Plan) -> None:
        # One write transaction: no claim (also a write transaction) can come between the
        # check that nothing runs and the delete; a claim after it finds no plan.
        with self._write(f"delete plan {plan.id}") as connection:
            running = connection.execute(
                "SELECT id, started_at FROM executors WHERE plan_id = ? AND status = ? "
                "ORDER BY next_run_time, id LIMIT 1",
                (plan.id, ExecutorStatus.RUNNING.value),
            ).fetchone()
            if running is not None:
                raise ExecutorRunning(running["id"], _parse_time(running["started_at"]))
            connection.execute("DELETE FROM executors WHERE plan_id = ?", (plan.id,))
            connection.execute("DELETE FROM plans WHERE id = ?", (plan.id,))

    # -- recurring plans ---------------------------------------------------------------

    def list_due_expansions(self, now: datetime, limit: int) -> list[str]:
        _check_limit(limit)
        with self._read("list due expansions") as connection:
            rows = connection.execute(
                # INDEXED BY: without statistics SQLite may not pick the partial index.
                "SELECT id FROM plans INDEXED BY plans_expansion "
                "WHERE next_expansion IS NOT NULL AND committed = 1 AND next_expansion <= ? "
                "ORDER BY next_expansion, id LIMIT ?",
                (to_storage(now), limit),
            ).fetchall()
        return [row["id"] for row in rows]

    def add_executors(self, plan_id: str, executors: Sequence[Executor]) -> list[str]:
        now = to_storage(self._clock.now())
        try:
            rows = [self._executor_row(executor, now) for executor in executors]
        except (TypeError, ValueError) as error:
            raise StorageError(
                f"could not store the executors of plan {plan_id}: {error}"
            ) from error
        added: list[str] = []
        counts = dict.fromkeys(ALL_STATUSES, 0)
        # One write transaction: the plan's check, the inserts and its counts together, so
        # two expansions of one day running at once add each executor once, and count it
        # once.
        with self._write(f"add executors to plan {plan_id}") as connection:
            plan = connection.execute(
                "SELECT committed FROM plans WHERE id = ?", (plan_id,)
            ).fetchone()
            if plan is None or not plan["committed"]:
                raise PlanNotFound(plan_id)
            for executor, row in zip(executors, rows, strict=True):
                if executor.plan_id != plan_id:
                    raise ValueError(
                        f"executor {executor.id} belongs to plan {executor.plan_id}, not {plan_id}"
                    )
                # ON CONFLICT (id) DO NOTHING rather than INSERT OR IGNORE: only an id
                # already stored is skipped; any other constraint still fails loudly.
                inserted = connection.execute(
                    _INSERT_EXECUTOR + " ON CONFLICT (id) DO NOTHING", row
                ).rowcount
                if inserted:
                    added.append(executor.id)
                    counts[executor.status.value] += 1
            changed = {status: n for status, n in counts.items() if n}
            if changed:
                assignments = ", ".join(
                    f"{_count(status)} = {_count(status)} + {n}" for status, n in changed.items()
                )
                # bandit B608: column names from _count(), numbers counted here; id is a ?.
                update = f"UPDATE plans SET {assignments} WHERE id = ?"  # noqa: S608  # nosec B608
                connection.execute(update, (plan_id,))
                self._resettle(connection, plan_id)
        return added

    def set_expansion(
        self,
        plan_id: str,
        expected_last: date | None,
        last_expanded: date | None,
        next_expansion: datetime | None,
    ) -> bool:
        with self._write(f"record the expansion of plan {plan_id}") as connection:
            # ``IS``: NULL IS NULL is true, so None expects a plan never expanded.
            updated = connection.execute(
                "UPDATE plans SET last_expanded = ?, next_expansion = ? "
                "WHERE id = ? AND last_expanded IS ? AND paused = 0",
                (
                    _optional_date(last_expanded),
                    _optional_time(next_expansion),
                    plan_id,
                    _optional_date(expected_last),
                ),
            ).rowcount
            if not updated:
                if connection.execute("SELECT 1 FROM plans WHERE id = ?", (plan_id,)).fetchone():
                    return False
                raise PlanNotFound(plan_id)
            self._resettle(connection, plan_id)
        return True

    def set_paused(
        self,
        plan_id: str,
        paused: bool,
        last_expanded: date | None,
        next_expansion: datetime | None,
    ) -> Plan:
        with self._write(f"pause plan {plan_id}" if paused else f"resume plan {plan_id}") as (
            connection
        ):
            updated = connection.execute(
                "UPDATE plans SET paused = ?, last_expanded = ?, next_expansion = ? WHERE id = ?",
                (
                    int(paused),
                    _optional_date(last_expanded),
                    _optional_time(next_expansion),
                    plan_id,
                ),
            ).rowcount
            if not updated:
                raise PlanNotFound(plan_id)
            self._resettle(connection, plan_id)
            row = connection.execute(_SELECT_PLAN + " WHERE p.id = ?", (plan_id,)).fetchone()
        return _plan(row)

    # -- safety ------------------------------------------------------------------------

    def get_halt(self) -> Halt:
        with self._read("read the halt") as connection:
            row = connection.execute(
                "SELECT halted, reason, since, changed_by FROM control WHERE id = ?", (HALT_ID,)
            ).fetchone()
        return Halt() if row is None else _halt(row)

    def set_halt(self, halt: Halt) -> Halt:
        with self._write("record the halt") as connection:
            row = connection.execute(
                "INSERT INTO control (id, halted, reason, since, changed_by) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "halted = excluded.halted, reason = excluded.reason, since = excluded.since, "
                "changed_by = excluded.changed_by "
                "RETURNING halted, reason, since, changed_by",
                (HALT_ID, int(halt.halted), halt.reason, _optional_time(halt.since), halt.by),
            ).fetchone()
        return _halt(row)

    def record_attack(self, group: str, at: datetime, min_interval: timedelta) -> datetime | None:
        key = _interval_id(group)
        # One BEGIN IMMEDIATE transaction: the write lock is taken before the read, so of
        # two concurrent calls the second reads what the first wrote (the check and the
        # record are one step, as the port asks).
        with self._write(f"record an attack on {group!r}") as connection:
            row = connection.execute(
                "SELECT last_attack FROM control WHERE id = ?", (key,)
            ).fetchone()
            last = _parse_time(row["last_attack"]) if row is not None else None
            if last is not None and last > at - min_interval:
                return last
            connection.execute(
                "INSERT INTO control (id, last_attack) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET last_attack = excluded.last_attack",
                (key, to_storage(at)),
            )
        return None

    def last_attack(self, group: str) -> datetime | None:
        with self._read(f"read the last attack on {group!r}") as connection:
            row = connection.execute(
                "SELECT last_attack FROM control WHERE id = ?", (_interval_id(group),)
            ).fetchone()
        return None if row is None else _parse_time(row["last_attack"])

    # -- executors ---------------------------------------------------------------------

    def get_executor(self, executor_id: str) -> Executor | None:
        """StorageError when the stored record cannot be read (``purge_executor`` it)."""
        with self._read(f"read executor {executor_id}") as connection:
            row = connection.execute(
                _SELECT_EXECUTOR + " WHERE e.id = ?",
                (executor_id,),
            ).fetchone()
        return None if row is None else _executor(row)

    def list_executors(
        self, query: ExecutorQuery, limit: int, cursor: str | None
    ) -> Page[Executor]:
        _check_limit(limit)
        due_from = to_storage(query.due_from) if query.due_from else None
        due_until = to_storage(query.due_until) if query.due_until else None
        statuses = {
            None: ALL_STATUSES,
            False: PENDING_STATUSES,
            True: TERMINAL_STATUSES,
        }[query.executed]
        if query.statuses:
            wanted = {status.value for status in query.statuses}
            statuses = tuple(status for status in statuses if status in wanted)
        digest = _digest(
            [
                "executors",
                query.executed,
                query.plan_id,
                sorted(status.value for status in query.statuses),
                due_from,
                due_until,
                query.latest_first,
            ]
        )
        after = _decode_cursor(cursor, digest) if cursor is not None else None
        if after is not None and not _within(after[0], due_from, due_until):
            raise InvalidCursor(cursor)
        if not statuses:
            return Page([])
        if query.plan_id is None:
            # Only committed plans' executors; the plan row is found by its key, per row read.
            source = "executors AS e CROSS JOIN plans AS p ON p.id = e.plan_id"
            condition = "p.committed = 1 AND e.status = ?"
            fixed: list[Any] = []
        else:
            source = "executors AS e"
            condition = "e.plan_id = ? AND e.status = ?"
            fixed = [query.plan_id]
        direction = "DESC" if query.latest_first else "ASC"
        comparison = "<" if query.latest_first else ">"
        arms: list[str] = []
        parameters: list[Any] = []
        for status in statuses:
            # bandit B608: source and condition are literals chosen above; values are ?.
            sql = f"SELECT {_EXECUTOR_COLUMNS} FROM {source} WHERE {condition}"  # noqa: S608  # nosec B608
            parameters.extend([*fixed, status])
            # A cursor's key is already inside the due range: the bound it replaces is left
            # out, so that the index range starts at the cursor rather than being filtered.
            if due_from is not None and (after is None or query.latest_first):
                sql += " AND e.next_run_time >= ?"
                parameters.append(due_from)
            if due_until is not None and (after is None or not query.latest_first):
                sql += " AND e.next_run_time < ?"
                parameters.append(due_until)
            if after is not None:
                sql += f" AND (e.next_run_time, e.id) {comparison} (?, ?)"
                parameters.extend(after)
            arms.append(sql)
        # One sorted index range per status, merged by SQLite (MERGE (UNION ALL)), which
        # stops reading once it has limit + 1 rows.
        sql = (
            " UNION ALL ".join(arms)
            + f" ORDER BY next_run_time {direction}, id {direction} LIMIT ?"
        )
        with self._read("list executors") as connection:
            rows = connection.execute(sql, [*parameters, limit + 1]).fetchall()
        executors = [_executor(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = _encode_cursor(digest, [last["next_run_time"], last["id"]])
        return Page(executors, next_cursor)

    def list_running(self, started_before: datetime, limit: int) -> list[str]:
        _check_limit(limit)
        with self._read("list running executors") as connection:
            rows = connection.execute(
                "SELECT id FROM executors INDEXED BY executors_running "
                "WHERE status = 'running' AND started_at < ? ORDER BY started_at, id LIMIT ?",
                (to_storage(started_before), limit),
            ).fetchall()
        return [row["id"] for row in rows]

    def list_undelivered(self, due_before: datetime, limit: int) -> list[str]:
        """Oldest first."""
        _check_limit(limit)
        with self._read("list undelivered executors") as connection:
            rows = connection.execute(
                "SELECT id FROM executors INDEXED BY executors_by_status "
                "WHERE status = 'scheduled' AND next_run_time < ? "
                "ORDER BY next_run_time, id LIMIT ?",
                (to_storage(due_before), limit),
            ).fetchall()
        return [row["id"] for row in rows]

    def delete_executor(self, executor: Executor) -> bool:
        status = executor.status
        if status is ExecutorStatus.RUNNING:
            raise ExecutorRunning(executor.id, executor.started_at)
        with self._write(f"delete executor {executor.id}") as connection:
            deleted = connection.execute(
                "DELETE FROM executors WHERE id = ? AND status = ? RETURNING plan_id",
                (executor.id, status.value),
            ).fetchall()
            if not deleted:
                return False
            self._count_move(connection, deleted[0]["plan_id"], status, None)
        return True

    def purge_executor(self, executor_id: str) -> None:
        with self._write(f"purge executor {executor_id}") as connection:
            connection.execute("DELETE FROM executors WHERE id = ?", (executor_id,))

    def move_executor(self, executor_id: str, run_at: datetime) -> Executor:
        with self._write(f"move executor {executor_id}") as connection:
            moved = connection.execute(
                "UPDATE executors SET next_run_time = ? WHERE id = ? AND status = 'scheduled' "
                "RETURNING id",
                (to_storage(run_at), executor_id),
            ).fetchall()
            if not moved:
                current = connection.execute(
                    "SELECT status FROM executors WHERE id = ?", (executor_id,)
                ).fetchone()
                if current is None:
                    raise ExecutorNotFound(executor_id)
                raise ExecutorAlreadyRun(executor_id, current["status"])
            row = connection.execute(
                _SELECT_EXECUTOR + " WHERE e.id = ?",
                (executor_id,),
            ).fetchone()
        return _executor(row)

    def transition(
        self, executor: Executor, target: ExecutorStatus, changes: dict[str, Any]
    ) -> bool:
        moved = executor.moved_to(target, changes)
        source = executor.status
        try:
            values = (
                target.value,
                _optional_time(moved.started_at),
                _optional_time(moved.finished_at),
                None if moved.result is None else _json(moved.result),
                moved.error,
                moved.reason,
            )
        except (TypeError, ValueError) as error:
            raise StorageError(f"could not record executor {executor.id}: {error}") from error
        now = to_storage(self._clock.now())
        with self._write(f"record executor {executor.id}") as connection:
            plan = connection.execute(
                "SELECT committed FROM plans WHERE id = ?", (executor.plan_id,)
            ).fetchone()
            if plan is None:
                raise OrphanExecutor(executor.id, executor.plan_id)
            is_claim = source is ExecutorStatus.SCHEDULED and target is ExecutorStatus.RUNNING
            if is_claim and not plan["committed"]:
                return False
            updated = connection.execute(
                "UPDATE executors SET status = ?, started_at = ?, finished_at = ?, result = ?, "
                "error = ?, reason = ?, settled_at = ? "
                "WHERE id = ? AND plan_id = ? AND status = ? AND next_run_time = ?",
                (
                    *values,
                    now if target.is_terminal else None,
                    executor.id,
                    executor.plan_id,
                    source.value,
                    to_storage(executor.next_run_time),
                ),
            )
            if updated.rowcount == 0:
                return False
            self._count_move(connection, executor.plan_id, source, target)
        for name in ("status", "started_at", "finished_at", "result", "error", "reason"):
            setattr(executor, name, getattr(moved, name))
        return True

    def _count_move(
        self,
        connection: sqlite3.Connection,
        plan_id: str,
        source: ExecutorStatus,
        target: ExecutorStatus | None,
    ) -> None:
        """Take one executor off ``source``'s count and onto ``target``'s (None: deleted);
        a plan left with nothing pending is settled now."""
        assignments = [f"{_count(source)} = {_count(source)} - 1"]
        if target is not None:
            assignments.append(f"{_count(target)} = {_count(target)} + 1")
        # bandit B608: column names from _count() of an ExecutorStatus; the id is a ?.
        update = f"UPDATE plans SET {', '.join(assignments)} WHERE id = ?"  # noqa: S608  # nosec B608
        connection.execute(update, (plan_id,))
        self._resettle(connection, plan_id)

    def _resettle(self, connection: sqlite3.Connection, plan_id: str) -> None:
        """Keep ``settled_at`` (what purge_expired ages) true to the plan's state: set when
        nothing is pending, nothing will be expanded and the plan is not paused (kept if it
        was set before), NULL otherwise, so that retention never removes a recurring plan
        that still has days to come, nor a paused one (it may be resumed)."""
        connection.execute(
            "UPDATE plans SET settled_at = CASE WHEN pending = 0 AND paused = 0 "
            "THEN coalesce(settled_at, ?) END WHERE id = ?",
            (to_storage(self._clock.now()), plan_id),
        )

    # -- retention ---------------------------------------------------------------------

    def purge_expired(self, now: datetime) -> Purged:
        """Delete executed executors, and committed plans with nothing pending, that settled
        more than ``executed_retention`` before ``now`` (DynamoDB's TTL in local mode).

        A purged executor stays in its plan's counts: they are the plan's history.
        """
        cutoff = to_storage(now - self.executed_retention)
        plans = executors = 0
        while True:
            with self._write("purge expired executors") as connection:
                deleted = connection.execute(
                    "DELETE FROM executors WHERE rowid IN (SELECT rowid FROM executors "
                    "INDEXED BY executors_settled WHERE settled_at < ? LIMIT ?)",
                    (cutoff, PURGE_BATCH),
                ).rowcount
            executors += deleted
            if deleted < PURGE_BATCH:
                break
        while True:
            with self._write("purge expired plans") as connection:
                deleted = connection.execute(
                    "DELETE FROM plans WHERE rowid IN (SELECT rowid FROM plans "
                    "INDEXED BY plans_settled WHERE settled_at < ? AND pending = 0 "
                    "AND paused = 0 AND committed = 1 LIMIT ?)",
                    (cutoff, PURGE_BATCH),
                ).rowcount
            plans += deleted
            if deleted < PURGE_BATCH:
                break
        if plans or executors:
            log.info("purged expired records", extra={"plans": plans, "executors": executors})
        return Purged(plans=plans, executors=executors)

    # -- rows --------------------------------------------------------------------------

    @staticmethod
    def _executor_row(executor: Executor, now: str) -> tuple[Any, ...]:
        return (
            executor.id,
            executor.plan_id,
            executor.name,
            to_storage(executor.next_run_time),
            executor.status.value,
            _json(executor.attack),
            int(executor.dry_run),
            _optional_time(executor.started_at),
            _optional_time(executor.finished_at),
            None if executor.result is None else _json(executor.result),
            executor.error,
            executor.reason,
            now if executor.status.is_terminal else None,
        )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _optional_time(moment: datetime | None) -> str | None:
    return None if moment is None else to_storage(moment)


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else from_storage(text)


def _optional_date(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def _keeps(plan: Plan, counts: dict[str, int]) -> bool:
    """Whether a plan being stored with these counts is kept from retention: something
    pending, an expansion to come, or paused."""
    return (
        any(counts[status] for status in PENDING_STATUSES)
        or plan.next_expansion is not None
        or plan.paused
    )


def _executor(row: sqlite3.Row) -> Executor:
    try:
        return Executor(
            id=row["id"],
            plan_id=row["plan_id"],
            name=row["name"],
            next_run_time=from_storage(row["next_run_time"]),
            attack=json.loads(row["attack"]),
            status=ExecutorStatus(row["status"]),
            dry_run=bool(row["dry_run"]),
            started_at=_parse_time(row["started_at"]),
            finished_at=_parse_time(row["finished_at"]),
            result=None if row["result"] is None else json.loads(row["result"]),
            error=row["error"],
            reason=row["reason"],
        )
    except (TypeError, ValueError) as error:
        raise StorageError(f"executor {row['id']} cannot be read: {error}") from error


def _plan(row: sqlite3.Row) -> Plan:
    try:
        return Plan(
            id=row["id"],
            name=row["name"],
            created=from_storage(row["created"]),
            planner=json.loads(row["planner"]),
            attack=json.loads(row["attack"]),
            dry_run=bool(row["dry_run"]),
            counts=StatusCounts(
                {status: row[_count(status)] for status in ExecutorStatus if row[_count(status)]}
            ),
            committed=bool(row["committed"]),
            fingerprint=row["fingerprint"],
            next_execution=_parse_time(row["next_execution"]),
            safety=None if row["safety"] is None else json.loads(row["safety"]),
            paused=bool(row["paused"]),
            last_expanded=(
                None if row["last_expanded"] is None else date.fromisoformat(row["last_expanded"])
            ),
            next_expansion=_parse_time(row["next_expansion"]),
        )
    except (TypeError, ValueError) as error:
        raise StorageError(f"plan {row['id']} cannot be read: {error}") from error


def _interval_id(group: str) -> str:
    """The control row of a target group's minimum interval."""
    return f"interval#{group}"


def _halt(row: sqlite3.Row) -> Halt:
    try:
        return Halt(
            halted=bool(row["halted"]),
            reason=row["reason"],
            since=_parse_time(row["since"]),
            by=row["changed_by"],
        )
    except (TypeError, ValueError) as error:
        raise StorageError(f"the stored halt cannot be read: {error}") from error


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"a list's limit must be at least 1, not {limit}")


def _within(key: str, due_from: str | None, due_until: str | None) -> bool:
    return (due_from is None or key >= due_from) and (due_until is None or key < due_until)


def _digest(query: list[Any]) -> str:
    """A short digest of a query, so that a cursor cannot be used with another one."""
    return hashlib.sha256(json.dumps(query).encode()).hexdigest()[:16]


def _encode_cursor(digest: str, key: list[str]) -> str:
    text = json.dumps({"k": key, "q": digest}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_cursor(cursor: object, digest: str) -> list[str]:
    """The sort key a cursor holds; InvalidCursor unless this store made it for ``digest``."""
    try:
        if not isinstance(cursor, str):
            raise TypeError(type(cursor).__name__)
        padded = cursor + "=" * (-len(cursor) % 4)
        content = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        key = content["k"]
        if (
            content["q"] == digest
            and isinstance(key, list)
            and len(key) == 2
            and all(isinstance(part, str) for part in key)
        ):
            return key
    except (binascii.Error, TypeError, ValueError, KeyError):
        pass
    raise InvalidCursor(cursor)
