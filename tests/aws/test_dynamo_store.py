"""DynamoStore's own mechanisms: retries, orphans, committed claims, shards, paging, TTL.

What every Store must do is the contract suite's (tests/contract); these tests prove the
DynamoDB-specific ways of doing it. Failures are injected at botocore's ``before-call``
event, so a failed attempt never reaches moto, exactly as if DynamoDB had refused it.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.handlers
import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

from chalicelib.adapters import dynamo
from chalicelib.adapters.dynamo import SHARDS, Backoff, DynamoStore, shard_of
from chalicelib.domain.errors import InvalidCursor, OrphanExecutor, PlanExists, StorageError
from chalicelib.domain.model import Executor, ExecutorStatus, Plan
from chalicelib.domain.ports import ExecutorQuery, PlanQuery
from chalicelib.domain.safety import Halt
from chalicelib.settings import Settings
from tests.conftest import FixedClock

REGION = "eu-west-1"
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
Rule = Callable[[str, dict[str, Any], int], dict[str, Any] | None]


def cancelled(*codes: str) -> dict[str, Any]:
    """The parsed error DynamoDB answers a cancelled TransactWriteItems with."""
    return {
        "Error": {
            "Code": "TransactionCanceledException",
            "Message": f"Transaction cancelled, please refer cancellation reasons {list(codes)}",
        },
        "CancellationReasons": [{"Code": code} for code in codes],
    }


def throttled() -> dict[str, Any]:
    return {"Error": {"Code": "ThrottlingException", "Message": "Rate of requests exceeds"}}


@dataclass
class Faults:
    """A botocore ``before-call`` handler: a rule that returns a parsed error answers the
    call in DynamoDB's place; otherwise the call goes on to moto."""

    rules: list[Rule] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> Any:
        operation = model.name
        body = json.loads(params.get("body") or b"{}")
        with self.lock:
            self.calls[operation] += 1
            self.requests.append((operation, body))
            number = self.calls[operation]
            for rule in self.rules:
                parsed = rule(operation, body, number)
                if parsed is not None:
                    self.injected[operation] += 1
                    status = 200 if "Error" not in parsed else 400
                    response = AWSResponse("https://dynamodb.test", status, HTTPHeaders(), None)
                    return response, parsed
        return None


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    """Installed in every botocore session created from now on (PynamoDB makes its own)."""
    faults = Faults()
    monkeypatch.setattr(
        botocore.handlers,
        "BUILTIN_HANDLERS",
        [*botocore.handlers.BUILTIN_HANDLERS, ("before-call.dynamodb", faults)],
    )
    return faults


