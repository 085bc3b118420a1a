"""The audit trail and webhook notifications in local mode, end to end: the real
``chaos-monkey-engine`` command on a data directory of its own, its webhook a loopback
recording server, its attacks hitting a loopback target.

One story, in order: plan A runs (its webhook answering 204), plan B's executor is moved
and runs (the webhook now answering 500: the executor still succeeds), plan C is paused,
resumed and its new executor deleted, the halt is set and lifted, plan A is deleted.
GET /api/1/events/ must then tell exactly that story, newest first, on small pages, and
still tell it after a restart on the same data directory.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    Engine,
    Target,
    http,
    start_engine,
    stop_engine,
    wait_for,
    wait_until_listening,
)
from tests.e2e.test_local_mode import api_request_plan, executor_of, finished
from tests.events.servers import Hook, Received, webhook_server

pytestmark = pytest.mark.e2e

REASON = "game day: checkout team"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory that outlives one engine process (the restart reads it again)."""
    folder = Path(tempfile.mkdtemp(prefix="cme-e2e-events-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def hook() -> Iterator[Hook]:
    with webhook_server() as server:
        yield server


def later(**delta: float) -> str:
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def plan_at(target: Target, path: str, when: str) -> dict[str, Any]:
    plan = api_request_plan(target.url(path))
    plan["planner"]["args"]["date"] = when
    return plan


def create(engine: Engine, plan: dict[str, Any]) -> str:
    status, _, created = http("POST", engine.url("/api/1/plans/"), plan)
    assert status == 200, created
    return str(created["id"])


def run_to_end(engine: Engine, executor_id: str) -> dict[str, Any]:
    done = wait_for(lambda: finished(engine, executor_id), what=f"executor {executor_id}")
    return dict(done)


def all_events(engine: Engine, query: str = "", limit: int = 3) -> list[dict[str, Any]]:
    """Every event the query matches, page by page through ``_links.next``."""
    separator = "&" if query else ""
    href: str | None = f"/api/1/events/?{query}{separator}limit={limit}"
    events: list[dict[str, Any]] = []
    pages = 0
    while href is not None:
        status, _, page = http("GET", engine.url(href))
        assert status == 200, page
        assert len(page["_embedded"]["events"]) <= limit
        events.extend(page["_embedded"]["events"])
        href = page["_links"].get("next", {}).get("href")
        pages += 1
        assert pages < 50, "the pages never end"
    return events


def messages(hook: Hook, count: int) -> list[Received]:
    """The next ``count`` webhook posts (each waited for with a deadline)."""
    return [hook.next(timeout=15) for _ in range(count)]


def test_the_audit_trail_and_the_webhook_tell_what_happened(
    data_dir: Path, hook: Hook, target: Target
) -> None:
    env = {"CME_NOTIFY_WEBHOOK_URL": f"{hook.url}/hooks/cme"}
    engine = start_engine("--data-dir", str(data_dir), env=env)
    try:
        wait_until_listening(engine)
        ids = drive(engine, hook, target)
        check_trail(engine, ids)
        # The webhook's 500s were logged (the scheme and host only), not raised.
        wait_for(
            lambda: any(
                "notification failed" in line and "HTTP 500" in line for line in engine.output
            ),
            what="the failed notification's warning",
        )
        leaks = [line for line in engine.output if "/hooks/cme" in line]
        assert leaks == []
        before = all_events(engine, limit=100)
    finally:
        stop_engine(engine)

    again = start_engine("--data-dir", str(data_dir))
    try:
        wait_until_listening(again)
        assert all_events(again, limit=4) == before
    finally:
        stop_engine(again)


def drive(engine: Engine, hook: Hook, target: Target) -> dict[str, str]:
    """Make every kind of change, checking the webhook's messages as they come."""
    ids: dict[str, str] = {}
    # Plan A: runs ~2 s from now; the webhook answers 204.
    ids["a"] = create(engine, plan_at(target, "/a", later(seconds=2)))
    ids["xa"] = executor_of(engine, ids["a"])["id"]
    assert run_to_end(engine, ids["xa"])["status"] == "succeeded"
    started, ended = messages(hook, 2)
    for received in (started, ended):
        assert received.path == "/hooks/cme"
        assert received.headers["content-type"].startswith("application/json")
    assert started.body["kind"] == "executor.started"
    assert (started.body["status"], started.body["actor"]) == ("running", "engine")
    assert (started.body["plan_id"], started.body["executor_id"]) == (ids["a"], ids["xa"])
    assert ended.body["kind"] == "executor.finished"
    assert (ended.body["status"], ended.body["error"]) == ("succeeded", None)
    assert ended.body["executor_id"] == ids["xa"]
    assert ended.body["target"] == target.url("/a")

    # Plan B: an hour ahead, moved to 2 s from now; the webhook now fails every post.
    hook.status = 500
    ids["b"] = create(engine, plan_at(target, "/b", later(hours=1)))
    ids["xb"] = executor_of(engine, ids["b"])["id"]
    trigger = {"type": "date", "args": {"date": later(seconds=2)}}
    status, _, moved = http("PUT", engine.url(f"/api/1/executors/{ids['xb']}"), trigger)
    assert status == 200, moved
    done = run_to_end(engine, ids["xb"])
    assert done["status"] == "succeeded", done  # the failing webhook changed nothing
    assert [received.path for received in target.received] == ["/a", "/b"]
    started, ended = messages(hook, 2)
    assert [started.body["kind"], ended.body["kind"]] == ["executor.started", "executor.finished"]
    assert ended.body["status"] == "succeeded"
    assert ended.body["executor_id"] == ids["xb"]

    # Plan C: an hour ahead; paused (its executor removed), resumed (planned again), and
    # its new executor deleted.
    ids["c"] = create(engine, plan_at(target, "/c", later(hours=1)))
    for paused in (True, False):
        status, _, plan = http("PUT", engine.url(f"/api/1/plans/{ids['c']}"), {"paused": paused})
        assert (status, plan["paused"]) == (200, paused), plan
    ids["xc"] = executor_of(engine, ids["c"])["id"]
    status, _, _ = http("DELETE", engine.url(f"/api/1/executors/{ids['xc']}"))
    assert status in (200, 204)

    # The halt, set and lifted.
    status, _, _ = http("PUT", engine.url("/api/1/halt"), {"halted": True, "reason": REASON})
    assert status == 200
    status, _, _ = http("PUT", engine.url("/api/1/halt"), {"halted": False})
    assert status == 200
    halted, lifted = messages(hook, 2)
    assert [halted.body["kind"], lifted.body["kind"]] == ["halt.changed", "halt.changed"]
    assert (halted.body["halted"], halted.body["reason"], halted.body["actor"]) == (
        True,
        REASON,
        "local",
    )
    assert (lifted.body["halted"], lifted.body["reason"]) == (False, None)

    # Plan A deleted: its events stay.
    status, _, _ = http("DELETE", engine.url(f"/api/1/plans/{ids['a']}"))
    assert status in (200, 204)
    assert http("GET", engine.url(f"/api/1/plans/{ids['a']}"))[0] == 404
    # Only executor runs and halt changes are notified.
    assert hook.all() == []
    return ids


def check_trail(engine: Engine, ids: dict[str, str]) -> None:
    events = all_events(engine)
    expected = [
        ("plan.deleted", "local", ids["a"], None),
        ("halt.changed", "local", None, None),
        ("halt.changed", "local", None, None),
        ("executor.deleted", "local", ids["c"], ids["xc"]),
        ("plan.resumed", "local", ids["c"], None),
        ("plan.paused", "local", ids["c"], None),
        ("plan.created", "local", ids["c"], None),
        ("executor.finished", "engine", ids["b"], ids["xb"]),
        ("executor.started", "engine", ids["b"], ids["xb"]),
        ("executor.moved", "local", ids["b"], ids["xb"]),
        ("plan.created", "local", ids["b"], None),
        ("executor.finished", "engine", ids["a"], ids["xa"]),
        ("executor.started", "engine", ids["a"], ids["xa"]),
        ("plan.created", "local", ids["a"], None),
    ]
    assert [
        (event["kind"], event["actor"], event["plan_id"], event["executor_id"]) for event in events
    ] == expected
    assert len({event["id"] for event in events}) == len(events)
    times = [event["time"] for event in events]
    assert times == sorted(times, reverse=True)
    changes = {(event["kind"], event["plan_id"]): event["changes"] for event in events}

    assert changes[("plan.deleted", ids["a"])] == {"name": "call the target"}
    lifted, halted = (event["changes"] for event in events[1:3])
    assert (halted["halted"], halted["reason"]) == (True, REASON)
    assert (lifted["halted"], lifted["reason"]) == (False, None)
    assert changes[("executor.deleted", ids["c"])]["status"] == "scheduled"
    assert changes[("plan.paused", ids["c"])] == {"name": "call the target", "paused": True}
    assert changes[("plan.resumed", ids["c"])] == {"name": "call the target", "paused": False}
    created = changes[("plan.created", ids["c"])]
    assert (created["executors_count"], created["dry_run"]) == (1, False)
    assert created["attack"]["ref"] == "api_request:ApiRequest"
    assert created["planner"]["ref"] == "exact_planner:ExactPlanner"
    moved = changes[("executor.moved", ids["b"])]
    assert datetime.fromisoformat(moved["to"]) < datetime.fromisoformat(moved["from"])
    for plan, path in (("a", "/a"), ("b", "/b")):
        ended = changes[("executor.finished", ids[plan])]
        assert (ended["status"], ended["dry_run"]) == ("succeeded", False)
        assert ended["target"].endswith(path)
        assert "error" not in ended and "reason" not in ended
        begun = changes[("executor.started", ids[plan])]
        assert (begun["status"], begun["attack"]) == ("running", "api_request:ApiRequest")
        assert begun["started_at"] == ended["started_at"]

    # Filters: a deleted plan's events, one kind, a plan and a kind.
    assert [event["kind"] for event in all_events(engine, f"plan_id={ids['a']}", limit=2)] == [
        "plan.deleted",
        "executor.finished",
        "executor.started",
        "plan.created",
    ]
    assert [event["plan_id"] for event in all_events(engine, "kind=plan.created", limit=2)] == [
        ids["c"],
        ids["b"],
        ids["a"],
    ]
    assert [
        event["executor_id"]
        for event in all_events(engine, f"plan_id={ids['b']}&kind=executor.finished", limit=1)
    ] == [ids["xb"]]
    status, _, refused = http("GET", engine.url("/api/1/events/?kind=plan.renamed"))
    assert status == 400
    assert refused["msg"].startswith("unknown event kind 'plan.renamed'; known: ")
