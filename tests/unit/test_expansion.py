"""The daily expansion of recurring plans (chalicelib/services/recurrence.py) and pause /
resume (PlanService.update), on local mode's SQLite store with a fixed clock and a
recording scheduler: once per day however often, late or concurrently it runs, never in
the past, through both of Madrid's 2026 clock changes."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from chalicelib.bootstrap import Engine
from chalicelib.domain.errors import InvalidPayload, PlanNotFound, SchedulingError
from chalicelib.domain.model import Executor, ExecutorStatus, Plan
from chalicelib.domain.ports import ExecutorQuery
from chalicelib.domain.recurrence import occurrence_key, occurrence_name
from chalicelib.services.recurrence import ExpansionService
from tests.conftest import FixedClock, RecordingScheduler

MADRID = ZoneInfo("Europe/Madrid")
SCRIPTED = "scripted:Scripted"
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
# The unit conftest's clock: Tuesday 2026-12-01 09:00 UTC, 10:00 in Madrid.
TODAY = date(2026, 12, 1)


def recurring(times: int = 2, **args: Any) -> dict[str, Any]:
    return {
        "name": "daily",
        "attack": {"ref": SCRIPTED, "args": {"mode": "ok"}},
        "planner": {
            "ref": "recurring_planner:RecurringPlanner",
            "args": {
                "weekdays": EVERY_DAY,
                "min_time": "11:00",
                "max_time": "16:00",
                "times": times,
                "seed": 7,
                **args,
            },
        },
    }


def one_shot() -> dict[str, Any]:
    return {
        "name": "once",
        "attack": {"ref": SCRIPTED, "args": {"mode": "ok"}},
        "planner": {
            "ref": "simple_planner:SimplePlanner",
            "args": {"min_time": "11:00", "max_time": "12:00", "times": 3},
        },
    }


def executors_of(engine: Engine, plan_id: str, **query: Any) -> list[Executor]:
    page = engine.store.list_executors(
        ExecutorQuery(executed=query.pop("executed", None), plan_id=plan_id, **query), 500, None
    )
    return page.items


def plan_of(engine: Engine, plan_id: str) -> Plan:
    plan = engine.store.get_plan(plan_id)
    assert plan is not None
    return plan


def by_day(executors: list[Executor]) -> dict[date, list[Executor]]:
    days: dict[date, list[Executor]] = {}
    for executor in executors:
        days.setdefault(executor.next_run_time.astimezone(MADRID).date(), []).append(executor)
    return days


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=MADRID)


def at_madrid(clock: FixedClock, day: date, hour: int, minute: int = 0) -> None:
    clock.current = datetime(day.year, day.month, day.day, hour, minute, tzinfo=MADRID)


class Proxy:
    """The engine's store, with one method replaced by the test."""

    def __init__(self, store: Any, **overrides: Callable[..., Any]) -> None:
        self._store = store
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        return self._overrides.get(name) or getattr(self._store, name)


def expansion_on(engine: Engine, store: Any, scheduler: Any = None) -> ExpansionService:
    return ExpansionService(
        store=store,
        scheduler=scheduler or engine.scheduler,
        planners=engine.planners,
        clock=engine.expansion.clock,
        timezone=MADRID,
    )


# -- creation ----------------------------------------------------------------------------


def test_creation_stores_the_seed_plans_today_and_is_due_for_tomorrow(
    engine: Engine, scheduler: RecordingScheduler
) -> None:
    payload = recurring(times=3)
    del payload["planner"]["args"]["seed"]
    plan = engine.plans.create(payload)
    stored = plan_of(engine, plan.id)
    seed = stored.planner["args"]["seed"]
    assert isinstance(seed, int)
    assert stored.planner["args"] == {**payload["planner"]["args"], "seed": seed}
    assert stored.last_expanded is None and not stored.paused
    # Tomorrow is due from today's 00:00: the job's next run expands it.
    assert stored.next_expansion == midnight(TODAY)
    today = executors_of(engine, plan.id)
    assert len(today) == 3
    instants = engine.planners.resolve(payload["planner"]["ref"]).expand(  # type: ignore[attr-defined]
        stored.planner["args"], TODAY, MADRID
    )
    assert [e.id for e in today] == [occurrence_key(plan.id, TODAY, i) for i in range(3)]
    assert [e.next_run_time for e in today] == instants
    assert [e.name for e in today] == [occurrence_name("daily", TODAY, i) for i in range(3)]
    assert set(scheduler.scheduled) == {e.id for e in today}
    assert not stored.executed  # an active recurring plan is never executed