@dataclass
class FakeTime:
    """The backoff's sleep and monotonic clock: sleeping moves the clock, never waits."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def store(
    aws: None, faults: Faults, settings: Settings, clock: FixedClock, fake_time: FakeTime
) -> DynamoStore:
    backoff = Backoff(sleep=fake_time.sleep, monotonic=fake_time.monotonic, jitter=lambda: 1.0)
    store = DynamoStore(settings, clock=clock, backoff=backoff)
    store.create_tables()
    return store


def executors_of(
    plan_id: str, count: int, *, every: timedelta = timedelta(minutes=1)
) -> list[Executor]:
    return [
        Executor(
            id=f"{plan_id}-{number:04d}",
            plan_id=plan_id,
            name="run",
            next_run_time=T0 + every * number,
            attack={"ref": "api_request:ApiRequest", "args": {}},
        )
        for number in range(count)
    ]


def stored_plan(
    store: DynamoStore, plan_id: str, executors: list[Executor], *, committed: bool = True
) -> Plan:
    plan = Plan(
        id=plan_id,
        name="plan",
        created=T0 - timedelta(hours=1),
        planner={"ref": "exact_planner:ExactPlanner", "args": {}},
        attack={"ref": "api_request:ApiRequest", "args": {}},
    )
    store.add_plan(plan, executors)
    if committed:
        store.commit_plan(plan_id)
    current = store.get_plan(plan_id)
    assert current is not None
    return current


def claim_and_finish(store: DynamoStore, executor: Executor) -> None:
    assert store.transition(
        executor, ExecutorStatus.RUNNING, {"started_at": executor.next_run_time}
    )
    assert store.transition(
        executor,
        ExecutorStatus.SUCCEEDED,
        {"finished_at": executor.next_run_time + timedelta(seconds=3)},
    )


def raw_client() -> Any:
    return boto3.client("dynamodb", region_name=REGION)


def every_page(store: DynamoStore, query: ExecutorQuery, limit: int) -> Iterator[list[Executor]]:
    cursor: str | None = None
    while True:
        page = store.list_executors(query, limit, cursor)
        yield page.items
        if page.cursor is None:
            return
        cursor = page.cursor


# -- retries -------------------------------------------------------------------------------


def test_a_transaction_conflict_is_retried_with_growing_jittered_delays(
    store: DynamoStore, faults: Faults, fake_time: FakeTime
):
    (executor,) = executors_of("p1", 1)
    stored_plan(store, "p1", [executor])
    faults.rules.append(
        lambda operation, body, number: (
            cancelled("None", "TransactionConflict")
            if operation == "TransactWriteItems" and number <= 3
            else None
        )
    )

    assert store.transition(executor, ExecutorStatus.RUNNING, {"started_at": T0})

    assert faults.injected["TransactWriteItems"] == 3
    assert faults.calls["TransactWriteItems"] == 4
    # jitter() is 1.0 here: the ceilings themselves, doubling from the base.
    assert fake_time.sleeps == [0.05, 0.1, 0.2]
    plan = store.get_plan("p1")
    assert plan is not None and plan.counts.of(ExecutorStatus.RUNNING) == 1


@pytest.mark.parametrize("reason", ["ThrottlingError", "ProvisionedThroughputExceeded"])
def test_a_transaction_cancelled_for_capacity_is_retried(
    store: DynamoStore, faults: Faults, reason: str
):
    (executor,) = executors_of("p1", 1)
    stored_plan(store, "p1", [executor])
    faults.rules.append(
        lambda operation, body, number: (
            cancelled(reason, "None") if operation == "TransactWriteItems" and number == 1 else None
        )
    )
    assert store.delete_executor(executor)
    assert store.get_executor(executor.id) is None
    plan = store.get_plan("p1")
    assert plan is not None and plan.counts.total == 0


def test_plain_throttling_of_a_single_write_is_retried(store: DynamoStore, faults: Faults):
    executors = executors_of("p1", 2)
    stored_plan(store, "p1", executors, committed=False)
    faults.rules.append(
        lambda operation, body, number: (
            throttled() if operation == "UpdateItem" and number <= 2 else None
        )
    )
    store.commit_plan("p1")
    moved = store.move_executor(executors[0].id, T0 + timedelta(hours=2))
    assert faults.injected["UpdateItem"] == 2
    plan = store.get_plan("p1")
    assert plan is not None and plan.committed
    assert moved.next_run_time == T0 + timedelta(hours=2)


def test_retries_stop_after_the_attempt_bound(store: DynamoStore, faults: Faults):
    (executor,) = executors_of("p1", 1)
    stored_plan(store, "p1", [executor])
    faults.rules.append(
        lambda operation, body, number: (
            cancelled("TransactionConflict", "TransactionConflict")
            if operation == "TransactWriteItems"
            else None
        )
    )
    with pytest.raises(StorageError, match="after 10 attempts"):
        store.transition(executor, ExecutorStatus.RUNNING, {"started_at": T0})
    assert faults.calls["TransactWriteItems"] == Backoff().attempts
    stored = store.get_executor(executor.id)
    assert stored is not None and stored.status is ExecutorStatus.SCHEDULED


def test_retries_stop_when_the_time_budget_is_spent(
    aws: None, faults: Faults, settings: Settings, fake_time: FakeTime
):
    backoff = Backoff(
        attempts=100,
        budget=2.0,
        sleep=fake_time.sleep,
        monotonic=fake_time.monotonic,
        jitter=lambda: 1.0,
    )
    store = DynamoStore(settings, backoff=backoff)
    store.create_tables()
    (executor,) = executors_of("p1", 1)
    stored_plan(store, "p1", [executor])
    faults.rules.append(
        lambda operation, body, number: (
            cancelled("None", "TransactionConflict") if operation == "TransactWriteItems" else None
        )
    )
    with pytest.raises(StorageError):
        store.transition(executor, ExecutorStatus.RUNNING, {"started_at": T0})
    assert sum(fake_time.sleeps) <= 2.0
    assert len(fake_time.sleeps) < 10


def test_a_failed_condition_is_not_retried(store: DynamoStore, faults: Faults):
    (executor,) = executors_of("p1", 1)
    stored_plan(store, "p1", [executor])
    faults.rules.append(
        lambda operation, body, number: (
            cancelled("ConditionalCheckFailed", "TransactionConflict")
            if operation == "TransactWriteItems"
            else None
        )
    )
    assert store.transition(executor, ExecutorStatus.RUNNING, {"started_at": T0}) is False
    assert faults.calls["TransactWriteItems"] == 1


def test_twenty_executors_of_one_plan_finishing_together_all_count(
    store: DynamoStore, faults: Faults, monkeypatch: pytest.MonkeyPatch
):
    """Every 10th transaction is cancelled for a conflict, as DynamoDB does when two
    transactions touch the plan item at once; every outcome is still recorded once."""
    from pynamodb.connection.base import Connection

    executors = executors_of("p1", 20, every=timedelta(0))
    stored_plan(store, "p1", executors)
    for executor in executors:
        assert store.transition(executor, ExecutorStatus.RUNNING, {"started_at": T0})
    faults.rules.append(
        lambda operation, body, number: (
            cancelled("None", "TransactionConflict")
            if operation == "TransactWriteItems" and number % 10 == 3
            else None
        )
    )
    # moto's DynamoDB is not thread-safe (DynamoDB is): one call at a time reaches it,
    # while the store's threads, retries and backoff run concurrently.
    moto_lock = threading.Lock()
    real_call = Connection._make_api_call

    def one_at_a_time(self: Connection, operation: str, request: dict[str, Any]) -> Any:
        with moto_lock:
            return real_call(self, operation, request)

    monkeypatch.setattr(Connection, "_make_api_call", one_at_a_time)
    outcomes = [ExecutorStatus.SUCCEEDED, ExecutorStatus.FAILED] * 10
    results: dict[str, bool] = {}
    start = threading.Barrier(20)

    def finish(executor: Executor, outcome: ExecutorStatus) -> None:
        start.wait()
        try:
            results[executor.id] = store.transition(executor, outcome, {"finished_at": T0})
        except StorageError:
            results[executor.id] = False

    threads = [
        threading.Thread(target=finish, args=pair) for pair in zip(executors, outcomes, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert faults.injected["TransactWriteItems"] >= 2
    assert results == {executor.id: True for executor in executors}
    plan = store.get_plan("p1")
    assert plan is not None
    assert plan.counts.as_dict() == {
        "scheduled": 0,
        "running": 0,
        "succeeded": 10,
        "failed": 10,
        "skipped": 0,
        "missed": 0,
    }
    assert plan.executed and plan.next_execution is None
    page = store.list_plans(PlanQuery(pending=False, executed=True), 10, None)
    assert [settled.id for settled in page.items] == ["p1"]


# -- orphans, committed plans, the claim's time ----------------------------------------------


def test_an_executor_whose_plan_is_gone_is_an_orphan_not_a_storage_failure(
    store: DynamoStore,
):
    running, scheduled = executors_of("p1", 2)
    stored_plan(store, "p1", [running, scheduled])
    assert store.transition(running, ExecutorStatus.RUNNING, {"started_at": T0})
    raw_client().delete_item(TableName="test-plans", Key={"id": {"S": "p1"}})

    with pytest.raises(OrphanExecutor) as raised:
        store.transition(running, ExecutorStatus.FAILED, {"finished_at": T0, "error": "lost"})
    assert (raised.value.executor_id, raised.value.plan_id) == (running.id, "p1")
    with pytest.raises(OrphanExecutor):
        store.delete_executor(scheduled)
    # Nothing was written; purge_executor is how the reaper gets rid of them.
    stored = store.get_executor(running.id)
    assert stored is not None and stored.status is ExecutorStatus.RUNNING
    store.purge_executor(running.id)
    store.purge_executor(running.id)  # no error when it is already gone
    assert store.get_executor(running.id) is None


def test_the_orphan_is_seen_in_the_raw_reasons_whatever_pynamodb_makes_of_them(
    store: DynamoStore, faults: Faults
):
    """PynamoDB parses the code "None" to None; DynamoDB's own answer is inspected."""
    (executor,) = executors_of("p1", 1)
    stored_plan(store, "p1", [executor])
    faults.rules.append(
        lambda operation, body, number: (
            cancelled("None", "ConditionalCheckFailed")
            if operation == "TransactWriteItems"
            else None
        )
    )
    with pytest.raises(OrphanExecutor):
        store.transition(executor, ExecutorStatus.SKIPPED, {"reason": "kill switch"})


