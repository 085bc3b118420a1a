"""The runner's rules at their edges: its second, stale deliveries, lateness, the reaper."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.bootstrap import Engine
from chalicelib.domain.errors import OrphanExecutor
from chalicelib.domain.model import Executor, ExecutorStatus
from chalicelib.domain.safety import Halt
from chalicelib.services.execution import ABANDONED_AFTER, MAX_RESULT_BYTES, _storable
from tests.conftest import FixedClock, RecordingScheduler

SCRIPTED = "scripted:Scripted"


def one_executor(engine: Engine, date: str = "2026-12-01T12:00:00+00:00", **plan: Any) -> Executor:
    created = engine.plans.create(
        {
            "name": "one",
            "attack": {"ref": SCRIPTED, "args": {"mode": "ok"}},
            "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": date}},
            **plan,
        }
    )
    (executor,) = engine.plans.get(created.id).executors.items
    return executor


def stored(engine: Engine, executor_id: str) -> Executor:
    executor = engine.store.get_executor(executor_id)
    assert executor is not None
    return executor


def test_an_executor_is_delivered_at_any_moment_of_the_minute_before_and_starts_on_its_second(
    engine: Engine, clock: FixedClock, runs: list[dict[str, Any]]
) -> None:
    executor = one_executor(engine, "2026-12-01T12:00:45+00:00")
    # EventBridge Scheduler fires anywhere in the at() minute ("60 second precision",
    # https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html); the
    # engine schedules the minute before the executor's, so this is a normal delivery.
    clock.current = executor.next_run_time - timedelta(seconds=104, microseconds=300)
    engine.runner.run(executor.id, executor.next_run_time)
    done = stored(engine, executor.id)
    assert done.status is ExecutorStatus.SUCCEEDED
    assert done.started_at == executor.next_run_time
    assert len(runs) == 1


def test_a_delivery_for_an_old_time_does_not_run_the_moved_executor(
    engine: Engine, clock: FixedClock, runs: list[dict[str, Any]]
) -> None:
    executor = one_executor(engine, "2026-12-01T12:00:00+00:00")
    old_time = executor.next_run_time
    engine.executors.reschedule(
        executor.id, {"type": "date", "args": {"date": "2026-12-01T12:01:00+00:00"}}
    )
    # The old schedule's delivery comes in the new time's window all the same.
    clock.current = old_time + timedelta(seconds=30)
    engine.runner.run(executor.id, old_time)
    assert stored(engine, executor.id).status is ExecutorStatus.SCHEDULED
    assert runs == []
    engine.runner.run(executor.id, old_time + timedelta(minutes=1))
    assert stored(engine, executor.id).status is ExecutorStatus.SUCCEEDED


def test_a_claim_made_with_the_time_read_before_a_move_fails(
    engine: Engine, clock: FixedClock, runs: list[dict[str, Any]]
) -> None:
    """The runner read the executor, then a PUT moved it: the claim must not win."""
    executor = one_executor(engine, "2026-12-01T12:00:00+00:00")
    engine.store.move_executor(executor.id, executor.next_run_time + timedelta(hours=1))
    clock.current = executor.next_run_time
    assert not engine.store.transition(
        executor, ExecutorStatus.RUNNING, {"started_at": clock.now()}
    )
    assert stored(engine, executor.id).status is ExecutorStatus.SCHEDULED


@pytest.mark.parametrize(
    ("late_by", "status"),
    [(timedelta(0), ExecutorStatus.SUCCEEDED), (timedelta(microseconds=1), ExecutorStatus.MISSED)],
)
def test_the_lateness_boundary_is_exact(
    engine: Engine,
    clock: FixedClock,
    runs: list[dict[str, Any]],
    late_by: timedelta,
    status: ExecutorStatus,
) -> None:
    executor = one_executor(engine)
    clock.current = executor.next_run_time + engine.settings.allowed_lateness + late_by
    engine.runner.run(executor.id)
    done = stored(engine, executor.id)
    assert done.status is status
    assert len(runs) == (1 if status is ExecutorStatus.SUCCEEDED else 0)
    if status is ExecutorStatus.MISSED:
        assert done.reason == "delivered 600 s late; the allowed lateness is 600 s"


def test_a_large_result_is_stored_truncated() -> None:
    big = {"lines": ["x" * 1000] * 100}
    kept = _storable(big)
    assert kept["truncated"] is True
    assert len(kept["text"]) == MAX_RESULT_BYTES
    assert _storable({"small": 1}) == {"small": 1}


def test_a_large_result_reaches_the_store_truncated(
    engine: Engine, clock: FixedClock, runs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    attack = engine.attacks.resolve(SCRIPTED)
    monkeypatch.setattr(attack, "run", lambda self: {"output": "y" * (MAX_RESULT_BYTES * 2)})
    executor = one_executor(engine)
    clock.current = executor.next_run_time
    engine.runner.run(executor.id)
    done = stored(engine, executor.id)
    assert done.status is ExecutorStatus.SUCCEEDED
    assert done.result["truncated"] is True
    assert len(done.result["text"]) == MAX_RESULT_BYTES


def test_a_dry_run_of_an_attack_that_reports_ends_skipped_with_its_report(
    engine: Engine, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attack that supports dry run and returns normally is still recorded skipped."""
    attack = engine.attacks.resolve("scripted:Leashed")
    monkeypatch.setattr(attack, "run", lambda self: {"would_hit": "db-1"})
    created = engine.plans.create(
        {
            "name": "dry",
            "dry_run": True,
            "attack": {"ref": "scripted:Leashed", "args": {"mode": "ok"}},
            "planner": {
                "ref": "exact_planner:ExactPlanner",
                "args": {"date": "2026-12-01T12:00:00+00:00"},
            },
        }
    )
    (executor,) = engine.plans.get(created.id).executors.items
    clock.current = executor.next_run_time
    engine.runner.run(executor.id)
    done = stored(engine, executor.id)
    assert done.status is ExecutorStatus.SKIPPED
    assert done.reason == "dry run: scripted:Leashed reported what it would do"
    assert done.result == {"would_hit": "db-1"}


