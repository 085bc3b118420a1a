"""The executor lifecycle: claim, run, record; duplicates, lateness, kill switch, dry run."""

from __future__ import annotations

import dataclasses
import sys
import threading
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.bootstrap import Engine, build_engine
from chalicelib.domain.model import EARLY_DELIVERY_WINDOW, ExecutorStatus
from chalicelib.domain.ports import PlanQuery
from chalicelib.settings import Settings
from tests.conftest import FixedClock, RecordingScheduler

SCRIPTED = "scripted:Scripted"


def plan_payload(mode: str, times: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"scripted {mode}",
        "attack": {"ref": SCRIPTED, "args": {"mode": mode}},
        "planner": {
            "ref": "simple_planner:SimplePlanner",
            "args": {"min_time": "11:00", "max_time": "12:00", "times": times},
        },
        **extra,
    }


def first_executor_id(engine: Engine, plan_id: str) -> str:
    return engine.plans.get(plan_id).executors.items[0].id


def due(engine: Engine, clock: FixedClock, plan_id: str) -> str:
    """Move the clock to the plan's first executor's time; return that executor's id."""
    executor = engine.plans.get(plan_id).executors.items[0]
    clock.current = executor.next_run_time
    return executor.id


def test_success_records_result_times_and_plan_counts(
    engine: Engine, clock: FixedClock, runs: list[dict[str, Any]]
) -> None:
    plan = engine.plans.create(plan_payload("ok", times=2))
    first, second = engine.plans.get(plan.id).executors.items
    clock.current = first.next_run_time
    done = engine.runner.run(first.id)
    assert done is not None and done.status is ExecutorStatus.SUCCEEDED
    stored = engine.executors.get(first.id)
    assert stored.status is ExecutorStatus.SUCCEEDED
    assert stored.executed is True
    assert stored.result == {"did": "ok", "executor": first.id}
    assert stored.started_at == first.next_run_time
    assert stored.finished_at is not None
    assert runs == [{"args": {"mode": "ok"}, "executor_id": first.id}]
    view = engine.plans.get(plan.id)
    assert view.plan.counts.as_dict()["succeeded"] == 1
    assert view.plan.counts.as_dict()["scheduled"] == 1
    assert view.plan.executed is False
    assert view.plan.next_execution == second.next_run_time

    clock.current = second.next_run_time
    engine.runner.run(second.id)
    view = engine.plans.get(plan.id)
    assert view.plan.executed is True
    assert view.plan.next_execution is None
    assert [p.id for p in engine.plans.list(PlanQuery(pending=True)).items] == []
    assert [p.id for p in engine.plans.list(PlanQuery(pending=True, executed=True)).items] == [
        plan.id
    ]


def test_an_attack_that_raises_ends_failed_with_its_message(
    engine: Engine, clock: FixedClock, runs: list[dict[str, Any]]
) -> None:
    executor_id = due(engine, clock, engine.plans.create(plan_payload("raise")).id)
    engine.runner.run(executor_id)
    stored = engine.executors.get(executor_id)
    assert stored.status is ExecutorStatus.FAILED
    assert stored.error == "ValueError: target exploded"
    assert stored.executed is True


def test_attack_failed_keeps_its_result(
    engine: Engine, clock: FixedClock, runs: list[dict[str, Any]]
) -> None:
    executor_id = due(engine, clock, engine.plans.create(plan_payload("fail")).id)
    engine.runner.run(executor_id)
    stored = engine.executors.get(executor_id)
    assert stored.status is ExecutorStatus.FAILED
    assert stored.error == "answered 500"
    assert stored.result == {"status_code": 500}


def test_attack_skipped_records_the_reason(
    engine: Engine, clock: FixedClock, runs: list[dict[str, Any]]
) -> None:
    plan = engine.plans.create(plan_payload("skip"))
    executor_id = due(engine, clock, plan.id)
    engine.runner.run(executor_id)
    stored = engine.executors.get(executor_id)
    assert stored.status is ExecutorStatus.SKIPPED
    assert stored.reason == "no instance matched"
    assert engine.plans.get(plan.id).plan.executed is True


def test_a_second_delivery_never_runs_the_attack_again(
    engine: Engine, clock: FixedClock, runs: list[dict[str, Any]]
) -> None:
    executor_id = due(engine, clock, engine.plans.create(plan_payload("ok")).id)
    engine.runner.run(executor_id)
    again = engine.runner.run(executor_id)
    assert again is not None and again.status is ExecutorStatus.SUCCEEDED
    assert len(runs) == 1
    plan = engine.plans.get(again.plan_id).plan
    assert plan.counts.as_dict()["succeeded"] == 1


def test_concurrent_deliveries_claim_once(
    engine: Engine, clock: FixedClock, runs: list[dict[str, Any]]
) -> None:
    executor_id = due(engine, clock, engine.plans.create(plan_payload("ok")).id)
    barrier = threading.Barrier(4)

    def deliver() -> None:
        barrier.wait()
        engine.runner.run(executor_id)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(runs) == 1
    counts = engine.plans.get(engine.executors.get(executor_id).plan_id).plan.counts
    assert counts.as_dict()["succeeded"] == 1
    assert counts.total == 1