def test_an_uncommitted_plan_cannot_have_its_executors_claimed(store: DynamoStore):
    first, second = executors_of("p1", 2)
    stored_plan(store, "p1", [first, second], committed=False)

    assert store.transition(first, ExecutorStatus.RUNNING, {"started_at": T0}) is False
    stored = store.get_executor(first.id)
    assert stored is not None and stored.status is ExecutorStatus.SCHEDULED
    assert first.status is ExecutorStatus.SCHEDULED
    plan = store.get_plan("p1")
    assert plan is not None and plan.counts.of(ExecutorStatus.SCHEDULED) == 2
    # Ending one without running it is allowed (the reaper may): only claims are refused.
    assert store.transition(second, ExecutorStatus.MISSED, {"reason": "never delivered"})

    store.commit_plan("p1")
    assert store.transition(first, ExecutorStatus.RUNNING, {"started_at": T0})


def test_a_delivery_that_read_the_executor_before_it_was_moved_cannot_claim_it(
    store: DynamoStore,
):
    (executor,) = executors_of("p1", 1)
    stored_plan(store, "p1", [executor])
    stale = store.get_executor(executor.id)
    assert stale is not None
    store.move_executor(executor.id, T0 + timedelta(hours=3))

    assert store.transition(stale, ExecutorStatus.RUNNING, {"started_at": T0}) is False
    current = store.get_executor(executor.id)
    assert current is not None and current.status is ExecutorStatus.SCHEDULED
    assert store.transition(
        current, ExecutorStatus.RUNNING, {"started_at": T0 + timedelta(hours=3)}
    )


def test_an_existing_plan_id_is_refused_and_nothing_is_written(store: DynamoStore):
    stored_plan(store, "p1", executors_of("p1", 1))
    with pytest.raises(PlanExists):
        stored_plan(store, "p1", executors_of("other", 3))
    assert store.get_executor("other-0000") is None


def test_a_failed_executor_write_removes_every_part_of_the_plan(store: DynamoStore, faults: Faults):
    executors = executors_of("p1", 60)  # three BatchWriteItem calls
    faults.rules.append(
        lambda operation, body, number: (
            {"Error": {"Code": "ValidationException", "Message": "no"}}
            if operation == "BatchWriteItem" and number == 3
            else None
        )
    )
    with pytest.raises(StorageError):
        stored_plan(store, "p1", executors, committed=False)
    assert store.get_plan("p1") is None
    assert raw_client().scan(TableName="test-executors")["Count"] == 0


def test_unprocessed_batch_items_are_sent_again(store: DynamoStore, faults: Faults):
    def nothing_processed_the_first_time(
        operation: str, body: dict[str, Any], number: int
    ) -> dict[str, Any] | None:
        if operation == "BatchWriteItem" and number == 1:
            return {"UnprocessedItems": body["RequestItems"]}
        return None

    faults.rules.append(nothing_processed_the_first_time)
    stored_plan(store, "p1", executors_of("p1", 30))
    assert faults.injected["BatchWriteItem"] == 1
    assert raw_client().scan(TableName="test-executors")["Count"] == 30


# -- shards and paging ---------------------------------------------------------------------


def test_a_thousand_executors_spread_over_every_shard(store: DynamoStore):
    stored_plan(store, "p1", executors_of("p1", 1000, every=timedelta(seconds=1)))
    client = raw_client()
    per_bucket: Counter[str] = Counter()
    for page in client.get_paginator("scan").paginate(TableName="test-executors"):
        per_bucket.update(item["bucket"]["S"] for item in page["Items"])
    assert set(per_bucket) == {f"pending#{shard}" for shard in range(SHARDS)}
    # crc32 of the ids spreads them evenly (an eighth is 125).
    assert min(per_bucket.values()) > 80
    assert shard_of("p1-0001") == shard_of("p1-0001")


