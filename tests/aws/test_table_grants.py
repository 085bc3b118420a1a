"""The API and attack functions' policies grant exactly the DynamoDB calls they make."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.bootstrap import Engine
from chalicelib.domain.safety import Halt
from tests.aws.conftest import ACCOUNT, REGION
from tests.aws.test_reaper_lambda import ROOT, authorized_calls, dev_engine, granted
from tests.conftest import FixedClock

__all__ = ["dev_engine"]  # a fixture this module uses

TABLE_ACTIONS = {
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
}


@contextmanager
def recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[tuple[str, str]]]:
    """Every (IAM action, resource) pair the DynamoDB calls inside the block need."""
    from pynamodb.connection.base import Connection

    needed: set[tuple[str, str]] = set()
    real_call = Connection._make_api_call

    def recording(self: Connection, operation: str, request: dict[str, Any]) -> Any:
        needed.update(authorized_calls(operation, json.loads(json.dumps(request))))
        return real_call(self, operation, request)

    with monkeypatch.context() as patch:
        patch.setattr(Connection, "_make_api_call", recording)
        yield needed


def policy(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / ".chalice" / f"policy-{name}-dev.json").read_text()))


def table_actions_granted(document: dict[str, Any]) -> set[str]:
    actions: set[str] = set()
    for statement in document["Statement"]:
        listed = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        actions.update(action for action in listed if action.startswith("dynamodb:"))
    return actions


def test_every_route_and_the_attack_lambda_are_granted_what_they_call_and_no_more(
    chalice_app: Any, dev_engine: Engine, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = {
        "name": "grants",
        "attack": {
            "ref": "api_request:ApiRequest",
            "args": {"endpoint": "http://127.0.0.1:9/", "method": "GET"},
        },
        "planner": {
            "ref": "simple_planner:SimplePlanner",
            "args": {"min_time": "11:00", "max_time": "12:00", "times": 3},
        },
    }
    with Client(chalice_app) as client, recorded(monkeypatch) as api_needs:
        answer = client.http.post(
            "/api/1/plans",
            body=json.dumps(plan).encode(),
            headers={"Content-Type": "application/json"},
        )
        created = json.loads(answer.body)
        assert answer.status_code == 200, created
        plan_id = created["id"]
        executors = json.loads(client.http.get(f"/api/1/plans/{plan_id}").body)["_embedded"]
        first, second, third = (e["id"] for e in executors["executors"])
        for path in (
            "/api/1/plans?all=true",
            "/api/1/executors",
            "/api/1/executors?executed=1",
            f"/api/1/executors/{first}",
        ):
            assert client.http.get(path).status_code == 200
        moved = {"type": "date", "args": {"date": "2026-12-01T13:00"}}
        assert (
            client.http.put(
                f"/api/1/executors/{second}",
                body=json.dumps(moved).encode(),
                headers={"Content-Type": "application/json"},
            ).status_code
            == 200
        )
        assert client.http.delete(f"/api/1/executors/{third}").status_code == 200

    clock.current = dev_engine.executors.get(first).next_run_time
    with Client(chalice_app) as client, recorded(monkeypatch) as attack_needs:
        client.lambda_.invoke("attack", {"executor_id": first})
    assert dev_engine.executors.get(first).executed

    with Client(chalice_app) as client, recorded(monkeypatch) as delete_needs:
        assert client.http.delete(f"/api/1/plans/{plan_id}").status_code == 200

    for name, needs in (("api", api_needs | delete_needs), ("attack", attack_needs)):
        document = policy(name)
        for action, resource in sorted(needs):
            assert granted(document, action, resource), f"{name}: {action} on {resource}"
        # Nothing granted on the tables that the function never calls.
        assert table_actions_granted(document) == {action for action, _ in needs}, name
    assert {action for action, _ in api_needs | delete_needs} == TABLE_ACTIONS


# -- the control table (the halt, the minimum interval) -----------------------------------

CONTROL = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/chaos-monkey-engine-dev-control"


def actions_granted_on(document: dict[str, Any], resource: str) -> set[str]:
    actions: set[str] = set()
    for statement in document["Statement"]:
        listed = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        patterns = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        if statement["Effect"] == "Allow" and any(
            fnmatch.fnmatchcase(resource, pattern) for pattern in patterns
        ):
            actions.update(action for action in listed if action.startswith("dynamodb:"))
    return actions


def test_the_control_table_is_granted_exactly_the_calls_each_function_makes_on_it(
    dev_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API reads and replaces the halt (GET and PUT /api/1/halt) and a preview reads a
    group's last attack; the attack function reads the halt and records attacks (and reads
    the last one when the interval refuses). The reaper touches none of it."""
    store = dev_engine.store
    at = datetime(2026, 12, 1, 10, tzinfo=UTC)
    with recorded(monkeypatch) as api_needs:
        store.get_halt()
        store.set_halt(Halt(halted=True, reason="grants", since=at, by="local"))
        store.last_attack("plan:p1")
    with recorded(monkeypatch) as attack_needs:
        store.get_halt()
        assert store.record_attack("plan:p1", at, timedelta(minutes=5)) is None
        assert store.record_attack("plan:p1", at, timedelta(minutes=5)) == at
        store.last_attack("plan:p1")

    for name, needs in (("api", api_needs), ("attack", attack_needs)):
        document = policy(name)
        for action, resource in sorted(needs):
            assert resource == CONTROL
            assert granted(document, action, resource), f"{name}: {action} on {resource}"
        assert actions_granted_on(document, CONTROL) == {action for action, _ in needs}, name
    assert {action for action, _ in api_needs} == {"dynamodb:GetItem", "dynamodb:PutItem"}
    assert {action for action, _ in attack_needs} == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    assert actions_granted_on(policy("reaper"), CONTROL) == set()
    # The other stage's control table is not granted.
    other = CONTROL.replace("-dev-", "-prod-")
    assert (
        actions_granted_on(policy("api"), other)
        == actions_granted_on(policy("attack"), other)
        == set()
    )


