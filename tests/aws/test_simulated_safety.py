"""The safety guards and the recurring expansion under AWS's documented behaviour.

The engine runs as deployed (DynamoStore, EventBridgeScheduler and the audit trail on
moto, the attack Lambda's handler) on tests/aws/simulator.py's timeline, which delivers
its schedules the way EventBridge Scheduler does and injects DynamoDB's and Scheduler's
failure modes. Behaviours relied on, as AWS documents them:

- EventBridge Scheduler has 60 s precision (a one-time schedule fires anywhere in its
  at() minute) and delivers at least once:
  https://docs.aws.amazon.com/scheduler/latest/UserGuide/managing-schedule-flexible-time-windows.html
  https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-event-delivery.html
- DynamoDB cancels a transaction that conflicts with another one on an item
  (TransactionConflict), and throttles; the SDK retries throttling, not conflicts:
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-conflict-handling
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from itertools import pairwise
from typing import Any

import boto3
import pytest

from chalicelib.domain.events import EventKind
from chalicelib.domain.model import Executor, ExecutorStatus, Plan
from chalicelib.domain.recurrence import occurrence_key
from chalicelib.services.safety import HaltRequest
from tests.aws.conftest import REGION, schedule_names
from tests.aws.simulator import at_instant
from tests.aws.test_simulated_aws import RECORDER, World, at
from tests.aws.test_simulated_aws import world as world  # noqa: PLC0414 (the fixture)

INTERVAL = timedelta(seconds=60)


def window_plan(w: World, name: str, first: str, last: str, times: int, **extra: Any) -> Plan:
    return w.engine.plans.create(
        {
            "name": name,
            "attack": RECORDER,
            "planner": {
                "ref": "simple_planner:SimplePlanner",
                "args": {"min_time": first, "max_time": last, "times": times},
            },
            **extra,
        }
    )


def move(w: World, executor: Executor, when: datetime) -> None:
    w.engine.executors.reschedule(executor.id, {"type": "date", "args": {"date": when.isoformat()}})


def redeliver(w: World, executors: list[Executor], when: datetime) -> list[Any]:
    """Deliver each executor's event once more at ``when``, each in a simulated attack
    Lambda of its own (an at-least-once copy that comes late); returns their answers."""
    from app import attack as attack_handler

    answers: list[Any] = []

    def deliver(event: dict[str, Any]) -> None:
        answers.append(attack_handler(dict(event), None))

    def fire() -> None:
        for executor in executors:
            event = w.sim.deliveries_of(executor.id)[0].event
            w.clock.spawn(f"late-copy:{executor.id}", partial(deliver, event))

    w.clock.call_at(when, fire)
    return answers


def past_sdk_throttles(w: World) -> int:
    """Throttles the simulator raised past botocore's retries, to the engine itself."""
    codes = ("ProvisionedThroughputExceededException", "ThrottlingException")
    return sum(w.aws.injected[code] for code in codes) + w.aws.injected["SchedulerThrottling"]


def exact_counts(w: World, plan: Plan, executors: list[Executor]) -> list[str]:
    """The plan's counters against its executors' statuses: the differences."""
    stored = w.engine.store.get_plan(plan.id)
    assert stored is not None
    mine = Counter(e.status for e in executors)
    counted = {s.value: stored.counts.of(s) for s in ExecutorStatus}
    actual = {s.value: mine[s] for s in ExecutorStatus}
    return [] if counted == actual else [f"plan {plan.name} counts {counted}, executors {actual}"]


# -- 1. the minimum interval ------------------------------------------------------------------


