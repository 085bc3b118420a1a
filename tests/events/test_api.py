"""GET /api/1/events: HAL pages newest first, filters, bounds, errors, protection."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from chalice.app import Chalice
from chalice.test import Client

from chalicelib.adapters.sqlite_events import SqliteEventLog
from chalicelib.api.context import set_engine
from chalicelib.api.events import events_api
from chalicelib.bootstrap import Engine
from chalicelib.domain.events import Event, EventKind
from chalicelib.services.audit import AuditTrail
from tests.api.conftest import Api
from tests.conftest import FixedClock
from tests.events.conftest import T0

KNOWN = (
    "plan.created, plan.paused, plan.resumed, plan.deleted, executor.moved, "
    "executor.deleted, executor.started, executor.finished, halt.changed"
)


@pytest.fixture
def audited(engine: Engine, sqlite_events: SqliteEventLog, clock: FixedClock) -> Engine:
    """The test engine with an audit trail (tests build engines without one)."""
    engine.audit = AuditTrail(sqlite_events, None, clock, zone=engine.settings.timezone)
    return engine


@pytest.fixture
def client(audited: Engine) -> Iterator[Api]:
    """A Chalice app of its own serving only the events blueprint."""
    app = Chalice(app_name="events-test")
    previous = events_api._current_app
    app.register_blueprint(events_api, url_prefix="/api/1")
    set_engine(app, audited)
    try:
        with Client(app) as chalice_client:
            yield Api(chalice_client)
    finally:
        # The blueprint belongs to app.py's app: give it back.
        events_api._current_app = previous


def fill(log: SqliteEventLog) -> list[Event]:
    """Nine events, one a minute: three plans' worth and a halt change last."""
    kinds = [EventKind.PLAN_CREATED, EventKind.EXECUTOR_STARTED, EventKind.EXECUTOR_FINISHED]
    made = [
        Event.record(
            kinds[n % 3],
            T0 + timedelta(minutes=n),
            "local",
            plan_id=f"plan-{n // 3}",
            executor_id=None if n % 3 == 0 else f"executor-{n}",
            changes={"status": "running", "url": "https://u:pw@h.example/"},
        )
        for n in range(8)
    ]
    made.append(
        Event.record(
            EventKind.HALT_CHANGED, T0 + timedelta(minutes=8), "local", changes={"halted": True}
        )
    )
    for event in made:
        log.append(event)
    return made


def walk(client: Api, path: str) -> tuple[list[dict[str, Any]], list[str]]:
    documents: list[dict[str, Any]] = []
    selves: list[str] = []
    href: str | None = path
    while href is not None:
        answer = client.get(href)
        assert answer.status == 200, answer.body
        assert answer.headers["content-type"] == "application/hal+json"
        documents.extend(answer.body["_embedded"]["events"])
        selves.append(answer.body["_links"]["self"]["href"])
        href = answer.body["_links"].get("next", {}).get("href")
        assert len(selves) < 50
    return documents, selves


@pytest.mark.parametrize("path", ["/api/1/events", "/api/1/events/"])
def test_events_are_listed_newest_first_in_hal(
    client: Api, sqlite_events: SqliteEventLog, path: str
) -> None:
    made = fill(sqlite_events)

    answer = client.get(path)

    assert answer.status == 200
    listed = answer.body["_embedded"]["events"]
    assert [e["id"] for e in listed] == [e.id for e in reversed(made)]
    assert listed[0]["kind"] == "halt.changed" and listed[0]["plan_id"] is None
    assert listed[0]["_links"] == {}
    second = listed[1]
    assert second["time"] == "2026-12-01T10:07:00+01:00"  # Europe/Madrid, with its offset
    assert second["actor"] == "local"
    assert second["changes"] == {"status": "running", "url": "https://u:<redacted>@h.example/"}
    assert second["_links"] == {
        "plan": {"href": "/api/1/plans/plan-2"},
        "executor": {"href": "/api/1/executors/executor-7"},
    }
    assert answer.body["_links"] == {"self": {"href": "/api/1/events/"}}


