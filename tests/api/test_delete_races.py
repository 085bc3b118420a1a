"""No false "deleted" (issue 9, deliverable 6): a delete while the attack runs is a 409
with the executor's state and the attack still records its outcome; a delete that wins
means the attack never starts."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from chalicelib.bootstrap import Engine
from chalicelib.domain.model import Executor, ExecutorStatus
from tests.api.conftest import Api
from tests.conftest import FixedClock

SCRIPTED = "scripted:Scripted"
WAIT_SECONDS = 10


@pytest.fixture
def scripted(engine: Engine) -> Iterator[ModuleType]:
    """The test attack's module: its runs, and the gate a ``wait`` run blocks on."""
    module = sys.modules[engine.attacks.resolve(SCRIPTED).__module__]
    module.RUNS.clear()
    module.GATE.clear()
    yield module
    module.GATE.set()


def create(api: Api, engine: Engine, mode: str) -> tuple[str, Executor]:
    answer = api.post(
        "/api/1/plans/",
        {
            "name": "racing",
            "attack": {"ref": SCRIPTED, "args": {"mode": mode}},
            "planner": {
                "ref": "exact_planner:ExactPlanner",
                "args": {"date": "2026-12-01T12:00:00+01:00"},
            },
        },
    )
    assert answer.status == 200, answer.body
    plan_id = str(answer.body["id"])
    return plan_id, engine.plans.get(plan_id).executors.items[0]


def until(condition: Any, what: str) -> None:
    """Poll ``condition()`` until it is true, within a deadline."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.005)


def start_running(engine: Engine, scripted: ModuleType, executor: Executor) -> threading.Thread:
    """Deliver the executor in a thread; return once its attack is running (blocked)."""
    worker = threading.Thread(target=engine.runner.run, args=[executor.id])
    worker.start()
    until(lambda: scripted.RUNS, "the attack to start")
    return worker


@pytest.mark.parametrize("target", ["plan", "executor"])
def test_a_delete_while_the_attack_runs_is_409_and_the_outcome_is_recorded(
    api: Api, engine: Engine, clock: FixedClock, scripted: ModuleType, target: str
) -> None:
    plan_id, executor = create(api, engine, "wait")
    clock.current = executor.next_run_time
    worker = start_running(engine, scripted, executor)
    try:
        path = f"/api/1/plans/{plan_id}" if target == "plan" else f"/api/1/executors/{executor.id}"
        answer = api.delete(path)
        assert answer.status == 409, answer.body
        assert answer.headers["content-type"] == "application/json"
        assert answer.body["msg"] == (
            f"executor {executor.id} is running (started {clock.current.isoformat()}); "
            "it cannot be deleted until it ends"
        )
    finally:
        scripted.GATE.set()
        worker.join(timeout=WAIT_SECONDS)
    assert not worker.is_alive()

    finished = api.get(f"/api/1/executors/{executor.id}").body
    assert finished["status"] == ExecutorStatus.SUCCEEDED.value
    assert finished["result"] == {"did": "ok", "executor": executor.id}
    assert api.get(f"/api/1/plans/{plan_id}").body["status_counts"]["succeeded"] == 1
    # Once it has ended, the delete goes through.
    assert api.delete(f"/api/1/plans/{plan_id}").status == 200


@pytest.mark.parametrize("target", ["plan", "executor"])
def test_a_delete_that_wins_means_the_attack_never_starts(
    api: Api, engine: Engine, clock: FixedClock, scripted: ModuleType, target: str
) -> None:
    plan_id, executor = create(api, engine, "ok")
    path = f"/api/1/plans/{plan_id}" if target == "plan" else f"/api/1/executors/{executor.id}"
    assert api.delete(path).status == 200

    # The schedule fires anyway (EventBridge may already have sent it): nothing runs.
    clock.current = executor.next_run_time
    assert engine.runner.run(executor.id) is None
    assert scripted.RUNS == []
    assert engine.store.get_executor(executor.id) is None


def test_a_delete_that_loses_the_race_to_the_claim_is_409(
    api: Api,
    engine: Engine,
    clock: FixedClock,
    scripted: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The service read the executor scheduled; the runner claimed it before the delete
    was written: the store's condition fails and the delete answers 409, not 200."""
    _, executor = create(api, engine, "wait")
    clock.current = executor.next_run_time
    real_delete = engine.store.delete_executor
    workers: list[threading.Thread] = []

    def claimed_first(target: Executor) -> bool:
        if not workers:
            workers.append(start_running(engine, scripted, executor))
        return real_delete(target)

    monkeypatch.setattr(engine.executors.store, "delete_executor", claimed_first)
    try:
        answer = api.delete(f"/api/1/executors/{executor.id}")
    finally:
        scripted.GATE.set()
        for worker in workers:
            worker.join(timeout=WAIT_SECONDS)
    assert answer.status == 409, answer.body
    assert f"executor {executor.id} is running" in answer.body["msg"]
    assert len(scripted.RUNS) == 1
    stored = engine.store.get_executor(executor.id)
    assert stored is not None
    assert stored.status is ExecutorStatus.SUCCEEDED