def test_the_minimum_interval_holds_under_aws_behaviour(world: Callable[..., World]):
    """Three plans share a 60 s group; 45 executors due within 10 minutes (some in the
    same second), 20 % delivered twice (half at once), conflicts and throttles: no two
    attacks of the group within 60 s, each executor ends once, one event per move."""
    w = world(seed=11, duplicates=0.2, audited=True)
    safety = {"min_interval": {"seconds": INTERVAL.total_seconds(), "group": "payments"}}
    plans = [
        window_plan(w, name, first, last, 15, safety=safety)
        for name, first, last in (
            ("a", "09:10", "09:20"),
            ("b", "09:11", "09:21"),
            ("c", "09:12", "09:22"),
        )
    ]
    # Some due in the same second: one of each plan at 09:15:30, two more at 09:18:07.
    firsts = [w.executors(plan.id) for plan in plans]
    for executors in firsts:
        move(w, executors[0], at("09:15:30"))
    move(w, firsts[0][1], at("09:18:07"))
    move(w, firsts[1][1], at("09:18:07"))
    ids = {e.id for executors in firsts for e in executors}
    assert len(ids) == 45

    # 5 % of transactions conflict (on top of the real overlaps; botocore never retries
    # those), 5 % of HTTP attempts are throttled (botocore retries those) and 1 % of
    # calls stay throttled after botocore's retries; index reads lag.
    w.misbehave()
    w.aws.gsi_lag_writes = 10
    w.clock.run_until_idle(at("09:40"))
    w.clock.join()
    w.calm()
    assert w.clock.errors == []

    final = {e.id: e for plan in plans for e in w.executors(plan.id)}
    assert set(final) == ids
    problems: list[str] = []
    for executor in final.values():
        ok = executor.status is ExecutorStatus.SUCCEEDED or (
            executor.status is ExecutorStatus.SKIPPED
            and (executor.reason or "").startswith("min interval:")
        )
        if not ok:
            problems.append(f"{executor.name} ended {executor.status.value}: {executor.reason}")
    ran = Counter(run["executor_id"] for run in w.runs)
    problems += [f"executor {i} ran {n} times" for i, n in ran.items() if n > 1]
    problems += [
        f"{e.name} succeeded without its attack"
        for e in final.values()
        if (e.status is ExecutorStatus.SUCCEEDED) != (ran[e.id] == 1)
    ]
    # The interval is recorded at the claim (started_at); the attack runs just after.
    attacks = sorted(run["at"] for run in w.runs)
    problems += [
        f"attacks at {a.time()} and {b.time()} are {(b - a).total_seconds():.3f} s apart"
        for a, b in pairwise(attacks)
        if b - a < INTERVAL - timedelta(seconds=1)
    ]
    claims = sorted(
        e.started_at
        for e in final.values()
        if e.status is ExecutorStatus.SUCCEEDED and e.started_at is not None
    )
    problems += [
        f"claims at {a.time()} and {b.time()} are {(b - a).total_seconds():.3f} s apart"
        for a, b in pairwise(claims)
        if b - a < INTERVAL
    ]
    for plan in plans:
        problems += exact_counts(w, plan, [e for e in final.values() if e.plan_id == plan.id])

    # One executor.started per claimed executor, one executor.finished per ended one.
    for plan in plans:
        events = w.events(plan.id)
        started = Counter(e.executor_id for e in events if e.kind is EventKind.EXECUTOR_STARTED)
        finished = Counter(e.executor_id for e in events if e.kind is EventKind.EXECUTOR_FINISHED)
        for executor in (e for e in final.values() if e.plan_id == plan.id):
            claimed = 1 if executor.started_at is not None else 0
            if started[executor.id] != claimed:
                problems.append(f"{executor.name}: {started[executor.id]} started events")
            if finished[executor.id] != 1:
                problems.append(f"{executor.name}: {finished[executor.id]} finished events")
    assert problems == [], "\n".join([f"{len(problems)} problems", *problems[:40]])

    # The run did exercise what it claims to.
    statuses = Counter(e.status for e in final.values())
    assert statuses[ExecutorStatus.SUCCEEDED] >= 5
    assert statuses[ExecutorStatus.SKIPPED] >= 10
    assert sum(d.duplicate for d in w.sim.deliveries) >= 5
    concurrent = Counter((d.schedule, d.fired_at) for d in w.sim.deliveries)
    assert any(n > 1 for n in concurrent.values())
    assert w.aws.injected["TransactionConflict"] > 0
    assert w.aws.injected["SdkThrottle"] > 0
    assert past_sdk_throttles(w) > 0
    assert ran  # the recorder ran


