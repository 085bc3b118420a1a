"""The deployed engine under AWS's documented behaviour, through tests/aws/simulator.py.

The engine runs as deployed (DynamoStore and EventBridgeScheduler on moto, the attack
Lambda's handler) on a simulated timeline; the simulator delivers its schedules the way
EventBridge Scheduler does and injects DynamoDB's and Scheduler's failure modes. The
documentation each behaviour follows is cited in the simulator's docstring.
"""

from __future__ import annotations

import json
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib.adapters.eventbridge import EventBridgeScheduler
from chalicelib.api.context import set_engine
from chalicelib.bootstrap import Engine, build_audit, build_engine
from chalicelib.domain.errors import PlanningError, SchedulingError
from chalicelib.domain.events import Event
from chalicelib.domain.model import Executor, ExecutorStatus, Plan
from chalicelib.domain.ports import ExecutorQuery, Page
from chalicelib.domain.times import Deadline
from chalicelib.settings import Settings
from tests.aws.conftest import GROUP, REGION, TARGET, schedule_names
from tests.aws.simulator import (
    LambdaDied,
    SchedulerSimulator,
    SimulatedAws,
    VirtualClock,
    at_instant,
)
from tests.conftest import FIXTURES

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
T = TypeVar("T")
QUEUE = TARGET.dead_letter_arn.rsplit(":", 1)[-1]
RECORDER = {"ref": "recorder:Recorder", "args": {"label": "simulated"}}


def at(text: str) -> datetime:
    """A time of the simulated day (UTC)."""
    return datetime.fromisoformat(f"2026-12-01T{text}+00:00")


@dataclass
class World:
    """The engine as deployed, on moto, under the simulator."""

    clock: VirtualClock
    aws: SimulatedAws
    sim: SchedulerSimulator
    engine: Engine
    scheduler: EventBridgeScheduler
    runs: list[dict[str, Any]]

    def exact_plan(self, when: datetime, name: str = "exact") -> tuple[Plan, Executor]:
        plan = self.engine.plans.create(
            {
                "name": name,
                "attack": RECORDER,
                "planner": {
                    "ref": "exact_planner:ExactPlanner",
                    "args": {"date": when.isoformat()},
                },
            }
        )
        (executor,) = self.executors(plan.id)
        return plan, executor

    def window_plan(self, name: str, first: str, last: str, times: int) -> Plan:
        return self.engine.plans.create(
            {
                "name": name,
                "attack": RECORDER,
                "planner": {
                    "ref": "simple_planner:SimplePlanner",
                    "args": {"min_time": first, "max_time": last, "times": times},
                },
            }
        )

    @contextmanager
    def faultless(self) -> Iterator[None]:
        """The test's own reads: without index lag or faults, restored afterwards."""
        saved = (self.aws.gsi_lag_writes, self.aws.throttles, self.aws.transaction_conflicts)
        self.aws.gsi_lag_writes = 0
        self.aws.throttles = self.aws.transaction_conflicts = 0.0
        try:
            yield
        finally:
            self.aws.gsi_lag_writes, self.aws.throttles, self.aws.transaction_conflicts = saved

    def executors(self, plan_id: str) -> list[Executor]:
        """Every executor of a plan, read without index lag or faults."""
        query = ExecutorQuery(executed=None, plan_id=plan_id)
        with self.faultless():
            return every_page(lambda cursor: self.engine.store.list_executors(query, 500, cursor))

    def events(self, plan_id: str) -> list[Event]:
        """Every audit event of a plan (an engine built ``audited``), read without faults."""
        audit = self.engine.audit
        assert audit is not None, "build the world with audited=True"
        with self.faultless():
            return every_page(lambda cursor: audit.events.list(plan_id, None, 500, cursor))

    def calm(self) -> None:
        """AWS behaves from now on (for the test's own reads and writes)."""
        self.aws.gsi_lag_writes = 0
        self.aws.throttles = self.aws.transaction_conflicts = self.aws.sdk_throttles = 0.0

    def misbehave(self, conflicts: float = 0.05, sdk: float = 0.05, past_sdk: float = 0.01) -> None:
        self.aws.transaction_conflicts = conflicts
        self.aws.sdk_throttles = sdk
        self.aws.throttles = past_sdk

    def runs_of(self, executor_id: str) -> list[dict[str, Any]]:
        return [run for run in self.runs if run["executor_id"] == executor_id]