# -- the events table (the audit trail) ---------------------------------------------------

EVENTS = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/chaos-monkey-engine-dev-events"
EVENT_INDEXES = [f"{EVENTS}/index/{name}" for name in ("by_time", "by_kind", "by_plan")]


def on_events(needs: set[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(action, resource) for action, resource in needs if resource.startswith(EVENTS)}


def test_the_events_table_is_granted_exactly_the_calls_each_function_makes_on_it(
    chalice_app: Any, dev_engine: Engine, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API records plan, executor and halt changes (PutItem) and GET /api/1/events
    reads the three indexes (Query: all, one kind, one plan); the attack function records
    an executor's start and outcome (PutItem). Nothing reads or writes an event by key,
    changes or deletes one (TTL expires them). The reaper's PutItem is proved by
    test_reaper_lambda, the expander's none by test_recurring_deployed."""
    plan = {
        "name": "audited",
        "attack": {
            "ref": "api_request:ApiRequest",
            "args": {"endpoint": "http://127.0.0.1:9/", "method": "GET"},
        },
        "planner": {
            "ref": "simple_planner:SimplePlanner",
            "args": {"min_time": "11:00", "max_time": "12:00", "times": 3},
        },
    }
    json_body = {"Content-Type": "application/json"}
    with Client(chalice_app) as client, recorded(monkeypatch) as api_needs:
        answer = client.http.post("/api/1/plans", body=json.dumps(plan).encode(), headers=json_body)
        assert answer.status_code == 200, answer.body
        plan_id = json.loads(answer.body)["id"]
        executors = json.loads(client.http.get(f"/api/1/plans/{plan_id}").body)["_embedded"]
        first, second, third = (e["id"] for e in executors["executors"])
        moved = {"type": "date", "args": {"date": "2026-12-01T13:00"}}
        path = f"/api/1/executors/{second}"
        answer = client.http.put(path, body=json.dumps(moved).encode(), headers=json_body)
        assert answer.status_code == 200, answer.body
        assert client.http.delete(f"/api/1/executors/{third}").status_code == 200
        for halted in ({"halted": True, "reason": "grants"}, {"halted": False}):
            body = json.dumps(halted).encode()
            answer = client.http.put("/api/1/halt", body=body, headers=json_body)
            assert answer.status_code == 200, answer.body
        for query in ("", "?kind=plan.created", f"?plan_id={plan_id}"):
            answer = client.http.get(f"/api/1/events{query}")
            assert answer.status_code == 200, answer.body

    clock.current = dev_engine.executors.get(first).next_run_time
    with Client(chalice_app) as client, recorded(monkeypatch) as attack_needs:
        client.lambda_.invoke("attack", {"executor_id": first})

    # Every change was recorded, on the stage's table (the calls above succeeded).
    assert dev_engine.audit is not None
    kinds = [event.kind.value for event in dev_engine.audit.events.list(None, None, 50, None).items]
    assert sorted(kinds) == sorted(
        [
            "plan.created",
            "executor.moved",
            "executor.deleted",
            "halt.changed",
            "halt.changed",
            "executor.started",
            "executor.finished",
        ]
    )
    assert on_events(api_needs) == {("dynamodb:PutItem", EVENTS)} | {
        ("dynamodb:Query", index) for index in EVENT_INDEXES
    }
    assert on_events(attack_needs) == {("dynamodb:PutItem", EVENTS)}

    for name, needs in (("api", api_needs), ("attack", attack_needs)):
        document = policy(name)
        for action, resource in sorted(on_events(needs)):
            assert granted(document, action, resource), f"{name}: {action} on {resource}"
        for resource in (EVENTS, *EVENT_INDEXES):
            used = {action for action, on in needs if on == resource}
            assert actions_granted_on(document, resource) == used, f"{name}: {resource}"
    assert actions_granted_on(policy("reaper"), EVENTS) == {"dynamodb:PutItem"}
    for name in ("attack", "reaper", "expander"):
        for index in EVENT_INDEXES:
            assert actions_granted_on(policy(name), index) == set(), f"{name}: {index}"
    assert actions_granted_on(policy("expander"), EVENTS) == set()
    # Nothing of the other stage's trail, and no index the code does not query.
    other = EVENTS.replace("-dev-", "-prod-")
    for name in ("api", "attack", "reaper", "expander"):
        assert actions_granted_on(policy(name), other) == set(), name
        assert actions_granted_on(policy(name), f"{EVENTS}/index/by_actor") == set(), name