# -- 2. the halt ------------------------------------------------------------------------------


def test_the_halt_holds_under_aws_behaviour(world: Callable[..., World]):
    """A halt set in the middle of a plan's executors and lifted later: those due while
    it held are skipped "halted:", duplicates of them do nothing, later ones run."""
    w = world(seed=6, duplicates=0.5, audited=True)
    plan = window_plan(w, "halted", "09:10", "09:30", 20)
    executors = sorted(w.executors(plan.id), key=lambda e: e.next_run_time)
    times = [e.next_run_time for e in executors]
    # The halt between the 7th and 8th executors, the lift between the 14th and 15th,
    # each at the middle of their gap (the gaps are seconds at least).
    halt_at = times[6] + (times[7] - times[6]) / 2
    lift_at = times[13] + (times[14] - times[13]) / 2
    assert times[7] - times[6] > timedelta(seconds=2)
    assert times[14] - times[13] > timedelta(seconds=2)

    w.misbehave()
    w.clock.run_until(halt_at)
    w.calm()
    w.engine.halt.set(HaltRequest(True, "game day postponed"), by="tester")
    w.misbehave()
    w.clock.run_until(lift_at)
    w.calm()
    w.engine.halt.set(HaltRequest(False), by="tester")
    # At least once means a copy may come any time later: one more copy of every
    # skipped executor's event, delivered after the lift (on top of the simulator's own).
    skipped_by_now = [e for e in executors if e.next_run_time < lift_at][7:]
    late_copies = redeliver(w, skipped_by_now, lift_at + timedelta(seconds=5))
    w.misbehave()
    w.clock.run_until_idle(at("09:45"))
    w.clock.join()
    w.calm()
    assert w.clock.errors == []

    final = {e.id: e for e in w.executors(plan.id)}
    ran = Counter(run["executor_id"] for run in w.runs)
    problems: list[str] = []
    for executor in executors:
        ended = final[executor.id]
        halted = halt_at < executor.next_run_time < lift_at
        if halted:
            if ended.status is not ExecutorStatus.SKIPPED or not (ended.reason or "").startswith(
                "halted: "
            ):
                problems.append(f"{ended.name} ended {ended.status.value}: {ended.reason}")
            if ran[executor.id]:
                problems.append(f"{ended.name} ran while halted")
        elif ended.status is not ExecutorStatus.SUCCEEDED or ran[executor.id] != 1:
            problems.append(f"{ended.name} ended {ended.status.value}, ran {ran[executor.id]}")
    problems += exact_counts(w, plan, list(final.values()))
    assert problems == [], "\n".join(problems)

    skipped = {e.id for e in final.values() if e.status is ExecutorStatus.SKIPPED}
    assert len(skipped) == 7
    assert all("game day postponed" in (final[i].reason or "") for i in skipped)
    # Duplicates of skipped executors were delivered (by the simulator, and once more
    # after the lift) and did nothing: no run, and no second start or end of any.
    copies = [d for d in w.sim.deliveries if d.duplicate and d.event["executor_id"] in skipped]
    assert copies
    assert all(d.outcome == "ok" for d in copies)
    assert {executor.id for executor in skipped_by_now} == skipped
    assert [answer["status"] for answer in late_copies] == ["skipped"] * 7
    assert w.aws.injected["SdkThrottle"] > 0
    assert past_sdk_throttles(w) > 0
    assert w.aws.injected["TransactionConflict"] + w.aws.injected["OngoingTransaction"] > 0


# -- 3. the recurring expansion ---------------------------------------------------------------