def every_page(read: Callable[[str | None], Page[T]]) -> list[T]:
    """Every item of a paged list, following its cursors."""
    found: list[T] = []
    cursor: str | None = None
    while True:
        page = read(cursor)
        found.extend(page.items)
        if page.cursor is None:
            return found
        cursor = page.cursor


@pytest.fixture
def world(aws: None, scheduler_client: Any, chalice_app: Any) -> Iterator[Callable[..., World]]:
    """Build the engine under the simulator: ``world(seed=..., duplicates=..., ...)``."""
    stack = ExitStack()
    boto3.client("sqs", region_name=REGION).create_queue(QueueName=QUEUE)

    def make(
        *,
        seed: int = 1,
        duplicates: float = 0.0,
        concurrent_duplicates: float = 0.5,
        retries: str = "retry-policy",
        fire_offset: Callable[[random.Random], float] | None = None,
        latency: tuple[float, float] = (0.005, 0.04),
        api_latency: dict[str, float] | None = None,
        concurrency: int = 1,
        allowed_lateness: timedelta = timedelta(minutes=2),
        start: datetime = START,
        audited: bool = False,
    ) -> World:
        from app import attack as attack_handler
        from chalicelib.adapters.dynamo import Backoff, DynamoStore

        clock = VirtualClock(start)
        simulated = stack.enter_context(
            SimulatedAws(clock, seed=seed, latency=latency, api_latency=api_latency)
        )
        settings = Settings(
            timezone_name="UTC",
            plans_table="cme-sim-plans",
            executors_table="cme-sim-executors",
            events_table="cme-sim-events",
            aws_region=REGION,
            schedule_group=GROUP,
            allowed_lateness=allowed_lateness,
            attack_folders=(FIXTURES / "test_attacks",),
        )
        jitter = random.Random(seed)
        store = DynamoStore(
            settings,
            clock=clock,
            backoff=Backoff(sleep=clock.sleep, monotonic=clock.monotonic, jitter=jitter.random),
        )
        # ``audited``: the audit trail on DynamoDB as deployed (its table made as
        # CloudFormation would), so that its writes meet the same faults.
        audit = build_audit(settings, local=False, clock=clock) if audited else None
        with simulated.internal():
            store.create_tables()
            if audit is not None:
                audit.events.create_table()  # type: ignore[attr-defined]
        # As bootstrap builds it: the adapter retries, botocore does not.
        no_retries = Config(retries={"mode": "standard", "total_max_attempts": 1})
        scheduler = EventBridgeScheduler(
            client_factory=lambda: boto3.client("scheduler", region_name=REGION, config=no_retries),
            target_factory=lambda: TARGET,
            group=GROUP,
            allowed_lateness=settings.allowed_lateness,
            concurrency=concurrency,
            rate_per_second=0,
            plan_deadline=settings.plan_deadline,
            now=clock.now,
            sleep=clock.sleep,
            monotonic=clock.monotonic,
        )
        engine = build_engine(settings, store, lambda runner: scheduler, clock, audit=audit)
        set_engine(chalice_app, engine)
        runs: list[dict[str, Any]] = sys.modules[
            engine.attacks.resolve("recorder:Recorder").__module__
        ].RUNS
        runs.clear()
        sim = SchedulerSimulator(
            clock,
            simulated,
            lambda event: attack_handler(event, None),
            group=GROUP,
            region=REGION,
            seed=seed,
            duplicates=duplicates,
            concurrent_duplicates=concurrent_duplicates,
            retries=retries,
            fire_offset=fire_offset,
        )
        return World(clock, simulated, sim, engine, scheduler, runs)

    with stack:
        yield make


def lateness(run: dict[str, Any], executor: Executor) -> float:
    return float((run["at"] - executor.next_run_time).total_seconds())


# -- the acceptance run -------------------------------------------------------------------------


