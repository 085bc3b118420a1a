"""The EventLog port on one DynamoDB table, through PynamoDB (the deployed audit trail).

Table ``settings.events_table``: hash ``id``; ``order`` = ``<time>#<id>`` on every item.
Every list is a Query on an index, newest first (``ScanIndexForward`` false), never a Scan:

- GSI ``by_time``: hash ``bucket`` = ``all#<shard>``, range ``order``: the whole trail.
- GSI ``by_kind``: hash ``kind_bucket`` = ``<kind>#<shard>``, range ``order``: one kind.
- GSI ``by_plan``: hash ``plan_id``, range ``order``: one plan's events (sparse: a halt
  change has no plan); with a kind too, the kind is a filter on this range (a plan has few
  events), read a bounded number of pages per request.

Shards, as in ``DynamoStore``'s buckets: one constant hash key would put every event
write on one index partition, and a table write is throttled when an index cannot take
its share ("GSI write throttling and back pressure",
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/gsi-throttling.html).
A list queries the shards in parallel and merges them by ``order``, exactly: an event is
returned only once every shard still holding events has been read past it.

Events carry ``expires_at`` (epoch seconds, a Number, as TTL requires) = their time plus
the retention: DynamoDB deletes them some time after that, typically within a few days,
and reads still return them until then
(https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/howitworks-ttl.html).
"""

from __future__ import annotations

import builtins
import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from pynamodb.attributes import JSONAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.exceptions import PynamoDBException
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from chalicelib.adapters.dynamo import NO_SDK_RETRIES, SHARDS, Backoff, shard_of
from chalicelib.domain.errors import StorageError
from chalicelib.domain.events import Event, EventKind, decode_cursor, encode_cursor, query_digest
from chalicelib.domain.ports import Page
from chalicelib.domain.times import from_storage, to_storage
from chalicelib.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

ALL = "all"
QUERY_THREADS = SHARDS
# A list's first read asks each shard for this many times its share of the page.
OVERSAMPLE = 2
# Pages one shard may read for one list (a kind filter can leave pages empty): past
# that the list answers with what it has and a cursor that resumes where it stopped.
LIST_MAX_PAGES = 5


def build_event_model(settings: Settings) -> Any:
    """The PynamoDB model class bound to ``settings.events_table``."""

    # PynamoDB's Index.__init_subclass__ is untyped (dynamo.py has a mypy override).
    class ByTime(GlobalSecondaryIndex[Any]):  # type: ignore[no-untyped-call]
        class Meta:
            index_name = "by_time"
            projection = AllProjection()

        bucket = UnicodeAttribute(hash_key=True)
        order = UnicodeAttribute(range_key=True)

    class ByKind(GlobalSecondaryIndex[Any]):  # type: ignore[no-untyped-call]
        class Meta:
            index_name = "by_kind"
            projection = AllProjection()

        kind_bucket = UnicodeAttribute(hash_key=True)
        order = UnicodeAttribute(range_key=True)

    class ByPlan(GlobalSecondaryIndex[Any]):  # type: ignore[no-untyped-call]
        class Meta:
            index_name = "by_plan"
            projection = AllProjection()

        plan_id = UnicodeAttribute(hash_key=True)
        order = UnicodeAttribute(range_key=True)

    class EventModel(Model):
        class Meta:
            table_name = settings.events_table
            region = settings.aws_region
            host = settings.dynamodb_endpoint
            billing_mode = "PAY_PER_REQUEST"
            max_pool_connections = QUERY_THREADS + 2
            # One attempt per botocore call: the log retries (dynamo.NO_SDK_RETRIES).
            max_retry_attempts = NO_SDK_RETRIES

        id = UnicodeAttribute(hash_key=True)
        time = UnicodeAttribute()
        kind = UnicodeAttribute()
        actor = UnicodeAttribute()
        plan_id = UnicodeAttribute(null=True)
        executor_id = UnicodeAttribute(null=True)
        changes = JSONAttribute()
        bucket = UnicodeAttribute()
        kind_bucket = UnicodeAttribute()
        order = UnicodeAttribute()
        expires_at = TTLAttribute(null=True)
        by_time = ByTime()
        by_kind = ByKind()
        by_plan = ByPlan()

    return EventModel


@dataclass
class _Shard:
    """One index partition a list reads, and what has been read of it so far."""

    index: Any
    hash_key: str
    items: list[Any] = field(default_factory=list)
    last_key: dict[str, Any] | None = None
    # Everything of the partition from the top down to this key has been read.
    frontier: str | None = None
    exhausted: bool = False
    pages: int = 0


