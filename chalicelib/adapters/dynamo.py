"""The Store port on three DynamoDB tables, through PynamoDB (the deployed engine's storage).

Tables and indexes (every list is a Query on an index, never a Scan):

- plans: hash ``id``. GSI ``by_bucket``: hash ``bucket`` = ``<creating|pending|executed>#<shard>``,
  range ``bucket_order`` = ``<created>#<id>``. A plan is ``pending`` (not ``Plan.executed``)
  while an executor of it is pending or it has a ``next_expansion`` (an active recurring
  plan between two days). GSI ``by_expansion`` (sparse: its keys are present only while
  the plan has a ``next_expansion``): hash ``expansion_bucket`` = ``expansion#<shard>``,
  range ``expansion_order`` = ``<next_expansion>#<id>``; the due expansions.
- executors: hash ``id``. GSI ``by_bucket``: hash ``bucket`` = ``<pending|executed>#<shard>``,
  range ``bucket_order`` = ``<next_run_time>#<id>``. GSI ``by_plan``: hash ``plan_id``,
  range ``plan_order`` = ``<pending|executed>#<next_run_time>#<id>`` (a plan's executors by
  time; its first pending one is the first key of the ``pending#`` range).
- control (``settings.control_table``): hash ``id``; the safety guards' shared state, a
  handful of small items read and written by key: ``halt`` (the engine's live halt:
  ``halted``, ``reason``, ``since``, ``set_by``) and ``interval#<group>`` (``last_attack``,
  a target group's last recorded attack). No index, no TTL: it never grows with the plans.

Why shards: a GSI partition has the same per-partition throughput limits as a table's,
and a write to the table is throttled when an index cannot take its share ("GSI write
throttling and back pressure",
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/gsi-throttling.html).
With one constant ``bucket`` every executor write (claims, outcomes, counters) lands on one
index partition; ``SHARDS`` spreads them by a stable hash of the id. A list queries the
shards in parallel and merges them; range keys end with the id, so they are unique and
a cursor ("after this key") is exact even when many items share a second. Executor lists
leave out executors of plans that are not committed (being created, or gone): one
consistent BatchGetItem of their plans per round of Queries.

Status changes are conditional writes in one TransactWriteItems with the plan's
counters, retried (with jittered exponential backoff, bounded) when DynamoDB cancels them
for a conflict or throttling; so two deliveries of one executor cannot both claim it, and
the counts stay exact when many executors of a plan finish together.

Terminal executors and settled plans carry ``expires_at`` (epoch seconds, a Number, as
TTL requires): DynamoDB deletes them some time after ``settings.executed_retention`` has
passed (typically within two days; reads still return them until then)
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/howitworks-ttl.html):
the retention is a minimum. A plan with a ``next_expansion`` or ``paused`` never carries
it: a recurring plan between two days, or a paused plan, is not settled.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import logging
import math
import random
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from botocore.exceptions import ClientError
from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.domain.errors import (
    ExecutorAlreadyRun,
    ExecutorNotFound,
    ExecutorRunning,
    InvalidCursor,
    OrphanExecutor,
    PlanExists,
    PlanNotFound,
    StorageError,
)
from chalicelib.domain.model import Executor, ExecutorStatus, Plan, StatusCounts
from chalicelib.domain.ports import Clock, ExecutorQuery, Page, PlanQuery
from chalicelib.domain.safety import Halt
from chalicelib.domain.times import from_storage, to_storage, utc_now
from chalicelib.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

CREATING = "creating"
PENDING = "pending"
EXECUTED = "executed"
EXPANSION = "expansion"

# Index partitions per bucket. 8 spreads index writes over 8 partitions (each takes
# ~1,000 writes/s) while a list costs 8 small Queries per bucket, run in parallel.
SHARDS = 8
# Threads a list uses to query its partitions at once.
QUERY_THREADS = 8
# A list's first read asks each partition for this many times its share of the page, so
# that one round usually suffices; a partition that runs short is read again.
OVERSAMPLE = 2
# Pages one partition may read for one list (a filter can leave pages empty): past that
# the list answers with what it has and a cursor that resumes where it stopped.
LIST_MAX_PAGES = 5
# The reaper's reads (running / undelivered / abandoned): pages of this size, at most
# SCAN_MAX_PAGES per partition per call.
SCAN_PAGE_SIZE = 200
SCAN_MAX_PAGES = 10
# BatchWriteItem takes at most 25 requests, BatchGetItem 100 keys.
BATCH_SIZE = 25
BATCH_GET_SIZE = 100
# add_executors writes this many executors per TransactWriteItems, with the plan's
# update (a transaction takes at most 100 items and 4 MB).
TRANSACT_EXECUTORS = 24
# Reads of a plan's executors when deleting it, while the index lists fewer than the
# plan counts (an index lagging behind add_plan).
INDEX_LAG_READS = 4
# A cursor key longer than a range key can be is not one of ours.
MAX_CURSOR_KEY = 1024

CONDITION_FAILED = "ConditionalCheckFailed"
# The control table's item of the engine's halt; a target group's interval is
# "interval#<group>".
HALT_ID = "halt"
# Cancellation reasons of TransactWriteItems that a later attempt can overcome. The API
# reference lists them (TransactionConflict: "another transaction is in progress on the
# item"; ThrottlingError / ProvisionedThroughputExceeded: capacity)
# (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html),
# and the SDK does not retry a TransactionCanceledException: botocore's standard mode
# retries throttling *error codes* only, not a cancelled transaction
# (https://docs.aws.amazon.com/boto3/latest/guide/retries.html).
RETRYABLE_REASONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)
# Whole-request throttling. botocore retries these a few times itself; when it gives up we
# go on with our own (longer, jittered) backoff, as DynamoDB's error-handling guide asks
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html#Programming.Errors.RetryAndBackoff).
RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        # A single write to an item a transaction is writing ("Transaction conflict
        # handling in DynamoDB",
        # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-conflict-handling).
        "TransactionConflictException",
    }
)
# botocore's own retries of a throttled call wait up to 1 s, then 2 s, ... (standard
# mode's backoff base is one second: https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html).
# A throttled claim would then start its attack seconds after the executor's second, so
# botocore makes one attempt and the store retries, reads and writes alike, with its own
# shorter jittered backoff (Backoff).
NO_SDK_RETRIES = 0


@dataclass(frozen=True)
class Backoff:
    """How writes are retried after a conflict or throttling: full-jitter exponential
    delays, bounded both in attempts and in total time (a Lambda, and API Gateway's 29 s,
    wait for us). ``sleep``, ``monotonic`` and ``jitter`` are seams for tests.

    With the defaults the delays grow 50 ms, 100 ms, ... up to 1 s (each drawn uniformly
    below that), 10 attempts and at most 8 s in all: 20 transactions on one plan item,
    each a few milliseconds long, all get through well inside that.
    """

    attempts: int = 10
    base_delay: float = 0.025
    max_delay: float = 1.0
    budget: float = 8.0
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    jitter: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        return float(self.jitter() * min(self.max_delay, self.base_delay * 2**attempt))

    def retrying(self, what: str, call: Callable[[], T]) -> T:
        """``call()``, again after a conflict or throttling (``is_retryable``), within
        these bounds; StorageError when they are exhausted. Other errors are raised as
        they are."""
        started = self.monotonic()
        attempt = 0
        while True:
            try:
                return call()
            except PynamoDBException as error:
                if not is_retryable(error):
                    raise
                attempt += 1
                delay = self.delay(attempt)
                spent = self.monotonic() - started
                if attempt >= self.attempts or spent + delay > self.budget:
                    raise StorageError(
                        f"could not {what} after {attempt} attempts in {spent:.1f} s: {error}"
                    ) from error
                log.info(
                    "retrying a DynamoDB call",
                    extra={"what": what, "attempt": attempt, "delay": round(delay, 3)},
                )
                self.sleep(delay)


def shard_of(item_id: str) -> int:
    """A stable shard for an id (the same in every process, unlike ``hash``)."""
    return zlib.crc32(item_id.encode()) % SHARDS


def _bucket(kind: str, item_id: str) -> str:
    return f"{kind}#{shard_of(item_id)}"


def _executor_kind(status: ExecutorStatus) -> str:
    return EXECUTED if status.is_terminal else PENDING


def _count_name(status: ExecutorStatus) -> str:
    return f"count_{status.value}"


def _order(moment: datetime, item_id: str) -> str:
    return f"{to_storage(moment)}#{item_id}"


def build_models(settings: Settings) -> tuple[Any, Any]:
    """PynamoDB model classes bound to the tables named in ``settings``."""

    class PlansByBucket(GlobalSecondaryIndex[Any]):
        class Meta:
            index_name = "by_bucket"
            projection = AllProjection()

        bucket = UnicodeAttribute(hash_key=True)
        bucket_order = UnicodeAttribute(range_key=True)

    class PlansByExpansion(GlobalSecondaryIndex[Any]):
        class Meta:
            index_name = "by_expansion"
            projection = AllProjection()

        expansion_bucket = UnicodeAttribute(hash_key=True)
        expansion_order = UnicodeAttribute(range_key=True)

    class PlanModel(Model):
        class Meta:
            table_name = settings.plans_table
            region = settings.aws_region
            host = settings.dynamodb_endpoint
            billing_mode = "PAY_PER_REQUEST"
            max_pool_connections = QUERY_THREADS + 2
            # One attempt per botocore call: the store retries (see NO_SDK_RETRIES).
            max_retry_attempts = NO_SDK_RETRIES

        id = UnicodeAttribute(hash_key=True)
        name = UnicodeAttribute()
        created = UnicodeAttribute()
        bucket = UnicodeAttribute()
        bucket_order = UnicodeAttribute()
        planner = JSONAttribute()
        attack = JSONAttribute()
        dry_run = BooleanAttribute(default=False)
        committed = BooleanAttribute(default=False)
        fingerprint = UnicodeAttribute(null=True)
        next_execution = UnicodeAttribute(null=True)
        count_scheduled = NumberAttribute(default=0)
        count_running = NumberAttribute(default=0)
        count_succeeded = NumberAttribute(default=0)
        count_failed = NumberAttribute(default=0)
        count_skipped = NumberAttribute(default=0)
        count_missed = NumberAttribute(default=0)
        expires_at = TTLAttribute(null=True)
        # The plan body's safety options (JSON); absent when the plan gave none.
        safety = JSONAttribute(null=True)
        # Recurring plans: absent on plans that never had them (read as False / None).
        paused = BooleanAttribute(null=True)
        last_expanded = UnicodeAttribute(null=True)  # YYYY-MM-DD
        next_expansion = UnicodeAttribute(null=True)
        # by_expansion's keys, present only while next_expansion is (a sparse index).
        expansion_bucket = UnicodeAttribute(null=True)
        expansion_order = UnicodeAttribute(null=True)
        by_bucket = PlansByBucket()
        by_expansion = PlansByExpansion()

    class ExecutorsByBucket(GlobalSecondaryIndex[Any]):
        class Meta:
            index_name = "by_bucket"
            projection = AllProjection()

        bucket = UnicodeAttribute(hash_key=True)
        bucket_order = UnicodeAttribute(range_key=True)

    class ExecutorsByPlan(GlobalSecondaryIndex[Any]):
        class Meta:
            index_name = "by_plan"
            projection = AllProjection()

        plan_id = UnicodeAttribute(hash_key=True)
        plan_order = UnicodeAttribute(range_key=True)

    class ExecutorModel(Model):
        class Meta:
            table_name = settings.executors_table
            region = settings.aws_region
            host = settings.dynamodb_endpoint
            billing_mode = "PAY_PER_REQUEST"
            max_pool_connections = QUERY_THREADS + 2
            # One attempt per botocore call: the store retries (see NO_SDK_RETRIES).
            max_retry_attempts = NO_SDK_RETRIES

        id = UnicodeAttribute(hash_key=True)
        plan_id = UnicodeAttribute()
        name = UnicodeAttribute()
        next_run_time = UnicodeAttribute()
        bucket = UnicodeAttribute()
        bucket_order = UnicodeAttribute()
        plan_order = UnicodeAttribute()
        status = UnicodeAttribute()
        attack = JSONAttribute()
        dry_run = BooleanAttribute(default=False)
        started_at = UnicodeAttribute(null=True)
        finished_at = UnicodeAttribute(null=True)
        result = JSONAttribute(null=True)
        error = UnicodeAttribute(null=True)
        reason = UnicodeAttribute(null=True)
        expires_at = TTLAttribute(null=True)
        by_bucket = ExecutorsByBucket()
        by_plan = ExecutorsByPlan()

    return PlanModel, ExecutorModel


def build_control_model(settings: Settings) -> Any:
    """The PynamoDB model of the control table named in ``settings``."""

    class ControlModel(Model):
        class Meta:
            table_name = settings.control_table
            region = settings.aws_region
            host = settings.dynamodb_endpoint
            billing_mode = "PAY_PER_REQUEST"
            # One attempt per botocore call: the store retries (see NO_SDK_RETRIES).
            max_retry_attempts = NO_SDK_RETRIES

        id = UnicodeAttribute(hash_key=True)
        # The "halt" item.
        halted = BooleanAttribute(null=True)
        reason = UnicodeAttribute(null=True)
        since = UnicodeAttribute(null=True)
        set_by = UnicodeAttribute(null=True)
        # The "interval#<group>" items: a to_storage string, which sorts like the instant,
        # so the conditional write compares instants by comparing strings.
        last_attack = UnicodeAttribute(null=True)

    return ControlModel


# -- cursors ---------------------------------------------------------------------------


def _digest(description: dict[str, Any]) -> str:
    """A digest of a query, the same in every process (no ``hash``, sorted sets)."""
    text = json.dumps(description, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else to_storage(moment)


def _executor_query_digest(query: ExecutorQuery) -> str:
    return _digest(
        {
            "kind": "executors",
            "executed": query.executed,
            "plan_id": query.plan_id,
            "statuses": sorted(status.value for status in query.statuses),
            "due_from": _stamp(query.due_from),
            "due_until": _stamp(query.due_until),
            "latest_first": query.latest_first,
        }
    )


def _plan_query_digest(query: PlanQuery) -> str:
    return _digest({"kind": "plans", "pending": query.pending, "executed": query.executed})


def encode_cursor(digest: str, key: str) -> str:
    """An opaque cursor: the last key a page covered, and which query it belongs to."""
    raw = json.dumps({"q": digest, "k": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, digest: str) -> str:
    """The key a cursor resumes after; InvalidCursor unless we made it for this query."""
    try:
        raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (ValueError, TypeError):
        raise InvalidCursor(cursor) from None
    if not isinstance(data, dict) or data.get("q") != digest:
        raise InvalidCursor(cursor)
    key = data.get("k")
    if not isinstance(key, str) or not 0 < len(key) <= MAX_CURSOR_KEY:
        raise InvalidCursor(cursor)
    return key


# -- merged Queries over index partitions ------------------------------------------------


@dataclass(frozen=True)
class _Partition:
    """One index partition (or one key prefix of one) that a list reads."""

    index: Any
    hash_key: str
    range_name: str  # the index's range attribute
    prefix: str = ""  # of the range key, not part of the merged order

    def key_condition(self, model: Any, low: str | None, high: str | None) -> Any:
        """The range condition for ``low <= key <= high`` (None: open), within the prefix.

        A prefix ends with '#'; '$' is the next character, so ``<prefix[:-1]>$`` is above
        every key of the prefix and is no key itself.
        """
        attribute = getattr(model, self.range_name)
        lower = self.prefix + low if low is not None else (self.prefix or None)
        upper = (
            self.prefix + high
            if high is not None
            else (self.prefix[:-1] + "$" if self.prefix else None)
        )
        if lower is not None and upper is not None:
            return attribute.between(lower, upper)
        if lower is not None:
            return attribute >= lower
        if upper is not None:
            return attribute <= upper
        return None


@dataclass
class _Reader:
    """What has been read of one partition so far."""

    partition: _Partition
    items: list[tuple[str, Any]] = field(default_factory=list)
    last_key: dict[str, Any] | None = None
    # Everything of the partition up to this key (in read order) has been read.
    frontier: str | None = None
    exhausted: bool = False
    pages: int = 0


@dataclass(frozen=True)
class _Read:
    """A merged read: bounds (inclusive, in the merged order's key space), order, filter."""

    model: Any
    low: str | None = None
    high: str | None = None
    descending: bool = False
    filter_condition: Any = None
    after: str | None = None  # a cursor: only keys strictly after it in the order
    max_pages: int | None = None  # LIST_MAX_PAGES (read when the list runs)
    # Drops read items (after the Query, like a filter): what no expression can decide.
    keep: Callable[[list[Any]], list[Any]] | None = None


class DynamoStore:
    """The Store port on three DynamoDB tables (plans, executors, control)."""

    def __init__(
        self, settings: Settings, *, clock: Clock | None = None, backoff: Backoff | None = None
    ) -> None:
        # PynamoDB model classes are built per settings, so mypy sees them as Any.
        self._plans: Any
        self._executors: Any
        self._plans, self._executors = build_models(settings)
        self._control: Any = build_control_model(settings)
        self._connection = Connection(
            region=settings.aws_region,
            host=settings.dynamodb_endpoint,
            max_retry_attempts=NO_SDK_RETRIES,
        )
        self._retention = settings.executed_retention
        self._now: Callable[[], datetime] = clock.now if clock is not None else utc_now
        self._backoff = backoff or Backoff()

    def create_tables(self) -> None:
        """Create the three tables if missing, plans and executors with TTL on
        ``expires_at`` (local mode and tests; CloudFormation creates them in AWS)."""
        for model in (self._plans, self._executors, self._control):
            if not model.exists():
                model.create_table(wait=True, billing_mode="PAY_PER_REQUEST")

    def close(self) -> None:
        """Nothing to release: botocore's connection pools close with the process."""

    # -- plans -------------------------------------------------------------------------

    def add_plan(self, plan: Plan, executors: Sequence[Executor]) -> None:
        plans = self._plans
        counts = Counter(executor.status for executor in executors)
        pending = [executor.next_run_time for executor in executors if executor.status.is_pending]
        stamp = to_storage(plan.created)
        item = plans(
            plan.id,
            name=plan.name,
            created=stamp,
            # Uncommitted: in the creating bucket, where only list_abandoned_plans looks,
            # and no executor of it can be claimed (transition checks ``committed``).
            bucket=_bucket(CREATING, plan.id),
            bucket_order=f"{stamp}#{plan.id}",
            planner=plan.planner,
            attack=plan.attack,
            dry_run=plan.dry_run,
            committed=False,
            fingerprint=plan.fingerprint,
            next_execution=to_storage(min(pending)) if pending else None,
            safety=plan.safety,
            paused=plan.paused or None,
            last_expanded=_optional_date(plan.last_expanded),
            **_expansion_keys(plan.id, plan.next_expansion),
            **{_count_name(status): counts[status] for status in ExecutorStatus},
        )
        try:
            # Before anything is written: a plan or executor that cannot be stored (its
            # attack not JSON) fails with nothing to undo.
            item.serialize()
            puts = [self._executor_item(executor).serialize() for executor in executors]
        except (TypeError, ValueError) as error:
            raise StorageError(f"could not store plan {plan.id}: {error}") from error
        # The plan first: if this process dies after it, the plan is found (uncommitted,
        # by list_abandoned_plans) and its executors with it; executors written first
        # would be orphans nothing lists.
        try:
            self._backoff.retrying(
                f"store plan {plan.id}", lambda: item.save(condition=plans.id.does_not_exist())
            )
        except PynamoDBException as error:
            if error.cause_response_code == "ConditionalCheckFailedException":
                raise PlanExists(plan.id, "already exists") from None
            raise StorageError(f"could not store plan {plan.id}: {error}") from error
        try:
            self._batch_write(self._executors, puts=puts)
        except (PynamoDBException, StorageError) as error:
            self._remove_partial_plan(plan.id, [executor.id for executor in executors])
            raise StorageError(
                f"could not store the executors of plan {plan.id}: {error}"
            ) from error

    def _remove_partial_plan(self, plan_id: str, executor_ids: Sequence[str]) -> None:
        try:
            self._batch_write(
                self._executors,
                deletes=[{"id": {"S": executor_id}} for executor_id in executor_ids],
            )
            self._backoff.retrying(f"remove plan {plan_id}", lambda: self._plans(plan_id).delete())
        except (PynamoDBException, StorageError):
            # It stays uncommitted: nothing of it can run, and the reaper removes it.
            log.exception("could not remove a partly stored plan", extra={"plan_id": plan_id})

    def commit_plan(self, plan_id: str) -> None:
        plans = self._plans
        item = plans(plan_id)
        try:
            self._backoff.retrying(
                f"commit plan {plan_id}",
                lambda: item.update(
                    actions=[
                        plans.committed.set(True),
                        plans.bucket.set(_bucket(PENDING, plan_id)),
                    ],
                    condition=plans.id.exists() & (plans.committed == False),  # noqa: E712
                ),
            )
        except PynamoDBException as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise StorageError(f"could not commit plan {plan_id}: {error}") from error
            current = self.get_plan(plan_id)
            if current is None:
                raise PlanNotFound(plan_id) from None
            return  # already committed
        if not (int(item.count_scheduled or 0) or int(item.count_running or 0)):
            self._settle(plan_id)

    def get_plan(self, plan_id: str) -> Plan | None:
        try:
            item = self._backoff.retrying(
                f"read plan {plan_id}",
                lambda: self._plans.get(plan_id, consistent_read=True),
            )
        except self._plans.DoesNotExist:
            return None
        except PynamoDBException as error:
            raise StorageError(f"could not read plan {plan_id}: {error}") from error
        return self._plan(item)

    def list_plans(self, query: PlanQuery, limit: int, cursor: str | None) -> Page[Plan]:
        digest = _plan_query_digest(query)
        after = decode_cursor(cursor, digest) if cursor is not None else None
        kinds = [
            kind
            for kind, wanted in ((PENDING, query.pending), (EXECUTED, query.executed))
            if wanted
        ]
        partitions = self._plan_partitions(kinds)
        items, last = self._merged(
            partitions, _Read(self._plans, descending=True, after=after), limit
        )
        return Page(
            [self._plan(item) for item in items],
            encode_cursor(digest, last) if last is not None else None,
        )

    def list_abandoned_plans(self, created_before: datetime, limit: int) -> list[Plan]:
        read = _Read(
            self._plans,
            # Keys are "<created>#<id>": every one of an instant before ``created_before``
            # sorts below its bare stamp, and none of that instant itself does.
            high=to_storage(created_before),
            max_pages=SCAN_MAX_PAGES,
        )
        items, _ = self._merged(self._plan_partitions([CREATING]), read, limit)
        return [self._plan(item) for item in items]

    def delete_plan(self, plan: Plan) -> None:
        # The plan item first, conditional on no running executor: it is the commit point.
        # A claim is a transaction with a condition on this item (it exists, committed)
        # that adds to count_running, so the claim and this delete are serialized by
        # DynamoDB: if the claim wins, count_running > 0 and this delete fails
        # (ExecutorRunning, nothing deleted); if the delete wins, every later claim finds
        # no plan and runs nothing. (BatchWriteItem, used below, takes no conditions.)
        # Then its executors: found on the by_plan index, which is eventually consistent,
        # so a short read (right after add_plan) is read again a few times; an executor
        # still missed stays as an orphan, which no list shows, no claim can run, and the
        # reaper (or TTL, for an executed one) removes.
        plans = self._plans
        try:
            stored = self.get_plan(plan.id)
            expected = (stored or plan).executors_count
            try:
                self._backoff.retrying(
                    f"delete plan {plan.id}",
                    lambda: plans(plan.id).delete(
                        condition=plans.id.does_not_exist() | (plans.count_running == 0)
                    ),
                )
            except PynamoDBException as error:
                if error.cause_response_code != "ConditionalCheckFailedException":
                    raise
                raise self._running_of(plan.id) from None
            ids = self._plan_executor_ids(plan.id)
            for attempt in range(1, INDEX_LAG_READS):
                if len(ids) >= expected:
                    break
                self._backoff.sleep(self._backoff.delay(attempt))
                ids |= self._plan_executor_ids(plan.id)
            else:
                if len(ids) < expected:
                    log.warning(
                        "the plan index lists fewer executors than the plan counts",
                        extra={"plan_id": plan.id, "listed": len(ids), "counted": expected},
                    )
            self._batch_write(self._executors, deletes=[{"id": {"S": i}} for i in sorted(ids)])
        except PynamoDBException as error:
            raise StorageError(f"could not delete plan {plan.id}: {error}") from error

    def _running_of(self, plan_id: str) -> ExecutorRunning:
        """The refusal for a plan whose counters say an executor runs: that executor, read
        consistently (the index may lag; then the first it lists as pending)."""
        model = self._executors
        partition = _Partition(model.by_plan, plan_id, "plan_order", f"{PENDING}#")
        candidates = model.by_plan.query(
            plan_id,
            range_key_condition=partition.key_condition(model, None, None),
            filter_condition=model.status == ExecutorStatus.RUNNING.value,
            attributes_to_get=["id"],
        )
        for candidate in candidates:
            running = self.get_executor(candidate.id)
            if running is not None and running.status is ExecutorStatus.RUNNING:
                return ExecutorRunning(running.id, running.started_at)
        return ExecutorRunning(f"of plan {plan_id}", None)

    def _plan_executor_ids(self, plan_id: str) -> set[str]:
        return {
            item.id for item in self._executors.by_plan.query(plan_id, attributes_to_get=["id"])
        }

    def _plan_partitions(self, kinds: Iterable[str]) -> list[_Partition]:
        return [
            _Partition(self._plans.by_bucket, f"{kind}#{shard}", "bucket_order")
            for kind in kinds
            for shard in range(SHARDS)
        ]

    def _plan(self, item: Any) -> Plan:
        counts = StatusCounts(
            {status: int(getattr(item, _count_name(status)) or 0) for status in ExecutorStatus}
        )
        return Plan(
            id=item.id,
            name=item.name,
            created=from_storage(item.created),
            planner=item.planner,
            attack=item.attack,
            dry_run=bool(item.dry_run),
            counts=counts,
            committed=bool(item.committed),
            fingerprint=item.fingerprint,
            next_execution=_optional_time(item.next_execution),
            safety=item.safety,
            paused=bool(item.paused),
            last_expanded=date.fromisoformat(item.last_expanded) if item.last_expanded else None,
            next_expansion=_optional_time(item.next_expansion),
        )

    # -- recurring plans ---------------------------------------------------------------

    def list_due_expansions(self, now: datetime, limit: int) -> list[str]:
        model = self._plans
        partitions = [
            _Partition(model.by_expansion, f"{EXPANSION}#{shard}", "expansion_order")
            for shard in range(SHARDS)
        ]
        read = _Read(
            model,
            # Keys are "<next_expansion>#<id>"; '$' sorts after '#', so "<now>$" is above
            # every key of the instant ``now`` (due, inclusive) and below any later one.
            high=to_storage(now) + "$",
            # A plan being created has its keys already; it is not due until committed.
            filter_condition=model.committed == True,  # noqa: E712
            max_pages=SCAN_MAX_PAGES,
        )
        return [item.id for item in self._merged(partitions, read, limit)[0]]

    def add_executors(self, plan_id: str, executors: Sequence[Executor]) -> list[str]:
        for executor in executors:
            if executor.plan_id != plan_id:
                raise ValueError(
                    f"executor {executor.id} belongs to plan {executor.plan_id}, not {plan_id}"
                )
        try:
            items = {executor.id: self._executor_item(executor) for executor in executors}
            for item in items.values():
                item.serialize()
        except (TypeError, ValueError) as error:
            raise StorageError(
                f"could not store the executors of plan {plan_id}: {error}"
            ) from error
        added: list[str] = []
        unique = list(dict.fromkeys(executor.id for executor in executors))
        by_id = {executor.id: executor for executor in executors}
        for start in range(0, len(unique), TRANSACT_EXECUTORS):
            chunk = [
                by_id[executor_id] for executor_id in unique[start : start + TRANSACT_EXECUTORS]
            ]
            added += self._add_executor_chunk(plan_id, chunk, items)
        pending: dict[str, datetime | None] = {
            executor_id: by_id[executor_id].next_run_time
            for executor_id in added
            if by_id[executor_id].status.is_pending
        }
        if pending:
            self._refresh_plan(plan_id, pending)
        return added

    def _add_executor_chunk(
        self, plan_id: str, chunk: list[Executor], items: dict[str, Any]
    ) -> list[str]:
        """One TransactWriteItems: a conditional put of each executor (it must not exist)
        and the plan's counts for all of them (it must exist, committed). An executor
        already stored fails its condition and cancels the transaction; the reasons say
        which ones, and the rest are written again without them."""
        plans, model = self._plans, self._executors
        remaining = list(chunk)
        while remaining:
            counts = Counter(executor.status for executor in remaining)
            actions = [getattr(plans, _count_name(status)).add(n) for status, n in counts.items()]
            if any(status.is_pending for status in counts):
                # Something pending again: listed with the pending plans, not expiring.
                actions += [plans.bucket.set(_bucket(PENDING, plan_id)), plans.expires_at.remove()]
            batch = remaining

            def write(batch: list[Executor] = batch, actions: list[Any] = actions) -> None:
                with TransactWrite(
                    connection=self._connection, client_request_token=uuid.uuid4().hex
                ) as transaction:
                    # Puts first, then the plan's update: TransactItems keep that order
                    # (PynamoDB sends puts before updates), so reasons[i] is batch[i]'s.
                    for executor in batch:
                        transaction.save(items[executor.id], condition=model.id.does_not_exist())
                    transaction.update(
                        plans(plan_id),
                        actions=actions,
                        condition=plans.id.exists() & (plans.committed == True),  # noqa: E712
                    )

            try:
                self._backoff.retrying(f"add executors to plan {plan_id}", write)
            except PynamoDBException as error:
                if error.cause_response_code != "TransactionCanceledException":
                    raise StorageError(
                        f"could not add executors to plan {plan_id}: {error}"
                    ) from error
                codes, _ = cancellation_reasons(error)
                if codes[len(batch) : len(batch) + 1] == [CONDITION_FAILED]:
                    raise PlanNotFound(plan_id) from None
                stored = {
                    executor.id
                    for executor, code in zip(batch, codes, strict=False)
                    if code == CONDITION_FAILED
                }
                if not stored:
                    raise StorageError(
                        f"could not add executors to plan {plan_id}: cancelled for {codes}"
                    ) from error
                # Already stored (an expansion run before, or at the same time): skipped.
                remaining = [executor for executor in batch if executor.id not in stored]
                continue
            return [executor.id for executor in batch]
        return []

    def set_expansion(
        self,
        plan_id: str,
        expected_last: date | None,
        last_expanded: date | None,
        next_expansion: datetime | None,
    ) -> bool:
        plans = self._plans
        expected = _optional_date(expected_last)
        for _ in range(self._backoff.attempts):
            item = self._plan_item(plan_id)
            if item is None:
                raise PlanNotFound(plan_id)
            if item.last_expanded != expected or item.paused:
                return False
            actions = self._expansion_actions(plan_id, last_expanded, next_expansion)
            actions += self._placement(item, paused=False, recurring=next_expansion is not None)
            # The condition that makes this the one expansion of the day: the stored
            # last_expanded is still the one read, and the plan is not paused. (A
            # conditional UpdateItem is atomic: of two callers from one state, one passes.)
            condition = (
                self._as_read(item)
                & _equals_or_absent(plans.last_expanded, expected)
                & _not_paused(plans)
            )
            if self._conditional_update(
                f"record the expansion of plan {plan_id}", item, actions, condition
            ):
                return True
            # Changed since it was read: read again, which decides.
        raise StorageError(f"could not record the expansion of plan {plan_id}: it kept changing")

    def set_paused(
        self,
        plan_id: str,
        paused: bool,
        last_expanded: date | None,
        next_expansion: datetime | None,
    ) -> Plan:
        plans = self._plans
        what = f"pause plan {plan_id}" if paused else f"resume plan {plan_id}"
        for _ in range(self._backoff.attempts):
            item = self._plan_item(plan_id)
            if item is None:
                raise PlanNotFound(plan_id)
            actions = [plans.paused.set(True) if paused else plans.paused.remove()]
            actions += self._expansion_actions(plan_id, last_expanded, next_expansion)
            actions += self._placement(item, paused=paused, recurring=next_expansion is not None)
            if self._conditional_update(what, item, actions, self._as_read(item)):
                return self._plan(item)
        raise StorageError(f"could not {what}: it kept changing")

    def _expansion_actions(
        self, plan_id: str, last_expanded: date | None, next_expansion: datetime | None
    ) -> list[Any]:
        plans = self._plans
        values: dict[str, str | None] = {
            "last_expanded": _optional_date(last_expanded),
            **_expansion_keys(plan_id, next_expansion),
        }
        return [
            getattr(plans, name).remove() if value is None else getattr(plans, name).set(value)
            for name, value in values.items()
        ]

    def _placement(self, item: Any, *, paused: bool, recurring: bool) -> list[Any]:
        """The actions that put a committed plan read as ``item`` in its list bucket, given
        whether it will be paused and have a next expansion: pending while an executor is
        pending or an expansion is to come; otherwise executed, without a next execution,
        and expiring after the retention unless paused (a paused plan may be resumed)."""
        plans = self._plans
        if not item.committed:
            return []  # commit_plan places it
        pending = _pending_count(item) > 0
        actions: list[Any] = [] if pending else [plans.next_execution.remove()]
        if pending or recurring:
            return [
                *actions,
                plans.bucket.set(_bucket(PENDING, item.id)),
                plans.expires_at.remove(),
            ]
        actions.append(plans.bucket.set(_bucket(EXECUTED, item.id)))
        if paused:
            actions.append(plans.expires_at.remove())
        elif not (str(item.bucket).startswith(f"{EXECUTED}#") and item.expires_at is not None):
            actions.append(plans.expires_at.set(self._now() + self._retention))
        return actions

    def _as_read(self, item: Any) -> Any:
        """A condition that the plan's counters, commitment and bucket are still as read:
        what ``_placement`` decided from."""
        plans = self._plans
        return (
            plans.id.exists()
            & (plans.committed == bool(item.committed))
            & (plans.count_scheduled == int(item.count_scheduled or 0))
            & (plans.count_running == int(item.count_running or 0))
            & (plans.bucket == item.bucket)
        )

    def _plan_item(self, plan_id: str) -> Any:
        """The plan's item, read consistently; None when it does not exist."""
        try:
            return self._backoff.retrying(
                f"read plan {plan_id}", lambda: self._plans.get(plan_id, consistent_read=True)
            )
        except self._plans.DoesNotExist:
            return None
        except PynamoDBException as error:
            raise StorageError(f"could not read plan {plan_id}: {error}") from error

    def _conditional_update(self, what: str, item: Any, actions: list[Any], condition: Any) -> bool:
        """UpdateItem ``item`` (refreshed with the new values); False when the condition
        failed."""
        try:
            self._backoff.retrying(what, lambda: item.update(actions=actions, condition=condition))
        except PynamoDBException as error:
            if error.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise StorageError(f"could not {what}: {error}") from error
        return True

    # -- safety ------------------------------------------------------------------------

    def get_halt(self) -> Halt:
        item = self._control_item(HALT_ID, "read the halt")
        if item is None:
            return Halt()
        return Halt(
            halted=bool(item.halted),
            reason=item.reason,
            since=_optional_time(item.since),
            by=item.set_by,
        )

    def set_halt(self, halt: Halt) -> Halt:
        control = self._control
        # A PutItem: the item is replaced whole, so nothing of a previous halt survives.
        item = control(
            HALT_ID,
            halted=halt.halted,
            reason=halt.reason,
            since=_stamp(halt.since),
            set_by=halt.by,
        )
        try:
            self._backoff.retrying("record the halt", item.save)
        except PynamoDBException as error:
            raise StorageError(f"could not record the halt: {error}") from error
        return Halt(
            halted=halt.halted,
            reason=halt.reason,
            since=_optional_time(item.since),
            by=halt.by,
        )

    def record_attack(self, group: str, at: datetime, min_interval: timedelta) -> datetime | None:
        control = self._control
        key = _interval_id(group)
        stamp = to_storage(at)
        threshold = to_storage(at - min_interval)
        # One conditional UpdateItem (it creates a missing item): DynamoDB evaluates the
        # condition and writes atomically, so of two concurrent calls at most one passes
        # ("Condition expressions",
        # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.ConditionExpressions.html).
        # to_storage strings sort like instants: "last_attack <= :threshold" is "the last
        # attack is not later than at - min_interval".
        condition = (
            control.id.does_not_exist()
            | control.last_attack.does_not_exist()
            | (control.last_attack <= threshold)
        )
        try:
            self._backoff.retrying(
                f"record an attack on {group!r}",
                lambda: control(key).update(
                    actions=[control.last_attack.set(stamp)], condition=condition
                ),
            )
        except PynamoDBException as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise StorageError(f"could not record an attack on {group!r}: {error}") from error
            last = self.last_attack(group)
            if last is None:
                # The condition failed on an item that a consistent read then did not
                # show: nothing sensible to answer, and refusing is the safe side.
                raise StorageError(
                    f"could not record an attack on {group!r}: the condition failed but "
                    "no last attack is stored"
                ) from error
            return last
        return None

    def last_attack(self, group: str) -> datetime | None:
        item = self._control_item(_interval_id(group), f"read the last attack on {group!r}")
        return None if item is None else _optional_time(item.last_attack)

    def _control_item(self, key: str, what: str) -> Any:
        """One control item, read consistently; None when it does not exist."""
        control = self._control
        try:
            return self._backoff.retrying(what, lambda: control.get(key, consistent_read=True))
        except control.DoesNotExist:
            return None
        except PynamoDBException as error:
            raise StorageError(f"could not {what}: {error}") from error

    # -- executors ---------------------------------------------------------------------

    def get_executor(self, executor_id: str) -> Executor | None:
        try:
            item = self._backoff.retrying(
                f"read executor {executor_id}",
                lambda: self._executors.get(executor_id, consistent_read=True),
            )
        except self._executors.DoesNotExist:
            return None
        except PynamoDBException as error:
            raise StorageError(f"could not read executor {executor_id}: {error}") from error
        return self._executor(item)

    def list_executors(
        self, query: ExecutorQuery, limit: int, cursor: str | None
    ) -> Page[Executor]:
        digest = _executor_query_digest(query)
        after = decode_cursor(cursor, digest) if cursor is not None else None
        model = self._executors
        kinds = []
        wanted = query.statuses
        if query.executed in (False, None) and (not wanted or any(s.is_pending for s in wanted)):
            kinds.append(PENDING)
        if query.executed in (True, None) and (not wanted or any(s.is_terminal for s in wanted)):
            kinds.append(EXECUTED)
        if query.plan_id is not None:
            partitions = [
                _Partition(model.by_plan, query.plan_id, "plan_order", f"{kind}#") for kind in kinds
            ]
        else:
            partitions = [
                _Partition(model.by_bucket, f"{kind}#{shard}", "bucket_order")
                for kind in kinds
                for shard in range(SHARDS)
            ]
        covered = {status for status in ExecutorStatus if _executor_kind(status) in kinds}
        narrower = wanted and not covered <= wanted
        read = _Read(
            model,
            # Keys are "<time>#<id>": "<from>" is below every key of that instant (from is
            # inclusive), "<until>" is above every key before it and below its own (until
            # is exclusive).
            low=_stamp(query.due_from),
            high=_stamp(query.due_until),
            descending=query.latest_first,
            filter_condition=(
                model.status.is_in(*sorted(status.value for status in wanted & covered))
                if narrower
                else None
            ),
            after=after,
        )
        if query.plan_id is None:
            read = dataclasses.replace(read, keep=self._of_committed_plans())
        items, last = self._merged(partitions, read, limit)
        return Page(
            [self._executor(item) for item in items],
            encode_cursor(digest, last) if last is not None else None,
        )

    def _of_committed_plans(self) -> Callable[[list[Any]], list[Any]]:
        """A ``keep`` for executor lists: only executors of committed plans, as the port
        asks; those of a plan being created (or deleted) are left out. One consistent
        BatchGetItem per round of reads for the plans not seen yet in this list."""
        committed: dict[str, bool] = {}

        def keep(items: list[Any]) -> list[Any]:
            unknown = sorted({item.plan_id for item in items} - committed.keys())
            for start in range(0, len(unknown), BATCH_GET_SIZE):
                chunk = unknown[start : start + BATCH_GET_SIZE]
                committed.update(dict.fromkeys(chunk, False))
                for plan in self._plans.batch_get(
                    chunk, consistent_read=True, attributes_to_get=["id", "committed"]
                ):
                    committed[plan.id] = bool(plan.committed)
            return [item for item in items if committed[item.plan_id]]

        return keep

    def list_running(self, started_before: datetime, limit: int) -> list[str]:
        model = self._executors
        stamp = to_storage(started_before)
        # A claim happens at or after an executor's time, never before, so one that
        # started before ``started_before`` is due before it: only the pending buckets'
        # past is read, not the (large) future.
        read = _Read(
            model,
            high=stamp,
            filter_condition=(model.status == ExecutorStatus.RUNNING.value)
            & (model.started_at < stamp),
            max_pages=SCAN_MAX_PAGES,
        )
        return [item.id for item in self._merged(self._pending_partitions(), read, limit)[0]]

    def list_undelivered(self, due_before: datetime, limit: int) -> list[str]:
        model = self._executors
        read = _Read(
            model,
            high=to_storage(due_before),
            filter_condition=model.status == ExecutorStatus.SCHEDULED.value,
            max_pages=SCAN_MAX_PAGES,
        )
        return [item.id for item in self._merged(self._pending_partitions(), read, limit)[0]]

    def _pending_partitions(self) -> list[_Partition]:
        index = self._executors.by_bucket
        return [_Partition(index, f"{PENDING}#{shard}", "bucket_order") for shard in range(SHARDS)]

    def delete_executor(self, executor: Executor) -> bool:
        if executor.status is ExecutorStatus.RUNNING:
            raise ExecutorRunning(executor.id, executor.started_at)
        model, plans = self._executors, self._plans

        def write() -> None:
            with TransactWrite(
                connection=self._connection, client_request_token=uuid.uuid4().hex
            ) as transaction:
                transaction.delete(
                    model(executor.id), condition=model.status == executor.status.value
                )
                transaction.update(
                    plans(executor.plan_id),
                    actions=[getattr(plans, _count_name(executor.status)).add(-1)],
                    condition=plans.id.exists(),
                    return_values="ALL_OLD",
                )

        if not self._conditional_transaction(f"delete executor {executor.id}", write, executor):
            return False
        if executor.status.is_pending:
            self._refresh_plan(executor.plan_id, {executor.id: None})
        return True

    def purge_executor(self, executor_id: str) -> None:
        try:
            self._backoff.retrying(
                f"purge executor {executor_id}", lambda: self._executors(executor_id).delete()
            )
        except PynamoDBException as error:
            raise StorageError(f"could not purge executor {executor_id}: {error}") from error

    def move_executor(self, executor_id: str, run_at: datetime) -> Executor:
        model = self._executors
        item = model(executor_id)
        order = _order(run_at, executor_id)
        try:
            self._backoff.retrying(
                f"move executor {executor_id}",
                lambda: item.update(
                    actions=[
                        model.next_run_time.set(to_storage(run_at)),
                        model.bucket_order.set(order),
                        model.plan_order.set(f"{PENDING}#{order}"),
                    ],
                    condition=model.status == ExecutorStatus.SCHEDULED.value,
                ),
            )
        except PynamoDBException as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise StorageError(f"could not move executor {executor_id}: {error}") from error
            current = self.get_executor(executor_id)
            if current is None:
                raise ExecutorNotFound(executor_id) from None
            raise ExecutorAlreadyRun(executor_id, current.status.value) from None
        moved = self._executor(item)
        self._refresh_plan(moved.plan_id, {moved.id: moved.next_run_time})
        return moved

    def transition(
        self, executor: Executor, target: ExecutorStatus, changes: dict[str, Any]
    ) -> bool:
        new = executor.moved_to(target, changes)
        model, plans = self._executors, self._plans
        source = executor.status
        actions = [model.status.set(target.value)]
        if _executor_kind(target) != _executor_kind(source):
            kind = _executor_kind(target)
            actions += [
                model.bucket.set(_bucket(kind, executor.id)),
                model.plan_order.set(f"{kind}#{_order(executor.next_run_time, executor.id)}"),
            ]
        if target.is_terminal:
            ended = new.finished_at or self._now()
            actions.append(model.expires_at.set(ended + self._retention))
        for name in changes:
            attribute = getattr(model, name)
            value = getattr(new, name)
            stored = to_storage(value) if isinstance(value, datetime) else value
            actions.append(attribute.remove() if stored is None else attribute.set(stored))
        # Only the executor as it was read may change: same status *and* same time, so a
        # delivery that read the executor before it was moved cannot claim it.
        unchanged = (model.status == source.value) & (
            model.next_run_time == to_storage(executor.next_run_time)
        )
        plan_condition = plans.id.exists()
        if source is ExecutorStatus.SCHEDULED and target is ExecutorStatus.RUNNING:
            plan_condition = plan_condition & (plans.committed == True)  # noqa: E712

        def write() -> None:
            with TransactWrite(
                connection=self._connection, client_request_token=uuid.uuid4().hex
            ) as transaction:
                transaction.update(model(executor.id), actions=actions, condition=unchanged)
                transaction.update(
                    plans(executor.plan_id),
                    actions=[
                        getattr(plans, _count_name(source)).add(-1),
                        getattr(plans, _count_name(target)).add(1),
                    ],
                    condition=plan_condition,
                    # On a failed condition the reason carries the plan item if it exists:
                    # an uncommitted plan (a refused claim) is told from a missing one.
                    return_values="ALL_OLD",
                )

        if not self._conditional_transaction(f"record executor {executor.id}", write, executor):
            return False
        for item in fields(Executor):
            setattr(executor, item.name, getattr(new, item.name))
        if source.is_pending and target.is_terminal:
            self._refresh_plan(executor.plan_id, {executor.id: None})
        return True

    def _conditional_transaction(
        self, what: str, write: Callable[[], None], executor: Executor
    ) -> bool:
        """Run an (executor, plan) transaction; False when the executor's condition failed
        or the plan's did on an existing plan; OrphanExecutor when the plan is missing."""
        try:
            self._backoff.retrying(what, write)
        except PynamoDBException as error:
            if error.cause_response_code != "TransactionCanceledException":
                raise StorageError(f"could not {what}: {error}") from error
            codes, items = cancellation_reasons(error)
            plan_failed = codes[1:2] == [CONDITION_FAILED]
            if plan_failed and items[1] is None:
                # No plan (whatever became of the executor): nothing can record it.
                raise OrphanExecutor(executor.id, executor.plan_id) from None
            if plan_failed or codes[:1] == [CONDITION_FAILED]:
                # The executor changed, or a claim of an uncommitted plan's executor.
                return False
            raise StorageError(f"could not {what}: cancelled for {codes}") from error
        return True

    # -- the plan's denormalized state -------------------------------------------------

    def _refresh_plan(self, plan_id: str, known: dict[str, datetime | None]) -> None:
        """Bring a plan's ``next_execution`` (and bucket) up to date after its pending
        executors changed: ``known`` maps the executors this process just changed to their
        pending time now (None: no longer pending).

        One Query on by_plan for the first pending executors, then one conditional
        update. A GSI read is eventually consistent
        (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.Reading):
        it may still show an executor that just left pending or a moved one's old time. So
        what this process knows overrides the index, and the *counters* (exact, written in
        the transactions) decide whether anything is pending: a plan with no pending
        executor is always settled, never given a stale time. A time from another
        process's change that the index does not show yet can linger until the plan's next
        change: ``next_execution`` is a display value, never used to run anything.
        """
        plans = self._plans
        try:
            first = self._first_pending(plan_id, known)
            if first is not None:
                try:
                    self._backoff.retrying(
                        f"refresh plan {plan_id}",
                        lambda: plans(plan_id).update(
                            actions=[plans.next_execution.set(to_storage(first))],
                            condition=plans.id.exists()
                            & ((plans.count_scheduled > 0) | (plans.count_running > 0)),
                        ),
                    )
                    return
                except PynamoDBException as error:
                    if error.cause_response_code != "ConditionalCheckFailedException":
                        raise
                    # No pending executor left (the index lagged), or no plan: settle.
            self._settle(plan_id)
        except (PynamoDBException, StorageError) as error:
            log.warning(
                "could not refresh the plan's next execution",
                extra={"plan_id": plan_id, "error": str(error)},
            )

    def _first_pending(self, plan_id: str, known: dict[str, datetime | None]) -> datetime | None:
        model = self._executors
        partition = _Partition(model.by_plan, plan_id, "plan_order", f"{PENDING}#")
        candidates = [time for time in known.values() if time is not None]
        # Limit past the executors we know about, so one more is always seen.
        for item in model.by_plan.query(
            plan_id,
            range_key_condition=partition.key_condition(model, None, None),
            limit=len(known) + 1,
            page_size=len(known) + 1,
        ):
            if item.id not in known:
                candidates.append(from_storage(item.next_run_time))
                break
        return min(candidates, default=None)

    def _settle(self, plan_id: str) -> None:
        """Place a committed plan whose (exact) counters say nothing is pending: executed,
        without a next execution and expiring after the retention; but still pending while
        it has a next expansion, and never expiring while paused. Nothing when an executor
        is pending, or the plan is not committed (it settles when committed) or gone.

        One consistent read and a write conditional on what was read; read again when the
        plan changed in between."""
        plans = self._plans
        for _ in range(self._backoff.attempts):
            item = self._plan_item(plan_id)
            if item is None or not item.committed or _pending_count(item):
                return
            recurring = item.next_expansion is not None
            paused = bool(item.paused)
            if _is_placed(item, recurring=recurring, paused=paused):
                return
            actions = self._placement(item, paused=paused, recurring=recurring)
            condition = (
                self._as_read(item)
                & _equals_or_absent(plans.next_expansion, item.next_expansion)
                & (plans.paused == True if paused else _not_paused(plans))  # noqa: E712
            )
            if self._conditional_update(f"settle plan {plan_id}", item, actions, condition):
                return
        log.warning("could not settle the plan: it kept changing", extra={"plan_id": plan_id})

    # -- reading and writing -----------------------------------------------------------

    def _merged(
        self, partitions: Sequence[_Partition], read: _Read, limit: int
    ) -> tuple[list[Any], str | None]:
        """Up to ``limit`` items of ``partitions`` in the merged order, and the key a next
        page starts after (None when nothing can follow).

        Exact: an item is returned only when every partition that still has items has
        been read past it (its frontier), so no partition can hold an earlier one.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        low, high = read.low, read.high
        if read.after is not None:
            if read.descending:
                high = read.after if high is None else min(high, read.after)
            else:
                low = read.after if low is None else max(low, read.after)
        if not partitions or (low is not None and high is not None and low > high):
            return [], None
        readers = [_Reader(partition) for partition in partitions]
        # The cursor's own key is read again (bounds are inclusive) and dropped: +1.
        extra = 1 if read.after is not None else 0
        first = min(limit, math.ceil(limit * OVERSAMPLE / len(readers))) + extra
        self._read_pages(readers, read, low, high, first)
        while True:
            live = [reader for reader in readers if not reader.exhausted]
            frontiers = [reader.frontier for reader in live if reader.frontier is not None]
            horizon = (max if read.descending else min)(frontiers) if frontiers else None
            pool = sorted(
                (pair for reader in readers for pair in reader.items if pair[0] != read.after),
                key=lambda pair: pair[0],
                reverse=read.descending,
            )

            def reached(key: str, horizon: str | None = horizon) -> bool:
                # No horizon: every partition is exhausted, everything read is final.
                if horizon is None:
                    return True
                return key >= horizon if read.descending else key <= horizon

            safe = [pair for pair in pool if reached(pair[0])]
            if len(safe) >= limit:
                page = safe[:limit]
                more = len(pool) > limit or bool(live)
                return [item for _, item in page], (page[-1][0] if more else None)
            if not live:
                return [item for _, item in safe], None
            # A partition that is not exhausted has a frontier: its last evaluated key.
            behind = [reader for reader in live if reader.frontier == horizon]
            max_pages = read.max_pages or LIST_MAX_PAGES
            if any(reader.pages >= max_pages for reader in behind):
                # Too many pages without enough matches: a partial page, resumed after
                # the point every partition has been read to.
                return [item for _, item in safe], horizon
            self._read_pages(behind, read, low, high, limit + extra)

    def _read_pages(
        self,
        readers: Sequence[_Reader],
        read: _Read,
        low: str | None,
        high: str | None,
        size: int,
    ) -> None:
        """Read the next page of each reader, in parallel."""

        def one(reader: _Reader) -> list[tuple[str, Any]]:
            partition = reader.partition

            def query() -> dict[str, Any]:
                result = partition.index.query(
                    partition.hash_key,
                    range_key_condition=partition.key_condition(read.model, low, high),
                    filter_condition=read.filter_condition,
                    scan_index_forward=not read.descending,
                    last_evaluated_key=reader.last_key,
                    page_size=size,
                )
                return dict(next(iter(result.page_iter), {}))

            page = self._backoff.retrying(f"read {read.model.Meta.table_name}", query)
            cut = len(partition.prefix)
            reader.pages += 1
            reader.last_key = page.get("LastEvaluatedKey")
            if reader.last_key is None:
                reader.exhausted = True
            else:
                reader.frontier = reader.last_key[partition.range_name]["S"][cut:]
            items = [read.model.from_raw_data(raw) for raw in page.get("Items", [])]
            return [(getattr(item, partition.range_name)[cut:], item) for item in items]

        try:
            if len(readers) == 1:
                pages = [one(readers[0])]
            else:
                with ThreadPoolExecutor(max_workers=min(QUERY_THREADS, len(readers))) as pool:
                    pages = list(pool.map(one, readers))
            kept = (
                {id(item) for item in read.keep([item for page in pages for _, item in page])}
                if read.keep is not None
                else None
            )
        except PynamoDBException as error:
            raise StorageError(f"could not read {read.model.Meta.table_name}: {error}") from error
        for reader, page in zip(readers, pages, strict=True):
            reader.items.extend(pair for pair in page if kept is None or id(pair[1]) in kept)

    def _batch_write(
        self,
        model: Any,
        puts: Sequence[dict[str, Any]] = (),
        deletes: Sequence[dict[str, Any]] = (),
    ) -> None:
        """BatchWriteItem in chunks of 25, resending unprocessed requests with backoff
        (DynamoDB returns them when a partition is throttled: "Batch operations and error
        handling",
        https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html#Programming.Errors.BatchOperations).
        """
        connection = model._get_connection()
        table = model.Meta.table_name
        requests = [("put", item) for item in puts] + [("delete", key) for key in deletes]
        for start in range(0, len(requests), BATCH_SIZE):
            chunk = requests[start : start + BATCH_SIZE]
            put_items = [item for kind, item in chunk if kind == "put"]
            delete_items = [key for kind, key in chunk if kind == "delete"]
            backoff = self._backoff
            began = backoff.monotonic()
            attempt = 0
            while put_items or delete_items:
                data = self._backoff.retrying(
                    f"batch write {table}",
                    functools.partial(
                        connection.batch_write_item, put_items=put_items, delete_items=delete_items
                    ),
                )
                unprocessed = (data or {}).get("UnprocessedItems", {}).get(table) or []
                put_items = [u["PutRequest"]["Item"] for u in unprocessed if "PutRequest" in u]
                delete_items = [
                    u["DeleteRequest"]["Key"] for u in unprocessed if "DeleteRequest" in u
                ]
                if not unprocessed:
                    break
                attempt += 1
                delay = backoff.delay(attempt)
                if (
                    attempt >= backoff.attempts
                    or backoff.monotonic() - began + delay > backoff.budget
                ):
                    raise StorageError(f"{len(unprocessed)} writes to {table} stayed unprocessed")
                backoff.sleep(delay)

    def _executor_item(self, executor: Executor) -> Any:
        kind = _executor_kind(executor.status)
        order = _order(executor.next_run_time, executor.id)
        return self._executors(
            executor.id,
            plan_id=executor.plan_id,
            name=executor.name,
            next_run_time=to_storage(executor.next_run_time),
            bucket=_bucket(kind, executor.id),
            bucket_order=order,
            plan_order=f"{kind}#{order}",
            status=executor.status.value,
            attack=executor.attack,
            dry_run=executor.dry_run,
        )

    def _executor(self, item: Any) -> Executor:
        return Executor(
            id=item.id,
            plan_id=item.plan_id,
            name=item.name,
            next_run_time=from_storage(item.next_run_time),
            attack=item.attack,
            status=ExecutorStatus(item.status),
            dry_run=bool(item.dry_run),
            started_at=_optional_time(item.started_at),
            finished_at=_optional_time(item.finished_at),
            result=item.result,
            error=item.error,
            reason=item.reason,
        )


def _optional_time(text: str | None) -> datetime | None:
    return from_storage(text) if text else None


def _optional_date(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def _expansion_keys(plan_id: str, next_expansion: datetime | None) -> dict[str, str | None]:
    """A plan's ``next_expansion`` and the by_expansion keys that follow it (all None, so
    absent, when it has none: the index is sparse)."""
    if next_expansion is None:
        return {"next_expansion": None, "expansion_bucket": None, "expansion_order": None}
    return {
        "next_expansion": to_storage(next_expansion),
        "expansion_bucket": _bucket(EXPANSION, plan_id),
        "expansion_order": _order(next_expansion, plan_id),
    }


def _pending_count(item: Any) -> int:
    return int(item.count_scheduled or 0) + int(item.count_running or 0)


def _is_placed(item: Any, *, recurring: bool, paused: bool) -> bool:
    """Whether a plan with nothing pending is already where ``_placement`` would put it."""
    if item.next_execution is not None:
        return False
    if recurring:
        return str(item.bucket).startswith(f"{PENDING}#") and item.expires_at is None
    return str(item.bucket).startswith(f"{EXECUTED}#") and (item.expires_at is None) == paused


def _equals_or_absent(attribute: Any, value: str | None) -> Any:
    """``attribute == value``, or the attribute absent for None."""
    return attribute.does_not_exist() if value is None else attribute == value


def _not_paused(plans: Any) -> Any:
    return plans.paused.does_not_exist() | (plans.paused == False)  # noqa: E712


def _interval_id(group: str) -> str:
    """The control item of a target group's minimum interval."""
    return f"interval#{group}"


def cancellation_reasons(error: PynamoDBException) -> tuple[list[str], list[dict[str, Any] | None]]:
    """The codes of a cancelled transaction's reasons, one per item in order ("None" for
    an item that was not a reason), and the item a failed condition returned.

    Read from botocore's raw response: PynamoDB turns the code "None" into None, which
    once made a missing plan look like no condition failure at all.
    """
    cause = error.cause
    original = getattr(cause, "__cause__", None)
    for source in (original, cause):
        if isinstance(source, ClientError) and "CancellationReasons" in source.response:
            raw: list[dict[str, Any]] = list(source.response["CancellationReasons"])
            return [str(reason.get("Code") or "None") for reason in raw], [
                reason.get("Item") for reason in raw
            ]
    parsed = getattr(cause, "cancellation_reasons", None) or []
    return (
        ["None" if reason is None else str(reason.code) for reason in parsed],
        [None if reason is None else reason.raw_item for reason in parsed],
    )


def is_retryable(error: PynamoDBException) -> bool:
    """A conflict or throttling that another attempt may overcome."""
    code = error.cause_response_code
    if code == "TransactionCanceledException":
        codes, _ = cancellation_reasons(error)
        return bool(RETRYABLE_REASONS & set(codes)) and CONDITION_FAILED not in codes
    return code in RETRYABLE_CODES