def test_acceptance_many_plans_through_aws_behaviour(world: Callable[..., World]):
    """>= 200 executors in 3 plans; deliveries anywhere in the at() minute, 20 %
    delivered twice, 10 % of calls conflicting or throttled, lagging indexes, one Lambda
    killed, the reaper every 5 minutes: every executor ends once, on time."""
    w = world(seed=7, duplicates=0.2)
    plans = [
        w.window_plan("first", "09:10", "09:30", 70),
        w.window_plan("second", "09:15", "09:35", 70),
        w.window_plan("third", "09:20", "09:40", 70),
    ]
    executors = {e.id: e for plan in plans for e in w.executors(plan.id)}
    assert len(executors) == 210
    assert len(schedule_names(boto3.client("scheduler", region_name=REGION))) == 210

    # From now on AWS misbehaves: 5 % of transactions conflict on top of the real
    # overlaps (botocore never retries those), 5 % of HTTP attempts are throttled
    # (botocore retries those) and 1 % of calls stay throttled after botocore's retries,
    # index reads lag 25 writes, and one simulated Lambda is killed at its 150th call.
    w.aws.transaction_conflicts = 0.05
    w.aws.sdk_throttles = 0.05
    w.aws.throttles = 0.01
    w.aws.gsi_lag_writes = 25
    w.aws.kill_at(150)
    end = at("10:15:00")
    reaps = w.sim.every(timedelta(minutes=5), end, "reaper", w.engine.runner.reap_lost)
    w.clock.run_until_idle(end + timedelta(minutes=5))
    w.clock.join()
    assert w.clock.errors == []
    assert len(w.aws.deaths) == 1

    # Every invariant is checked and every breach listed, so one run tells all.
    problems: list[str] = []
    problems += [f"a reaper run failed: {r!r}"[:300] for r in reaps if isinstance(r, Exception)]
    try:
        left = w.engine.runner.reap_lost()
        if left:
            problems.append(f"a last reaper run still ended {left} executors")
    except Exception as error:
        problems.append(f"the last reaper run failed: {error!r}"[:300])

    final = {e.id: e for plan in plans for e in w.executors(plan.id)}
    assert set(final) == set(executors)
    statuses = Counter(e.status for e in final.values())
    problems += [
        f"executor {e.id} ended {e.status.value}" for e in final.values() if e.status.is_pending
    ]

    # No attack ran twice, none before its second, and each ran within 1 s of it,
    # except one whose Lambda was killed before it could claim (its retry is late).
    killed = {d.event["executor_id"] for d in w.sim.deliveries if d.outcome == "died"}
    ran = Counter(run["executor_id"] for run in w.runs)
    problems += [f"executor {i} ran {n} times" for i, n in ran.items() if n > 1]
    for run in w.runs:
        executor = final[run["executor_id"]]
        late = lateness(run, executor)
        if late < 0 or (late > 1.0 and executor.id not in killed):
            trail = [
                f"{(c.started - executor.next_run_time).total_seconds():+.3f} {c.operation}"
                for c in w.aws.calls
                if executor.id in c.thread and c.started >= executor.next_run_time
            ]
            problems.append(
                f"executor {executor.id} ran {late:+.3f} s from its second; calls: {trail}"
            )
    for executor in final.values():
        if executor.started_at is not None:
            started = (executor.started_at - executor.next_run_time).total_seconds()
            if started < 0 or (started > 1.0 and executor.id not in killed):
                problems.append(f"executor {executor.id} started {started:+.3f} s from it")
        if executor.status is ExecutorStatus.SUCCEEDED and ran[executor.id] != 1:
            problems.append(f"executor {executor.id} succeeded without its attack")

    # The plan counters are exactly what the executors say.
    for plan in plans:
        stored = w.engine.store.get_plan(plan.id)
        assert stored is not None
        mine = Counter(e.status for e in final.values() if e.plan_id == plan.id)
        counted = {s.value: stored.counts.of(s) for s in ExecutorStatus}
        actual = {s.value: mine[s] for s in ExecutorStatus}
        if counted != actual:
            problems.append(f"plan {plan.name} counts {counted}, its executors {actual}")

    assert problems == [], "\n".join(
        [f"{len(problems)} problems; statuses {dict(statuses)}", *problems[:40]]
    )

    # The run did exercise what it claims to.
    early = [d for d in w.sim.deliveries if not d.duplicate and d.attempt == 1]
    assert all(d.fired_at < executors[d.event["executor_id"]].next_run_time for d in early)
    assert sum(d.duplicate for d in w.sim.deliveries) >= 25
    assert w.aws.injected["TransactionConflict"] > 0
    assert w.aws.injected["SdkThrottle"] > 0
    assert w.aws.injected["LaggingIndexRead"] > 0
    assert statuses[ExecutorStatus.SUCCEEDED] >= 200