def test_created_after_todays_window_it_has_no_executor_yet_and_is_not_refused(
    engine: Engine, clock: FixedClock
) -> None:
    at_madrid(clock, TODAY, 17)
    plan = engine.plans.create(recurring())
    assert executors_of(engine, plan.id) == []
    assert plan_of(engine, plan.id).next_expansion == midnight(TODAY)
    assert engine.expansion.expand_due() == 2
    assert set(by_day(executors_of(engine, plan.id))) == {TODAY + timedelta(days=1)}


def test_the_preview_shows_the_seed_and_the_next_expansion(engine: Engine) -> None:
    draft = engine.plans.draft(recurring())
    assert draft.plan.planner["args"]["seed"] == 7
    assert draft.plan.next_expansion == midnight(TODAY)


# -- once per day ------------------------------------------------------------------------


def test_expansion_run_twice_gives_one_set_of_executors(
    engine: Engine, clock: FixedClock, scheduler: RecordingScheduler
) -> None:
    plan = engine.plans.create(recurring())
    tomorrow = TODAY + timedelta(days=1)
    assert engine.expansion.expand_due() == 2
    assert engine.expansion.expand_due() == 0
    assert engine.expansion.expand_plan(plan.id) == 0
    days = by_day(executors_of(engine, plan.id))
    assert {day: len(found) for day, found in days.items()} == {TODAY: 2, tomorrow: 2}
    assert [e.id for e in days[tomorrow]] == [occurrence_key(plan.id, tomorrow, i) for i in (0, 1)]
    assert set(scheduler.scheduled) == {e.id for found in days.values() for e in found}
    stored = plan_of(engine, plan.id)
    assert stored.last_expanded == tomorrow
    assert stored.next_expansion == midnight(tomorrow)
    assert stored.counts.pending == 4
    # The next day: the day after tomorrow, once.
    clock.advance(days=1)
    assert engine.expansion.expand_due() == 2
    assert engine.expansion.expand_due() == 0
    assert len(executors_of(engine, plan.id)) == 6


def test_two_concurrent_expansions_give_one_set(
    engine: Engine, scheduler: RecordingScheduler
) -> None:
    plan = engine.plans.create(recurring(times=4))
    # Both runs read the due plan before either writes anything.
    barrier = threading.Barrier(2, timeout=10)
    reads = iter(range(2))

    def get_plan(plan_id: str) -> Plan | None:
        found = engine.store.get_plan(plan_id)
        if next(reads, None) is not None:  # the first read of each run
            barrier.wait()
        return found

    store = Proxy(engine.store, get_plan=get_plan)
    runs = [expansion_on(engine, store) for _ in range(2)]
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda r=run: results.append(r.expand_due())) for run in runs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) in ([0, 4], [1, 3], [2, 2])  # the four added once between them
    tomorrow = TODAY + timedelta(days=1)
    found = by_day(executors_of(engine, plan.id))[tomorrow]
    assert sorted(e.id for e in found) == sorted(
        occurrence_key(plan.id, tomorrow, i) for i in range(4)
    )
    assert {e.id for e in found} <= set(scheduler.scheduled)
    assert plan_of(engine, plan.id).last_expanded == tomorrow
    assert plan_of(engine, plan.id).counts.pending == 8


def test_a_run_that_died_before_scheduling_is_healed_by_the_next(
    engine: Engine, scheduler: RecordingScheduler
) -> None:
    plan = engine.plans.create(recurring())

    class Dying(RecordingScheduler):
        def create(self, executors: object, deadline: object = None) -> None:
            raise SchedulingError("the process died", created=[])

    assert expansion_on(engine, engine.store, Dying({})).expand_due() == 0
    tomorrow = TODAY + timedelta(days=1)
    stored = by_day(executors_of(engine, plan.id))[tomorrow]
    assert len(stored) == 2 and not {e.id for e in stored} & set(scheduler.scheduled)
    assert plan_of(engine, plan.id).last_expanded is None  # still due
    # The next run adds nothing and creates the missing schedules.
    assert engine.expansion.expand_due() == 0
    assert {e.id for e in stored} <= set(scheduler.scheduled)
    assert len(executors_of(engine, plan.id)) == 4
    assert plan_of(engine, plan.id).last_expanded == tomorrow


def test_a_run_that_died_before_its_commit_adds_nothing_the_second_time(
    engine: Engine, scheduler: RecordingScheduler
) -> None:
    plan = engine.plans.create(recurring())

    def died(*args: object) -> bool:
        raise RuntimeError("killed")

    assert expansion_on(engine, Proxy(engine.store, set_expansion=died)).expand_due() == 0
    assert len(executors_of(engine, plan.id)) == 4
    assert engine.expansion.expand_due() == 0  # the day again: already stored
    assert len(executors_of(engine, plan.id)) == 4
    assert plan_of(engine, plan.id).last_expanded == TODAY + timedelta(days=1)


