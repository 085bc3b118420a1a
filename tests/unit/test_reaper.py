"""The reaper: executors whose attack's process died stay running until their lease ends."""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib.bootstrap import Engine
from chalicelib.domain.model import Executor, ExecutorStatus
from chalicelib.domain.ports import PlanQuery
from chalicelib.settings import Settings
from tests.conftest import FIXTURES, FixedClock

SCRIPTED = "scripted:Scripted"


@pytest.fixture
def settings() -> Settings:
    return Settings(
        plans_table="test-plans",
        executors_table="test-executors",
        attack_folders=(FIXTURES / "test_attacks",),
        max_run_time=timedelta(minutes=15),
    )


@pytest.fixture
def scripted(engine: Engine) -> Iterator[Any]:
    module = sys.modules[engine.attacks.resolve(SCRIPTED).__module__]
    module.RUNS.clear()
    module.GATE.clear()
    yield module
    module.GATE.set()


def planned(engine: Engine, mode: str = "ok", times: int = 1) -> list[Executor]:
    plan = engine.plans.create(
        {
            "name": f"scripted {mode}",
            "attack": {"ref": SCRIPTED, "args": {"mode": mode}},
            "planner": {
                "ref": "simple_planner:SimplePlanner",
                "args": {"min_time": "11:00", "max_time": "12:00", "times": times},
            },
        }
    )
    return list(engine.plans.get(plan.id).executors.items)


def exact(engine: Engine, date: str) -> Executor:
    """A plan with one executor at ``date``; returns the executor."""
    plan = engine.plans.create(
        {
            "name": f"at {date}",
            "attack": {"ref": SCRIPTED, "args": {"mode": "ok"}},
            "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": date}},
        }
    )
    (executor,) = engine.plans.get(plan.id).executors.items
    return executor


def died_running(engine: Engine, clock: FixedClock, executor: Executor) -> datetime:
    """Claim the executor as the runner does, then never finish it (the Lambda died)."""
    clock.current = executor.next_run_time
    assert engine.store.transition(executor, ExecutorStatus.RUNNING, {"started_at": clock.now()})
    return clock.now()


def stored(engine: Engine, executor_id: str) -> Executor:
    executor = engine.store.get_executor(executor_id)
    assert executor is not None
    return executor


