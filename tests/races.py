"""A gate that makes a check-then-write race happen on every run, for the tests of
``Store.record_attack``: each caller is held after its first step on the store until
every caller has taken its first step.

Threads released together rarely interleave inside a store call: one usually reads and
writes before the next reads, so a ``record_attack`` that reads in one step and writes in
another still passes most runs. The gate removes the luck. A step ends where the caller
holds nothing of the store's: after one DynamoDB call (whatever it answered); on SQLite,
after a statement run outside a transaction, or once the writer lock is let go after a
transaction. Holding a caller there is an interleaving the store must already survive
(its thread could be descheduled there), so a correct store passes: its one conditional
write decides. A store that checks in one step and writes in another has every check made
before any write, so every caller records, every run.

A caller that holds the writer lock or is inside a transaction is never held: the others
would wait for it and the gate for them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import pytest

from chalicelib.adapters.sqlite_store import SqliteStore
from chalicelib.domain.ports import Store

T = TypeVar("T")
WAIT_SECONDS = 20
METADATA_CALLS = frozenset({"DescribeTable", "ListTables", "DescribeTimeToLive"})


class FirstStepGate:
    """Holds each of ``callers`` threads after its first step until all have taken one."""

    def __init__(self, callers: int) -> None:
        self.callers = callers
        self.held = 0  # callers held at the gate: every one, when the hooks see the steps
        self._arrived = 0  # callers held, or that returned before taking a step
        self._condition = threading.Condition()
        self._local = threading.local()

    def call(self, record: Callable[..., T], *args: Any) -> T:
        """``record(*args)`` in the gate's scope: its steps on the store are watched."""
        self._local.watched, self._local.stepped, self._local.done = True, False, False
        try:
            return record(*args)
        finally:
            self._local.watched = False
            if not self._local.done:
                self._arrive(held=False)

    def stepped(self) -> None:
        """A watched caller finished a store call; it may hold nothing of the store's."""
        if getattr(self._local, "watched", False):
            self._local.stepped = True

    def quiet(self) -> None:
        """The caller holds nothing of the store's: hold it if it has taken its first step."""
        local = self._local
        if getattr(local, "watched", False) and local.stepped and not local.done:
            self._arrive(held=True)

    def _arrive(self, held: bool) -> None:
        self._local.done = True
        with self._condition:
            self._arrived += 1
            self.held += held
            self._condition.notify_all()
            if held and not self._condition.wait_for(
                lambda: self._arrived >= self.callers, timeout=WAIT_SECONDS
            ):
                raise AssertionError(
                    f"{self._arrived} of {self.callers} callers took a first step in "
                    f"{WAIT_SECONDS} s: one holds the store, or never called it"
                )


class _WatchedLock:
    """The SQLite store's writer lock, telling the gate when this thread lets it go."""

    def __init__(self, lock: Any, gate: FirstStepGate, holders: threading.local) -> None:
        self._lock = lock
        self._gate = gate
        self._holders = holders

    def __enter__(self) -> bool:
        entered: bool = self._lock.__enter__()
        self._holders.writer = True
        return entered

    def __exit__(self, *exc: object) -> None:
        self._holders.writer = False
        self._lock.__exit__(*exc)
        if not _in_transaction(self._holders):
            self._gate.quiet()


class _WatchedConnection:
    """A borrowed SQLite connection, telling the gate where each statement leaves it."""

    def __init__(
        self, connection: sqlite3.Connection, gate: FirstStepGate, holders: threading.local
    ) -> None:
        self._connection = connection
        self._gate = gate
        self._holders = holders

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def execute(self, *args: Any) -> sqlite3.Cursor:
        cursor = self._connection.execute(*args)
        self._after_step()
        return cursor

    def commit(self) -> None:
        self._connection.commit()
        self._after_step()

    def rollback(self) -> None:
        self._connection.rollback()
        self._after_step()

    def _after_step(self) -> None:
        self._gate.stepped()
        if not getattr(self._holders, "writer", False) and not _in_transaction(self._holders):
            self._gate.quiet()


def _in_transaction(holders: threading.local) -> bool:
    borrowed: list[sqlite3.Connection] = getattr(holders, "borrowed", [])
    return any(connection.in_transaction for connection in borrowed)


def _watch_sqlite(store: SqliteStore, gate: FirstStepGate, patch: pytest.MonkeyPatch) -> None:
    holders = threading.local()
    borrow: Callable[[], AbstractContextManager[sqlite3.Connection]] = store._pool.connection

    @contextmanager
    def watched_borrow() -> Iterator[_WatchedConnection]:
        with borrow() as connection:
            borrowed = getattr(holders, "borrowed", [])
            holders.borrowed = [*borrowed, connection]
            try:
                yield _WatchedConnection(connection, gate, holders)
            finally:
                holders.borrowed = borrowed

    patch.setattr(store, "_writer", _WatchedLock(store._writer, gate, holders))
    patch.setattr(store._pool, "connection", watched_borrow)


def _watch_dynamo(gate: FirstStepGate, patch: pytest.MonkeyPatch) -> None:
    # Every DynamoDB call of PynamoDB goes through Connection._make_api_call; between two
    # calls the store holds nothing (no lock, no transaction), so each call is one step.
    from pynamodb.connection.base import Connection

    call = Connection._make_api_call

    def watched_call(self: Connection, operation: str, kwargs: dict[str, Any]) -> Any:
        try:
            return call(self, operation, kwargs)
        finally:
            # A table's description is not a step: it reads no item.
            if operation not in METADATA_CALLS:
                gate.stepped()
                gate.quiet()

    patch.setattr(Connection, "_make_api_call", watched_call)


@contextmanager
def first_steps_together(store: Store, callers: int) -> Iterator[FirstStepGate]:
    """Watch ``store`` while the block runs; each caller goes through ``gate.call``.

    Afterwards asserts that every caller was held, so a hook that stopped seeing the
    store's steps (a renamed attribute, another client) fails the test instead of quietly
    letting the race go back to luck.
    """
    gate = FirstStepGate(callers)
    with pytest.MonkeyPatch.context() as patch:
        if isinstance(store, SqliteStore):
            _watch_sqlite(store, gate, patch)
        else:
            _watch_dynamo(gate, patch)
        yield gate
    assert gate.held == callers, f"the gate held {gate.held} of {callers} callers"