def test_after_three_days_down_it_catches_up_without_duplicates_or_past_executors(
    engine: Engine, clock: FixedClock, scheduler: RecordingScheduler
) -> None:
    plan = engine.plans.create(recurring(times=3, min_time="08:00", max_time="20:00"))
    assert engine.expansion.expand_due() == 3  # tomorrow, December 2
    clock.advance(days=3, hours=4)  # down until Friday December 4, 14:00 Madrid
    now = clock.now()
    added = engine.expansion.expand_due()
    assert engine.expansion.expand_due() == 0
    days = by_day(executors_of(engine, plan.id))
    friday, saturday = date(2026, 12, 4), date(2026, 12, 5)
    # December 3 was missed while down: never expanded (it is past).
    assert sorted(days) == [TODAY, TODAY + timedelta(days=1), friday, saturday]
    assert len(days[saturday]) == 3
    assert 0 < len(days[friday]) < 3  # only what is left of Friday's window
    assert added == len(days[friday]) + 3
    new = days[friday] + days[saturday]
    assert all(e.next_run_time > now + scheduler.min_lead_time for e in new)
    instants = engine.planners.resolve("recurring_planner:RecurringPlanner").expand(  # type: ignore[attr-defined]
        plan_of(engine, plan.id).planner["args"], friday, MADRID
    )
    kept = [i for i, moment in enumerate(instants) if moment > now + scheduler.min_lead_time]
    assert [e.id for e in days[friday]] == [occurrence_key(plan.id, friday, i) for i in kept]
    assert len({e.id for found in days.values() for e in found}) == sum(map(len, days.values()))
    assert plan_of(engine, plan.id).last_expanded == saturday


def test_nothing_after_the_end_date_and_then_no_expansion(
    engine: Engine, clock: FixedClock
) -> None:
    end = TODAY + timedelta(days=1)
    plan = engine.plans.create(recurring(end_date=end.isoformat()))
    assert engine.expansion.expand_due() == 2
    stored = plan_of(engine, plan.id)
    assert stored.last_expanded == end and stored.next_expansion is None
    clock.advance(days=3)
    assert engine.expansion.expand_due() == 0
    assert set(by_day(executors_of(engine, plan.id))) == {TODAY, end}


def test_one_bad_plan_is_logged_and_passed_over(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    bad = engine.plans.create(recurring())
    good = engine.plans.create({**recurring(), "name": "good"})

    def get_plan(plan_id: str) -> Plan | None:
        if plan_id == bad.id:
            raise RuntimeError("unreadable item")
        return engine.store.get_plan(plan_id)

    with caplog.at_level(logging.ERROR, "chalicelib.services.recurrence"):
        assert expansion_on(engine, Proxy(engine.store, get_plan=get_plan)).expand_due() == 2
    assert [r.getMessage() for r in caplog.records] == ["could not expand a recurring plan"]
    assert caplog.records[0].plan_id == bad.id  # type: ignore[attr-defined]
    assert plan_of(engine, good.id).last_expanded == TODAY + timedelta(days=1)
    assert plan_of(engine, bad.id).last_expanded is None  # still due: the next run tries
    assert engine.expansion.expand_due() == 2


# -- daylight saving time ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "offsets"),
    [
        # 02:00 CET -> 03:00 CEST: no instant in the skipped hour.
        (date(2026, 3, 29), {"+01:00", "+02:00"}),
        # 03:00 CEST -> 02:00 CET: the repeated hour is taken once, at its first pass.
        (date(2026, 10, 25), {"+02:00", "+01:00"}),
    ],
)
def test_days_across_madrids_clock_changes_through_the_engine(
    engine: Engine, clock: FixedClock, change: date, offsets: set[str]
) -> None:
    from chalicelib.domain.times import to_api

    first = change - timedelta(days=2)
    at_madrid(clock, first, 12)
    plan = engine.plans.create(recurring(times=6, min_time="00:30", max_time="04:30"))
    seen: dict[date, list[Executor]] = {}
    for _ in range(4):  # each day's job run expands the next day
        engine.expansion.expand_due()
        clock.advance(days=1)
        seen = by_day(executors_of(engine, plan.id))
    assert sorted(seen) == [first + timedelta(days=n) for n in range(1, 5)]
    on_change = seen[change]
    assert len(on_change) == 6
    utc = [e.next_run_time.astimezone(UTC) for e in on_change]
    assert utc == sorted(utc) and len(set(utc)) == 6
    shown = [to_api(e.next_run_time, MADRID) for e in on_change]
    assert {str(text)[-6:] for text in shown} == offsets
    walls = [e.next_run_time.astimezone(MADRID) for e in on_change]
    assert all(w.fold == 0 for w in walls)
    if change.month == 3:
        assert not any(w.hour == 2 for w in walls)  # the hour that does not exist
    else:
        # Wall times of the repeated hour are at its first pass, in summer time.
        assert all(w.utcoffset() == timedelta(hours=2) for w in walls if w.hour == 2)
    # Every other day is an ordinary one, with six executors too.
    assert all(len(found) == 6 for found in seen.values())