# -- one test per fix -------------------------------------------------------------------------


@pytest.mark.parametrize("second", [0, 45, 59])
@pytest.mark.parametrize("offset", [0.0, 59.999])
def test_an_early_delivery_runs_at_its_executors_second(
    world: Callable[..., World], second: int, offset: float
):
    w = world(fire_offset=lambda rng: offset)
    due = at(f"09:10:{second:02d}")
    _, executor = w.exact_plan(due)

    w.clock.run_until_idle(at("09:20"))

    (delivery,) = w.sim.deliveries
    assert delivery.fired_at == at("09:09:00") + timedelta(seconds=offset)
    assert delivery.fired_at < due  # 1-119 s early
    (run,) = w.runs
    assert 0 <= lateness(run, executor) <= 1.0
    stored = w.engine.store.get_executor(executor.id)
    assert stored is not None
    assert stored.status is ExecutorStatus.SUCCEEDED
    assert stored.started_at is not None
    assert timedelta(0) <= stored.started_at - due <= timedelta(seconds=1)


@pytest.mark.parametrize("retries", ["retry-policy", "lambda-async"])
def test_a_stale_delivery_after_a_reschedule_does_not_run(
    world: Callable[..., World], retries: str
):
    w = world(fire_offset=lambda rng: 0.0, retries=retries)
    _, executor = w.exact_plan(at("09:10:30"))
    w.clock.run_until(at("09:09:30"))  # delivered at 09:09:00; waiting for 09:10:30
    assert len(w.sim.deliveries) == 1

    moved = w.engine.executors.reschedule(
        executor.id, {"type": "date", "args": {"date": "2026-12-01T09:20:30Z"}}
    )
    assert moved.next_run_time == at("09:20:30")
    w.clock.run_until_idle(at("09:30"))

    stale, current = w.sim.deliveries_of(executor.id)
    assert stale.event["run_at"] == "2026-12-01T09:10:30+00:00"
    assert current.event["run_at"] == "2026-12-01T09:20:30+00:00"
    (run,) = w.runs
    assert run["at"] >= at("09:20:30")
    stored = w.engine.store.get_executor(executor.id)
    assert stored is not None
    assert stored.status is ExecutorStatus.SUCCEEDED
    assert stored.started_at is not None
    assert stored.started_at >= at("09:20:30")


def test_twenty_executors_of_a_plan_finishing_together_keep_exact_counts(
    world: Callable[..., World],
):
    # Long calls, so that the 20 claims and the 20 outcomes overlap on the plan item.
    w = world(latency=(0.02, 0.06), duplicates=0.5)
    plan = w.window_plan("together", "09:30", "09:50", 20)
    due = "2026-12-01T09:20:00Z"
    for executor in w.executors(plan.id):
        w.engine.executors.reschedule(executor.id, {"type": "date", "args": {"date": due}})

    w.clock.run_until_idle(at("09:40"))

    assert w.clock.errors == []
    assert w.aws.injected["OngoingTransaction"] > 0  # DynamoDB cancelled overlapping ones
    assert len(w.runs) == 20
    assert len({run["executor_id"] for run in w.runs}) == 20
    stored = w.engine.store.get_plan(plan.id)
    assert stored is not None
    assert stored.counts.of(ExecutorStatus.SUCCEEDED) == 20
    assert stored.counts.total == 20
    assert stored.executed
    assert all(e.status is ExecutorStatus.SUCCEEDED for e in w.executors(plan.id))