def test_the_recurring_expansion_holds_under_aws_behaviour(
    world: Callable[..., World], monkeypatch: pytest.MonkeyPatch
):
    """A recurring plan over three virtual days, expanded every hour by two runners at
    once, with conflicts and throttles: each day's executors exist once, each delivered
    one runs once, none is created in the past, every pending one has its schedule."""
    w = world(seed=3, duplicates=0.2, audited=True)
    plan = w.engine.plans.create(
        {
            "name": "daily",
            "attack": RECORDER,
            "planner": {
                "ref": "recurring_planner:RecurringPlanner",
                "args": {
                    "weekdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                    "min_time": "10:00",
                    "max_time": "16:00",
                    "times": 3,
                },
            },
        }
    )
    days = [date(2026, 12, 1) + timedelta(days=n) for n in range(4)]
    end = datetime(2026, 12, 3, 23, 30, tzinfo=UTC)

    w.misbehave()
    w.aws.gsi_lag_writes = 10
    adds: list[date] = []
    store = w.engine.expansion.store
    add_executors = store.add_executors

    def counted(plan_id: str, executors: Any) -> list[str]:
        adds.extend(e.next_run_time.date() for e in executors[:1])
        return add_executors(plan_id, executors)

    monkeypatch.setattr(store, "add_executors", counted)
    expansions = [
        w.sim.every(timedelta(hours=1), end, name, w.engine.expansion.expand_due)
        for name in ("expander", "expander-again")
    ]
    # Not until idle: the fourth day's deliveries are still ahead.
    w.clock.run_until(end + timedelta(minutes=10))
    w.clock.join()
    w.calm()
    assert w.clock.errors == []
    assert all(len(results) == 62 for results in expansions)  # 10:00 on day 1 to 23:00 on day 3
    failures = [r for results in expansions for r in results if isinstance(r, Exception)]
    assert failures == []

    final = {e.id: e for e in w.executors(plan.id)}
    expected = {occurrence_key(plan.id, day, index) for day in days for index in range(3)}
    assert set(final) == expected  # each occurrence once, under its occurrence_key
    ran = Counter(run["executor_id"] for run in w.runs)
    delivered = {d.event["executor_id"] for d in w.sim.deliveries}
    problems: list[str] = []
    for executor in final.values():
        due = executor.next_run_time < end
        if due and (executor.status is not ExecutorStatus.SUCCEEDED or ran[executor.id] != 1):
            problems.append(
                f"{executor.name} ended {executor.status.value} ({executor.reason}), "
                f"ran {ran[executor.id]}"
            )
        if due and executor.id not in delivered:
            problems.append(f"{executor.name} was never delivered")
        if not due and executor.status is not ExecutorStatus.SCHEDULED:
            problems.append(f"{executor.name} (pending) is {executor.status.value}")
    problems += exact_counts(w, plan, list(final.values()))
    assert problems == [], "\n".join(problems)

    # None in the past: every schedule was created ahead of its at(), none refused.
    assert w.sim.refused == []
    for call in w.aws.calls_of("CreateSchedule"):
        fires = at_instant(
            call.params["ScheduleExpression"], call.params.get("ScheduleExpressionTimezone")
        )
        assert fires > call.started
    pending = {e.id for e in final.values() if e.status is ExecutorStatus.SCHEDULED}
    assert len(pending) == 3  # the fourth day's, expanded on the third
    with w.aws.internal():
        assert set(schedule_names(boto3.client("scheduler", region_name=REGION))) == pending

    # The two runners did overlap: some day was added by both (the second adding nothing).
    assert sorted(Counter(adds).values())[-1] > 1, adds
    assert sum(d.duplicate for d in w.sim.deliveries) > 0
    assert w.aws.injected["SdkThrottle"] > 0
    assert past_sdk_throttles(w) > 0
    assert w.aws.injected["TransactionConflict"] + w.aws.injected["OngoingTransaction"] > 0
