"""What only the SQLite store promises: its query plans, retention, its file, its threads."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib.adapters import sqlite_store
from chalicelib.adapters.sqlite_store import SqliteStore, _Pool
from chalicelib.domain.errors import StorageError
from chalicelib.domain.model import ExecutorStatus
from chalicelib.domain.ports import ExecutorQuery, PlanQuery, Store
from chalicelib.domain.safety import Halt
from tests.conftest import FixedClock
from tests.contract.conftest import T0, add, claim, counts, finish, make_executors, make_plan

S = ExecutorStatus
RETENTION = timedelta(days=90)
# A plan in EXPLAIN QUERY PLAN that reads a whole table, or sorts what it read.
WHOLE_READ = re.compile(r"\bSCAN (executors|plans|control|e|p|x)\b|TEMP B-TREE")


def as_port(store: SqliteStore) -> Store:
    """Never called: mypy checks here that SqliteStore implements the Store port."""
    return store


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "engine.sqlite3"


@pytest.fixture
def store(path: Path, clock: FixedClock) -> Iterator[SqliteStore]:
    sqlite = SqliteStore(path, executed_retention=RETENTION, clock=clock)
    yield sqlite
    sqlite.close()


@pytest.fixture
def statements(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement the store's connections run."""
    seen: list[str] = []
    for connection in store._pool._idle:
        connection.set_trace_callback(seen.append)
    open_connection = _Pool._open

    def traced(pool: _Pool) -> sqlite3.Connection:
        connection = open_connection(pool)
        connection.set_trace_callback(seen.append)
        return connection

    monkeypatch.setattr(_Pool, "_open", traced)
    return seen


def query_plans(path: Path, sql: list[str]) -> dict[str, list[str]]:
    """EXPLAIN QUERY PLAN of each data statement (values already bound by the trace)."""
    plans: dict[str, list[str]] = {}
    with sqlite3.connect(path) as connection:
        for statement in sql:
            if not statement.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
                continue
            rows = connection.execute(f"EXPLAIN QUERY PLAN {statement}").fetchall()
            plans[statement] = [row[3] for row in rows]
    connection.close()
    return plans


def test_every_read_and_write_uses_an_index(
    store: SqliteStore, path: Path, statements: list[str]
) -> None:
    plan, executors = add(store, minutes=range(1, 30))
    add(store, minutes=[2, 4], committed=False, created=T0 - timedelta(days=1))
    add(store, minutes=[5], created=T0 - timedelta(days=2))
    statements.clear()

    page = store.list_executors(ExecutorQuery(), 5, None)
    store.list_executors(ExecutorQuery(), 5, page.cursor)
    page = store.list_executors(ExecutorQuery(executed=None, latest_first=True), 5, None)
    store.list_executors(ExecutorQuery(executed=None, latest_first=True), 5, page.cursor)
    store.list_executors(ExecutorQuery(executed=True), 5, None)
    ranged = ExecutorQuery(due_from=T0 + timedelta(minutes=3), due_until=T0 + timedelta(hours=1))
    page = store.list_executors(ranged, 5, None)
    store.list_executors(ranged, 5, page.cursor)
    page = store.list_executors(ExecutorQuery(executed=None, plan_id=plan.id), 5, None)
    store.list_executors(ExecutorQuery(executed=None, plan_id=plan.id), 5, page.cursor)
    store.list_executors(ExecutorQuery(statuses=frozenset({S.RUNNING})), 5, None)
    plans_page = store.list_plans(PlanQuery(pending=True, executed=True), 1, None)
    store.list_plans(PlanQuery(pending=True, executed=True), 1, plans_page.cursor)
    store.get_plan(plan.id)
    store.get_executor(executors[0].id)
    store.list_running(T0 + timedelta(hours=1), 10)
    store.list_undelivered(T0 + timedelta(hours=1), 10)
    store.list_abandoned_plans(T0, 10)
    claim(store, executors[0])
    finish(store, executors[0], S.SUCCEEDED)
    store.move_executor(executors[1].id, T0 + timedelta(hours=2))
    store.delete_executor(executors[2])
    store.purge_executor(executors[3].id)
    store.purge_expired(T0 + RETENTION * 2)
    stored = store.get_plan(plan.id)
    assert stored is not None
    store.delete_plan(stored)
    store.set_halt(Halt(halted=True, reason="test", since=T0, by="local"))
    store.get_halt()
    store.record_attack("plan:p1", T0, timedelta(minutes=1))
    store.record_attack("plan:p1", T0, timedelta(minutes=1))
    store.last_attack("plan:p1")
    recurring, _ = add(store, minutes=[1], next_expansion=T0 + timedelta(days=1))
    store.list_due_expansions(T0 + timedelta(days=2), 10)
    store.add_executors(recurring.id, make_executors(recurring, [5, 6]))
    store.set_expansion(recurring.id, None, date(2026, 12, 1), T0 + timedelta(days=2))
    store.set_paused(recurring.id, True, date(2026, 12, 1), None)

    plans = query_plans(path, statements)

    assert len(plans) >= 30
    whole_reads = {sql: steps for sql, steps in plans.items() if WHOLE_READ.search(str(steps))}
    assert whole_reads == {}
    used = " ".join(step for steps in plans.values() for step in steps)
    for index in (
        "executors_by_status",
        "executors_by_plan",
        "executors_running",
        "executors_settled",
        "plans_by_state",
        "plans_uncommitted",
        "plans_settled",
        "plans_expansion",
    ):
        assert index in used


