"""The Store contract for recurring plans (issue 11), on every store: the expansion state
round trip, the due list, idempotent executor additions, the conditional expansion write,
pause, and a recurring plan's place in the plan lists."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from chalicelib.domain.errors import PlanNotFound
from chalicelib.domain.model import ExecutorStatus, Plan
from chalicelib.domain.ports import ExecutorQuery, PlanQuery, Store
from tests.contract.conftest import T0, add, claim, counts, finish, make_executors, make_plan
from tests.contract.test_store import run_together

S = ExecutorStatus
MADRID_WINTER = timezone(timedelta(hours=1))
DAY = date(2026, 12, 1)
# Not on a whole second, in another zone than UTC: the stores keep the instant exactly.
NEXT = datetime(2026, 12, 2, 0, 0, 0, 250_001, tzinfo=MADRID_WINTER)


def stored(store: Store, plan_id: str) -> Plan:
    plan = store.get_plan(plan_id)
    assert plan is not None
    return plan


def listed(store: Store, query: PlanQuery) -> list[str]:
    return [plan.id for plan in store.list_plans(query, 50, None).items]


def recurring(
    store: Store,
    next_expansion: datetime | None = NEXT,
    *,
    minutes: tuple[float, ...] = (1, 2),
    committed: bool = True,
    created: datetime = T0,
    last_expanded: date | None = None,
) -> Plan:
    plan, _ = add(
        store,
        minutes=minutes,
        committed=committed,
        created=created,
        next_expansion=next_expansion,
        last_expanded=last_expanded,
    )
    return plan


# -- the round trip ------------------------------------------------------------------------


def test_the_expansion_state_round_trips_through_add_get_and_list(store: Store) -> None:
    plan = recurring(store, last_expanded=DAY)
    plain, _ = add(store, created=T0 - timedelta(hours=1))

    got = stored(store, plan.id)
    assert (got.paused, got.last_expanded, got.next_expansion) == (False, DAY, NEXT)
    assert got.next_expansion is not None and got.next_expansion.utcoffset() is not None
    # next_execution (the soonest pending executor) is not next_expansion.
    assert got.next_execution == T0 + timedelta(minutes=1)
    assert (stored(store, plain.id).last_expanded, stored(store, plain.id).next_expansion) == (
        None,
        None,
    )
    states = {
        p.id: (p.paused, p.last_expanded, p.next_expansion)
        for p in store.list_plans(PlanQuery(), 10, None).items
    }
    assert states == {plan.id: (False, DAY, NEXT), plain.id: (False, None, None)}


def test_a_plan_stored_paused_reads_back_paused(store: Store) -> None:
    plan, _ = add(store, minutes=(), paused=True, last_expanded=DAY)

    got = stored(store, plan.id)
    assert (got.paused, got.last_expanded, got.next_expansion) == (True, DAY, None)


# -- list_due_expansions ---------------------------------------------------------------------


def test_due_expansions_are_listed_soonest_first_ties_by_id_up_to_the_limit(store: Store) -> None:
    hour = timedelta(hours=1)
    first = recurring(store, T0 + hour)
    tied = sorted(
        [recurring(store, T0 + 2 * hour).id, recurring(store, T0 + 2 * hour).id],
    )
    later = recurring(store, T0 + 3 * hour)
    add(store)  # not recurring
    uncommitted = recurring(store, T0, committed=False)

    assert store.list_due_expansions(T0 + 2 * hour, 10) == [first.id, *tied]
    assert store.list_due_expansions(T0 + 2 * hour, 2) == [first.id, tied[0]]
    # At its instant exactly a plan is due; a microsecond before it is not.
    assert store.list_due_expansions(T0 + hour, 10) == [first.id]
    assert store.list_due_expansions(T0 + hour - timedelta(microseconds=1), 10) == []
    assert store.list_due_expansions(T0 + 10 * hour, 10) == [first.id, *tied, later.id]

    # Committed, the plan being created becomes due; expanded, a plan leaves the list.
    store.commit_plan(uncommitted.id)
    assert store.set_expansion(first.id, None, DAY, T0 + 5 * hour)
    assert store.list_due_expansions(T0 + 3 * hour, 10) == [uncommitted.id, *tied, later.id]
    assert store.set_expansion(later.id, None, DAY, None)
    assert store.list_due_expansions(T0 + 10 * hour, 10) == [
        uncommitted.id,
        *tied,
        first.id,
    ]


def test_no_plan_is_due_when_none_is_recurring(store: Store) -> None:
    add(store)
    add(store, committed=False)

    assert store.list_due_expansions(T0 + timedelta(days=365), 10) == []


# -- add_executors ---------------------------------------------------------------------------


def test_add_executors_adds_each_id_once_with_exact_counts(store: Store) -> None:
    plan = recurring(store, minutes=(1, 2))
    day = make_executors(plan, [0.5, 10])

    assert sorted(store.add_executors(plan.id, day)) == sorted(e.id for e in day)

    got = stored(store, plan.id)
    assert counts(store, plan.id) == {"scheduled": 4}
    assert got.next_execution == T0 + timedelta(seconds=30)
    for executor in day:
        assert store.get_executor(executor.id) == executor

    # Again (an expansion run twice): nothing added, nothing counted twice.
    assert store.add_executors(plan.id, day) == []
    assert counts(store, plan.id) == {"scheduled": 4}

    # A batch that overlaps the stored ones adds only its new executors.
    (extra,) = make_executors(plan, [0.25])
    assert store.add_executors(plan.id, [day[1], extra, day[0]]) == [extra.id]
    assert counts(store, plan.id) == {"scheduled": 5}
    assert stored(store, plan.id).next_execution == T0 + timedelta(seconds=15)
    page = store.list_executors(ExecutorQuery(plan_id=plan.id), 10, None)
    assert len(page.items) == 5


def test_an_executor_already_stored_is_left_as_it_is(store: Store) -> None:
    plan = recurring(store, minutes=(1,))
    (executor,) = make_executors(plan, [3])
    assert store.add_executors(plan.id, [executor]) == [executor.id]
    claim(store, executor)
    finish(store, executor, S.SUCCEEDED)

    again = make_executors(plan, [3], ids=[executor.id])
    assert store.add_executors(plan.id, again) == []

    kept = store.get_executor(executor.id)
    assert kept is not None and kept.status is S.SUCCEEDED
    assert counts(store, plan.id) == {"scheduled": 1, "succeeded": 1}


def test_concurrent_additions_of_one_day_add_it_once(store: Store) -> None:
    plan = recurring(store, minutes=())
    day = make_executors(plan, [5, 6, 7])

    results = run_together(4, lambda number: store.add_executors(plan.id, day))

    assert sorted(executor_id for added in results for executor_id in added) == sorted(
        e.id for e in day
    )
    assert counts(store, plan.id) == {"scheduled": 3}
    assert stored(store, plan.id).next_execution == T0 + timedelta(minutes=5)


def test_add_executors_to_a_missing_or_uncommitted_plan_is_plan_not_found(store: Store) -> None:
    ghost = make_plan(plan_id="ghost-plan")
    with pytest.raises(PlanNotFound, match="plan not found ghost-plan"):
        store.add_executors(ghost.id, make_executors(ghost, [1]))

    uncommitted = recurring(store, minutes=(1,), committed=False)
    late = make_executors(uncommitted, [4])
    with pytest.raises(PlanNotFound, match=f"plan not found {uncommitted.id}"):
        store.add_executors(uncommitted.id, late)
    assert store.get_executor(late[0].id) is None
    assert counts(store, uncommitted.id) == {"scheduled": 1}


def test_executors_added_to_an_executed_plan_make_it_pending_again(store: Store) -> None:
    plan, (only,) = add(store, minutes=[1])
    claim(store, only)
    finish(store, only, S.FAILED)
    assert listed(store, PlanQuery(pending=False, executed=True)) == [plan.id]

    (added,) = make_executors(plan, [30])
    assert store.add_executors(plan.id, [added]) == [added.id]

    got = stored(store, plan.id)
    assert not got.executed and got.next_execution == added.next_run_time
    assert counts(store, plan.id) == {"failed": 1, "scheduled": 1}
    assert listed(store, PlanQuery()) == [plan.id]
    assert listed(store, PlanQuery(pending=False, executed=True)) == []


# -- set_expansion ---------------------------------------------------------------------------


def test_set_expansion_moves_forward_only_from_the_expected_state(store: Store) -> None:
    plan = recurring(store)
    tomorrow = DAY + timedelta(days=1)

    assert store.set_expansion(plan.id, None, DAY, NEXT + timedelta(days=1)) is True
    got = stored(store, plan.id)
    assert (got.last_expanded, got.next_expansion) == (DAY, NEXT + timedelta(days=1))

    # From a stale state (someone expanded already): refused, nothing written.
    assert store.set_expansion(plan.id, None, tomorrow, NEXT) is False
    assert store.set_expansion(plan.id, tomorrow, tomorrow, NEXT) is False
    got = stored(store, plan.id)
    assert (got.last_expanded, got.next_expansion) == (DAY, NEXT + timedelta(days=1))

    assert store.set_expansion(plan.id, DAY, tomorrow, None) is True
    got = stored(store, plan.id)
    assert (got.last_expanded, got.next_expansion) == (tomorrow, None)


def test_two_concurrent_expansions_from_one_state_make_one_winner(store: Store) -> None:
    plan = recurring(store, last_expanded=DAY)
    tomorrow = DAY + timedelta(days=1)

    results = run_together(
        2, lambda number: store.set_expansion(plan.id, DAY, tomorrow, NEXT + timedelta(days=1))
    )

    assert sorted(results) == [False, True]
    assert stored(store, plan.id).last_expanded == tomorrow


def test_set_expansion_is_refused_while_paused(store: Store) -> None:
    plan = recurring(store, last_expanded=DAY)
    store.set_paused(plan.id, True, DAY, None)

    assert store.set_expansion(plan.id, DAY, DAY + timedelta(days=1), NEXT) is False

    got = stored(store, plan.id)
    assert (got.paused, got.last_expanded, got.next_expansion) == (True, DAY, None)


def test_set_expansion_and_set_paused_of_a_missing_plan_are_plan_not_found(store: Store) -> None:
    with pytest.raises(PlanNotFound, match="plan not found nope"):
        store.set_expansion("nope", None, DAY, NEXT)
    with pytest.raises(PlanNotFound, match="plan not found nope"):
        store.set_paused("nope", True, None, None)
    assert store.get_plan("nope") is None


# -- set_paused ------------------------------------------------------------------------------


def test_set_paused_round_trip(store: Store) -> None:
    plan = recurring(store, last_expanded=DAY)

    paused = store.set_paused(plan.id, True, DAY, None)

    assert (paused.id, paused.paused, paused.last_expanded, paused.next_expansion) == (
        plan.id,
        True,
        DAY,
        None,
    )
    assert stored(store, plan.id) == paused
    assert store.list_due_expansions(NEXT + timedelta(days=30), 10) == []

    resumed = store.set_paused(plan.id, False, DAY + timedelta(days=3), NEXT + timedelta(days=3))

    assert (resumed.paused, resumed.last_expanded, resumed.next_expansion) == (
        False,
        DAY + timedelta(days=3),
        NEXT + timedelta(days=3),
    )
    assert stored(store, plan.id) == resumed
    assert store.list_due_expansions(NEXT + timedelta(days=3), 10) == [plan.id]
    # Unconditional on the expansion state: the next expansion starts from what resume set.
    assert store.set_expansion(plan.id, DAY + timedelta(days=3), DAY + timedelta(days=4), None)


def test_set_paused_keeps_counts_and_executors(store: Store) -> None:
    plan, executors = add(store, minutes=[1, 2])
    claim(store, executors[0])

    paused = store.set_paused(plan.id, True, None, None)

    assert paused.counts.as_dict() == stored(store, plan.id).counts.as_dict()
    assert counts(store, plan.id) == {"running": 1, "scheduled": 1}
    assert paused.next_execution == T0 + timedelta(minutes=1)


# -- the plan lists --------------------------------------------------------------------------


def test_an_active_recurring_plan_without_pending_executors_is_listed_as_pending(
    store: Store,
) -> None:
    waiting = recurring(store, minutes=())
    ran = recurring(store, minutes=(1,), created=T0 - timedelta(hours=1))
    (executor,) = store.list_executors(ExecutorQuery(plan_id=ran.id), 10, None).items
    claim(store, executor)
    finish(store, executor, S.SUCCEEDED)
    done, _ = add(store, minutes=(), created=T0 - timedelta(hours=2))

    for plan_id in (waiting.id, ran.id):
        got = stored(store, plan_id)
        assert got.counts.pending == 0 and got.next_execution is None
        assert not got.executed
    assert listed(store, PlanQuery()) == [waiting.id, ran.id]
    assert listed(store, PlanQuery(pending=False, executed=True)) == [done.id]

    # Past its end (no next expansion), with nothing pending: executed.
    assert store.set_expansion(ran.id, None, DAY, None)
    assert stored(store, ran.id).executed
    assert listed(store, PlanQuery()) == [waiting.id]
    assert listed(store, PlanQuery(pending=False, executed=True)) == [ran.id, done.id]

    # Resumed with a next expansion: pending again.
    store.set_paused(ran.id, False, DAY, NEXT)
    assert listed(store, PlanQuery()) == [waiting.id, ran.id]


def test_the_lists_follow_plan_executed_through_pause_and_resume(store: Store) -> None:
    plan = recurring(store, minutes=())

    # Paused, no next expansion and nothing pending: executed, as Plan.executed says.
    paused = store.set_paused(plan.id, True, DAY, None)
    assert paused.executed
    assert listed(store, PlanQuery()) == []
    assert listed(store, PlanQuery(pending=False, executed=True)) == [plan.id]

    resumed = store.set_paused(plan.id, False, DAY, NEXT)
    assert not resumed.executed
    assert listed(store, PlanQuery()) == [plan.id]
    assert listed(store, PlanQuery(pending=False, executed=True)) == []


def test_times_compare_as_instants_whatever_their_zone(store: Store) -> None:
    plan = recurring(store, next_expansion=datetime(2026, 12, 2, 1, 0, tzinfo=MADRID_WINTER))

    assert store.list_due_expansions(datetime(2026, 12, 2, 0, 0, tzinfo=UTC), 10) == [plan.id]
    assert store.list_due_expansions(datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC), 10) == []
