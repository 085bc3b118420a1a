"""Moving and deleting executors: the undo of a failed move, the delete retry, lead time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from chalicelib.bootstrap import Engine
from chalicelib.domain.errors import ExecutorAlreadyRun, InvalidRequest, SchedulingError
from chalicelib.domain.model import Executor, ExecutorStatus
from chalicelib.services.executors import DELETE_ATTEMPTS
from tests.conftest import FixedClock, RecordingScheduler

SCRIPTED = "scripted:Scripted"


def one_executor(engine: Engine) -> Executor:
    created = engine.plans.create(
        {
            "name": "one",
            "attack": {"ref": SCRIPTED, "args": {"mode": "ok"}},
            "planner": {
                "ref": "exact_planner:ExactPlanner",
                "args": {"date": "2026-12-01T12:00:00+00:00"},
            },
        }
    )
    (executor,) = engine.plans.get(created.id).executors.items
    return executor


def move_to(date: str) -> dict[str, Any]:
    return {"type": "date", "args": {"date": date}}


def test_a_move_whose_schedule_update_fails_is_undone(
    engine: Engine, scheduler: RecordingScheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    executor = one_executor(engine)

    def update_fails(moved: Executor) -> None:
        raise SchedulingError("throttled")

    monkeypatch.setattr(scheduler, "update", update_fails)
    with pytest.raises(SchedulingError):
        engine.executors.reschedule(executor.id, move_to("2026-12-01T13:00:00+00:00"))
    stored = engine.executors.get(executor.id)
    assert stored.next_run_time == executor.next_run_time
    assert scheduler.scheduled[executor.id] == executor.next_run_time


def test_a_move_sooner_than_the_lead_time_is_refused(
    engine: Engine, clock: FixedClock, scheduler: RecordingScheduler
) -> None:
    executor = one_executor(engine)
    scheduler.lead = timedelta(seconds=180)
    soon = (clock.now() + timedelta(seconds=120)).isoformat()
    with pytest.raises(InvalidRequest, match=r"minimum lead time \(180 s\)"):
        engine.executors.reschedule(executor.id, move_to(soon))
    assert engine.executors.get(executor.id).next_run_time == executor.next_run_time


def test_a_delete_that_races_a_status_change_is_tried_again(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    executor = one_executor(engine)
    real_delete = engine.store.delete_executor
    attempts: list[str] = []

    def delete_after_races(target: Executor) -> bool:
        attempts.append(target.id)
        if len(attempts) < DELETE_ATTEMPTS:
            return False  # its status changed between the read and the delete
        return real_delete(target)

    monkeypatch.setattr(engine.store, "delete_executor", delete_after_races)
    engine.executors.delete(executor.id)
    assert len(attempts) == DELETE_ATTEMPTS
    assert engine.store.get_executor(executor.id) is None


def test_a_delete_that_keeps_losing_the_race_is_a_conflict(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    executor = one_executor(engine)
    monkeypatch.setattr(engine.store, "delete_executor", lambda target: False)
    with pytest.raises(ExecutorAlreadyRun):
        engine.executors.delete(executor.id)
    assert engine.executors.get(executor.id).status is ExecutorStatus.SCHEDULED
