"""The EventLog contract's fixture and helpers: every test runs against each event log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chalicelib.adapters.sqlite_events import EVENTS_FILE, SqliteEventLog
from chalicelib.domain.events import Event, EventKind
from chalicelib.domain.ports import EventLog
from chalicelib.settings import Settings

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def settings() -> Settings:
    return Settings(
        plans_table="test-plans",
        executors_table="test-executors",
        events_table="test-events",
        events_retention=timedelta(days=30),
    )


@pytest.fixture
def sqlite_events(tmp_path: Path, settings: Settings) -> Iterator[SqliteEventLog]:
    log = SqliteEventLog(tmp_path / EVENTS_FILE, retention=settings.events_retention)
    yield log
    log.close()


@pytest.fixture(params=["sqlite", "dynamo"])
def event_log(request: pytest.FixtureRequest, settings: Settings) -> Iterator[EventLog]:
    """A fresh, empty event log: SQLite on a temporary file, or DynamoDB on moto."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_events")
        return
    request.getfixturevalue("aws")
    from chalicelib.adapters.dynamo_events import DynamoEventLog

    dynamo = DynamoEventLog(settings)
    dynamo.create_table()
    yield dynamo
    dynamo.close()


def event(
    minutes: float,
    kind: EventKind = EventKind.PLAN_CREATED,
    plan_id: str | None = "plan-a",
    **changes: object,
) -> Event:
    return Event.record(
        kind,
        T0 + timedelta(minutes=minutes),
        "tester",
        plan_id=plan_id,
        executor_id=None,
        changes=dict(changes),
    )