# -- pause and resume --------------------------------------------------------------------


def test_pause_removes_the_pending_schedules_and_stops_the_expansion(
    engine: Engine, clock: FixedClock, scheduler: RecordingScheduler
) -> None:
    plan = engine.plans.create(recurring())
    engine.expansion.expand_due()
    assert len(scheduler.scheduled) == 4
    view = engine.plans.update(plan.id, {"paused": True})
    assert view.plan.paused and view.plan.next_expansion is None
    assert scheduler.scheduled == {}
    assert executors_of(engine, plan.id) == []
    assert view.plan.counts.pending == 0
    assert engine.expansion.expand_due() == 0
    clock.advance(days=2)
    assert engine.expansion.expand_due() == 0
    assert executors_of(engine, plan.id) == [] and scheduler.scheduled == {}
    # Pausing a paused plan changes nothing.
    assert engine.plans.update(plan.id, {"paused": True}).plan.paused


def test_resume_plans_again_from_now_keeping_what_ran(
    engine: Engine, clock: FixedClock, scheduler: RecordingScheduler
) -> None:
    plan = engine.plans.create(recurring(times=3, min_time="10:30", max_time="16:00"))
    engine.expansion.expand_due()
    first = executors_of(engine, plan.id)[0]
    clock.current = first.next_run_time
    ran = engine.runner.run(first.id, first.next_run_time)
    assert ran is not None and ran.status is ExecutorStatus.SUCCEEDED
    scheduler.scheduled.pop(first.id)  # its schedule fired (and deleted itself)
    engine.plans.update(plan.id, {"paused": True})
    assert [e.id for e in executors_of(engine, plan.id)] == [first.id]
    clock.advance(minutes=1)
    now = clock.now()
    view = engine.plans.update(plan.id, {"paused": False})
    assert not view.plan.paused
    tomorrow = TODAY + timedelta(days=1)
    days = by_day(executors_of(engine, plan.id))
    # Today: the one that ran, and the occurrences still ahead (the same ids as before).
    assert days[TODAY][0].id == first.id and days[TODAY][0].executed
    ahead = [e for e in days[TODAY][1:]]
    assert ahead and all(e.next_run_time > now for e in ahead)
    assert [e.id for e in ahead] == [
        occurrence_key(plan.id, TODAY, i) for i in range(3 - len(ahead), 3)
    ]
    assert len(days[tomorrow]) == 3
    assert set(scheduler.scheduled) == {e.id for e in ahead + days[tomorrow]}
    assert view.plan.last_expanded == tomorrow
    assert view.plan.next_expansion == midnight(tomorrow)
    # Resuming an active plan changes nothing; the job adds nothing either.
    assert engine.plans.update(plan.id, {"paused": False}).plan.counts.pending == len(ahead) + 3
    assert engine.expansion.expand_due() == 0


def test_a_pause_during_an_expansion_leaves_nothing_of_it(
    engine: Engine, scheduler: RecordingScheduler
) -> None:
    plan = engine.plans.create(recurring())

    def set_expansion(*args: Any) -> bool:
        engine.plans.update(plan.id, {"paused": True})  # the pause lands meanwhile
        return bool(engine.store.set_expansion(*args))

    run = expansion_on(engine, Proxy(engine.store, set_expansion=set_expansion))
    assert run.expand_due() == 0
    assert executors_of(engine, plan.id) == []
    assert scheduler.scheduled == {}
    assert plan_of(engine, plan.id).paused