def test_pages_follow_next_links_that_keep_the_query(
    client: Api, sqlite_events: SqliteEventLog
) -> None:
    made = fill(sqlite_events)

    documents, selves = walk(client, "/api/1/events/?limit=2")
    filtered, filtered_selves = walk(
        client, "/api/1/events/?plan_id=plan-1&kind=executor.finished&limit=1"
    )

    assert [e["id"] for e in documents] == [e.id for e in reversed(made)]
    assert len(selves) == 5
    assert selves[0] == "/api/1/events/?limit=2"
    assert all(
        s.startswith("/api/1/events/?cursor=") and s.endswith("&limit=2") for s in selves[1:]
    )
    assert [(e["plan_id"], e["kind"]) for e in filtered] == [("plan-1", "executor.finished")]
    assert "kind=executor.finished" in filtered_selves[0] and "plan_id=plan-1" in filtered_selves[0]


def test_filters_by_plan_and_by_kind(client: Api, sqlite_events: SqliteEventLog) -> None:
    fill(sqlite_events)

    by_plan = client.get("/api/1/events/?plan_id=plan-0").body["_embedded"]["events"]
    by_kind = client.get("/api/1/events/?kind=executor.started").body["_embedded"]["events"]
    nothing = client.get("/api/1/events/?plan_id=unknown").body["_embedded"]["events"]

    assert [e["kind"] for e in by_plan] == ["executor.finished", "executor.started", "plan.created"]
    assert [e["plan_id"] for e in by_kind] == ["plan-2", "plan-1", "plan-0"]
    assert nothing == []


@pytest.mark.parametrize(
    ("query", "msg"),
    [
        ("kind=plan.exploded", f"unknown event kind 'plan.exploded'; known: {KNOWN}"),
        ("limit=0", "limit must be a whole number from 1 to 500"),
        ("limit=501", "limit must be a whole number from 1 to 500"),
        ("limit=ten", "limit must be a whole number from 1 to 500"),
        ("plan_id=" + "p" * 201, "plan_id must be at most 200 characters"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(client: Api, query: str, msg: str) -> None:
    answer = client.get(f"/api/1/events/?{query}")

    assert answer.status == 400
    assert answer.headers["content-type"] == "application/json"
    assert answer.body == {"msg": msg}


def test_a_cursor_of_another_query_is_400(client: Api, sqlite_events: SqliteEventLog) -> None:
    fill(sqlite_events)
    cursor = client.get("/api/1/events/?limit=1&plan_id=plan-0").body["_links"]["next"]["href"]
    cursor = cursor.split("cursor=")[1].split("&")[0]

    answer = client.get(f"/api/1/events/?limit=1&cursor={cursor}")

    assert answer.status == 400
    assert answer.body["msg"].endswith("use the next link of the previous page")


def test_an_engine_without_an_audit_trail_answers_503_json(engine: Engine) -> None:
    app = Chalice(app_name="events-test")
    previous = events_api._current_app
    app.register_blueprint(events_api, url_prefix="/api/1")
    set_engine(app, engine)
    try:
        with Client(app) as chalice_client:
            answer = Api(chalice_client).get("/api/1/events/")
    finally:
        events_api._current_app = previous

    assert answer.status == 503
    assert answer.body["msg"].startswith("service unavailable; try again (log reference ")


def test_the_engines_app_serves_the_route(audited: Engine, sqlite_events: SqliteEventLog) -> None:
    from app import app

    fill(sqlite_events)
    set_engine(app, audited)
    try:
        with Client(app) as chalice_client:
            answer = Api(chalice_client).get("/api/1/events/?limit=3")
    finally:
        set_engine(app, None)  # type: ignore[arg-type]

    assert answer.status == 200
    assert len(answer.body["_embedded"]["events"]) == 3


def test_the_route_is_protected_like_every_other() -> None:
    from tests.aws.test_auth import routes_under

    routes = json.loads(routes_under("iam").stdout)
    events = [route for route in routes if "/api/1/events" in json.dumps(route)]

    assert events, routes
    assert all(authorizer == "IAMAuthorizer" for _, _, authorizer, _ in events)
