"""A recurring plan across three simulated days in local mode: the engine that
build_local_engine wires (SQLite, APScheduler) on a fixed clock moved by hand, its own
expansion job doing the daily work, each day's executors checked and run; and a restart
after a downtime catching up at start."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from chalicelib.adapters.local_scheduler import LocalScheduler
from chalicelib.bootstrap import Engine, build_local_engine
from chalicelib.domain.model import Executor, ExecutorStatus
from chalicelib.domain.ports import ExecutorQuery
from chalicelib.domain.recurrence import occurrence_key, occurrence_name
from chalicelib.domain.times import to_api
from chalicelib.settings import Settings
from tests.conftest import FIXTURES, FixedClock
from tests.e2e.conftest import wait_for

MADRID = ZoneInfo("Europe/Madrid")
# Days well after the real date: APScheduler fires on the system clock, so these
# executors' jobs never fire by themselves; the test delivers each one to the runner.
MONDAY = date(2030, 1, 7)
DAYS = [MONDAY + timedelta(days=n) for n in range(4)]


def recurring() -> dict[str, Any]:
    return {
        "name": "daily",
        "attack": {"ref": "scripted:Scripted", "args": {"mode": "ok"}},
        "planner": {
            "ref": "recurring_planner:RecurringPlanner",
            "args": {
                "weekdays": ["mon", "tue", "wed", "thu", "fri"],
                "min_time": "11:00",
                "max_time": "16:00",
                "times": 2,
                "seed": 2030,
            },
        },
    }


def at(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), MADRID).astimezone(UTC)


@pytest.fixture
def local_settings(tmp_path: Path) -> Settings:
    return Settings(
        plans_table="unused-plans",
        executors_table="unused-executors",
        attack_folders=(FIXTURES / "test_attacks",),
        data_dir=tmp_path,
        store="sqlite",
    )


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(at(MONDAY, 10))


@pytest.fixture
def engines(aws: None) -> Iterator[list[Engine]]:
    """Engines the test builds; each one's scheduler stopped and store closed after."""
    built: list[Engine] = []
    yield built
    for engine in built:
        engine.scheduler.shutdown()
        engine.store.close()


def local_engine(settings: Settings, clock: FixedClock, engines: list[Engine]) -> Engine:
    # The expansion job every 20 ms: each clock move is seen at once.
    engine = build_local_engine(settings, clock, expand_every=timedelta(seconds=0.02))
    engines.append(engine)
    return engine


def executors_on(engine: Engine, plan_id: str, day: date) -> list[Executor]:
    page = engine.store.list_executors(ExecutorQuery(executed=None, plan_id=plan_id), 500, None)
    return [e for e in page.items if e.next_run_time.astimezone(MADRID).date() == day]


def expanded_through(engine: Engine, plan_id: str, day: date) -> bool:
    plan = engine.store.get_plan(plan_id)
    return plan is not None and plan.last_expanded == day


def check_day(engine: Engine, plan_id: str, day: date) -> list[Executor]:
    """The day's two executors: its occurrences' ids and names, inside 11:00-16:00 in
    Madrid (shown with +01:00, winter time), each with a job in the local scheduler."""
    found = executors_on(engine, plan_id, day)
    assert [e.id for e in found] == [occurrence_key(plan_id, day, i) for i in (0, 1)]
    assert [e.name for e in found] == [occurrence_name("daily", day, i) for i in (0, 1)]
    for executor in found:
        local = executor.next_run_time.astimezone(MADRID)
        assert time(11) <= local.time() < time(16)
        shown = to_api(executor.next_run_time, MADRID)
        assert isinstance(shown, str) and shown.endswith("+01:00")
        assert shown.startswith(day.isoformat())
    return found


def test_a_recurring_plan_across_three_days_in_local_mode(
    local_settings: Settings, clock: FixedClock, engines: list[Engine]
) -> None:
    engine = local_engine(local_settings, clock, engines)
    assert isinstance(engine.scheduler, LocalScheduler)
    plan = engine.plans.create(recurring())
    engine.scheduler.start()  # its first expansion runs at once: Tuesday
    wait_for(lambda: expanded_through(engine, plan.id, DAYS[1]), 10, "Tuesday's expansion")
    for today, tomorrow in pairwise(DAYS):
        if today != MONDAY:
            clock.current = at(today, 9)
            wait_for(partial(expanded_through, engine, plan.id, tomorrow), 10, "the job")
        ran = check_day(engine, plan.id, today)
        scheduled = check_day(engine, plan.id, tomorrow)
        assert {e.id for e in ran + scheduled} <= set(engine.scheduler.scheduled_ids())
        # The day's executors are delivered at their times and run.
        for executor in ran:
            clock.current = executor.next_run_time
            engine.runner.run(executor.id, executor.next_run_time)
        assert all(
            e.status is ExecutorStatus.SUCCEEDED for e in executors_on(engine, plan.id, today)
        )
        assert all(e.status is ExecutorStatus.SCHEDULED for e in scheduled)
    # Three days run, the fourth planned; nothing twice, however often the job ran.
    stored = engine.store.get_plan(plan.id)
    assert stored is not None
    assert stored.counts.of(ExecutorStatus.SUCCEEDED) == 6
    assert stored.counts.of(ExecutorStatus.SCHEDULED) == 2
    assert stored.next_expansion == datetime.combine(DAYS[3], time(0), MADRID)
    assert not stored.executed


def test_a_restart_after_a_downtime_catches_up_at_start(
    local_settings: Settings, clock: FixedClock, engines: list[Engine]
) -> None:
    first = local_engine(local_settings, clock, engines)
    plan = first.plans.create(recurring())
    first.scheduler.start()
    wait_for(lambda: expanded_through(first, plan.id, DAYS[1]), 10, "Tuesday's expansion")
    first.scheduler.shutdown()
    first.store.close()
    engines.remove(first)

    # Down from Monday to Thursday 13:00: Wednesday is missed, Thursday partly.
    thursday, friday = DAYS[3], DAYS[3] + timedelta(days=1)
    clock.current = at(thursday, 13)
    again = local_engine(local_settings, clock, engines)
    assert isinstance(again.scheduler, LocalScheduler)
    again.scheduler.start()
    wait_for(lambda: expanded_through(again, plan.id, friday), 10, "the catch-up at start")
    assert executors_on(again, plan.id, DAYS[2]) == []  # Wednesday: past, never expanded
    late = executors_on(again, plan.id, thursday)
    assert all(e.next_run_time > clock.now() for e in late)
    assert len(check_day(again, plan.id, friday)) == 2
    assert {e.id for e in late} <= {occurrence_key(plan.id, thursday, i) for i in (0, 1)}
    planned = late + executors_on(again, plan.id, friday)
    assert {e.id for e in planned} <= set(again.scheduler.scheduled_ids())
    stored = again.store.get_plan(plan.id)
    # Monday, Tuesday (overdue: the restart delivers them, and the runner ends them
    # missed), what was left of Thursday, and Friday: nothing twice.
    assert stored is not None and stored.counts.total == 2 + 2 + len(late) + 2