def test_the_reaper_goes_past_an_orphan(world: Callable[..., World]):
    w = world()
    # A plan deleted while its index still lags: its executors outlive it as orphans.
    w.aws.gsi_lag_writes = 1000
    doomed = w.window_plan("doomed", "09:10", "09:20", 5)
    ids = [e.id for e in w.executors(doomed.id)]
    w.engine.plans.delete(doomed.id)
    w.aws.gsi_lag_writes = 0
    orphans = [i for i in ids if w.engine.store.get_executor(i) is not None]
    assert orphans, "the lagging index should have hidden the executors from the delete"

    # A healthy executor whose schedule is lost: only the reaper can end it.
    _, lost = w.exact_plan(at("09:15:00"), name="lost")
    with w.aws.internal():
        boto3.client("scheduler", region_name=REGION).delete_schedule(Name=lost.id, GroupName=GROUP)

    w.clock.run_until_idle(at("09:40"))
    reaped = w.engine.runner.reap_lost()

    assert reaped >= 1
    assert all(w.engine.store.get_executor(i) is None for i in orphans)
    ended = w.engine.store.get_executor(lost.id)
    assert ended is not None
    assert ended.status is ExecutorStatus.MISSED
    assert w.runs == []


def test_a_creation_past_its_deadline_is_undone_exactly(world: Callable[..., World]):
    # Every Scheduler call of the API Lambda takes 1 s; creation has a 10 s deadline.
    w = world(api_latency={"scheduler": 1.0})
    payload = {
        "name": "slow",
        "attack": RECORDER,
        "planner": {
            "ref": "simple_planner:SimplePlanner",
            "args": {"min_time": "09:10", "max_time": "09:50", "times": 20},
        },
    }
    with pytest.raises(SchedulingError, match="deadline"):
        w.engine.plans.create(payload, deadline=Deadline(10, w.clock.monotonic))
    assert w.clock.now() <= START + timedelta(seconds=10)  # done, undo included, in time

    created = {c.params["Name"] for c in w.aws.calls_of("CreateSchedule")}
    deleted = {c.params["Name"] for c in w.aws.calls_of("DeleteSchedule")}
    assert 0 < len(created) < 20
    assert deleted == created  # exactly those, and nothing never created
    with w.aws.internal():
        assert schedule_names(boto3.client("scheduler", region_name=REGION)) == []
        assert w.engine.store.list_abandoned_plans(START + timedelta(hours=1), 10) == []


def test_a_schedule_in_the_past_is_refused(world: Callable[..., World]):
    w = world()
    client = boto3.client("scheduler", region_name=REGION)
    w.clock.run_until(at("09:05"))

    # AWS (as simulated) refuses an at() that has passed.
    with pytest.raises(ClientError, match="ValidationException"):
        client.create_schedule(
            Name="late",
            GroupName=GROUP,
            ScheduleExpression="at(2026-12-01T09:04:00)",
            ScheduleExpressionTimezone="UTC",
            FlexibleTimeWindow={"Mode": "OFF"},
            Target={"Arn": TARGET.attack_function_arn, "RoleArn": TARGET.role_arn},
        )
    assert len(w.sim.refused) == 1

    # The engine never sends one: too soon for the minimum lead time ...
    with pytest.raises(PlanningError, match="minimum lead time"):
        w.exact_plan(at("09:07:30"))
    # ... and the adapter refuses an at() whose minute has begun.
    soon = Executor(
        id="a" * 32, plan_id="p" * 32, name="soon", next_run_time=at("09:06:10"), attack=RECORDER
    )
    with pytest.raises(SchedulingError, match="has begun"):
        w.scheduler.create([soon])
    assert w.aws.calls_of("CreateSchedule")[1:] == []  # only the raw call above


# -- the simulator behaves as documented ----------------------------------------------------


def raw_schedule(client: Any, name: str, fires: datetime, **target: Any) -> None:
    client.create_schedule(
        Name=name,
        GroupName=GROUP,
        ScheduleExpression=f"at({fires.replace(tzinfo=None).isoformat()})",
        ScheduleExpressionTimezone="UTC",
        FlexibleTimeWindow={"Mode": "OFF"},
        ActionAfterCompletion="DELETE",
        Target={
            "Arn": TARGET.attack_function_arn,
            "RoleArn": TARGET.role_arn,
            "Input": json.dumps({"executor_id": name}),
            "DeadLetterConfig": {"Arn": TARGET.dead_letter_arn},
            **target,
        },
    )


Bare = Callable[..., tuple[VirtualClock, SimulatedAws, SchedulerSimulator]]