def test_the_reaper_removes_an_orphan_and_goes_on_with_the_rest(
    engine: Engine,
    clock: FixedClock,
    scheduler: RecordingScheduler,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    orphan = one_executor(engine, "2026-12-01T12:00:00+00:00")
    other = one_executor(engine, "2026-12-01T12:00:01+00:00")
    real_transition = engine.store.transition

    def transition(executor: Executor, target: ExecutorStatus, changes: dict[str, Any]) -> bool:
        if executor.id == orphan.id:
            raise OrphanExecutor(executor.id, executor.plan_id)
        return real_transition(executor, target, changes)

    monkeypatch.setattr(engine.store, "transition", transition)
    clock.advance(hours=5)
    assert engine.runner.reap_lost() == 2
    assert engine.store.get_executor(orphan.id) is None
    assert orphan.id not in scheduler.scheduled
    assert stored(engine, other.id).status is ExecutorStatus.MISSED


def test_the_reaper_passes_over_a_record_it_cannot_read(
    engine: Engine,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    corrupt = one_executor(engine, "2026-12-01T12:00:00+00:00")
    other = one_executor(engine, "2026-12-01T12:00:01+00:00")
    real_get = engine.store.get_executor

    def get_executor(executor_id: str) -> Executor | None:
        if executor_id == corrupt.id:
            raise ValueError("'banana' is not a valid ExecutorStatus")
        return real_get(executor_id)

    monkeypatch.setattr(engine.store, "get_executor", get_executor)
    clock.advance(hours=5)
    with caplog.at_level(logging.ERROR):
        assert engine.runner.reap_lost() == 1
    assert stored(engine, other.id).status is ExecutorStatus.MISSED
    assert any(record.__dict__.get("executor_id") == corrupt.id for record in caplog.records), (
        "the bad record is logged by its id"
    )


def test_the_reaper_removes_a_plan_whose_creation_died_with_its_schedules(
    engine: Engine, clock: FixedClock, scheduler: RecordingScheduler
) -> None:
    from chalicelib.domain.model import Plan

    plan = Plan(
        id="a" * 32,
        name="died half way",
        created=clock.now(),
        planner={"ref": "exact_planner:ExactPlanner", "args": {}},
        attack={"ref": SCRIPTED, "args": {"mode": "ok"}},
        committed=False,
    )
    executor = Executor(
        id="b" * 32,
        plan_id=plan.id,
        name="died half way",
        next_run_time=clock.now() + timedelta(hours=1),
        attack=plan.attack,
    )
    engine.store.add_plan(plan, [executor])
    scheduler.create([executor])
    clock.current = executor.next_run_time
    assert not engine.store.transition(
        executor, ExecutorStatus.RUNNING, {"started_at": clock.now()}
    )

    clock.current = plan.created + ABANDONED_AFTER - timedelta(seconds=1)
    engine.runner.reap_lost()
    assert engine.store.get_plan(plan.id) is not None, "a creation may still be under way"

    clock.current = plan.created + ABANDONED_AFTER + timedelta(seconds=1)
    engine.runner.reap_lost()
    assert engine.store.get_plan(plan.id) is None
    assert engine.store.get_executor(executor.id) is None
    assert executor.id not in scheduler.scheduled


def test_a_delivery_of_an_executor_whose_plan_is_gone_runs_nothing_and_the_reaper_removes_it(
    engine: Engine,
    clock: FixedClock,
    runs: list[dict[str, Any]],
    scheduler: RecordingScheduler,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    executor = one_executor(engine)
    # The plan item is gone (a delete cut short): nothing about the executor can be
    # recorded, and the attack function may not delete; the reaper removes it.

    def transition(executor: Executor, target: ExecutorStatus, changes: dict[str, Any]) -> bool:
        raise OrphanExecutor(executor.id, executor.plan_id)

    monkeypatch.setattr(engine.store, "get_plan", lambda plan_id: None)
    monkeypatch.setattr(engine.store, "transition", transition)
    clock.current = executor.next_run_time
    returned = engine.runner.run(executor.id)
    assert returned is not None and returned.status is ExecutorStatus.SCHEDULED
    assert stored(engine, executor.id).status is ExecutorStatus.SCHEDULED
    assert runs == []

    clock.advance(hours=1)
    assert engine.runner.reap_lost() == 1
    assert engine.store.get_executor(executor.id) is None
    assert executor.id not in scheduler.scheduled


def test_a_delivery_for_a_plan_still_being_created_records_nothing(
    engine: Engine, clock: FixedClock, runs: list[dict[str, Any]]
) -> None:
    from chalicelib.domain.model import Plan

    plan = Plan(
        id="c" * 32,
        name="being created",
        created=clock.now(),
        planner={"ref": "exact_planner:ExactPlanner", "args": {}},
        attack={"ref": SCRIPTED, "args": {"mode": "ok"}},
        committed=False,
    )
    executor = Executor(
        id="d" * 32,
        plan_id=plan.id,
        name="being created",
        next_run_time=clock.now() + timedelta(minutes=1),
        attack=plan.attack,
    )
    engine.store.add_plan(plan, [executor])
    engine.store.set_halt(Halt(True, "a halt skips only executors that can be claimed"))
    clock.current = executor.next_run_time
    engine.runner.run(executor.id)
    assert stored(engine, executor.id).status is ExecutorStatus.SCHEDULED
    assert runs == []
