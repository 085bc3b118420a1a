"""The Store port's contract: what every store (SQLite, DynamoDB) must do, tested on each."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from chalicelib.domain.errors import (
    ExecutorAlreadyRun,
    ExecutorNotFound,
    ExecutorRunning,
    InvalidCursor,
    InvalidTransition,
    OrphanExecutor,
    PlanExists,
    StorageError,
)
from chalicelib.domain.model import ALLOWED_TRANSITIONS, Executor, ExecutorStatus, Plan
from chalicelib.domain.ports import ExecutorQuery, Page, PlanQuery, Store
from chalicelib.domain.safety import Halt
from tests.contract.conftest import (
    T0,
    add,
    claim,
    counts,
    finish,
    make_executors,
    make_plan,
)
from tests.races import first_steps_together

S = ExecutorStatus
ALL_PAIRS = [(source, target) for source in S for target in S]
# How to bring a scheduled executor to each status through allowed transitions.
PATHS: dict[ExecutorStatus, list[ExecutorStatus]] = {
    S.SCHEDULED: [],
    S.RUNNING: [S.RUNNING],
    S.SUCCEEDED: [S.RUNNING, S.SUCCEEDED],
    S.FAILED: [S.RUNNING, S.FAILED],
    S.SKIPPED: [S.SKIPPED],
    S.MISSED: [S.MISSED],
}
DEADLINE_SECONDS = 60


def bring_to(store: Store, executor: Executor, status: ExecutorStatus) -> None:
    for step in PATHS[status]:
        changes: dict[str, Any] = (
            {"started_at": T0} if step is S.RUNNING else {"finished_at": T0, "reason": "test"}
        )
        assert store.transition(executor, step, changes)


def every_page(
    read: Callable[[str | None], Page[Any]],
    limit: int,
    between: Callable[[int], None] | None = None,
) -> list[Any]:
    """All items across pages; ``between(n)`` runs after the n-th page is read."""
    items: list[Any] = []
    cursor: str | None = None
    for number in range(1, 1000):
        page = read(cursor)
        assert len(page.items) <= limit
        items.extend(page.items)
        if between is not None:
            between(number)
        if page.cursor is None:
            return items
        cursor = page.cursor
    raise AssertionError("the pages never ended")


def ids(items: list[Any]) -> list[str]:
    return [item.id for item in items]


def run_together(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(n)`` in ``count`` threads released at once; their results, in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def target(number: int) -> None:
        try:
            barrier.wait(timeout=DEADLINE_SECONDS)
            results[number] = work(number)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=target, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DEADLINE_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish in time"
    assert not errors, errors
    return results


# -- plans -------------------------------------------------------------------------------


def test_add_plan_stores_an_uncommitted_plan_and_its_executors(store: Store) -> None:
    plan = make_plan(name="written", dry_run=True, fingerprint="abc123", committed=True)
    executors = make_executors(plan, [5, 3, 7])

    store.add_plan(plan, executors)

    stored = store.get_plan(plan.id)
    assert stored is not None
    assert (stored.name, stored.created, stored.planner, stored.attack) == (
        "written",
        T0,
        plan.planner,
        plan.attack,
    )
    assert stored.dry_run is True
    assert stored.fingerprint == "abc123"
    assert stored.committed is False
    assert stored.counts.as_dict()["scheduled"] == 3
    assert stored.executors_count == 3
    assert stored.next_execution == T0 + timedelta(minutes=3)
    for executor in executors:
        assert store.get_executor(executor.id) == executor


def test_commit_plan_marks_it_committed(store: Store) -> None:
    plan, _ = add(store, committed=False)
    store.commit_plan(plan.id)
    stored = store.get_plan(plan.id)
    assert stored is not None
    assert stored.committed is True


def test_missing_records_are_none(store: Store) -> None:
    assert store.get_plan("no-such-plan") is None
    assert store.get_executor("no-such-executor") is None


def test_add_plan_refuses_an_existing_id_and_writes_nothing(store: Store) -> None:
    plan, _ = add(store, minutes=[1, 2])
    again = replace(plan, name="second")
    others = make_executors(again, [4])

    with pytest.raises(PlanExists) as raised:
        store.add_plan(again, others)

    assert raised.value.plan_id == plan.id
    assert store.get_executor(others[0].id) is None
    stored = store.get_plan(plan.id)
    assert stored is not None
    assert stored.name == plan.name
    assert counts(store, plan.id) == {"scheduled": 2}


def test_add_plan_is_all_or_nothing(store: Store) -> None:
    plan = make_plan()
    executors = make_executors(plan, [1, 2, 3, 4])
    executors[3].attack = {"ref": "x", "args": {"not json": object()}}

    with pytest.raises(StorageError):
        store.add_plan(plan, executors)

    assert store.get_plan(plan.id) is None
    assert [store.get_executor(executor.id) for executor in executors] == [None] * 4
    assert store.list_executors(ExecutorQuery(plan_id=plan.id), 10, None).items == []


def test_delete_plan_removes_the_plan_and_all_its_executors(store: Store) -> None:
    plan, executors = add(store, minutes=[1, 2, 3, 4])
    kept, kept_executors = add(store, minutes=[2])
    claim(store, executors[0])
    finish(store, executors[0], S.SUCCEEDED)
    bring_to(store, executors[1], S.SKIPPED)  # a running one blocks it (test below)
    stored = store.get_plan(plan.id)
    assert stored is not None

    store.delete_plan(stored)

    assert store.get_plan(plan.id) is None
    assert [store.get_executor(e.id) for e in executors] == [None] * 4
    assert store.list_executors(ExecutorQuery(executed=None, plan_id=plan.id), 10, None).items == []
    assert ids(store.list_executors(ExecutorQuery(executed=None), 10, None).items) == ids(
        kept_executors
    )
    assert ids(store.list_plans(PlanQuery(pending=True, executed=True), 10, None).items) == [
        kept.id
    ]


# -- the state machine -------------------------------------------------------------------


@pytest.mark.parametrize(("source", "target"), ALL_PAIRS, ids=lambda s: s.value)
def test_transition_follows_the_state_machine(
    store: Store, source: ExecutorStatus, target: ExecutorStatus
) -> None:
    plan, (executor, other) = add(store, minutes=[1, 2])
    bring_to(store, executor, source)
    before = store.get_executor(executor.id)
    counts_before = counts(store, plan.id)
    changes: dict[str, Any] = {
        "finished_at": T0 + timedelta(minutes=2),
        "result": {"targets": ["i-123"], "ok": True},
        "error": "boom" if target is S.FAILED else None,
        "reason": "kill switch" if target is S.SKIPPED else None,
    }

    if target not in ALLOWED_TRANSITIONS.get(source, frozenset()):
        with pytest.raises(InvalidTransition):
            store.transition(executor, target, changes)
        assert store.get_executor(executor.id) == before
        assert counts(store, plan.id) == counts_before
        return

    assert store.transition(executor, target, changes) is True

    assert executor.status is target
    assert executor.result == {"targets": ["i-123"], "ok": True}
    assert store.get_executor(executor.id) == executor
    expected = dict(counts_before)
    expected[source.value] -= 1
    expected[target.value] = expected.get(target.value, 0) + 1
    assert counts(store, plan.id) == {k: n for k, n in expected.items() if n}
    assert store.get_executor(other.id) == other


def test_a_change_outside_the_outcome_is_refused_and_nothing_written(store: Store) -> None:
    plan, (executor,) = add(store, minutes=[1])
    with pytest.raises(ValueError, match="plan_id"):
        store.transition(executor, S.RUNNING, {"plan_id": "elsewhere"})
    assert store.get_executor(executor.id) == executor
    assert counts(store, plan.id) == {"scheduled": 1}


def test_transition_is_refused_when_the_stored_status_changed(store: Store) -> None:
    plan, (executor,) = add(store, minutes=[1])
    stale = store.get_executor(executor.id)
    assert stale is not None
    claim(store, executor)

    assert store.transition(stale, S.RUNNING, {"started_at": T0}) is False
    assert store.transition(stale, S.MISSED, {"reason": "late"}) is False

    assert stale.status is S.SCHEDULED
    assert store.get_executor(executor.id) == executor
    assert counts(store, plan.id) == {"running": 1}


def test_transition_is_refused_when_next_run_time_changed(store: Store) -> None:
    plan, (executor,) = add(store, minutes=[1])
    later = T0 + timedelta(hours=1)

    moved = store.move_executor(executor.id, later)

    assert moved.next_run_time == later
    assert moved.status is S.SCHEDULED
    assert store.transition(executor, S.RUNNING, {"started_at": T0}) is False
    stored = store.get_executor(executor.id)
    assert stored is not None
    assert (stored.status, stored.next_run_time) == (S.SCHEDULED, later)
    assert counts(store, plan.id) == {"scheduled": 1}
    assert store.transition(moved, S.RUNNING, {"started_at": later}) is True


def test_move_executor_refuses_an_executor_that_ran_or_does_not_exist(store: Store) -> None:
    _, (executor,) = add(store, minutes=[1])
    claim(store, executor)

    with pytest.raises(ExecutorAlreadyRun) as raised:
        store.move_executor(executor.id, T0 + timedelta(hours=1))
    assert raised.value.status == "running"
    stored = store.get_executor(executor.id)
    assert stored is not None
    assert stored.next_run_time == executor.next_run_time

    with pytest.raises(ExecutorNotFound):
        store.move_executor("no-such-executor", T0 + timedelta(hours=1))


def test_claim_is_refused_until_the_plan_is_committed(store: Store) -> None:
    plan, (executor,) = add(store, minutes=[1], committed=False)

    assert store.transition(executor, S.RUNNING, {"started_at": T0}) is False
    assert executor.status is S.SCHEDULED
    assert counts(store, plan.id) == {"scheduled": 1}

    store.commit_plan(plan.id)

    assert store.transition(executor, S.RUNNING, {"started_at": T0}) is True
    assert counts(store, plan.id) == {"running": 1}


def test_an_uncommitted_plans_executor_can_still_end_without_running(store: Store) -> None:
    plan, (executor,) = add(store, minutes=[1], committed=False)
    assert store.transition(executor, S.MISSED, {"reason": "never delivered"}) is True
    assert counts(store, plan.id) == {"missed": 1}


def test_transition_of_an_executor_whose_plan_is_gone_is_an_orphan(store: Store) -> None:
    plan, (executor, _) = add(store, minutes=[1, 2])
    stored = store.get_plan(plan.id)
    assert stored is not None
    store.delete_plan(stored)

    with pytest.raises(OrphanExecutor) as raised:
        store.transition(executor, S.RUNNING, {"started_at": T0})

    assert (raised.value.executor_id, raised.value.plan_id) == (executor.id, plan.id)
    assert store.get_plan(plan.id) is None


def test_twenty_concurrent_claims_of_one_executor_make_one_winner(store: Store) -> None:
    plan, (executor,) = add(store, minutes=[1])
    copies = [store.get_executor(executor.id) for _ in range(20)]

    def attempt(number: int) -> bool:
        copy = copies[number]
        assert copy is not None
        return store.transition(copy, S.RUNNING, {"started_at": T0})

    results = run_together(20, attempt)

    assert results.count(True) == 1
    assert results.count(False) == 19
    assert counts(store, plan.id) == {"running": 1}


def test_twenty_executors_of_one_plan_finishing_together_keep_exact_counts(
    store: Store,
) -> None:
    plan, executors = add(store, minutes=range(1, 21))
    for executor in executors:
        claim(store, executor)
    outcomes = [S.SUCCEEDED] * 12 + [S.FAILED] * 5 + [S.SKIPPED] * 3

    results = run_together(
        20,
        lambda n: store.transition(
            executors[n], outcomes[n], {"finished_at": T0 + timedelta(minutes=30)}
        ),
    )

    assert results == [True] * 20
    assert counts(store, plan.id) == {"succeeded": 12, "failed": 5, "skipped": 3}
    stored = store.get_plan(plan.id)
    assert stored is not None
    assert stored.executed is True
    assert stored.next_execution is None


# -- counts and deletion -----------------------------------------------------------------


def test_counts_follow_transitions_and_deletions(store: Store) -> None:
    plan, executors = add(store, minutes=[1, 2, 3, 4, 5, 6])
    a, b, c, d, e, f = executors
    claim(store, a)
    finish(store, a, S.SUCCEEDED)
    claim(store, b)
    finish(store, b, S.FAILED)
    assert store.transition(c, S.SKIPPED, {"reason": "dry run"})
    assert store.transition(d, S.MISSED, {"reason": "late"})
    claim(store, e)
    assert counts(store, plan.id) == {
        "succeeded": 1,
        "failed": 1,
        "skipped": 1,
        "missed": 1,
        "running": 1,
        "scheduled": 1,
    }

    assert store.delete_executor(f) is True
    assert store.delete_executor(b) is True

    assert store.get_executor(f.id) is None
    assert counts(store, plan.id) == {"succeeded": 1, "skipped": 1, "missed": 1, "running": 1}
    stored = store.get_plan(plan.id)
    assert stored is not None
    assert stored.executors_count == 4
    assert stored.executed is False

    finish(store, e, S.SUCCEEDED)

    stored = store.get_plan(plan.id)
    assert stored is not None
    assert stored.executed is True
    assert counts(store, plan.id) == {"succeeded": 2, "skipped": 1, "missed": 1}


def test_delete_executor_is_conditional_on_its_status(store: Store) -> None:
    plan, (executor,) = add(store, minutes=[1])
    stale = store.get_executor(executor.id)
    assert stale is not None
    claim(store, executor)

    assert store.delete_executor(stale) is False

    assert store.get_executor(executor.id) == executor
    assert counts(store, plan.id) == {"running": 1}


def test_deleting_the_last_pending_executor_settles_the_plan(store: Store) -> None:
    plan, (done, waiting) = add(store, minutes=[1, 2])
    claim(store, done)
    finish(store, done, S.SUCCEEDED)

    assert store.delete_executor(waiting) is True

    assert ids(store.list_plans(PlanQuery(pending=False, executed=True), 10, None).items) == [
        plan.id
    ]
    assert store.list_plans(PlanQuery(), 10, None).items == []


def test_purge_executor_removes_the_record_and_touches_no_plan(store: Store) -> None:
    plan, (executor, other) = add(store, minutes=[1, 2])

    store.purge_executor(executor.id)
    store.purge_executor(executor.id)
    store.purge_executor("no-such-executor")

    assert store.get_executor(executor.id) is None
    assert store.get_executor(other.id) == other
    assert counts(store, plan.id) == {"scheduled": 2}


# -- executor lists ----------------------------------------------------------------------


def test_executors_are_listed_soonest_first_ties_by_id(store: Store) -> None:
    add(store, minutes=[5, 1, 3, 3, 3], ids=["e5", "e1", "c3", "a3", "b3"])
    add(store, minutes=[2, 4], ids=["x2", "x4"])

    soonest = store.list_executors(ExecutorQuery(), 10, None)
    latest = store.list_executors(ExecutorQuery(latest_first=True), 10, None)

    expected = ["e1", "x2", "a3", "b3", "c3", "x4", "e5"]
    assert ids(soonest.items) == expected
    assert soonest.cursor is None
    assert ids(latest.items) == expected[::-1]


def test_a_plans_executors_are_listed_in_order_with_every_status(store: Store) -> None:
    plan, executors = add(store, minutes=[4, 2, 3, 1], ids=["p4", "p2", "p3", "p1"])
    add(store, minutes=[1.5, 2.5])
    claim(store, executors[1])
    finish(store, executors[1], S.SUCCEEDED)
    claim(store, executors[0])

    every = store.list_executors(ExecutorQuery(executed=None, plan_id=plan.id), 10, None)
    pending = store.list_executors(ExecutorQuery(plan_id=plan.id), 10, None)
    done = store.list_executors(ExecutorQuery(executed=True, plan_id=plan.id), 10, None)
    latest = store.list_executors(
        ExecutorQuery(executed=None, plan_id=plan.id, latest_first=True), 10, None
    )

    assert ids(every.items) == ["p1", "p2", "p3", "p4"]
    assert [e.status for e in every.items] == [S.SCHEDULED, S.SUCCEEDED, S.SCHEDULED, S.RUNNING]
    assert ids(pending.items) == ["p1", "p3", "p4"]
    assert ids(done.items) == ["p2"]
    assert ids(latest.items) == ["p4", "p3", "p2", "p1"]
    assert store.list_executors(ExecutorQuery(plan_id="no-such-plan"), 10, None).items == []


def test_executor_filters(store: Store) -> None:
    _, executors = add(store, minutes=[1, 2, 3, 4, 5, 6], ids=["a", "b", "c", "d", "e", "f"])
    a, b, c, d = executors[:4]
    claim(store, a)
    finish(store, a, S.SUCCEEDED)
    claim(store, b)
    finish(store, b, S.FAILED)
    assert store.transition(c, S.SKIPPED, {"reason": "kill switch"})
    claim(store, d)

    def listed(**query: Any) -> list[str]:
        return ids(store.list_executors(ExecutorQuery(**query), 10, None).items)

    assert listed() == ["d", "e", "f"]
    assert listed(executed=True) == ["a", "b", "c"]
    assert listed(executed=None) == ["a", "b", "c", "d", "e", "f"]
    assert listed(statuses=frozenset({S.RUNNING})) == ["d"]
    assert listed(executed=True, statuses=frozenset({S.SUCCEEDED, S.SKIPPED})) == ["a", "c"]
    assert listed(executed=None, statuses=frozenset({S.FAILED, S.SCHEDULED})) == ["b", "e", "f"]
    assert listed(executed=False, statuses=frozenset({S.SUCCEEDED})) == []
    due_from, due_until = T0 + timedelta(minutes=2), T0 + timedelta(minutes=5)
    assert listed(executed=None, due_from=due_from) == ["b", "c", "d", "e", "f"]
    assert listed(executed=None, due_until=due_until) == ["a", "b", "c", "d"]
    assert listed(executed=None, due_from=due_from, due_until=due_until) == ["b", "c", "d"]
    assert listed(due_from=due_from, due_until=due_until, latest_first=True) == ["d"]
    assert listed(executed=None, due_from=due_until, due_until=due_from) == []


def test_an_uncommitted_plans_executors_are_listed_only_with_its_plan_id(store: Store) -> None:
    plan, executors = add(store, minutes=[1, 2], committed=False)
    _, listed = add(store, minutes=[3])

    assert ids(store.list_executors(ExecutorQuery(), 10, None).items) == ids(listed)
    assert ids(store.list_executors(ExecutorQuery(executed=None), 10, None).items) == ids(listed)
    assert ids(store.list_executors(ExecutorQuery(plan_id=plan.id), 10, None).items) == ids(
        executors
    )

    store.commit_plan(plan.id)

    assert ids(store.list_executors(ExecutorQuery(), 10, None).items) == ids(executors + listed)


@pytest.mark.parametrize(
    "query",
    [
        ExecutorQuery(),
        ExecutorQuery(latest_first=True),
        ExecutorQuery(executed=None),
        ExecutorQuery(due_from=T0 + timedelta(minutes=3), due_until=T0 + timedelta(minutes=20)),
    ],
    ids=["pending", "latest first", "all", "due range"],
)
def test_pages_hold_every_executor_once_in_order(store: Store, query: ExecutorQuery) -> None:
    _, executors = add(store, minutes=[m % 11 for m in range(25)])
    expected = store.list_executors(query, 100, None)
    assert expected.cursor is None

    paged = every_page(lambda cursor: store.list_executors(query, 7, cursor), 7)

    assert ids(paged) == ids(expected.items)
    assert len(paged) == len(set(ids(paged)))
    assert len(paged) >= 14
    times = [e.next_run_time for e in paged]
    assert times == sorted(times, reverse=query.latest_first)
    assert {e.id for e in executors} >= set(ids(paged))


@pytest.mark.parametrize("latest_first", [False, True])
def test_executors_added_between_pages_are_seen_once_when_ahead_of_the_cursor(
    store: Store, latest_first: bool
) -> None:
    plan, executors = add(store, minutes=[2 * m for m in range(1, 16)])
    query = ExecutorQuery(latest_first=latest_first)
    seen: list[Executor] = []
    expected_newcomers: set[str] = set()
    cursor: str | None = None
    for page_number in range(1, 100):
        page = store.list_executors(query, 4, cursor)
        assert len(page.items) <= 4
        seen.extend(page.items)
        if page.cursor is None:
            break
        cursor = page.cursor
        if page_number <= 3:
            # Executors land everywhere between pages: behind the cursor, beside it (the
            # same time as the last one read) and ahead of it.
            last = (seen[-1].next_run_time, seen[-1].id)
            minutes = [0.5, 15.5, 31 + page_number, (last[0] - T0).total_seconds() / 60]
            _, newcomers = add(store, minutes=minutes)
            for newcomer in newcomers:
                key = (newcomer.next_run_time, newcomer.id)
                if (key < last) == latest_first:
                    expected_newcomers.add(newcomer.id)
    else:
        raise AssertionError("the pages never ended")

    seen_ids = ids(seen)
    assert len(seen_ids) == len(set(seen_ids)), "an executor was on two pages"
    assert set(seen_ids) == set(ids(executors)) | expected_newcomers
    keys = [(e.next_run_time, e.id) for e in seen]
    assert keys == sorted(keys, reverse=latest_first)
    assert plan.id


def test_a_page_holds_at_most_limit_executors(store: Store) -> None:
    add(store, minutes=range(1, 11))

    first = store.list_executors(ExecutorQuery(), 3, None)
    single = store.list_executors(ExecutorQuery(), 1, None)
    all_of_them = store.list_executors(ExecutorQuery(), 10, None)

    assert len(first.items) == 3
    assert first.cursor is not None
    assert len(single.items) == 1
    assert ids(single.items) == ids(first.items[:1])
    assert len(all_of_them.items) == 10


def _other_cursor(store: Store) -> str:
    add(store, minutes=[1, 2, 3])
    cursor = store.list_executors(ExecutorQuery(), 1, None).cursor
    assert cursor is not None
    return cursor


@pytest.mark.parametrize(
    "garbage",
    ["", "nonsense", "%%%", "eyJrIjogWyJhIiwgImIiXX0", base64.urlsafe_b64encode(b"[1]").decode()],
)
def test_a_garbage_cursor_is_invalid(store: Store, garbage: str) -> None:
    add(store, minutes=[1, 2, 3])
    with pytest.raises(InvalidCursor):
        store.list_executors(ExecutorQuery(), 2, garbage)
    with pytest.raises(InvalidCursor):
        store.list_plans(PlanQuery(), 2, garbage)


def test_a_tampered_cursor_is_invalid(store: Store) -> None:
    cursor = _other_cursor(store)
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        content = json.loads(base64.urlsafe_b64decode(padded))
    except ValueError:
        content = None
    if isinstance(content, dict) and "q" in content:
        content["q"] = "0" * len(str(content["q"]))
        tampered = base64.urlsafe_b64encode(json.dumps(content).encode()).decode()
    else:
        tampered = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    with pytest.raises(InvalidCursor):
        store.list_executors(ExecutorQuery(), 1, tampered)


@pytest.mark.parametrize(
    "other",
    [
        ExecutorQuery(executed=True),
        ExecutorQuery(executed=None),
        ExecutorQuery(latest_first=True),
        ExecutorQuery(plan_id="another-plan"),
        ExecutorQuery(statuses=frozenset({S.RUNNING})),
        ExecutorQuery(due_from=T0),
    ],
    ids=["executed", "all", "latest first", "plan", "statuses", "due from"],
)
def test_a_cursor_of_another_query_is_invalid(store: Store, other: ExecutorQuery) -> None:
    cursor = _other_cursor(store)

    with pytest.raises(InvalidCursor):
        store.list_executors(other, 1, cursor)
    with pytest.raises(InvalidCursor):
        store.list_plans(PlanQuery(), 1, cursor)
    assert len(store.list_executors(ExecutorQuery(), 1, cursor).items) == 1


# -- plan lists --------------------------------------------------------------------------


def test_plans_are_listed_newest_first_by_state(store: Store) -> None:
    old, _ = add(store, minutes=[10], created=T0 - timedelta(days=2))
    new, _ = add(store, minutes=[20], created=T0 - timedelta(hours=1))
    done, (executor,) = add(store, minutes=[5], created=T0 - timedelta(days=1))
    claim(store, executor)
    finish(store, executor, S.SUCCEEDED)
    add(store, minutes=[1], committed=False, created=T0)

    def listed(**query: Any) -> list[str]:
        return ids(store.list_plans(PlanQuery(**query), 10, None).items)

    assert listed() == [new.id, old.id]
    assert listed(pending=False, executed=True) == [done.id]
    assert listed(pending=True, executed=True) == [new.id, done.id, old.id]
    assert listed(pending=False, executed=False) == []


def test_plans_created_together_are_ordered_by_id(store: Store) -> None:
    for plan_id in ["b", "c", "a"]:
        plan = make_plan(plan_id=plan_id)
        store.add_plan(plan, make_executors(plan, [1]))
        store.commit_plan(plan_id)

    assert ids(store.list_plans(PlanQuery(), 10, None).items) == ["c", "b", "a"]


def test_listed_plans_carry_counts_and_next_execution(store: Store) -> None:
    plan, (_, second, third) = add(store, minutes=[3, 1, 2])
    executed, (only,) = add(store, minutes=[1], created=T0 - timedelta(days=1))
    claim(store, only)
    finish(store, only, S.FAILED)

    def listed(plan_id: str) -> Plan:
        page = store.list_plans(PlanQuery(pending=True, executed=True), 10, None)
        return next(p for p in page.items if p.id == plan_id)

    assert listed(plan.id).next_execution == T0 + timedelta(minutes=1)
    assert listed(plan.id).counts.as_dict()["scheduled"] == 3
    claim(store, second)
    assert listed(plan.id).next_execution == T0 + timedelta(minutes=1)  # running is pending
    finish(store, second, S.SUCCEEDED)
    assert listed(plan.id).next_execution == T0 + timedelta(minutes=2)
    store.move_executor(third.id, T0 + timedelta(minutes=9))
    assert listed(plan.id).next_execution == T0 + timedelta(minutes=3)
    stored = store.get_plan(plan.id)
    assert stored is not None
    assert stored.next_execution == T0 + timedelta(minutes=3)
    assert {k: n for k, n in listed(plan.id).counts.as_dict().items() if n} == {
        "scheduled": 2,
        "succeeded": 1,
    }
    assert listed(executed.id).next_execution is None
    assert listed(executed.id).executed is True


def test_plan_pages_hold_every_plan_once_in_order(store: Store) -> None:
    made = [add(store, minutes=[1], created=T0 - timedelta(minutes=n % 4))[0] for n in range(9)]
    query = PlanQuery(pending=True, executed=True)
    expected = store.list_plans(query, 100, None).items

    def add_between(page_number: int) -> None:
        if page_number == 1:
            add(store, minutes=[1], created=T0 + timedelta(days=1))  # before the cursor

    paged = every_page(lambda cursor: store.list_plans(query, 2, cursor), 2, add_between)

    assert ids(paged) == ids(expected)
    assert set(ids(paged)) == set(ids(made))
    cursor = store.list_plans(query, 2, None).cursor
    assert cursor is not None
    with pytest.raises(InvalidCursor):
        store.list_plans(PlanQuery(), 2, cursor)


# -- the reaper's lists ------------------------------------------------------------------


def test_list_running_returns_ids_oldest_first_bounded(store: Store) -> None:
    _, executors = add(store, minutes=[4, 1, 3, 2, 5, 6], ids=["r4", "r1", "r3", "r2", "r5", "r6"])
    for executor in executors[:5]:
        # Claimed at its time, as the runner does (never before it).
        started = executor.next_run_time + timedelta(seconds=1)
        assert store.transition(executor, S.RUNNING, {"started_at": started})
    finish(store, executors[3], S.SUCCEEDED)  # r2 is no longer running
    before = T0 + timedelta(minutes=5)

    assert store.list_running(before, 10) == ["r1", "r3", "r4"]
    assert store.list_running(before, 2) == ["r1", "r3"]
    assert store.list_running(T0 + timedelta(minutes=1, seconds=1), 10) == []
    assert store.list_running(T0 + timedelta(minutes=1, seconds=2), 10) == ["r1"]


def test_list_undelivered_returns_scheduled_ids_oldest_first_bounded(store: Store) -> None:
    _, executors = add(store, minutes=[5, 1, 4, 2, 3, 9], ids=["u5", "u1", "u4", "u2", "u3", "u9"])
    claim(store, executors[3])  # u2
    assert store.transition(executors[2], S.MISSED, {"reason": "late"})  # u4

    assert store.list_undelivered(T0 + timedelta(minutes=5, seconds=1), 10) == ["u1", "u3", "u5"]
    assert store.list_undelivered(T0 + timedelta(minutes=5), 2) == ["u1", "u3"]
    assert store.list_undelivered(T0 + timedelta(minutes=1), 10) == []
    assert store.list_undelivered(T0 + timedelta(minutes=1, seconds=1), 10) == ["u1"]


def test_list_abandoned_plans_returns_old_uncommitted_plans_oldest_first(store: Store) -> None:
    old = [
        add(store, minutes=[1], committed=False, created=T0 - timedelta(hours=h))[0]
        for h in (3, 5, 4)
    ]
    add(store, minutes=[1], committed=False, created=T0)  # too recent
    add(store, minutes=[1], committed=True, created=T0 - timedelta(hours=6))  # committed

    found = store.list_abandoned_plans(T0 - timedelta(minutes=1), 10)

    assert ids(found) == [old[1].id, old[2].id, old[0].id]
    assert all(plan.committed is False for plan in found)
    assert found[0].counts.as_dict()["scheduled"] == 1
    assert ids(store.list_abandoned_plans(T0 - timedelta(minutes=1), 2)) == [
        old[1].id,
        old[2].id,
    ]
    assert store.list_abandoned_plans(T0 - timedelta(hours=5), 10) == []


# -- deletes while an attack runs ------------------------------------------------------

# Rounds of a claim racing a delete: each round can go either way, so many rounds make
# both outcomes (and any third, wrong one) likely to show.
RACE_ROUNDS = 30


def claim_succeeds(store: Store, executor: Executor) -> bool:
    """A claim as the runner makes it: True only when the attack may start."""
    try:
        return store.transition(executor, S.RUNNING, {"started_at": T0})
    except OrphanExecutor:
        return False


def test_a_running_executor_blocks_delete_plan(store: Store) -> None:
    plan, (running, waiting, done) = add(store, minutes=[1, 2, 3])
    claim(store, running)
    bring_to(store, done, S.SKIPPED)

    with pytest.raises(ExecutorRunning, match=rf"executor {running.id} is running \(started "):
        store.delete_plan(plan)

    assert store.get_plan(plan.id) is not None
    for executor in (running, waiting, done):
        assert store.get_executor(executor.id) is not None
    assert counts(store, plan.id) == {"running": 1, "scheduled": 1, "skipped": 1}
    finish(store, running, S.SUCCEEDED)
    store.delete_plan(plan)
    assert store.get_plan(plan.id) is None
    assert [store.get_executor(e.id) for e in (running, waiting, done)] == [None] * 3


def test_a_running_executor_blocks_delete_executor(store: Store) -> None:
    plan, (executor,) = add(store, minutes=[1])
    claim(store, executor)
    current = store.get_executor(executor.id)
    assert current is not None

    with pytest.raises(ExecutorRunning, match=rf"executor {executor.id} is running"):
        store.delete_executor(current)

    assert store.get_executor(executor.id) == current
    assert counts(store, plan.id) == {"running": 1}


def test_a_claim_after_a_delete_finds_nothing(store: Store) -> None:
    plan, (deleted, other) = add(store, minutes=[1, 2])
    stale_deleted = replace(deleted)
    assert store.delete_executor(deleted)
    assert claim_succeeds(store, stale_deleted) is False
    assert store.get_executor(deleted.id) is None

    stale_other = replace(other)
    store.delete_plan(plan)
    assert claim_succeeds(store, stale_other) is False
    assert store.get_executor(other.id) is None


def race(store: Store, plan: Plan, executor: Executor, target: str) -> list[str]:
    """A claim and a delete of ``executor`` (or of its plan), released together."""
    claimer, deleter = replace(executor), replace(executor)

    def work(number: int) -> str:
        if number == 0:
            return "claimed" if claim_succeeds(store, claimer) else "claim failed"
        try:
            if target == "plan":
                store.delete_plan(plan)
                return "deleted"
            return "deleted" if store.delete_executor(deleter) else "delete failed"
        except ExecutorRunning:
            return "delete refused"

    return run_together(2, work)


@pytest.mark.parametrize("target", ["executor", "plan"])
def test_a_claim_and_a_delete_racing_have_exactly_one_winner(store: Store, target: str) -> None:
    outcomes: set[str] = set()
    for _ in range(RACE_ROUNDS):
        plan, (executor,) = add(store, minutes=[1])
        claimed, deleted = race(store, plan, executor, target)
        stored = store.get_executor(executor.id)
        if claimed == "claimed":
            assert deleted in {"delete failed", "delete refused"}
            assert stored is not None
            assert stored.status is S.RUNNING
            assert store.get_plan(plan.id) is not None
        else:
            assert (claimed, deleted) == ("claim failed", "deleted")
            assert stored is None
        outcomes.add(claimed)
    # Either winner is correct; this only reports which ones the rounds produced.
    print(f"{target}: outcomes seen {sorted(outcomes)}")


# -- safety: a plan's options, the halt, the minimum interval -----------------------------

SAFETY = {
    "stop_conditions": {
        "alarms": ["cpu-high", "5xx é"],
        "health_checks": [{"url": "http://127.0.0.1:9/health", "timeout": 2.5}],
    },
    "min_interval": {"seconds": 3600, "group": "tag:App=web"},
}
MADRID_WINTER = timezone(timedelta(hours=1))
INTERVAL = timedelta(minutes=30)
MICROSECOND = timedelta(microseconds=1)
# Not on a whole second: a store that dropped microseconds would fail the boundary tests.
AT = datetime(2026, 12, 1, 10, 0, 0, 250_001, tzinfo=UTC)


def test_a_plans_safety_options_round_trip_and_none_stays_none(store: Store) -> None:
    guarded, _ = add(store, minutes=[1], safety=SAFETY)
    plain, _ = add(store, minutes=[2], created=T0 - timedelta(hours=1))

    stored = store.get_plan(guarded.id)
    assert stored is not None and stored.safety == SAFETY
    stored = store.get_plan(plain.id)
    assert stored is not None and stored.safety is None
    listed = {p.id: p.safety for p in store.list_plans(PlanQuery(), 10, None).items}
    assert listed == {guarded.id: SAFETY, plain.id: None}


def test_the_halt_is_off_until_set(store: Store) -> None:
    assert store.get_halt() == Halt()


def test_set_halt_is_read_back_and_a_second_replaces_it(store: Store) -> None:
    since = datetime(2026, 12, 1, 10, 15, 30, 123_456, tzinfo=MADRID_WINTER)
    halt = Halt(
        halted=True, reason="game day: payments on fire", since=since, by="arn:aws:iam::1:user/ana"
    )

    assert store.set_halt(halt) == halt
    assert store.get_halt() == halt
    read = store.get_halt()
    assert read.since is not None and read.since.utcoffset() is not None

    lifted = Halt(halted=False, reason=None, since=since + timedelta(hours=1), by="local")
    assert store.set_halt(lifted) == lifted
    # Replaced whole: nothing of the first halt (its reason) survives.
    assert store.get_halt() == lifted


def test_the_first_attack_on_a_group_is_recorded(store: Store) -> None:
    assert store.last_attack("plan:p1") is None

    assert store.record_attack("plan:p1", AT, INTERVAL) is None

    assert store.last_attack("plan:p1") == AT


def test_an_attack_within_the_interval_is_refused_with_the_last_attacks_time(
    store: Store,
) -> None:
    assert store.record_attack("plan:p1", AT, INTERVAL) is None

    assert store.record_attack("plan:p1", AT + timedelta(minutes=10), INTERVAL) == AT
    # An attack recorded out of order (earlier than the last) is refused as well.
    assert store.record_attack("plan:p1", AT - timedelta(minutes=10), INTERVAL) == AT
    assert store.last_attack("plan:p1") == AT


def test_an_attack_exactly_one_interval_later_is_allowed(store: Store) -> None:
    assert store.record_attack("plan:p1", AT, INTERVAL) is None

    # Given in another zone: the stores compare instants.
    later = (AT + INTERVAL).astimezone(MADRID_WINTER)
    assert store.record_attack("plan:p1", later, INTERVAL) is None

    assert store.last_attack("plan:p1") == AT + INTERVAL


def test_an_attack_one_microsecond_inside_the_interval_is_refused(store: Store) -> None:
    assert store.record_attack("plan:p1", AT, INTERVAL) is None

    assert store.record_attack("plan:p1", AT + INTERVAL - MICROSECOND, INTERVAL) == AT

    assert store.last_attack("plan:p1") == AT


def test_a_refused_attack_does_not_move_the_interval(store: Store) -> None:
    assert store.record_attack("plan:p1", AT, INTERVAL) is None
    assert store.record_attack("plan:p1", AT + INTERVAL / 2, INTERVAL) == AT

    # Counted from the recorded attack, not from the refused one.
    assert store.record_attack("plan:p1", AT + INTERVAL, INTERVAL) is None


def test_groups_keep_their_own_intervals(store: Store) -> None:
    assert store.record_attack("plan:p1", AT, INTERVAL) is None

    assert store.record_attack("plan:p2", AT, INTERVAL) is None
    assert store.record_attack("group:tag:App=web", AT + MICROSECOND, INTERVAL) is None

    assert store.record_attack("plan:p1", AT + MICROSECOND, INTERVAL) == AT
    assert store.last_attack("plan:p2") == AT
    assert store.last_attack("group:tag:App=web") == AT + MICROSECOND
    assert store.last_attack("plan:p3") is None


def test_last_attack_only_reads(store: Store) -> None:
    assert store.last_attack("plan:p1") is None
    assert store.last_attack("plan:p1") is None

    # Reading left nothing behind that would count as an attack.
    assert store.record_attack("plan:p1", AT, INTERVAL) is None
    assert store.last_attack("plan:p1") == AT
    assert store.last_attack("plan:p1") == AT
    assert store.record_attack("plan:p1", AT + INTERVAL, INTERVAL) is None


def test_the_halt_and_the_intervals_do_not_touch_each_other(store: Store) -> None:
    halt = Halt(halted=True, reason="stop", since=AT, by="local")
    store.set_halt(halt)
    assert store.record_attack("halt", AT, INTERVAL) is None

    assert store.get_halt() == halt
    assert store.last_attack("halt") == AT


def test_eight_concurrent_attacks_on_one_group_record_exactly_one(store: Store) -> None:
    # Each caller is held after its first step on the store until all eight have taken
    # one (tests/races.py): a store that checks in one step and records in another lets
    # all eight record on every run, not one run in three. Only a conditional write passes:
    # DynamoDB's "Conditional writes",
    # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/WorkingWithItems.html#WorkingWithItems.ConditionalUpdate,
    # and SQLite's BEGIN IMMEDIATE, whose lock is taken before the read.
    with first_steps_together(store, 8) as gate:
        results = run_together(
            8, lambda number: gate.call(store.record_attack, "plan:p1", AT, INTERVAL)
        )

    assert results.count(None) == 1
    assert [result for result in results if result is not None] == [AT] * 7
    assert store.last_attack("plan:p1") == AT


def test_the_race_gate_makes_a_check_then_write_record_every_attack(store: Store) -> None:
    # The gate's own proof, on each store's real read and write: checked with
    # last_attack and written in a second call, eight concurrent attacks all record.
    def check_then_write(number: int) -> datetime | None:
        last = store.last_attack("plan:p1")
        if last is not None and last > AT - INTERVAL:
            return last
        # A zero interval refuses nothing but a later attack, so this write always lands.
        return store.record_attack("plan:p1", AT, timedelta(0))

    with first_steps_together(store, 8) as gate:
        results = run_together(8, lambda number: gate.call(check_then_write, number))

    assert results == [None] * 8