def test_a_running_executor_past_its_lease_is_failed_as_lost_and_its_plan_is_executed(
    engine: Engine, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    (executor,) = planned(engine)
    started = died_running(engine, clock, executor)
    clock.advance(minutes=15, seconds=1)

    assert engine.runner.reap_lost() == 1

    lost = stored(engine, executor.id)
    assert lost.status is ExecutorStatus.FAILED
    assert lost.error == (
        "lost: still running 901 s after it started (the attack's process died or timed "
        "out); its outcome is unknown"
    )
    assert lost.started_at == started
    assert lost.finished_at == clock.now()
    plan = engine.store.get_plan(executor.plan_id)
    assert plan is not None
    assert plan.executed
    assert plan.counts.as_dict() == {
        "scheduled": 0,
        "running": 0,
        "succeeded": 0,
        "failed": 1,
        "skipped": 0,
        "missed": 0,
    }
    assert [p.id for p in engine.plans.list(PlanQuery(pending=True)).items] == []
    (record,) = [r for r in caplog.records if r.getMessage().startswith("executor failed: lost")]
    assert record.executor_id == executor.id  # type: ignore[attr-defined]
    assert record.plan_id == executor.plan_id  # type: ignore[attr-defined]
    assert engine.runner.reap_lost() == 0  # already ended: nothing left to reap


def test_a_running_executor_within_its_lease_is_untouched(
    engine: Engine, clock: FixedClock
) -> None:
    (executor,) = planned(engine)
    died_running(engine, clock, executor)
    clock.advance(minutes=15)  # exactly the lease: not yet lost

    assert engine.runner.reap_lost() == 0
    assert stored(engine, executor.id).status is ExecutorStatus.RUNNING
    plan = engine.store.get_plan(executor.plan_id)
    assert plan is not None and not plan.executed


def test_finished_executors_are_untouched_and_never_delivered_ones_end_missed(
    engine: Engine, clock: FixedClock, scripted: Any
) -> None:
    finished, overdue, future = planned(engine, times=3)
    assert engine.runner.reap_lost() == 0  # nothing due yet

    clock.current = finished.next_run_time
    engine.runner.run(finished.id)
    # Within the allowed lateness and its margin a delivery may still come: untouched.
    margin = engine.settings.allowed_lateness + timedelta(minutes=1)
    clock.current = overdue.next_run_time + margin - timedelta(seconds=1)
    assert engine.runner.reap_lost() == 0
    assert stored(engine, overdue.id).status is ExecutorStatus.SCHEDULED

    # Hours after all of them: the two never delivered will never run; they end missed.
    clock.current = future.next_run_time + timedelta(hours=5)
    assert engine.runner.reap_lost() == 2
    assert stored(engine, finished.id).status is ExecutorStatus.SUCCEEDED
    assert stored(engine, finished.id).error is None
    for executor in (overdue, future):
        ended = stored(engine, executor.id)
        assert ended.status is ExecutorStatus.MISSED
        assert ended.reason is not None and ended.reason.startswith("never delivered")
    plan = engine.store.get_plan(finished.plan_id)
    assert plan is not None and plan.executed
    assert plan.counts.as_dict()["missed"] == 2
    assert scripted.RUNS == [] or len(scripted.RUNS) == 1


def test_only_executors_past_their_lease_are_reaped(engine: Engine, clock: FixedClock) -> None:
    early = exact(engine, "2026-12-01T09:30:00Z")
    late = exact(engine, "2026-12-01T09:55:00Z")
    died_running(engine, clock, early)
    died_running(engine, clock, late)
    clock.current = datetime(2026, 12, 1, 10, 6, tzinfo=UTC)  # 36 and 11 minutes later

    assert engine.runner.reap_lost() == 1
    assert stored(engine, early.id).status is ExecutorStatus.FAILED
    assert stored(engine, late.id).status is ExecutorStatus.RUNNING
    early_plan = engine.store.get_plan(early.plan_id)
    late_plan = engine.store.get_plan(late.plan_id)
    assert early_plan is not None and early_plan.executed
    assert late_plan is not None and not late_plan.executed


def test_an_attack_that_finishes_while_it_is_being_reaped_keeps_its_outcome(
    engine: Engine, clock: FixedClock, scripted: Any
) -> None:
    """The reaper read the executor as running; the attack then finished first."""
    (executor,) = planned(engine, mode="wait")
    clock.current = executor.next_run_time
    worker = threading.Thread(target=engine.runner.run, args=[executor.id])
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while not scripted.RUNS and time.monotonic() < deadline:
            threading.Event().wait(0.005)
        assert stored(engine, executor.id).status is ExecutorStatus.RUNNING
        clock.advance(minutes=20)
        real_list_running = engine.store.list_running

        def list_then_finish(started_before: datetime, limit: int) -> list[str]:
            found = real_list_running(started_before, limit)
            assert found == [executor.id]
            scripted.GATE.set()  # the attack returns and records its outcome now
            worker.join(timeout=30)
            return found

        engine.runner.store.list_running = list_then_finish  # type: ignore[method-assign]
        reaped = engine.runner.reap_lost()
    finally:
        scripted.GATE.set()
        worker.join(timeout=30)

    assert reaped == 0
    finished = stored(engine, executor.id)
    assert finished.status is ExecutorStatus.SUCCEEDED
    assert finished.error is None
    plan = engine.store.get_plan(executor.plan_id)
    assert plan is not None
    assert plan.counts.as_dict()["succeeded"] == 1
    assert plan.counts.as_dict()["failed"] == 0


def test_list_running_reads_past_stuck_executors_and_honours_its_limit(
    engine: Engine, clock: FixedClock
) -> None:
    executors = planned(engine, times=5)
    for executor in executors:
        died_running(engine, clock, executor)
    clock.advance(hours=1)

    found = engine.store.list_running(clock.now() - timedelta(minutes=15), limit=3)
    assert len(found) == 3
    assert all(stored(engine, found_id).status is ExecutorStatus.RUNNING for found_id in found)
    ordered = sorted(executors, key=lambda executor: executor.next_run_time)
    assert found == [executor.id for executor in ordered[:3]]
    assert engine.runner.reap_lost() == 5


def test_the_lease_comes_from_the_environment() -> None:
    assert Settings.from_env({}).max_run_time == timedelta(seconds=900)
    assert Settings.from_env({"CME_MAX_RUN_SECONDS": "1200"}).max_run_time == timedelta(
        seconds=1200
    )


def wait_for(condition: Any, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        threading.Event().wait(0.01)


def test_the_local_scheduler_reaps_periodically_and_survives_a_failing_reap() -> None:
    from zoneinfo import ZoneInfo

    from chalicelib.adapters.local_scheduler import LocalScheduler

    calls: list[int] = []

    def reap() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("storage unavailable")
        return 0

    def run(executor_id: str, run_at: datetime) -> None:
        return None

    scheduler = LocalScheduler(run, ZoneInfo("UTC"), reap=reap, reap_every=timedelta(seconds=0.02))
    scheduler.start()
    try:
        wait_for(lambda: len(calls) >= 3, "three reaps, the first of which raised")
        assert scheduler.scheduled_ids() == []  # the reaper is no executor
    finally:
        scheduler.shutdown()


def test_local_mode_reaps_a_lost_executor(
    aws: None, settings: Settings, clock: FixedClock, tmp_path: Path
) -> None:
    from chalicelib.adapters.local_scheduler import LocalScheduler
    from chalicelib.bootstrap import build_local_engine

    local = dataclasses.replace(settings, data_dir=tmp_path)
    engine = build_local_engine(local, clock, reap_every=timedelta(seconds=0.02))
    assert isinstance(engine.scheduler, LocalScheduler)
    (executor,) = planned(engine)
    engine.scheduler.delete([executor.id])  # its delivery is the test's to make
    died_running(engine, clock, executor)
    clock.advance(minutes=16)
    engine.scheduler.start()
    try:
        wait_for(
            lambda: stored(engine, executor.id).status is ExecutorStatus.FAILED,
            "the local reaper to end the lost executor",
        )
    finally:
        engine.scheduler.shutdown()
    assert (stored(engine, executor.id).error or "").startswith("lost: still running 960 s")
