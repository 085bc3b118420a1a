"""DynamoDB storage of plans and executors through PynamoDB.

Tables and indexes (all reads on request paths are Queries):

- plans: hash ``id``; GSI ``by_bucket`` (``bucket`` = pending|executed, ``created``).
- executors: hash ``id``; GSI ``by_bucket`` (``bucket``, ``next_run_time``) for the
  executor list, GSI ``by_plan`` (``plan_id``, ``plan_order`` = ``<bucket>#<time>``)
  for a plan's executors and its next pending one. ``by_bucket`` also finds running
  executors that outlived their lease: they are pending, and were claimed no sooner than
  EARLY_TOLERANCE before their time, so only the pending bucket's past is read.

Status changes are conditional writes in one transaction with the plan's counters, so
two deliveries of the same executor cannot both claim it and the counts stay exact.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    NumberAttribute,
    UnicodeAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.domain.errors import ExecutorAlreadyRun, ExecutorNotFound, StorageError
from chalicelib.domain.model import (
    EARLY_TOLERANCE,
    Executor,
    ExecutorStatus,
    Plan,
    StatusCounts,
    can_transition,
)
from chalicelib.domain.times import from_storage, to_storage
from chalicelib.settings import Settings

log = logging.getLogger(__name__)

PENDING = "pending"
EXECUTED = "executed"
# list_running and list_undelivered read at most this many pages of this many items.
RUNNING_PAGE_SIZE = 200
RUNNING_MAX_PAGES = 10


def _bucket(status: ExecutorStatus) -> str:
    return EXECUTED if status.is_terminal else PENDING


def _count_name(status: ExecutorStatus) -> str:
    return f"count_{status.value}"


def build_models(settings: Settings) -> tuple[Any, Any]:
    """PynamoDB model classes bound to the tables named in ``settings``."""

    class PlansByBucket(GlobalSecondaryIndex[Any]):
        class Meta:
            index_name = "by_bucket"
            projection = AllProjection()

        bucket = UnicodeAttribute(hash_key=True)
        created = UnicodeAttribute(range_key=True)

    class PlanModel(Model):
        class Meta:
            table_name = settings.plans_table
            region = settings.aws_region
            host = settings.dynamodb_endpoint
            billing_mode = "PAY_PER_REQUEST"

        id = UnicodeAttribute(hash_key=True)
        name = UnicodeAttribute()
        created = UnicodeAttribute()
        bucket = UnicodeAttribute()
        planner = JSONAttribute()
        attack = JSONAttribute()
        dry_run = BooleanAttribute(default=False)
        count_scheduled = NumberAttribute(default=0)
        count_running = NumberAttribute(default=0)
        count_succeeded = NumberAttribute(default=0)
        count_failed = NumberAttribute(default=0)
        count_skipped = NumberAttribute(default=0)
        count_missed = NumberAttribute(default=0)
        by_bucket = PlansByBucket()

    class ExecutorsByBucket(GlobalSecondaryIndex[Any]):
        class Meta:
            index_name = "by_bucket"
            projection = AllProjection()

        bucket = UnicodeAttribute(hash_key=True)
        next_run_time = UnicodeAttribute(range_key=True)

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

        id = UnicodeAttribute(hash_key=True)
        plan_id = UnicodeAttribute()
        name = UnicodeAttribute()
        next_run_time = UnicodeAttribute()
        bucket = UnicodeAttribute()
        plan_order = UnicodeAttribute()
        status = UnicodeAttribute()
        attack = JSONAttribute()
        dry_run = BooleanAttribute(default=False)
        started_at = UnicodeAttribute(null=True)
        finished_at = UnicodeAttribute(null=True)
        result = JSONAttribute(null=True)
        error = UnicodeAttribute(null=True)
        reason = UnicodeAttribute(null=True)
        by_bucket = ExecutorsByBucket()
        by_plan = ExecutorsByPlan()

    return PlanModel, ExecutorModel


def _optional_time(text: str | None) -> datetime | None:
    return from_storage(text) if text else None


class DynamoStore:
    """The Store port on two DynamoDB tables."""

    def __init__(self, settings: Settings) -> None:
        # PynamoDB model classes are built per settings, so mypy sees them as Any.
        self._plans: Any
        self._executors: Any
        self._plans, self._executors = build_models(settings)
        self._connection = Connection(region=settings.aws_region, host=settings.dynamodb_endpoint)

    def create_tables(self) -> None:
        """Create both tables if missing (local mode and tests; CloudFormation in AWS)."""
        for model in (self._plans, self._executors):
            if not model.exists():
                model.create_table(wait=True, billing_mode="PAY_PER_REQUEST")

    # -- plans ---------------------------------------------------------------------

    def add_plan(self, plan: Plan, executors: Sequence[Executor]) -> None:
        written: list[Any] = []
        try:
            with self._executors.batch_write() as batch:
                for executor in executors:
                    item = self._executor_item(executor)
                    batch.save(item)
                    written.append(item)
            item = self._plans(
                plan.id,
                name=plan.name,
                created=to_storage(plan.created),
                bucket=PENDING,
                planner=plan.planner,
                attack=plan.attack,
                dry_run=plan.dry_run,
                count_scheduled=len(executors),
            )
            item.save()
        except PynamoDBException as error:
            self._forget(written)
            raise StorageError(f"could not store plan {plan.id}: {error}") from error

    def _forget(self, items: Sequence[Any]) -> None:
        try:
            with self._executors.batch_write() as batch:
                for item in items:
                    batch.delete(item)
        except PynamoDBException:
            log.exception("could not remove a partly stored plan", extra={"items": len(items)})

    def get_plan(self, plan_id: str) -> Plan | None:
        try:
            item = self._plans.get(plan_id, consistent_read=True)
        except self._plans.DoesNotExist:
            return None
        return self._plan(item)

    def list_plans(self, include_executed: bool, limit: int) -> list[Plan]:
        buckets = [PENDING, EXECUTED] if include_executed else [PENDING]
        items: list[Any] = []
        for bucket in buckets:
            items.extend(self._plans.by_bucket.query(bucket, scan_index_forward=False, limit=limit))
        items.sort(key=lambda item: item.created, reverse=True)
        return [self._plan(item) for item in items[:limit]]

    def delete_plan(self, plan: Plan, executors: Sequence[Executor]) -> None:
        with self._executors.batch_write() as batch:
            for executor in executors:
                batch.delete(self._executors(executor.id))
        self._plans(plan.id).delete()

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
        )

    # -- executors -----------------------------------------------------------------

    def get_executor(self, executor_id: str) -> Executor | None:
        try:
            item = self._executors.get(executor_id, consistent_read=True)
        except self._executors.DoesNotExist:
            return None
        return self._executor(item)

    def list_executors(self, executed: bool, limit: int) -> list[Executor]:
        # Pending: soonest first. Executed: most recent first, so a bounded list shows
        # what just happened rather than the oldest history.
        bucket = EXECUTED if executed else PENDING
        items = self._executors.by_bucket.query(
            bucket, scan_index_forward=not executed, limit=limit
        )
        return [self._executor(item) for item in items]

    def list_running(self, started_before: datetime, limit: int) -> list[Executor]:
        model = self._executors
        return self._pending_due(
            # A claim never happens more than EARLY_TOLERANCE before the executor's time.
            started_before + EARLY_TOLERANCE,
            (model.status == ExecutorStatus.RUNNING.value)
            & (model.started_at < to_storage(started_before)),
            limit,
        )

    def list_undelivered(self, due_before: datetime, limit: int) -> list[Executor]:
        model = self._executors
        return self._pending_due(due_before, model.status == ExecutorStatus.SCHEDULED.value, limit)

    def _pending_due(self, due_before: datetime, condition: Any, limit: int) -> list[Executor]:
        """Pending executors due before ``due_before`` that meet ``condition``, bounded.

        The range condition keeps the Query to the pending bucket's past: executors that
        are not yet due (the bulk of the bucket) are never read.
        """
        model = self._executors
        pages = model.by_bucket.query(
            PENDING,
            range_key_condition=model.next_run_time <= to_storage(due_before),
            filter_condition=condition,
            page_size=RUNNING_PAGE_SIZE,
        ).page_iter
        found: list[Executor] = []
        for number, page in enumerate(pages, start=1):
            found.extend(self._executor(model.from_raw_data(raw)) for raw in page.get("Items", []))
            if len(found) >= limit or number >= RUNNING_MAX_PAGES:
                break
        return found[:limit]

    def list_plan_executors(self, plan_id: str, limit: int) -> list[Executor]:
        executors = [
            self._executor(item) for item in self._executors.by_plan.query(plan_id, limit=limit)
        ]
        return sorted(executors, key=lambda executor: executor.next_run_time)

    def next_pending_time(self, plan_id: str) -> datetime | None:
        index = self._executors.by_plan
        for item in index.query(
            plan_id,
            range_key_condition=self._executors.plan_order.startswith(f"{PENDING}#"),
            limit=1,
        ):
            return from_storage(item.next_run_time)
        return None

    def delete_executor(self, executor: Executor) -> bool:
        """Delete one executor and take it off its plan's counts; False if it changed."""
        model = self._executors
        try:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.delete(
                    model(executor.id), condition=model.status == executor.status.value
                )
                transaction.update(
                    self._plans(executor.plan_id),
                    actions=[getattr(self._plans, _count_name(executor.status)).add(-1)],
                    condition=self._plans.id.exists(),
                )
        except TransactWriteError as error:
            if _condition_failed(error):
                return False
            raise StorageError(f"could not delete executor {executor.id}: {error}") from error
        self._settle_plan(executor.plan_id)
        return True

    def move_executor(self, executor_id: str, run_at: datetime) -> Executor:
        model = self._executors
        stamp = to_storage(run_at)
        try:
            item = model(executor_id)
            item.update(
                actions=[
                    model.next_run_time.set(stamp),
                    model.plan_order.set(f"{PENDING}#{stamp}"),
                ],
                condition=model.status == ExecutorStatus.SCHEDULED.value,
            )
        except PynamoDBException as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise StorageError(f"could not move executor {executor_id}: {error}") from error
            current = self.get_executor(executor_id)
            if current is None:
                raise ExecutorNotFound(executor_id) from None
            raise ExecutorAlreadyRun(executor_id, current.status.value) from None
        return self._executor(item)

    def transition(
        self, executor: Executor, target: ExecutorStatus, changes: dict[str, Any]
    ) -> bool:
        model = self._executors
        source = executor.status
        if not can_transition(source, target):
            raise ValueError(f"an executor cannot go from {source.value} to {target.value}")
        actions = [model.status.set(target.value)]
        if target.is_terminal:
            stamp = to_storage(executor.next_run_time)
            actions += [model.bucket.set(EXECUTED), model.plan_order.set(f"{EXECUTED}#{stamp}")]
        for name, value in changes.items():
            attribute = getattr(model, name)
            stored = to_storage(value) if isinstance(value, datetime) else value
            actions.append(attribute.remove() if stored is None else attribute.set(stored))
        try:
            with TransactWrite(connection=self._connection) as transaction:
                transaction.update(
                    model(executor.id), actions=actions, condition=model.status == source.value
                )
                transaction.update(
                    self._plans(executor.plan_id),
                    actions=[
                        getattr(self._plans, _count_name(source)).add(-1),
                        getattr(self._plans, _count_name(target)).add(1),
                    ],
                    condition=self._plans.id.exists(),
                )
        except TransactWriteError as error:
            if _condition_failed(error):
                return False
            raise StorageError(f"could not record executor {executor.id}: {error}") from error
        executor.status = target
        for name, value in changes.items():
            setattr(executor, name, value)
        if target.is_terminal:
            self._settle_plan(executor.plan_id)
        return True

    def _settle_plan(self, plan_id: str) -> None:
        """Move a plan to the executed bucket once none of its executors is pending."""
        plans = self._plans
        try:
            plans(plan_id).update(
                actions=[plans.bucket.set(EXECUTED)],
                condition=plans.id.exists()
                & (plans.count_scheduled == 0)
                & (plans.count_running == 0),
            )
        except PynamoDBException as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                log.warning("could not settle plan", extra={"plan_id": plan_id})

    def _executor_item(self, executor: Executor) -> Any:
        stamp = to_storage(executor.next_run_time)
        bucket = _bucket(executor.status)
        return self._executors(
            executor.id,
            plan_id=executor.plan_id,
            name=executor.name,
            next_run_time=stamp,
            bucket=bucket,
            plan_order=f"{bucket}#{stamp}",
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


def _condition_failed(error: TransactWriteError) -> bool:
    """True when the executor's own condition (the first item) is what failed."""
    reasons = error.cancellation_reasons or []
    return bool(reasons) and reasons[0] is not None and reasons[0].code == "ConditionalCheckFailed"