def vm_steps(store: SqliteStore, work: Callable[[], Any]) -> int:
    """How many tens of SQLite VM instructions ``work`` runs: a cost that, unlike time,
    does not depend on the machine."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    idle = store._pool._idle  # single-threaded here: the work uses these connections
    assert idle
    for connection in idle:
        connection.set_progress_handler(count, 10)
    work()
    for connection in idle:
        connection.set_progress_handler(None, 0)
    return steps


def test_no_read_costs_more_with_more_executors_stored(store: SqliteStore) -> None:
    plans = [add(store, minutes=[n + k / 50 for k in range(40)])[0] for n in range(25)]
    for executor in store.list_executors(ExecutorQuery(), 3, None).items:
        claim(store, executor)
    limit = 20

    def reads() -> None:
        page = store.list_executors(ExecutorQuery(), limit, None)
        store.list_executors(ExecutorQuery(), limit, page.cursor)
        store.list_executors(ExecutorQuery(executed=None, latest_first=True), limit, None)
        store.list_executors(ExecutorQuery(statuses=frozenset({S.RUNNING})), limit, None)
        store.list_executors(ExecutorQuery(executed=True), limit, None)
        listed = store.list_plans(PlanQuery(pending=True, executed=True), limit, None)
        assert len(listed.items) == limit
        store.get_plan(plans[3].id)
        page = store.list_executors(ExecutorQuery(plan_id=plans[3].id), limit, None)
        assert len(page.items) == limit
        store.list_running(T0 + timedelta(days=1), limit)
        assert len(store.list_undelivered(T0 + timedelta(minutes=5), limit)) == limit

    small = vm_steps(store, reads)
    for number in range(25):
        add(store, minutes=[number + k / 1000 + 0.0001 for k in range(800)])
    large = vm_steps(store, reads)

    assert small > 400
    # Twenty-one times the executors: a read that scanned them would cost about that much
    # more; reads on index ranges cost a few more steps for a deeper B-tree.
    assert large < small * 1.3


def test_purge_expired_removes_what_settled_before_the_retention(
    store: SqliteStore, clock: FixedClock
) -> None:
    settled, (done,) = add(store, minutes=[1])
    running, (finished, still) = add(store, minutes=[1, 2])
    uncommitted, _ = add(store, minutes=[1], committed=False)
    claim(store, done)
    finish(store, done, S.SUCCEEDED)
    claim(store, finished)
    finish(store, finished, S.FAILED)
    clock.advance(days=10)
    late, (late_one,) = add(store, minutes=[1])
    assert store.transition(late_one, S.MISSED, {"reason": "late"})

    assert store.purge_expired(T0 + RETENTION - timedelta(seconds=1)).executors == 0
    purged = store.purge_expired(T0 + RETENTION + timedelta(seconds=1))

    assert (purged.plans, purged.executors) == (1, 2)
    assert store.get_plan(settled.id) is None
    assert store.get_executor(done.id) is None
    assert store.get_executor(finished.id) is None
    assert store.get_executor(still.id) == still
    assert counts(store, running.id) == {"failed": 1, "scheduled": 1}  # history stays
    assert store.get_plan(uncommitted.id) is not None
    assert store.get_executor(late_one.id) == late_one
    assert store.get_plan(late.id) is not None

    later = store.purge_expired(T0 + RETENTION + timedelta(days=11))

    assert (later.plans, later.executors) == (1, 1)
    assert store.get_plan(late.id) is None
    assert store.get_plan(running.id) is not None


def test_purge_expired_never_removes_a_plan_with_an_expansion_to_come_or_paused(
    store: SqliteStore, clock: FixedClock
) -> None:
    """A recurring plan between two days has nothing pending, and a paused plan may be
    resumed: neither is settled, whatever their age."""
    day = date(2026, 12, 1)
    recurring, (ran,) = add(store, minutes=[1], next_expansion=T0 + timedelta(days=1))
    paused, (skipped,) = add(store, minutes=[1])
    ended, (last,) = add(store, minutes=[1], next_expansion=T0 + timedelta(days=1))
    for executor in (ran, skipped, last):
        assert store.transition(executor, S.SKIPPED, {"reason": "test"})
    store.set_paused(paused.id, True, None, None)
    # Past its end: settled from now.
    clock.advance(days=5)
    assert store.set_expansion(ended.id, None, day, None)

    purged = store.purge_expired(T0 + RETENTION * 3)

    assert (purged.plans, purged.executors) == (1, 3)
    assert store.get_plan(recurring.id) is not None
    assert store.get_plan(paused.id) is not None
    assert store.get_plan(ended.id) is None
    # Resumed with nothing to come, the paused plan settles and ages from its resumption.
    clock.advance(days=1)
    store.set_paused(paused.id, False, None, None)
    assert store.purge_expired(clock.now() + RETENTION - timedelta(seconds=1)).plans == 0
    assert store.purge_expired(clock.now() + RETENTION + timedelta(seconds=1)).plans == 1
    assert store.get_plan(paused.id) is None


def test_purge_expired_works_in_batches(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan, executors = add(store, minutes=range(1, 13))
    for executor in executors:
        assert store.transition(executor, S.SKIPPED, {"reason": "dry run"})
    monkeypatch.setattr(sqlite_store, "PURGE_BATCH", 5)

    purged = store.purge_expired(T0 + RETENTION * 2)

    assert (purged.plans, purged.executors) == (1, 12)
    assert store.get_plan(plan.id) is None


def test_add_plan_failing_half_way_leaves_nothing(store: SqliteStore) -> None:
    plan = make_plan()
    executors = make_executors(plan, [1, 2, 3, 4])
    executors[3].id = executors[1].id  # the fourth insert fails inside the transaction

    with pytest.raises(StorageError, match="UNIQUE"):
        store.add_plan(plan, executors)

    assert store.get_plan(plan.id) is None
    assert [store.get_executor(e.id) for e in executors] == [None] * 4


def test_data_survives_closing_and_reopening(path: Path, clock: FixedClock) -> None:
    first = SqliteStore(path, clock=clock)
    plan, (executor,) = add(first, minutes=[1])
    claim(first, executor)
    first.close()

    second = SqliteStore(path, clock=clock)
    try:
        assert second.get_executor(executor.id) == executor
        assert counts(second, plan.id) == {"running": 1}
    finally:
        second.close()


def test_the_file_is_in_wal_mode_with_foreign_keys(store: SqliteStore, path: Path) -> None:
    with store._pool.connection() as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert connection.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert connection.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000


# The schema of version 1 (before plans.safety and the control table), as it was shipped.
VERSION_1_SCHEMA = """
CREATE TABLE plans (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, created TEXT NOT NULL,
    committed INTEGER NOT NULL, fingerprint TEXT, planner TEXT NOT NULL,
    attack TEXT NOT NULL, dry_run INTEGER NOT NULL,
    count_failed INTEGER NOT NULL DEFAULT 0, count_missed INTEGER NOT NULL DEFAULT 0,
    count_running INTEGER NOT NULL DEFAULT 0, count_scheduled INTEGER NOT NULL DEFAULT 0,
    count_skipped INTEGER NOT NULL DEFAULT 0, count_succeeded INTEGER NOT NULL DEFAULT 0,
    settled_at TEXT,
    pending INTEGER GENERATED ALWAYS AS (count_scheduled + count_running > 0) VIRTUAL
);
CREATE INDEX plans_by_state ON plans (committed, pending, created, id);
CREATE INDEX plans_uncommitted ON plans (created, id) WHERE committed = 0;
CREATE INDEX plans_settled ON plans (settled_at) WHERE settled_at IS NOT NULL;
CREATE TABLE executors (
    id TEXT PRIMARY KEY,
    plan_id TEXT NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    name TEXT NOT NULL, next_run_time TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN
        ('failed', 'missed', 'running', 'scheduled', 'skipped', 'succeeded')),
    attack TEXT NOT NULL, dry_run INTEGER NOT NULL, started_at TEXT, finished_at TEXT,
    result TEXT, error TEXT, reason TEXT, settled_at TEXT
);
CREATE INDEX executors_by_status ON executors (status, next_run_time, id);
CREATE INDEX executors_by_plan ON executors (plan_id, status, next_run_time, id);
CREATE INDEX executors_running ON executors (started_at, id) WHERE status = 'running';
CREATE INDEX executors_settled ON executors (settled_at) WHERE settled_at IS NOT NULL;
PRAGMA user_version = 1;
"""


def test_a_version_1_file_is_migrated_with_its_plans_intact(path: Path, clock: FixedClock) -> None:
    with sqlite3.connect(path) as connection:
        connection.executescript(VERSION_1_SCHEMA)
        connection.execute(
            "INSERT INTO plans (id, name, created, committed, fingerprint, planner, attack, "
            "dry_run, count_scheduled, count_succeeded) VALUES "
            "('old', 'from 2026', '2026-12-01T09:00:00.000000Z', 1, NULL, ?, ?, 0, 1, 1)",
            ('{"ref": "exact_planner:ExactPlanner", "args": {}}', '{"ref": "a:A", "args": {}}'),
        )
        connection.executemany(
            "INSERT INTO executors (id, plan_id, name, next_run_time, status, attack, dry_run, "
            "finished_at, result) VALUES (?, 'old', 'run', ?, ?, '{}', 0, ?, ?)",
            [
                (
                    "e1",
                    "2026-12-01T09:01:00.000000Z",
                    "succeeded",
                    "2026-12-01T09:01:02.000000Z",
                    '{"hit": 1}',
                ),
                ("e2", "2026-12-01T09:02:00.000000Z", "scheduled", None, None),
            ],
        )
    connection.close()

    store = SqliteStore(path, clock=clock)
    try:
        plan = store.get_plan("old")
        assert plan is not None
        assert (plan.name, plan.created, plan.safety) == ("from 2026", T0, None)
        assert counts(store, "old") == {"scheduled": 1, "succeeded": 1}
        assert plan.next_execution == T0 + timedelta(minutes=2)
        done = store.get_executor("e1")
        assert done is not None and (done.status, done.result) == (S.SUCCEEDED, {"hit": 1})
        assert [p.id for p in store.list_plans(PlanQuery(), 10, None).items] == ["old"]
        # What version 2 adds works on the migrated file.
        assert store.get_halt() == Halt()
        halt = Halt(halted=True, reason="migrated", since=T0, by="local")
        assert store.set_halt(halt) == halt
        at = datetime(2026, 12, 1, 10, tzinfo=UTC)
        assert store.record_attack("plan:old", at, timedelta(hours=1)) is None
        assert store.record_attack("plan:old", at, timedelta(hours=1)) == at
        new, _ = add(store, minutes=[5], safety={"min_interval": {"seconds": 60}})
        stored = store.get_plan(new.id)
        assert stored is not None and stored.safety == {"min_interval": {"seconds": 60}}
        # And what version 3 adds (recurring plans).
        assert (plan.paused, plan.last_expanded, plan.next_expansion) == (False, None, None)
        assert store.list_due_expansions(T0 + timedelta(days=9), 10) == []
        assert store.set_paused("old", True, None, None).paused
    finally:
        store.close()
    with sqlite3.connect(path) as connection:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        assert version == sqlite_store.SCHEMA_VERSION >= 2
    connection.close()

    # Opened again: already the current version, nothing to migrate, the halt still there.
    again = SqliteStore(path, clock=clock)
    try:
        assert again.get_halt() == halt
    finally:
        again.close()
    # The migrated file has the schema a new file gets: tables, columns, indexes.
    fresh = path.with_name("fresh.sqlite3")
    SqliteStore(fresh, clock=clock).close()
    assert schema_of(path) == schema_of(fresh)


# Version 2 as it was shipped: version 1 plus plans.safety and the control table.
VERSION_2_SCHEMA = (
    VERSION_1_SCHEMA.replace("PRAGMA user_version = 1;", "")
    + """
