"""The Store contract's fixture: every test runs against each implementation of the port."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib.domain.model import Executor, ExecutorStatus, Plan
from chalicelib.domain.ports import Store
from chalicelib.settings import Settings

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ATTACK = {"ref": "api_request:ApiRequest", "args": {"url": "http://127.0.0.1:9/", "n": [1, 2]}}
PLANNER = {"ref": "exact_planner:ExactPlanner", "args": {"date": "2026-12-01T10:00:00"}}


@pytest.fixture(params=["sqlite", "dynamo"])
def store(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Store]:
    """A fresh, empty store: SQLite on a temporary file, or DynamoDB on moto.

    Like APScheduler's ``raw_datastore``: one suite, every implementation. Building a store
    happens here and only here.
    """
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_store")
        return
    request.getfixturevalue("aws")
    from chalicelib.adapters.dynamo import DynamoStore

    dynamo = DynamoStore(settings)
    dynamo.create_tables()
    yield dynamo
    dynamo.close()


def new_id() -> str:
    return uuid.uuid4().hex


def make_plan(created: datetime = T0, plan_id: str | None = None, **fields: Any) -> Plan:
    return Plan(
        id=plan_id or new_id(),
        name=fields.pop("name", "contract plan"),
        created=created,
        planner=fields.pop("planner", PLANNER),
        attack=fields.pop("attack", ATTACK),
        **fields,
    )


def make_executors(
    plan: Plan, minutes: Sequence[float], ids: Sequence[str] | None = None
) -> list[Executor]:
    """One scheduled executor per offset, in minutes after T0."""
    return [
        Executor(
            id=ids[number] if ids else new_id(),
            plan_id=plan.id,
            name=f"executor {number}",
            next_run_time=T0 + timedelta(minutes=offset),
            attack=plan.attack,
            dry_run=plan.dry_run,
        )
        for number, offset in enumerate(minutes)
    ]


def add(
    store: Store,
    minutes: Sequence[float] = (1, 2, 3),
    committed: bool = True,
    created: datetime = T0,
    ids: Sequence[str] | None = None,
    **fields: Any,
) -> tuple[Plan, list[Executor]]:
    """Store a plan with executors at ``minutes`` after T0 (and commit it unless told)."""
    plan = make_plan(created, **fields)
    executors = make_executors(plan, minutes, ids)
    store.add_plan(plan, executors)
    if committed:
        store.commit_plan(plan.id)
    return plan, executors


def claim(store: Store, executor: Executor) -> None:
    assert store.transition(executor, ExecutorStatus.RUNNING, {"started_at": T0})


def finish(store: Store, executor: Executor, status: ExecutorStatus) -> None:
    assert store.transition(executor, status, {"finished_at": T0 + timedelta(minutes=1)})


def counts(store: Store, plan_id: str) -> dict[str, int]:
    plan = store.get_plan(plan_id)
    assert plan is not None
    return {status: n for status, n in plan.counts.as_dict().items() if n}