@pytest.fixture
def bare(aws: None, scheduler_client: Any) -> Iterator[Bare]:
    """The simulator alone, with a handler the test gives."""
    stack = ExitStack()
    boto3.client("sqs", region_name=REGION).create_queue(QueueName=QUEUE)

    def make(
        handler: Callable[[dict[str, Any]], Any], **options: Any
    ) -> tuple[VirtualClock, SimulatedAws, SchedulerSimulator]:
        clock = VirtualClock(START)
        simulated = stack.enter_context(SimulatedAws(clock, seed=3))
        sim = SchedulerSimulator(
            clock, simulated, handler, group=GROUP, region=REGION, seed=3, **options
        )
        return clock, simulated, sim

    with stack:
        yield make


def test_deliveries_land_anywhere_in_the_at_minute_and_the_schedule_is_deleted(
    bare: Bare, scheduler_client: Any
):
    seen: list[tuple[str, datetime]] = []

    def record(event: dict[str, Any]) -> None:
        seen.append((event["executor_id"], clock.now()))

    clock, _, _ = bare(record)
    for index in range(60):
        raw_schedule(scheduler_client, f"s{index}", at("09:10"))

    clock.run_until_idle(at("09:20"))

    moments = sorted(moment for _, moment in seen)
    assert len(seen) == 60
    assert at("09:10") <= moments[0] < at("09:10:10")
    assert at("09:10:50") < moments[-1] < at("09:11")
    assert schedule_names(scheduler_client) == []  # ActionAfterCompletion=DELETE
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        scheduler_client.delete_schedule(Name="s0", GroupName=GROUP)


def test_duplicates_arrive_later_or_at_the_same_instant(bare: Bare, scheduler_client: Any):
    clock, _, sim = bare(lambda event: None, duplicates=1.0, concurrent_duplicates=0.5)
    for index in range(40):
        raw_schedule(scheduler_client, f"s{index}", at("09:10"))
    clock.run_until_idle(at("09:20"))

    by_schedule: dict[str, list[Any]] = {}
    for delivery in sim.deliveries:
        by_schedule.setdefault(delivery.schedule, []).append(delivery)
    assert all(len(pair) == 2 for pair in by_schedule.values())
    together = [p for p in by_schedule.values() if p[0].fired_at == p[1].fired_at]
    assert 0 < len(together) < 40


def test_failures_are_retried_until_the_event_age_then_dead_lettered(
    bare: Bare, scheduler_client: Any
):
    def failing(event: dict[str, Any]) -> None:
        raise RuntimeError("handler failed")

    clock, _, sim = bare(failing)
    raw_schedule(
        scheduler_client,
        "doomed",
        at("09:10"),
        RetryPolicy={"MaximumEventAgeInSeconds": 120, "MaximumRetryAttempts": 185},
    )
    clock.run_until_idle(at("09:30"))

    attempts = [d for d in sim.deliveries if d.schedule == "doomed"]
    assert len(attempts) > 3
    assert all(d.outcome == "error" for d in attempts)
    assert attempts[-1].fired_at - attempts[0].fired_at <= timedelta(seconds=120)
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]
    (message,) = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    assert json.loads(message["Body"]) == {"executor_id": "doomed"}
    attributes = message["MessageAttributes"]
    assert attributes["EXHAUSTED_RETRY_CONDITION"]["StringValue"] == "MaximumEventAgeInSeconds"
    assert schedule_names(scheduler_client) == []


def test_a_lambda_killed_at_a_call_makes_no_call_after_it(bare: Bare, scheduler_client: Any):
    table = boto3.client("dynamodb", region_name=REGION)
    table.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    def three_writes(event: dict[str, Any]) -> None:
        for n in range(3):
            try:
                table.put_item(TableName="t", Item={"id": {"S": f"{event['executor_id']}{n}"}})
            finally:
                if n == 1:
                    table.put_item(TableName="t", Item={"id": {"S": "finally"}})

    clock, simulated, sim = bare(three_writes)
    simulated.kill_at(2)
    raw_schedule(scheduler_client, "k", at("09:10"))
    clock.run_until_idle(at("09:20"))

    killed, retried = sim.deliveries
    assert (killed.outcome, retried.outcome) == ("died", "ok")
    (death,) = simulated.deaths
    assert death.params["Item"]["id"]["S"] == "k1"
    # The killed attempt made its first call and died at the second: no more calls,
    # not even the one in its `finally`.
    made = [c.params["Item"]["id"]["S"] for c in simulated.calls if c.thread == death.thread]
    assert made == ["k0", "k1"]