def test_pages_across_shards_hold_every_executor_once_in_order(store: DynamoStore):
    # Ten executors per second: ties on next_run_time across every shard.
    executors = executors_of("p1", 200, every=timedelta(milliseconds=100))
    for executor in executors:
        executor.next_run_time = executor.next_run_time.replace(microsecond=0)
    stored_plan(store, "p1", executors)
    expected = sorted(executors, key=lambda e: (e.next_run_time, e.id))

    pages = list(every_page(store, ExecutorQuery(), 7))
    assert [e.id for page in pages for e in page] == [e.id for e in expected]
    assert all(len(page) == 7 for page in pages[:-1])

    backwards = list(every_page(store, ExecutorQuery(latest_first=True), 13))
    assert [e.id for page in backwards for e in page] == [e.id for e in reversed(expected)]


def test_a_shard_holding_the_earliest_executors_is_read_until_the_page_is_exact(
    store: DynamoStore, faults: Faults
):
    """Shard 0 holds the 20 soonest executors: a page of 7 must come from it alone, though
    the other shards' first reads return items too (later ones)."""
    early = [f"e{n}" for n in range(400) if shard_of(f"e{n}") == 0][:20]
    late = [f"l{n}" for n in range(40)]
    executors = [
        Executor(
            id=executor_id,
            plan_id="p1",
            name="run",
            next_run_time=T0 + timedelta(seconds=number),
            attack={},
        )
        for number, executor_id in enumerate(early + late)
    ]
    stored_plan(store, "p1", executors)
    faults.requests.clear()

    page = store.list_executors(ExecutorQuery(), 7, None)
    assert [e.id for e in page.items] == early[:7]
    found = [e.id for items in every_page(store, ExecutorQuery(), 7) for e in items]
    assert found == early + late


def test_a_page_reads_about_its_size_not_its_size_per_shard(store: DynamoStore, faults: Faults):
    stored_plan(store, "p1", executors_of("p1", 400, every=timedelta(seconds=1)))
    faults.requests.clear()
    page = store.list_executors(ExecutorQuery(), 40, None)
    assert len(page.items) == 40
    asked = sum(body["Limit"] for operation, body in faults.requests if operation == "Query")
    assert asked < 40 * SHARDS / 2


def test_lists_leave_out_executors_of_uncommitted_or_missing_plans_in_one_batch_read(
    store: DynamoStore, faults: Faults
):
    for number in range(5):
        stored_plan(store, f"p{number}", executors_of(f"p{number}", 8))
    stored_plan(store, "creating", executors_of("creating", 8), committed=False)
    orphans = executors_of("gone", 8)
    stored_plan(store, "gone", orphans)
    raw_client().delete_item(TableName="test-plans", Key={"id": {"S": "gone"}})
    faults.requests.clear()

    page = store.list_executors(ExecutorQuery(), 40, None)

    assert {e.plan_id for e in page.items} == {f"p{number}" for number in range(5)}
    assert len(page.items) == 40
    batch_reads = [body for operation, body in faults.requests if operation == "BatchGetItem"]
    assert len(batch_reads) <= 2  # once per round of Queries, never once per executor
    assert all(body["RequestItems"]["test-plans"]["ConsistentRead"] for body in batch_reads)


def test_a_page_of_a_filtered_list_stops_at_its_read_bound_and_resumes(
    store: DynamoStore, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(dynamo, "LIST_MAX_PAGES", 2)
    executors = executors_of("p1", 120, every=timedelta(seconds=1))
    stored_plan(store, "p1", executors)
    # Only the last two are running: the pages before them hold no match.
    for executor in executors[-2:]:
        assert store.transition(executor, ExecutorStatus.RUNNING, {"started_at": T0})
    query = ExecutorQuery(statuses=frozenset({ExecutorStatus.RUNNING}))

    first = store.list_executors(query, 5, None)
    assert first.items == [] and first.cursor is not None  # partial: the bound was hit
    found = [e.id for page in every_page(store, query, 5) for e in page]
    assert found == [e.id for e in executors[-2:]]


def test_due_bounds_are_key_conditions_from_inclusive_until_exclusive(store: DynamoStore):
    executors = executors_of("p1", 30)
    stored_plan(store, "p1", executors)
    query = ExecutorQuery(due_from=T0 + timedelta(minutes=5), due_until=T0 + timedelta(minutes=9))
    found = [e.id for page in every_page(store, query, 3) for e in page]
    assert found == [e.id for e in executors[5:9]]
    empty = ExecutorQuery(due_from=T0 + timedelta(minutes=9), due_until=T0 + timedelta(minutes=5))
    assert store.list_executors(empty, 3, None).items == []


def test_a_plans_executors_are_read_from_its_index_pending_and_executed_merged(
    store: DynamoStore,
):
    mine = executors_of("p1", 12)
    stored_plan(store, "p1", mine)
    stored_plan(store, "p2", executors_of("p2", 12))
    for executor in mine[::3]:
        claim_and_finish(store, executor)
    query = ExecutorQuery(executed=None, plan_id="p1")
    found = [e.id for page in every_page(store, query, 5) for e in page]
    assert found == [e.id for e in mine]
    executed = store.list_executors(ExecutorQuery(executed=True, plan_id="p1"), 50, None)
    assert [e.id for e in executed.items] == [e.id for e in mine[::3]]


def test_plans_are_listed_newest_first_across_shards(store: DynamoStore):
    for number in range(20):
        plan = Plan(
            id=f"plan-{number:02d}",
            name="plan",
            created=T0 + timedelta(seconds=number // 4),
            planner={},
            attack={},
        )
        store.add_plan(plan, executors_of(plan.id, 1))
        store.commit_plan(plan.id)
    store.add_plan(Plan(id="uncommitted", name="p", created=T0, planner={}, attack={}), [])
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = store.list_plans(PlanQuery(), 6, cursor)
        ids.extend(plan.id for plan in page.items)
        if page.cursor is None:
            break
        cursor = page.cursor
    assert ids == [f"plan-{number:02d}" for number in reversed(range(20))]


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor",
        "",
        "eyJxIjoxfQ",  # {"q":1}
        "%%%",
    ],
)
def test_a_cursor_we_did_not_make_is_refused(store: DynamoStore, cursor: str):
    with pytest.raises(InvalidCursor):
        store.list_executors(ExecutorQuery(), 5, cursor)