ALTER TABLE plans ADD COLUMN safety TEXT;
CREATE TABLE control (
    id TEXT PRIMARY KEY, halted INTEGER, reason TEXT, since TEXT, changed_by TEXT,
    last_attack TEXT
) WITHOUT ROWID;
INSERT INTO control (id, halted, reason, since, changed_by)
    VALUES ('halt', 1, 'kept', '2026-12-01T09:00:00.000000Z', 'local');
PRAGMA user_version = 2;
"""
)


def test_a_version_2_file_is_migrated_to_recurring_plans(path: Path, clock: FixedClock) -> None:
    with sqlite3.connect(path) as connection:
        connection.executescript(VERSION_2_SCHEMA)
        connection.executemany(
            "INSERT INTO plans (id, name, created, committed, planner, attack, dry_run, "
            "count_scheduled, count_succeeded, settled_at, safety) "
            "VALUES (?, ?, ?, 1, '{}', '{}', 0, ?, ?, ?, ?)",
            [
                ("live", "pending", "2026-12-01T09:00:00.000000Z", 1, 0, None, '{"a": 1}'),
                ("done", "executed", "2026-11-30T09:00:00.000000Z", 0, 1, "x", None),
            ],
        )
        connection.execute(
            "INSERT INTO executors (id, plan_id, name, next_run_time, status, attack, dry_run) "
            "VALUES ('e1', 'live', 'run', '2026-12-01T09:05:00.000000Z', 'scheduled', '{}', 0)"
        )
    connection.close()

    store = SqliteStore(path, clock=clock)
    try:
        live = store.get_plan("live")
        assert live is not None and live.safety == {"a": 1}
        assert (live.paused, live.last_expanded, live.next_expansion) == (False, None, None)
        assert live.next_execution == T0 + timedelta(minutes=5)
        assert store.get_halt().reason == "kept"
        assert [p.id for p in store.list_plans(PlanQuery(), 10, None).items] == ["live"]
        executed = PlanQuery(pending=False, executed=True)
        assert [p.id for p in store.list_plans(executed, 10, None).items] == ["done"]
        # The regenerated ``pending`` counts a next expansion: "done" becomes pending.
        store.set_paused("done", False, date(2026, 11, 30), T0 + timedelta(hours=15))
        assert [p.id for p in store.list_plans(PlanQuery(), 10, None).items] == ["live", "done"]
        assert store.list_due_expansions(T0 + timedelta(days=1), 10) == ["done"]
    finally:
        store.close()
    fresh = path.with_name("fresh.sqlite3")
    SqliteStore(fresh, clock=clock).close()
    assert schema_of(path) == schema_of(fresh)


def schema_of(path: Path) -> dict[str, Any]:
    with sqlite3.connect(path) as connection:
        objects = connection.execute(
            "SELECT type, name, tbl_name FROM sqlite_master ORDER BY name"
        ).fetchall()
        columns = {
            table: connection.execute(f"PRAGMA table_xinfo({table})").fetchall()
            for kind, table, _ in objects
            if kind == "table"
        }
    connection.close()
    return {"objects": objects, "columns": columns}


def test_a_file_of_another_schema_version_is_refused(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 99")
    connection.close()

    with pytest.raises(StorageError, match="version 99"):
        SqliteStore(path)


def test_a_closed_store_refuses_work(store: SqliteStore) -> None:
    store.close()
    store.close()
    with pytest.raises(StorageError, match="closed"):
        store.get_plan("any")


def test_an_unreadable_executor_does_not_stop_the_reapers_lists(
    store: SqliteStore, path: Path
) -> None:
    _, (broken, fine) = add(store, minutes=[1, 2])
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE executors SET attack = '{not json' WHERE id = ?", (broken.id,))
    connection.close()

    with pytest.raises(StorageError, match=broken.id):
        store.get_executor(broken.id)
    assert store.list_undelivered(T0 + timedelta(hours=1), 10) == [broken.id, fine.id]

    store.purge_executor(broken.id)

    assert store.get_executor(broken.id) is None
    assert [e.id for e in store.list_executors(ExecutorQuery(), 10, None).items] == [fine.id]


def test_many_threads_share_a_few_connections(path: Path, clock: FixedClock) -> None:
    store = SqliteStore(path, clock=clock, max_connections=2)
    try:
        plan, executors = add(store, minutes=range(1, 17))
        errors: list[BaseException] = []

        def work(number: int) -> None:
            try:
                executor = executors[number]
                store.list_executors(ExecutorQuery(executed=None), 10, None)
                claim(store, executor)
                store.list_plans(PlanQuery(pending=True, executed=True), 10, None)
                finish(store, executor, S.SUCCEEDED)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert counts(store, plan.id) == {"succeeded": 16}
    finally:
        store.close()


def test_writers_of_one_process_queue_instead_of_sleeping_in_sqlites_busy_handler(
    path: Path, clock: FixedClock
) -> None:
    """SQLite lets one writer in at a time; one that finds the lock taken sleeps in its
    busy handler (1, 2, 5, 10, ... ms) and was not woken when the lock freed: executors
    due in the same second started tens of milliseconds late. The store queues its own
    writers on a lock. With SQLite's busy timeout at zero, any two writers meeting inside
    SQLite fail at once ("database is locked"), so this fails without the store's lock."""
    store = SqliteStore(path, busy_timeout=0.0, clock=clock, max_connections=8)
    try:
        plan, executors = add(store, minutes=[1 + n for n in range(16)])
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(executors))

        def claim_and_finish(executor: Any) -> None:
            try:
                barrier.wait(timeout=10)
                claim(store, executor)
                finish(store, executor, ExecutorStatus.SUCCEEDED)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=claim_and_finish, args=[e]) for e in executors]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert errors == []
        assert counts(store, plan.id)["succeeded"] == len(executors)
    finally:
        store.close()