def test_conflicts_reach_pynamodb_as_transaction_conflicts(bare: Bare, scheduler_client: Any):
    from pynamodb.connection import Connection
    from pynamodb.exceptions import TransactWriteError

    _, simulated, _ = bare(lambda event: None)
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    simulated.transaction_conflicts = 1.0
    with pytest.raises(TransactWriteError) as caught:
        Connection(region=REGION).transact_write_items(
            condition_check_items=[],
            delete_items=[],
            put_items=[
                {"TableName": "t", "Item": {"id": {"S": "a"}}},
                {"TableName": "t", "Item": {"id": {"S": "b"}}},
            ],
            update_items=[],
        )
    codes = [r.code if r else None for r in caught.value.cancellation_reasons]
    assert codes.count("TransactionConflict") == 1
    assert codes.count(None) == 1


def test_overlapping_transactions_on_one_item_conflict(bare: Bare, scheduler_client: Any):
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    outcomes: list[str] = []

    def write(event: dict[str, Any]) -> None:
        try:
            client.transact_write_items(
                TransactItems=[{"Put": {"TableName": "t", "Item": {"id": {"S": "same"}}}}]
            )
            outcomes.append("written")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])

    clock, _, _ = bare(write, duplicates=1.0, concurrent_duplicates=1.0)
    raw_schedule(scheduler_client, "x", at("09:10"))
    clock.run_until_idle(at("09:20"))

    assert sorted(outcomes) == ["TransactionCanceledException", "written"]


def test_a_lagging_index_does_not_show_recent_writes(bare: Bare, scheduler_client: Any):
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "id", "AttributeType": "S"},
            {"AttributeName": "g", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by_g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    _, simulated, _ = bare(lambda event: None)
    simulated.gsi_lag_writes = 2
    for name in ("a", "b", "c"):
        client.put_item(TableName="t", Item={"id": {"S": name}, "g": {"S": "x"}})

    def on_index() -> list[str]:
        answer = client.query(
            TableName="t",
            IndexName="by_g",
            KeyConditionExpression="g = :g",
            ExpressionAttributeValues={":g": {"S": "x"}},
        )
        return sorted(item["id"]["S"] for item in answer["Items"])

    assert on_index() == ["a"]  # b and c are the last 2 writes
    assert client.get_item(TableName="t", Key={"id": {"S": "c"}})["Item"]  # the table has c
    client.put_item(TableName="t", Item={"id": {"S": "d"}, "g": {"S": "y"}})
    client.put_item(TableName="t", Item={"id": {"S": "e"}, "g": {"S": "y"}})
    assert on_index() == ["a", "b", "c"]


def test_sdk_level_throttling_is_retried_by_botocore(bare: Bare, scheduler_client: Any):
    client = boto3.client("dynamodb", region_name=REGION)
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    def twenty_writes(event: dict[str, Any]) -> None:
        for n in range(20):
            client.put_item(TableName="t", Item={"id": {"S": str(n)}})

    clock, simulated, sim = bare(twenty_writes)
    simulated.sdk_throttles = 0.3
    raw_schedule(scheduler_client, "w", at("09:10"))
    clock.run_until_idle(at("09:20"))

    assert [d.outcome for d in sim.deliveries] == ["ok"]
    assert simulated.injected["SdkThrottle"] > 0  # answered, and retried by botocore
    assert len(simulated.calls_of("PutItem")) == 20  # each call seen once by the engine
    with simulated.internal():
        assert client.scan(TableName="t")["Count"] == 20


def test_at_instants_follow_the_expression_timezone():
    assert at_instant("at(2026-12-01T10:14:00)", "Europe/Madrid") == at("09:14:00")
    with pytest.raises(ValueError, match="one-time"):
        at_instant("rate(5 minutes)", "UTC")


def test_lambda_died_is_not_an_exception():
    assert not issubclass(LambdaDied, Exception)