def test_another_querys_cursor_is_refused(store: DynamoStore):
    stored_plan(store, "p1", executors_of("p1", 10))
    page = store.list_executors(ExecutorQuery(), 3, None)
    assert page.cursor is not None
    with pytest.raises(InvalidCursor):
        store.list_executors(ExecutorQuery(latest_first=True), 3, page.cursor)
    with pytest.raises(InvalidCursor):
        store.list_plans(PlanQuery(), 3, page.cursor)


# -- the reaper's reads --------------------------------------------------------------------


def test_running_and_undelivered_are_found_oldest_first_across_shards(store: DynamoStore):
    executors = executors_of("p1", 40)
    stored_plan(store, "p1", executors)
    for executor in executors[:10]:
        assert store.transition(
            executor, ExecutorStatus.RUNNING, {"started_at": executor.next_run_time}
        )
    # Started before 10:06 (and so due before it): 0..5.
    assert store.list_running(T0 + timedelta(minutes=6), 100) == [e.id for e in executors[:6]]
    assert store.list_running(T0 + timedelta(minutes=6), 2) == [e.id for e in executors[:2]]
    assert store.list_undelivered(T0 + timedelta(minutes=13), 100) == [
        e.id for e in executors[10:13]
    ]


def test_abandoned_plans_are_the_uncommitted_ones_created_before(store: DynamoStore):
    stored_plan(store, "done", executors_of("done", 1))
    stored_plan(store, "died", executors_of("died", 1), committed=False)
    assert [plan.id for plan in store.list_abandoned_plans(T0, 10)] == ["died"]
    assert store.list_abandoned_plans(T0 - timedelta(hours=2), 10) == []
    died = store.get_plan("died")
    assert died is not None
    store.delete_plan(died)
    assert store.get_plan("died") is None and store.get_executor("died-0000") is None


def test_deleting_a_plan_reads_its_lagging_index_again_until_it_lists_every_executor(
    store: DynamoStore, faults: Faults, fake_time: FakeTime
):
    executors = executors_of("p1", 30)
    plan = stored_plan(store, "p1", executors, committed=False)
    # The index does not show the executors yet, the first two times it is read.
    faults.rules.append(
        lambda operation, body, number: (
            {"Items": [], "Count": 0, "ScannedCount": 0}
            if operation == "Query" and body.get("IndexName") == "by_plan" and number <= 2
            else None
        )
    )
    store.delete_plan(plan)
    assert store.get_plan("p1") is None
    assert raw_client().scan(TableName="test-executors")["Count"] == 0
    assert len(fake_time.sleeps) == 2


# -- next_execution and settling -----------------------------------------------------------


def test_next_execution_follows_finished_moved_and_deleted_executors(store: DynamoStore):
    first, second, third = executors_of("p1", 3)
    plan = stored_plan(store, "p1", [first, second, third])
    assert plan.next_execution == first.next_run_time

    claim_and_finish(store, first)
    assert _next_execution(store, "p1") == second.next_run_time
    store.move_executor(second.id, T0 + timedelta(hours=1))
    assert _next_execution(store, "p1") == third.next_run_time
    assert store.delete_executor(third)
    assert _next_execution(store, "p1") == T0 + timedelta(hours=1)


def _next_execution(store: DynamoStore, plan_id: str) -> datetime | None:
    plan = store.get_plan(plan_id)
    assert plan is not None
    return plan.next_execution


def lagging_index(faults: Faults, raw_items: list[dict[str, Any]]) -> None:
    """The by_plan index answers with these (old) items, as a GSI that lags does."""

    def rule(operation: str, body: dict[str, Any], number: int) -> dict[str, Any] | None:
        if operation == "Query" and body.get("IndexName") == "by_plan":
            return {"Items": raw_items, "Count": len(raw_items), "ScannedCount": len(raw_items)}
        return None

    faults.rules.append(rule)


def test_a_lagging_index_does_not_give_the_plan_the_time_of_an_executor_that_just_ran(
    store: DynamoStore, faults: Faults
):
    first, second = executors_of("p1", 2)
    stored_plan(store, "p1", [first, second])
    client = raw_client()
    before = [
        client.get_item(TableName="test-executors", Key={"id": {"S": e.id}})["Item"]
        for e in (first, second)
    ]
    lagging_index(faults, before)
    claim_and_finish(store, first)
    assert _next_execution(store, "p1") == second.next_run_time


def test_the_last_executor_settles_its_plan_even_when_the_index_still_shows_others(
    store: DynamoStore, faults: Faults, clock: FixedClock, settings: Settings
):
    first, second = executors_of("p1", 2)
    stored_plan(store, "p1", [first, second])
    client = raw_client()
    stale = [
        client.get_item(TableName="test-executors", Key={"id": {"S": e.id}})["Item"]
        for e in (first, second)
    ]
    claim_and_finish(store, first)
    lagging_index(faults, stale)  # still shows ``first`` as pending
    claim_and_finish(store, second)

    plan = store.get_plan("p1")
    assert plan is not None and plan.executed and plan.next_execution is None
    item = client.get_item(TableName="test-plans", Key={"id": {"S": "p1"}})["Item"]
    assert item["bucket"]["S"] == f"executed#{shard_of('p1')}"
    expected = clock.now() + settings.executed_retention
    assert int(item["expires_at"]["N"]) == int(expected.timestamp())