def test_a_late_delivery_is_missed_and_not_run(
    engine: Engine, clock: FixedClock, runs: list[dict[str, Any]]
) -> None:
    executor_id = first_executor_id(engine, engine.plans.create(plan_payload("ok")).id)
    executor = engine.executors.get(executor_id)
    clock.current = executor.next_run_time + engine.settings.allowed_lateness
    clock.advance(seconds=1)
    engine.runner.run(executor_id)
    stored = engine.executors.get(executor_id)
    assert stored.status is ExecutorStatus.MISSED
    assert stored.reason is not None and "late" in stored.reason
    assert runs == []


def test_dry_run_is_recorded_as_skipped_and_never_executed(
    engine: Engine, clock: FixedClock, runs: list[dict[str, Any]]
) -> None:
    plan = engine.plans.create(plan_payload("ok", dry_run=True))
    executor_id = due(engine, clock, plan.id)
    engine.runner.run(executor_id)
    stored = engine.executors.get(executor_id)
    assert stored.status is ExecutorStatus.SKIPPED
    assert stored.reason == f"dry run: {SCRIPTED} was not executed"
    assert runs == []


def test_the_kill_switch_skips_every_attack(
    aws: None, settings: Settings, clock: FixedClock, scheduler: RecordingScheduler
) -> None:
    from chalicelib.adapters.dynamo import DynamoStore

    killed = dataclasses.replace(settings, kill_switch=True)
    store = DynamoStore(killed)
    store.create_tables()
    engine = build_engine(killed, store, lambda runner: scheduler, clock)
    module = sys.modules[engine.attacks.resolve(SCRIPTED).__module__]
    module.RUNS.clear()
    executor_id = due(engine, clock, engine.plans.create(plan_payload("ok")).id)
    engine.runner.run(executor_id)
    stored = engine.executors.get(executor_id)
    assert stored.status is ExecutorStatus.SKIPPED
    assert stored.reason == (
        "kill switch: CME_KILL_SWITCH is on for this stage; the attack did not run"
    )
    assert module.RUNS == []


def test_an_unknown_executor_is_logged_not_raised(engine: Engine) -> None:
    assert engine.runner.run("does-not-exist") is None


def test_a_running_executor_cannot_be_moved_or_claimed_again(
    engine: Engine, clock: FixedClock, runs: list[dict[str, Any]]
) -> None:
    from chalicelib.domain.errors import ExecutorAlreadyRun

    module = sys.modules[engine.attacks.resolve(SCRIPTED).__module__]
    executor_id = due(engine, clock, engine.plans.create(plan_payload("wait")).id)
    worker = threading.Thread(target=engine.runner.run, args=[executor_id])
    worker.start()
    try:
        deadline = threading.Event()
        for _ in range(2000):
            if engine.executors.get(executor_id).status is ExecutorStatus.RUNNING and runs:
                break
            deadline.wait(0.005)
        assert engine.executors.get(executor_id).status is ExecutorStatus.RUNNING
        with pytest.raises(ExecutorAlreadyRun):
            engine.executors.reschedule(
                executor_id, {"type": "date", "args": {"date": "2026-12-02T10:00:00+00:00"}}
            )
        engine.runner.run(executor_id)
        assert len(runs) == 1
    finally:
        module.GATE.set()
        worker.join(timeout=30)
    assert engine.executors.get(executor_id).status is ExecutorStatus.SUCCEEDED


def test_an_attack_that_supports_dry_run_reports_its_target_and_is_skipped(
    engine: Engine, clock: FixedClock, runs: list[dict[str, Any]]
) -> None:
    payload = plan_payload("ok", dry_run=True)
    payload["attack"]["ref"] = "scripted:Leashed"
    executor_id = due(engine, clock, engine.plans.create(payload).id)
    engine.runner.run(executor_id)
    stored = engine.executors.get(executor_id)
    assert stored.status is ExecutorStatus.SKIPPED
    assert stored.reason == "dry run: would hit db-1"
    assert stored.result == {"target": "db-1"}
    assert runs == []


def test_a_delivery_earlier_than_its_window_is_ignored_and_one_within_it_waits(
    engine: Engine, clock: FixedClock, runs: list[dict[str, Any]]
) -> None:
    executor_id = due(engine, clock, engine.plans.create(plan_payload("ok")).id)
    executor = engine.executors.get(executor_id)
    clock.current = executor.next_run_time - EARLY_DELIVERY_WINDOW - timedelta(seconds=1)
    engine.runner.run(executor_id)
    assert engine.executors.get(executor_id).status is ExecutorStatus.SCHEDULED
    assert runs == []
    # EventBridge Scheduler delivers anywhere in the minute before: the runner waits.
    clock.current = executor.next_run_time - EARLY_DELIVERY_WINDOW
    engine.runner.run(executor_id)
    stored = engine.executors.get(executor_id)
    assert stored.status is ExecutorStatus.SUCCEEDED
    assert stored.started_at == executor.next_run_time
    assert len(runs) == 1
