"""The EventLog contract, run against SqliteEventLog and DynamoEventLog (moto)."""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest

from chalicelib.adapters.sqlite_events import SqliteEventLog
from chalicelib.domain.errors import InvalidCursor
from chalicelib.domain.events import Event, EventKind
from chalicelib.domain.ports import EventLog
from chalicelib.settings import Settings
from tests.events.conftest import T0, event


def walk(
    log: EventLog, plan_id: str | None, kind: EventKind | None, limit: int
) -> tuple[list[Event], int]:
    """Every event of a list, page by page, and how many pages it took."""
    seen: list[Event] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = log.list(plan_id, kind, limit, cursor)
        pages += 1
        assert len(page.items) <= limit
        seen.extend(page.items)
        if page.cursor is None:
            return seen, pages
        assert pages < 200, "the list does not end"
        cursor = page.cursor


def newest_first(events: list[Event]) -> list[str]:
    return [e.id for e in sorted(events, key=lambda e: (e.time, e.id), reverse=True)]


def test_an_appended_event_reads_back_whole(event_log: EventLog) -> None:
    stored = Event.record(
        EventKind.EXECUTOR_FINISHED,
        T0,
        "engine",
        plan_id="plan-a",
        executor_id="executor-1",
        changes={"status": "failed", "error": "boom", "target": {"instance": "i-1"}},
    )
    event_log.append(stored)

    page = event_log.list(None, None, 10, None)

    assert page.items == [stored]
    assert page.cursor is None
    assert page.items[0].time == T0


def test_lists_are_newest_first_and_page_without_gaps_or_duplicates(
    event_log: EventLog,
) -> None:
    # Three events share each instant: the id orders them, and pages must not split badly.
    events = [event(minute // 3, plan_id=f"plan-{minute % 2}") for minute in range(23)]
    for each in events:
        event_log.append(each)

    for limit in (1, 4, 7, 23, 100):
        seen, pages = walk(event_log, None, None, limit)
        assert [e.id for e in seen] == newest_first(events), limit
        assert pages >= -(-len(events) // limit)


def test_events_appended_while_paging_never_repeat_or_hide_older_ones(
    event_log: EventLog,
) -> None:
    older = [event(minute) for minute in range(10)]
    for each in older:
        event_log.append(each)
    first = event_log.list(None, None, 4, None)
    event_log.append(event(100))  # newer than anything listed: belongs before page one

    rest, _ = walk_from(event_log, first.cursor, 4)

    assert [e.id for e in first.items + rest] == newest_first(older)


def walk_from(log: EventLog, cursor: str | None, limit: int) -> tuple[list[Event], int]:
    seen: list[Event] = []
    pages = 0
    while cursor is not None:
        page = log.list(None, None, limit, cursor)
        seen.extend(page.items)
        cursor = page.cursor
        pages += 1
    return seen, pages


def test_filters_by_plan_by_kind_and_both(event_log: EventLog) -> None:
    kinds = [EventKind.PLAN_CREATED, EventKind.EXECUTOR_STARTED, EventKind.EXECUTOR_FINISHED]
    events = [
        event(minute, kinds[minute % 3], plan_id=("plan-a" if minute % 2 else "plan-b"))
        for minute in range(18)
    ]
    halt = event(30, EventKind.HALT_CHANGED, plan_id=None, halted=True)
    for each in [*events, halt]:
        event_log.append(each)

    by_plan, _ = walk(event_log, "plan-a", None, 4)
    by_kind, _ = walk(event_log, None, EventKind.EXECUTOR_STARTED, 2)
    both, _ = walk(event_log, "plan-a", EventKind.EXECUTOR_FINISHED, 1)
    halts, _ = walk(event_log, None, EventKind.HALT_CHANGED, 5)
    everything, _ = walk(event_log, None, None, 5)

    assert [e.id for e in by_plan] == newest_first([e for e in events if e.plan_id == "plan-a"])
    assert [e.id for e in by_kind] == newest_first(
        [e for e in events if e.kind is EventKind.EXECUTOR_STARTED]
    )
    assert [e.id for e in both] == newest_first(
        [e for e in events if e.plan_id == "plan-a" and e.kind is EventKind.EXECUTOR_FINISHED]
    )
    assert [e.id for e in halts] == [halt.id]
    assert everything[0].id == halt.id and len(everything) == 19
    assert walk(event_log, "plan-none", None, 5) == ([], 1)


def test_a_rare_kind_of_a_busy_plan_is_listed_whole(event_log: EventLog) -> None:
    # Many events of one kind between the few of another: filtered reads stop early and
    # resume where they stopped, and the pages still hold every match once.
    busy = [event(minute, EventKind.EXECUTOR_STARTED) for minute in range(60)]
    rare = [event(minute + 0.5, EventKind.EXECUTOR_MOVED) for minute in (3, 30, 59)]
    for each in [*busy, *rare]:
        event_log.append(each)

    seen, _ = walk(event_log, "plan-a", EventKind.EXECUTOR_MOVED, 2)

    assert [e.id for e in seen] == newest_first(rare)


def test_a_cursor_of_another_list_is_refused(event_log: EventLog) -> None:
    for minute in range(5):
        event_log.append(event(minute))
    cursor = event_log.list("plan-a", None, 2, None).cursor
    assert cursor is not None

    for plan_id, kind in ((None, None), ("plan-b", None), ("plan-a", EventKind.PLAN_CREATED)):
        with pytest.raises(InvalidCursor) as refused:
            event_log.list(plan_id, kind, 2, cursor)
        assert "use the next link of the previous page" in refused.value.message
    with pytest.raises(InvalidCursor) as garbage:
        event_log.list(None, None, 2, "not-a-cursor")
    assert garbage.value.message.startswith("invalid cursor 'not-a-cursor'")


def test_sqlite_purges_events_past_the_retention(sqlite_events: SqliteEventLog) -> None:
    old = [event(-60 * 24 * 31 - minute) for minute in range(3)]  # 31 days before T0
    recent = [event(-60 * 24 * 29), event(0)]
    for each in [*old, *recent]:
        sqlite_events.append(each)

    assert sqlite_events.purge_expired(T0) == 3
    assert sqlite_events.purge_expired(T0) == 0
    seen, _ = walk(sqlite_events, None, None, 10)
    assert [e.id for e in seen] == newest_first(recent)


def test_sqlite_keeps_events_across_reopening(sqlite_events: SqliteEventLog) -> None:
    stored = event(1, EventKind.PLAN_DELETED)
    sqlite_events.append(stored)
    sqlite_events.close()

    again = SqliteEventLog(sqlite_events.path)
    try:
        assert again.list(None, None, 5, None).items == [stored]
    finally:
        again.close()


def test_dynamo_events_expire_by_ttl_after_the_retention(aws: None, settings: Settings) -> None:
    from chalicelib.adapters.dynamo_events import DynamoEventLog

    log = DynamoEventLog(settings)
    log.create_table()
    stored = event(0)
    log.append(stored)

    client = boto3.client("dynamodb", region_name=settings.aws_region)
    # TTL needs a Number attribute of epoch seconds, enabled on the table:
    # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/time-to-live-ttl-before-you-start.html
    ttl = client.describe_time_to_live(TableName=settings.events_table)
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"
    assert ttl["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"
    item = client.get_item(TableName=settings.events_table, Key={"id": {"S": stored.id}})["Item"]
    expected = T0 + timedelta(days=30)
    assert int(item["expires_at"]["N"]) == int(expected.timestamp())
    assert log.purge_expired(T0 + timedelta(days=400)) == 0  # TTL's job, not ours