# -- retention -----------------------------------------------------------------------------


def test_terminal_executors_expire_after_the_retention_and_pending_ones_never(
    store: DynamoStore, settings: Settings
):
    finished, skipped, pending = executors_of("p1", 3)
    stored_plan(store, "p1", [finished, skipped, pending])
    claim_and_finish(store, finished)
    assert store.transition(skipped, ExecutorStatus.SKIPPED, {"reason": "dry run"})
    client = raw_client()

    def expires(executor: Executor) -> int | None:
        item = client.get_item(TableName="test-executors", Key={"id": {"S": executor.id}})["Item"]
        return int(item["expires_at"]["N"]) if "expires_at" in item else None

    ended = finished.finished_at
    assert ended is not None
    assert expires(finished) == int((ended + settings.executed_retention).timestamp())
    assert expires(skipped) is not None
    assert expires(pending) is None


def test_both_tables_have_ttl_on_expires_at(store: DynamoStore):
    client = raw_client()
    for table in ("test-plans", "test-executors"):
        ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_the_template_declares_the_tables_the_store_creates(store: DynamoStore):
    """infra/resources.yaml (CloudFormation) and create_tables (local mode, tests) agree:
    keys, indexes and TTL."""
    from chalice.package import YAMLTemplateSerializer

    path = Path(__file__).resolve().parents[2] / "infra" / "resources.yaml"
    template = YAMLTemplateSerializer().load_template(path.read_text(), str(path))
    client = raw_client()
    for logical, physical in (("PlansTable", "test-plans"), ("ExecutorsTable", "test-executors")):
        declared = template["Resources"][logical]["Properties"]
        actual = client.describe_table(TableName=physical)["Table"]
        assert declared["KeySchema"] == actual["KeySchema"]
        assert sorted(declared["AttributeDefinitions"], key=str) == sorted(
            actual["AttributeDefinitions"], key=str
        )
        assert {
            index["IndexName"]: (index["KeySchema"], index["Projection"])
            for index in declared["GlobalSecondaryIndexes"]
        } == {
            index["IndexName"]: (index["KeySchema"], index["Projection"])
            for index in actual["GlobalSecondaryIndexes"]
        }
        assert declared["TimeToLiveSpecification"] == {
            "AttributeName": "expires_at",
            "Enabled": True,
        }


def test_throttled_reads_are_retried_by_the_store(
    store: DynamoStore, faults: Faults, fake_time: FakeTime
):
    """The reaper and the runner read under throttling too: a read is retried like a write."""
    executors = executors_of("p1", 3)
    stored_plan(store, "p1", executors)
    before = dict(faults.calls)
    faults.rules.append(
        lambda operation, body, number: (
            throttled()
            if operation in ("GetItem", "Query") and number <= before.get(operation, 0) + 2
            else None
        )
    )
    assert store.get_executor(executors[0].id) is not None
    assert store.get_plan("p1") is not None
    page = store.list_executors(ExecutorQuery(executed=None, plan_id="p1"), 10, None)
    assert [executor.id for executor in page.items] == [executor.id for executor in executors]
    assert faults.injected["GetItem"] == 2
    assert faults.injected["Query"] == 2
    assert fake_time.sleeps and max(fake_time.sleeps) < 1.0


def test_botocore_makes_one_attempt_so_a_throttled_claim_waits_only_the_stores_backoff(
    store: DynamoStore,
):
    """botocore's standard retry mode waits up to 1 s, then 2 s: a claim retried that way
    would start its attack seconds after the executor's second."""
    from pynamodb.connection.base import Connection

    clients = [
        store._connection.client,  # the transactions' connection
        store._executors._get_connection().connection.client,
        store._plans._get_connection().connection.client,
    ]
    for client in clients:
        assert client.meta.config.retries["total_max_attempts"] == 1
    assert isinstance(store._connection, Connection)
    assert Backoff().delay(1) <= 0.05 and Backoff().max_delay <= 1.0


# -- the control table: the halt and the minimum interval -----------------------------------