def test_a_one_shot_plan_pauses_and_resumes_with_its_planner_run_again(
    engine: Engine, clock: FixedClock, scheduler: RecordingScheduler
) -> None:
    plan = engine.plans.create(one_shot())
    before = {e.id for e in executors_of(engine, plan.id)}
    assert len(before) == 3
    engine.plans.update(plan.id, {"paused": True})
    assert executors_of(engine, plan.id) == [] and scheduler.scheduled == {}
    view = engine.plans.update(plan.id, {"paused": False})
    again = executors_of(engine, plan.id)
    assert len(again) == 3 and not {e.id for e in again} & before
    assert all(e.next_run_time > clock.now() for e in again)
    assert set(scheduler.scheduled) == {e.id for e in again}
    assert view.plan.next_expansion is None and not view.plan.paused
    # Paused, then resumed after its window: nothing is left to plan.
    engine.plans.update(plan.id, {"paused": True})
    at_madrid(clock, TODAY, 13)
    view = engine.plans.update(plan.id, {"paused": False})
    assert executors_of(engine, plan.id) == [] and not view.plan.paused


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"paused": "yes"}, "invalid payload plan.paused: 'yes' is not of type 'boolean'"),
        ({}, "invalid payload plan: 'paused' is a required property"),
        (
            {"paused": True, "name": "x"},
            "invalid payload plan: Additional properties are not allowed ('name' was unexpected)",
        ),
        ([], "invalid payload plan: [] is not of type 'object'"),
    ],
)
def test_a_bad_update_is_refused_naming_the_field(engine: Engine, body: Any, message: str) -> None:
    plan = engine.plans.create(recurring())
    with pytest.raises(InvalidPayload) as refused:
        engine.plans.update(plan.id, body)
    assert refused.value.message == message
    assert not plan_of(engine, plan.id).paused


def test_an_unknown_plan_cannot_be_paused(engine: Engine) -> None:
    with pytest.raises(PlanNotFound):
        engine.plans.update("nope", {"paused": True})


def test_a_running_executor_is_left_to_finish_by_a_pause(
    engine: Engine, clock: FixedClock, scheduler: RecordingScheduler
) -> None:
    plan = engine.plans.create(recurring(times=3, min_time="10:30"))
    first, *others = executors_of(engine, plan.id)
    clock.current = first.next_run_time
    assert engine.store.transition(first, ExecutorStatus.RUNNING, {"started_at": clock.now()})
    view = engine.plans.update(plan.id, {"paused": True})
    assert [e.id for e in executors_of(engine, plan.id)] == [first.id]
    assert view.plan.counts.of(ExecutorStatus.RUNNING) == 1
    assert view.plan.counts.of(ExecutorStatus.SCHEDULED) == 0
    assert not {e.id for e in others} & set(scheduler.scheduled)
    # It ends as it would have; the paused plan adds nothing after it.
    running = engine.store.get_executor(first.id)
    assert running is not None
    assert engine.store.transition(running, ExecutorStatus.SUCCEEDED, {"finished_at": clock.now()})
    assert engine.expansion.expand_due() == 0
    assert plan_of(engine, plan.id).counts.of(ExecutorStatus.SUCCEEDED) == 1


def test_the_local_scheduler_creates_an_existing_schedule_as_success() -> None:
    from chalicelib.adapters.local_scheduler import LocalScheduler

    scheduler = LocalScheduler(lambda executor_id, run_at: None, MADRID)
    executor = Executor(
        id="e" * 32,
        plan_id="p" * 32,
        name="twice",
        next_run_time=datetime(2030, 1, 7, 12, 0, tzinfo=MADRID),
        attack={"ref": SCRIPTED, "args": {"mode": "ok"}},
    )
    scheduler.create([executor])
    scheduler.create([executor])  # a second expansion run scheduling the same occurrence
    assert scheduler.scheduled_ids() == [executor.id]
    scheduler.start()
    try:
        assert scheduler.scheduled_ids() == [executor.id]
        scheduler.create([executor])
        assert scheduler.scheduled_ids() == [executor.id]
    finally:
        scheduler.shutdown()


def test_a_resume_whose_schedules_fail_is_undone_and_the_plan_stays_paused(
    engine: Engine, scheduler: RecordingScheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resuming a one-shot plan stores its new executors, then schedules them; when the
    scheduler creates one and fails, the executors added and the schedule created are
    removed and the plan is paused again: no executor without a schedule is left."""
    plan = engine.plans.create(one_shot())
    engine.plans.update(plan.id, {"paused": True})
    assert executors_of(engine, plan.id) == [] and scheduler.scheduled == {}

    def create_one_then_fail(executors: Any, deadline: object = None) -> None:
        first, *_ = executors
        scheduler.scheduled[first.id] = first.next_run_time
        raise SchedulingError("throttled", created=[first.id])

    monkeypatch.setattr(scheduler, "create", create_one_then_fail)
    with pytest.raises(SchedulingError):
        engine.plans.update(plan.id, {"paused": False})

    assert executors_of(engine, plan.id) == []
    assert scheduler.scheduled == {}
    assert plan_of(engine, plan.id).paused