class DynamoEventLog:
    """The EventLog port on one DynamoDB table."""

    def __init__(self, settings: Settings, *, backoff: Backoff | None = None) -> None:
        # Built per settings, so mypy sees it as Any.
        self._model: Any = build_event_model(settings)
        self._retention = settings.events_retention
        self._backoff = backoff or Backoff()

    def create_table(self) -> None:
        """Create the table, with TTL on ``expires_at``, if missing (local mode's --store
        moto and tests; CloudFormation creates it in AWS)."""
        if not self._model.exists():
            # PynamoDB turns TTL on for the model's TTLAttribute after creating the table.
            self._model.create_table(wait=True, billing_mode="PAY_PER_REQUEST")

    def close(self) -> None:
        """Nothing to release: botocore's connection pools close with the process."""

    def append(self, event: Event) -> None:
        model = self._model
        item = model(
            event.id,
            time=to_storage(event.time),
            kind=event.kind.value,
            actor=event.actor,
            plan_id=event.plan_id,
            executor_id=event.executor_id,
            changes=event.changes,
            bucket=f"{ALL}#{shard_of(event.id)}",
            kind_bucket=f"{event.kind.value}#{shard_of(event.id)}",
            order=event.order,
            expires_at=event.time + self._retention,
        )
        try:
            item.serialize()
        except (TypeError, ValueError) as error:
            raise StorageError(f"could not store event {event.id}: {error}") from error
        try:
            self._backoff.retrying(f"store event {event.id}", item.save)
        except PynamoDBException as error:
            raise StorageError(f"could not store event {event.id}: {error}") from error

    def list(
        self, plan_id: str | None, kind: EventKind | None, limit: int, cursor: str | None
    ) -> Page[Event]:
        if limit < 1:
            raise ValueError(f"a list's limit must be at least 1, not {limit}")
        digest = query_digest(plan_id, kind)
        after = decode_cursor(cursor, digest) if cursor is not None else None
        model = self._model
        condition = None
        if plan_id is not None:
            shards = [_Shard(model.by_plan, plan_id)]
            if kind is not None:
                condition = model.kind == kind.value
        elif kind is not None:
            shards = [_Shard(model.by_kind, f"{kind.value}#{n}") for n in range(SHARDS)]
        else:
            shards = [_Shard(model.by_time, f"{ALL}#{n}") for n in range(SHARDS)]
        items, last = self._merged(shards, after, condition, limit)
        return Page(
            [self._event(item) for item in items],
            encode_cursor(digest, last) if last is not None else None,
        )

    def purge_expired(self, now: datetime) -> int:
        """Nothing: DynamoDB's TTL deletes expired events (``expires_at``)."""
        return 0

    # -- reading -----------------------------------------------------------------------

    def _merged(
        self, shards: Sequence[_Shard], after: str | None, condition: Any, limit: int
    ) -> tuple[builtins.list[Any], str | None]:
        """Up to ``limit`` items of ``shards``, newest first, below ``after``; and the key
        a next page resumes after (None when nothing can follow)."""
        first = min(limit, math.ceil(limit * OVERSAMPLE / len(shards)))
        self._read_pages(shards, after, condition, first)
        while True:
            live = [shard for shard in shards if not shard.exhausted]
            # Newest first: a shard read down to its frontier may still hold anything
            # older, so only items at or above the highest frontier are certain.
            frontiers = [shard.frontier for shard in live if shard.frontier is not None]
            horizon = max(frontiers) if frontiers else None
            pool = sorted(
                (item for shard in shards for item in shard.items),
                key=lambda item: str(item.order),
                reverse=True,
            )
            safe = [item for item in pool if horizon is None or item.order >= horizon]
            if len(safe) >= limit:
                page = safe[:limit]
                more = len(pool) > limit or bool(live)
                return page, (page[-1].order if more else None)
            if not live:
                return safe, None
            behind = [shard for shard in live if shard.frontier == horizon]
            if any(shard.pages >= LIST_MAX_PAGES for shard in behind):
                # Too many pages without enough matches: a partial page, resumed below
                # the point every shard has been read to.
                return safe, horizon
            self._read_pages(behind, after, condition, limit)

    def _read_pages(
        self, shards: Sequence[_Shard], after: str | None, condition: Any, size: int
    ) -> None:
        """Read the next page of each shard, in parallel."""
        model = self._model

        def one(shard: _Shard) -> None:
            def query() -> dict[str, Any]:
                result = shard.index.query(
                    shard.hash_key,
                    range_key_condition=(model.order < after) if after is not None else None,
                    filter_condition=condition,
                    scan_index_forward=False,
                    last_evaluated_key=shard.last_key,
                    page_size=size,
                )
                return dict(next(iter(result.page_iter), {}))

            page = self._backoff.retrying(f"read {model.Meta.table_name}", query)
            shard.pages += 1
            shard.last_key = page.get("LastEvaluatedKey")
            if shard.last_key is None:
                shard.exhausted = True
            else:
                shard.frontier = shard.last_key["order"]["S"]
            shard.items.extend(model.from_raw_data(raw) for raw in page.get("Items", []))

        try:
            if len(shards) == 1:
                one(shards[0])
            else:
                with ThreadPoolExecutor(max_workers=min(QUERY_THREADS, len(shards))) as pool:
                    builtins.list(pool.map(one, shards))
        except PynamoDBException as error:
            raise StorageError(f"could not read {model.Meta.table_name}: {error}") from error

    @staticmethod
    def _event(item: Any) -> Event:
        try:
            return Event(
                id=item.id,
                time=from_storage(item.time),
                kind=EventKind(item.kind),
                actor=item.actor,
                plan_id=item.plan_id,
                executor_id=item.executor_id,
                changes=dict(item.changes or {}),
            )
        except (TypeError, ValueError) as error:
            raise StorageError(f"event {item.id} cannot be read: {error}") from error