def test_the_template_declares_the_control_table_the_store_creates(
    store: DynamoStore, settings: Settings
):
    """A key-value table: hash key ``id`` only, no index, no TTL (nothing in it expires:
    the halt and each group's last attack are kept until replaced)."""
    from chalice.package import YAMLTemplateSerializer

    path = Path(__file__).resolve().parents[2] / "infra" / "resources.yaml"
    template = YAMLTemplateSerializer().load_template(path.read_text(), str(path))
    declared = template["Resources"]["ControlTable"]["Properties"]
    actual = raw_client().describe_table(TableName=settings.control_table)["Table"]
    assert (
        declared["KeySchema"] == actual["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    )
    assert declared["AttributeDefinitions"] == actual["AttributeDefinitions"]
    assert "GlobalSecondaryIndexes" not in declared
    assert not actual.get("GlobalSecondaryIndexes")
    assert "TimeToLiveSpecification" not in declared
    ttl = raw_client().describe_time_to_live(TableName=settings.control_table)
    assert ttl["TimeToLiveDescription"]["TimeToLiveStatus"] == "DISABLED"
    assert actual["BillingModeSummary"]["BillingMode"] == declared["BillingMode"]


def test_a_plan_without_safety_options_stores_no_safety_attribute(store: DynamoStore):
    """Items written before plans had safety options read the same as new ones without."""
    stored_plan(store, "p1", executors_of("p1", 1))
    item = raw_client().get_item(TableName="test-plans", Key={"id": {"S": "p1"}})["Item"]
    assert "safety" not in item
    plan = store.get_plan("p1")
    assert plan is not None and plan.safety is None


def test_record_attack_is_one_conditional_update_item(store: DynamoStore, faults: Faults):
    at = T0 + timedelta(microseconds=7)
    faults.requests.clear()

    assert store.record_attack("plan:p1", at, timedelta(minutes=5)) is None

    ((operation, request),) = faults.requests
    assert operation == "UpdateItem"
    assert request["Key"] == {"id": {"S": "interval#plan:p1"}}
    condition = request["ConditionExpression"]
    names = {value: key for key, value in request["ExpressionAttributeNames"].items()}
    assert f"attribute_not_exists ({names['id']})" in condition
    assert f"{names['last_attack']} <= " in condition
    threshold = next(
        value["S"]
        for value in request["ExpressionAttributeValues"].values()
        if value["S"] != "2026-12-01T10:00:00.000007Z"
    )
    assert threshold == "2026-12-01T09:55:00.000007Z"  # at - min_interval, to the microsecond


def test_a_refused_attack_is_not_retried_and_reads_the_last_attack_consistently(
    store: DynamoStore, faults: Faults
):
    assert store.record_attack("plan:p1", T0, timedelta(minutes=5)) is None
    faults.requests.clear()

    assert store.record_attack("plan:p1", T0 + timedelta(minutes=1), timedelta(minutes=5)) == T0

    assert [operation for operation, _ in faults.requests] == ["UpdateItem", "GetItem"]
    assert faults.requests[1][1]["ConsistentRead"] is True


def test_a_throttled_record_attack_is_retried(
    store: DynamoStore, faults: Faults, fake_time: FakeTime
):
    faults.rules.append(
        lambda operation, body, number: (
            throttled() if operation == "UpdateItem" and number <= 2 else None
        )
    )

    assert store.record_attack("plan:p1", T0, timedelta(minutes=5)) is None

    assert faults.injected["UpdateItem"] == 2
    assert fake_time.sleeps == [0.05, 0.1]
    assert store.last_attack("plan:p1") == T0
    # The retried write counted once: a second attack within the interval is refused.
    assert store.record_attack("plan:p1", T0 + timedelta(minutes=1), timedelta(minutes=5)) == T0


def test_a_conflicting_record_attack_is_retried(store: DynamoStore, faults: Faults):
    """A single write to an item a transaction is writing fails with
    TransactionConflictException; retried like the store's other writes."""
    conflict = {
        "Error": {"Code": "TransactionConflictException", "Message": "Transaction is ongoing"}
    }
    faults.rules.append(
        lambda operation, body, number: (
            conflict if operation == "UpdateItem" and number == 1 else None
        )
    )
    assert store.record_attack("plan:p1", T0, timedelta(minutes=5)) is None
    assert faults.injected["UpdateItem"] == 1
    assert store.last_attack("plan:p1") == T0


def test_throttled_halt_reads_and_writes_are_retried(store: DynamoStore, faults: Faults):
    faults.rules.append(
        lambda operation, body, number: (
            throttled() if operation in ("GetItem", "PutItem") and number == 1 else None
        )
    )
    halt = Halt(halted=True, reason="stop", since=T0, by="local")

    assert store.set_halt(halt) == halt
    assert store.get_halt() == halt

    assert faults.injected["PutItem"] == 1
    assert faults.injected["GetItem"] == 1


def test_record_attack_gives_up_with_a_storage_error_when_throttling_lasts(
    store: DynamoStore, faults: Faults
):
    faults.rules.append(
        lambda operation, body, number: throttled() if operation == "UpdateItem" else None
    )
    with pytest.raises(StorageError, match="could not record an attack on 'plan:p1' after 10"):
        store.record_attack("plan:p1", T0, timedelta(minutes=5))
    assert store.last_attack("plan:p1") is None


# -- recurring plans -----------------------------------------------------------------------

DAY = datetime(2026, 12, 1, tzinfo=UTC).date()


def recurring_plan(
    store: DynamoStore, plan_id: str, executors: list[Executor], next_expansion: datetime | None
) -> Plan:
    plan = Plan(
        id=plan_id,
        name="recurring",
        created=T0 - timedelta(hours=1),
        planner={"ref": "recurring_planner:RecurringPlanner", "args": {}},
        attack={"ref": "api_request:ApiRequest", "args": {}},
        next_expansion=next_expansion,
    )
    store.add_plan(plan, executors)
    store.commit_plan(plan_id)
    return plan


def raw_plan(plan_id: str) -> dict[str, Any]:
    return dict(raw_client().get_item(TableName="test-plans", Key={"id": {"S": plan_id}})["Item"])


def test_due_expansions_are_queries_on_the_sparse_index_merged_across_shards(
    store: DynamoStore, faults: Faults
):
    ids = [f"r{number}" for number in range(12)]
    assert len({shard_of(plan_id) for plan_id in ids}) > 1
    for number, plan_id in enumerate(ids):
        recurring_plan(store, plan_id, [], T0 + timedelta(minutes=number))
    stored_plan(store, "plain", executors_of("plain", 1))
    # Without a next expansion a plan carries no key of the index at all (it is sparse).
    assert not {"next_expansion", "expansion_bucket", "expansion_order"} & raw_plan("plain").keys()
    assert raw_plan("r3")["expansion_bucket"]["S"] == f"expansion#{shard_of('r3')}"
    faults.requests.clear()

    assert store.list_due_expansions(T0 + timedelta(minutes=7), 5) == ids[:5]
    assert store.list_due_expansions(T0 + timedelta(minutes=7), 50) == ids[:8]

    operations = {operation for operation, _ in faults.requests}
    assert operations == {"Query"}
    assert {body["IndexName"] for _, body in faults.requests} == {"by_expansion"}


def test_an_expansion_past_the_end_removes_the_index_keys(store: DynamoStore):
    recurring_plan(store, "r1", [], T0)

    assert store.set_expansion("r1", None, DAY, None)

    assert not {"next_expansion", "expansion_bucket", "expansion_order"} & raw_plan("r1").keys()
    assert store.list_due_expansions(T0 + timedelta(days=30), 10) == []


def test_a_recurring_plan_between_days_never_expires_and_a_paused_one_neither(
    store: DynamoStore, clock: FixedClock, settings: Settings
):
    (only,) = executors_of("r1", 1)
    recurring_plan(store, "r1", [only], T0 + timedelta(days=1))
    claim_and_finish(store, only)

    item = raw_plan("r1")
    assert item["bucket"]["S"] == f"pending#{shard_of('r1')}"
    assert "expires_at" not in item and "next_execution" not in item

    # Past its end: settled, expiring after the retention.
    assert store.set_expansion("r1", None, DAY, None)
    item = raw_plan("r1")
    assert item["bucket"]["S"] == f"executed#{shard_of('r1')}"
    expected = clock.now() + settings.executed_retention
    assert int(item["expires_at"]["N"]) == int(expected.timestamp())

    # Paused: still executed in the lists (Plan.executed), but no TTL while paused.
    store.set_paused("r1", True, DAY, None)
    item = raw_plan("r1")
    assert item["bucket"]["S"] == f"executed#{shard_of('r1')}"
    assert "expires_at" not in item and item["paused"] == {"BOOL": True}

    # Resumed with days to come: pending; resumed with none: expiring again.
    store.set_paused("r1", False, DAY, T0 + timedelta(days=2))
    item = raw_plan("r1")
    assert item["bucket"]["S"] == f"pending#{shard_of('r1')}" and "expires_at" not in item
    assert "paused" not in item
    clock.advance(days=1)
    store.set_paused("r1", False, DAY, None)
    item = raw_plan("r1")
    assert item["bucket"]["S"] == f"executed#{shard_of('r1')}"
    expected = clock.now() + settings.executed_retention
    assert int(item["expires_at"]["N"]) == int(expected.timestamp())


def test_executors_added_to_a_settled_plan_take_its_ttl_away(store: DynamoStore):
    (only,) = executors_of("p1", 1)
    stored_plan(store, "p1", [only])
    claim_and_finish(store, only)
    assert "expires_at" in raw_plan("p1")

    more = executors_of("p1", 3, every=timedelta(hours=1))[1:]
    assert store.add_executors("p1", more) == [e.id for e in more]

    item = raw_plan("p1")
    assert "expires_at" not in item
    assert item["bucket"]["S"] == f"pending#{shard_of('p1')}"
    assert item["next_execution"]["S"] == "2026-12-01T11:00:00.000000Z"


def test_add_executors_writes_a_transaction_per_24_executors_with_the_plans_counts(
    store: DynamoStore, faults: Faults
):
    recurring_plan(store, "r1", [], T0)
    day = executors_of("r1", 60)
    faults.requests.clear()

    assert store.add_executors("r1", day) == [e.id for e in day]

    transactions = [
        body for operation, body in faults.requests if operation == "TransactWriteItems"
    ]
    assert [len(body["TransactItems"]) for body in transactions] == [25, 25, 13]
    for body in transactions:
        *puts, update = body["TransactItems"]
        assert all(put["Put"]["ConditionExpression"] == "attribute_not_exists (#0)" for put in puts)
        assert update["Update"]["Key"] == {"id": {"S": "r1"}}
    plan = store.get_plan("r1")
    assert plan is not None and plan.counts.of(ExecutorStatus.SCHEDULED) == 60
    assert plan.next_execution == T0


def test_a_repeated_batch_is_one_cancelled_transaction_and_an_overlapping_one_two(
    store: DynamoStore, faults: Faults
):
    recurring_plan(store, "r1", [], T0)
    day = executors_of("r1", 3)
    store.add_executors("r1", day[:2])
    faults.requests.clear()

    assert store.add_executors("r1", day[:2]) == []
    assert [op for op, _ in faults.requests].count("TransactWriteItems") == 1

    faults.requests.clear()
    assert store.add_executors("r1", day) == [day[2].id]
    transactions = [
        body for operation, body in faults.requests if operation == "TransactWriteItems"
    ]
    assert [len(body["TransactItems"]) for body in transactions] == [4, 2]
    plan = store.get_plan("r1")
    assert plan is not None and plan.counts.of(ExecutorStatus.SCHEDULED) == 3


def test_a_conflicting_add_executors_is_retried(
    store: DynamoStore, faults: Faults, fake_time: FakeTime
):
    recurring_plan(store, "r1", [], T0)
    day = executors_of("r1", 2)
    faults.rules.append(
        lambda operation, body, number: (
            cancelled("None", "None", "TransactionConflict")
            if operation == "TransactWriteItems" and number <= 2
            else None
        )
    )

    assert store.add_executors("r1", day) == [e.id for e in day]

    assert faults.injected["TransactWriteItems"] == 2
    assert fake_time.sleeps == [0.05, 0.1]
    plan = store.get_plan("r1")
    assert plan is not None and plan.counts.of(ExecutorStatus.SCHEDULED) == 2


def test_set_expansion_is_one_read_and_one_conditional_update(store: DynamoStore, faults: Faults):
    recurring_plan(store, "r1", [], T0)
    faults.requests.clear()

    assert store.set_expansion("r1", None, DAY, T0 + timedelta(days=1))

    assert [operation for operation, _ in faults.requests] == ["GetItem", "UpdateItem"]
    assert faults.requests[0][1]["ConsistentRead"] is True
    assert "ConditionExpression" in faults.requests[1][1]
    faults.requests.clear()

    # From a stale state: refused on the read, nothing written.
    assert not store.set_expansion("r1", None, DAY, T0 + timedelta(days=2))
    assert [operation for operation, _ in faults.requests] == ["GetItem"]
