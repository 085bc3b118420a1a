"""Plan creation all or nothing: deadline, exact undo, idempotency, lead time, limits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.bootstrap import Engine
from chalicelib.domain.errors import (
    InvalidRequest,
    PlanExists,
    PlanningError,
    SchedulingError,
    StorageError,
)
from chalicelib.domain.model import Executor, ExecutorStatus
from chalicelib.domain.ports import ExecutorQuery, PlanQuery
from chalicelib.domain.times import Deadline
from chalicelib.settings import Settings
from tests.conftest import FixedClock, RecordingScheduler

SCRIPTED = "scripted:Scripted"


def payload(times: int = 5, **extra: Any) -> dict[str, Any]:
    return {
        "name": "five",
        "attack": {"ref": SCRIPTED, "args": {"mode": "ok"}},
        "planner": {
            "ref": "simple_planner:SimplePlanner",
            "args": {"min_time": "11:00", "max_time": "12:00", "times": times},
        },
        **extra,
    }


def exact(date: str) -> dict[str, Any]:
    return {
        "name": "exact",
        "attack": {"ref": SCRIPTED, "args": {"mode": "ok"}},
        "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": date}},
    }


def nothing_stored(engine: Engine) -> bool:
    everything = PlanQuery(pending=True, executed=True)
    return (
        engine.store.list_plans(everything, 10, None).items == []
        and engine.store.list_executors(ExecutorQuery(executed=None), 10, None).items == []
    )


class FailingAfter(RecordingScheduler):
    """Creates ``good`` schedules, then fails, saying which it created."""

    def __init__(self, good: int) -> None:
        super().__init__({})
        self.good = good
        self.created: list[str] = []
        self.deleted: list[str] = []

    def create(self, executors: object, deadline: object = None) -> None:
        chosen: Sequence[Executor] = list(executors)  # type: ignore[call-overload]
        created = [executor.id for executor in chosen[: self.good]]
        self.created = created
        for executor in chosen[: self.good]:
            self.scheduled[executor.id] = executor.next_run_time
        raise SchedulingError("throttled past the deadline", created=created)

    def delete(self, executor_ids: object, deadline: object = None) -> None:
        self.deleted.extend(executor_ids)  # type: ignore[arg-type]
        super().delete(executor_ids, deadline)


def engine_with(engine: Engine, scheduler: RecordingScheduler) -> Engine:
    engine.plans.scheduler = scheduler
    return engine


def test_a_failed_creation_undoes_exactly_the_schedules_it_created(engine: Engine) -> None:
    scheduler = FailingAfter(good=2)
    with pytest.raises(SchedulingError):
        engine_with(engine, scheduler).plans.create(payload(times=5))
    # Only the two it created: the other three were never sent to the scheduler.
    assert sorted(scheduler.deleted) == sorted(scheduler.created)
    assert len(scheduler.deleted) == 2
    assert scheduler.scheduled == {}
    assert nothing_stored(engine)


def test_a_commit_that_fails_undoes_every_schedule_and_the_plan(
    engine: Engine, scheduler: RecordingScheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    def commit_fails(plan_id: str) -> None:
        raise StorageError("throttled")

    monkeypatch.setattr(engine.store, "commit_plan", commit_fails)
    with pytest.raises(StorageError):
        engine.plans.create(payload(times=3))
    assert scheduler.scheduled == {}
    assert nothing_stored(engine)


def test_a_half_stored_plan_is_never_run_and_is_not_listed(
    engine: Engine,
    clock: FixedClock,
    scheduler: RecordingScheduler,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The creating Lambda died after storing and scheduling, before the commit."""

    class Died(BaseException):
        pass

    def die(plan_id: str) -> None:
        raise Died

    monkeypatch.setattr(engine.store, "commit_plan", die)
    with pytest.raises(Died):
        engine.plans.create(payload(times=2))
    monkeypatch.undo()
    (executor_id, run_at), _ = scheduler.scheduled.items()
    assert engine.store.list_plans(PlanQuery(pending=True, executed=True), 10, None).items == []
    clock.current = run_at
    engine.runner.run(executor_id)
    stored = engine.store.get_executor(executor_id)
    assert stored is not None and stored.status is ExecutorStatus.SCHEDULED


def test_the_deadline_reaches_the_scheduler(engine: Engine, scheduler: RecordingScheduler) -> None:
    deadline = Deadline(7.5)
    engine.plans.create(payload(times=1), deadline=deadline)
    assert scheduler.deadlines == [deadline]


def test_a_retried_post_with_the_same_idempotency_key_answers_the_first_plan(
    engine: Engine, scheduler: RecordingScheduler
) -> None:
    first = engine.plans.create(payload(times=3), idempotency_key="order-66")
    again = engine.plans.create(payload(times=3), idempotency_key="order-66")
    assert again.id == first.id
    assert len(scheduler.scheduled) == 3
    assert len(engine.plans.list(PlanQuery(pending=True)).items) == 1
    other = engine.plans.create(payload(times=3), idempotency_key="order-67")
    assert other.id != first.id


def test_an_idempotency_key_reused_with_another_body_is_refused(engine: Engine) -> None:
    engine.plans.create(payload(times=3), idempotency_key="k1")
    with pytest.raises(PlanExists, match="another request body"):
        engine.plans.create(payload(times=4), idempotency_key="k1")


def test_an_idempotency_key_whose_plan_is_still_being_created_is_a_conflict(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Died(BaseException):
        pass

    def die(plan_id: str) -> None:
        raise Died

    monkeypatch.setattr(engine.store, "commit_plan", die)
    with pytest.raises(Died):
        engine.plans.create(payload(times=1), idempotency_key="slow")
    monkeypatch.undo()
    with pytest.raises(PlanExists, match="still being created"):
        engine.plans.create(payload(times=1), idempotency_key="slow")


@pytest.mark.parametrize("key", ["", "with space", "x" * 256, "ünïcode"])
def test_a_malformed_idempotency_key_is_refused(engine: Engine, key: str) -> None:
    with pytest.raises(InvalidRequest, match="Idempotency-Key"):
        engine.plans.create(payload(times=1), idempotency_key=key)


def test_an_executor_due_sooner_than_the_schedulers_lead_time_is_refused(
    engine: Engine, clock: FixedClock, scheduler: RecordingScheduler
) -> None:
    scheduler.lead = timedelta(seconds=180)
    soon = (clock.now() + timedelta(seconds=179)).isoformat()
    with pytest.raises(PlanningError, match=r"minimum lead time \(180 s\)"):
        engine.plans.create(exact(soon))
    assert nothing_stored(engine)
    later = (clock.now() + timedelta(seconds=181)).isoformat()
    assert engine.plans.create(exact(later)).committed


def test_the_executor_limit_follows_what_the_scheduler_can_create_and_undo(
    engine: Engine, scheduler: RecordingScheduler
) -> None:
    scheduler.capacity = 4
    assert engine.plans.executor_limit == 4
    with pytest.raises(PlanningError, match=r"limit\b.* 4 per plan"):
        engine.plans.create(payload(times=5))
    engine.plans.create(payload(times=4))


def test_an_attack_that_may_outlive_its_function_is_refused_naming_the_limit(
    engine: Engine,
) -> None:
    engine.plans.attack_time_limit = timedelta(seconds=600)
    body = exact("2026-12-01T12:00:00+00:00")
    body["attack"] = {
        "ref": "api_request:ApiRequest",
        "args": {"endpoint": "http://127.0.0.1:9/", "method": "GET", "timeout": 300},
    }
    assert engine.plans.create(body).committed
    engine.plans.attack_time_limit = timedelta(seconds=599)
    with pytest.raises(PlanningError, match=r"may run for 600 s .* the limit is 599 s"):
        engine.plans.create(body)


def test_the_attack_time_limit_is_the_function_timeout_less_the_wait_guards_and_a_margin() -> None:
    deployed = Settings(attack_function_timeout=timedelta(seconds=900))
    assert deployed.attack_time_limit == timedelta(seconds=900 - 125 - 30 - 30)
    local = Settings(max_run_time=timedelta(seconds=900))
    assert local.attack_time_limit == timedelta(seconds=870)
    env = Settings.from_env({"CME_ATTACK_FUNCTION_TIMEOUT_SECONDS": "900"})
    assert env.attack_time_limit == timedelta(seconds=715)
