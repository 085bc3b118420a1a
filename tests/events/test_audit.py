"""The audit trail: one event per change, notifications for runs and halts, never raising."""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib.adapters.dynamo_events import DynamoEventLog
from chalicelib.adapters.notify import BackgroundNotifier, WebhookNotifier
from chalicelib.adapters.sqlite_events import SqliteEventLog
from chalicelib.bootstrap import build_audit
from chalicelib.domain.errors import StorageError
from chalicelib.domain.events import Event, EventKind
from chalicelib.domain.model import Executor, ExecutorStatus, Plan
from chalicelib.domain.ports import Page
from chalicelib.domain.safety import Halt
from chalicelib.services.audit import AuditTrail
from chalicelib.settings import Settings
from tests.conftest import FixedClock
from tests.events.conftest import T0
from tests.events.servers import webhook_server

ZONE_SETTINGS = Settings(timezone_name="Europe/Madrid")


class Recorder:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


class BrokenLog:
    def append(self, event: Event) -> None:
        raise StorageError("the events table is gone")

    def list(self, *args: Any) -> Page[Event]:
        raise StorageError("the events table is gone")

    def purge_expired(self, now: Any) -> int:
        return 0

    def close(self) -> None:
        pass


class BrokenNotifier:
    def send(self, message: dict[str, Any]) -> None:
        raise RuntimeError("the notifier broke its contract")


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def notifier() -> Recorder:
    return Recorder()


@pytest.fixture
def audit(sqlite_events: SqliteEventLog, notifier: Recorder, clock: FixedClock) -> AuditTrail:
    return AuditTrail(sqlite_events, notifier, clock, zone=ZONE_SETTINGS.timezone)


def plan(**fields: Any) -> Plan:
    return Plan(
        id=fields.pop("id", "plan-1"),
        name="nightly",
        created=T0,
        planner={"ref": "exact_planner:ExactPlanner", "args": {"date": "2026-12-01T10:00"}},
        attack={
            "ref": "api_request:ApiRequest",
            "args": {"url": "https://ops:hunter2@api.example/x?token=abc", "password": "pw"},
        },
        **fields,
    )


def executor(**fields: Any) -> Executor:
    values: dict[str, Any] = {
        "id": "executor-1",
        "plan_id": "plan-1",
        "name": "run 1",
        "next_run_time": T0 + timedelta(hours=1),
        "attack": {"ref": "terminate_ec2_instance:TerminateEC2Instance", "args": {}},
    }
    values.update(fields)
    return Executor(**values)


def events(log: SqliteEventLog, **filters: Any) -> list[Event]:
    return log.list(filters.get("plan_id"), filters.get("kind"), 100, None).items


def test_each_change_is_one_event_with_its_actor_and_what_changed(
    audit: AuditTrail, sqlite_events: SqliteEventLog, clock: FixedClock, notifier: Recorder
) -> None:
    audit.plan_created(plan(), "arn:aws:iam::123456789012:user/alice")
    clock.advance(minutes=1)
    audit.plan_paused(plan(), "local")
    clock.advance(minutes=1)
    audit.plan_resumed(plan(), "local")
    clock.advance(minutes=1)
    audit.executor_moved(executor(), T0 + timedelta(minutes=30), "local")
    clock.advance(minutes=1)
    audit.executor_deleted(executor(id="executor-2"), "local")
    clock.advance(minutes=1)
    audit.plan_deleted("plan-1", "local", name="nightly")

    listed = events(sqlite_events)

    assert [e.kind for e in listed] == [
        EventKind.PLAN_DELETED,
        EventKind.EXECUTOR_DELETED,
        EventKind.EXECUTOR_MOVED,
        EventKind.PLAN_RESUMED,
        EventKind.PLAN_PAUSED,
        EventKind.PLAN_CREATED,
    ]
    created = listed[-1]
    assert created.actor == "arn:aws:iam::123456789012:user/alice"
    assert created.time == T0 and created.plan_id == "plan-1"
    assert created.changes["name"] == "nightly"
    assert created.changes["planner"]["ref"] == "exact_planner:ExactPlanner"
    moved = listed[2]
    assert moved.executor_id == "executor-1"
    # Madrid is UTC+1 in December.
    assert moved.changes == {"from": "2026-12-01T10:30:00+01:00", "to": "2026-12-01T11:00:00+01:00"}
    assert listed[1].changes["status"] == "scheduled"
    assert listed[3].changes["paused"] is False and listed[4].changes["paused"] is True
    assert notifier.messages == []  # plan and executor edits are not notified


def test_secrets_never_reach_an_event(audit: AuditTrail, sqlite_events: SqliteEventLog) -> None:
    audit.plan_created(plan(), "local")
    audit.executor_finished(
        executor(
            status=ExecutorStatus.FAILED,
            error="POST https://api.example/x?token=abc answered 401 (password: 'pw')",
            result={"url": "https://ops:hunter2@api.example/"},
        )
    )

    stored = repr([e.changes for e in events(sqlite_events)])
    for secret in ("hunter2", "token=abc", "'pw'"):
        assert secret not in stored
    assert "<redacted>" in stored


def test_runs_and_halts_are_notified(audit: AuditTrail, notifier: Recorder) -> None:
    started = executor(status=ExecutorStatus.RUNNING, started_at=T0)
    audit.executor_started(started)
    finished = dataclasses.replace(
        started,
        status=ExecutorStatus.SUCCEEDED,
        finished_at=T0 + timedelta(seconds=5),
        result={"action": "terminate", "instance": {"id": "i-0abc", "name": "web-1"}},
    )
    audit.executor_finished(finished)
    skipped = executor(status=ExecutorStatus.SKIPPED, reason="halted: game day")
    audit.executor_finished(skipped)
    audit.halt_changed(Halt(halted=True, reason="game day", since=T0, by="local"))

    start, end, skip, halt = notifier.messages
    assert start["kind"] == "executor.started" and start["status"] == "running"
    assert start["time"] == "2026-12-01T10:00:00+01:00"
    assert end == {
        "event_id": end["event_id"],
        "kind": "executor.finished",
        "time": "2026-12-01T10:00:00+01:00",
        "actor": "engine",
        "plan_id": "plan-1",
        "executor_id": "executor-1",
        "status": "succeeded",
        "target": {"id": "i-0abc", "name": "web-1"},
        "error": None,
        "reason": None,
    }
    assert skip["status"] == "skipped" and skip["reason"] == "halted: game day"
    assert halt == {
        "event_id": halt["event_id"],
        "kind": "halt.changed",
        "time": "2026-12-01T10:00:00+01:00",
        "actor": "local",
        "halted": True,
        "reason": "game day",
    }


@pytest.mark.parametrize("broken", ["log", "notifier", "both"])
def test_a_failing_log_or_notifier_never_changes_the_callers_outcome(
    broken: str,
    sqlite_events: SqliteEventLog,
    clock: FixedClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="chalicelib.services.audit")
    recorder = Recorder()
    audit = AuditTrail(
        BrokenLog() if broken in ("log", "both") else sqlite_events,
        BrokenNotifier() if broken in ("notifier", "both") else recorder,
        clock,
    )
    outcome = executor(status=ExecutorStatus.FAILED, error="boom", finished_at=T0)
    before = dataclasses.replace(outcome)

    audit.executor_started(outcome)
    audit.executor_finished(outcome)
    audit.halt_changed(Halt(halted=False, since=T0, by="local"))
    audit.plan_created(plan(), "local")
    audit.plan_deleted("plan-1", "local")

    assert outcome == before
    text = "\n".join(record.getMessage() for record in caplog.records)
    if broken in ("log", "both"):
        assert "could not record an event: StorageError: " in text
        assert "the events table is gone" in text
    if broken in ("notifier", "both"):
        assert (
            "could not send a notification: RuntimeError: the notifier broke its contract" in text
        )
    if broken == "log":
        # The log failed; the notification still went out.
        assert [m["kind"] for m in recorder.messages] == [
            "executor.started",
            "executor.finished",
            "halt.changed",
        ]
    if broken == "notifier":
        assert len(events(sqlite_events)) == 5


def test_a_plans_events_outlive_the_plan(
    audit: AuditTrail, sqlite_events: SqliteEventLog, sqlite_store: Any, clock: FixedClock
) -> None:
    stored = plan(id="plan-gone", committed=False)
    sqlite_store.add_plan(stored, [])
    sqlite_store.commit_plan(stored.id)
    audit.plan_created(stored, "local")
    clock.advance(seconds=1)
    sqlite_store.delete_plan(stored)
    audit.plan_deleted(stored.id, "local")

    assert sqlite_store.get_plan(stored.id) is None
    assert [e.kind for e in events(sqlite_events, plan_id="plan-gone")] == [
        EventKind.PLAN_DELETED,
        EventKind.PLAN_CREATED,
    ]


def test_build_audit_local_sqlite_keeps_events_beside_the_store(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, store="sqlite")

    audit = build_audit(settings, local=True)
    try:
        assert isinstance(audit.events, SqliteEventLog)
        assert audit.events.path == tmp_path / "events.sqlite3"
        assert audit.events.path.parent == settings.database_path.parent
        assert audit.notifier is None
    finally:
        audit.close()


def test_build_audit_on_dynamodb_with_both_notifiers(aws: None) -> None:
    settings = Settings(
        store="moto",
        events_table="built-events",
        notify_webhook_url="http://127.0.0.1:9/hook",
        notify_sns_topic_arn="arn:aws:sns:eu-west-1:123456789012:t",
    )

    audit = build_audit(settings, local=True)  # --store moto: creates the table

    assert isinstance(audit.events, DynamoEventLog)
    assert isinstance(audit.notifier, BackgroundNotifier)
    audit.executor_finished(executor(status=ExecutorStatus.MISSED, reason="late"))
    assert [e.kind for e in audit.events.list(None, None, 5, None).items] == [
        EventKind.EXECUTOR_FINISHED
    ]
    assert audit.flush(10) is True  # both deliveries failed, were logged, and are done
    audit.close()


def test_an_executor_outcome_reaches_a_loopback_webhook(tmp_path: Path, clock: FixedClock) -> None:
    with webhook_server() as hook:
        settings = Settings(data_dir=tmp_path, notify_webhook_url=f"{hook.url}/cme")
        audit = build_audit(settings, local=True, clock=clock)
        try:
            assert isinstance(audit.notifier, BackgroundNotifier)
            assert isinstance(audit.notifier.inner, WebhookNotifier)
            audit.executor_finished(
                executor(status=ExecutorStatus.FAILED, error="no instance", finished_at=T0)
            )
            assert audit.flush(10) is True
            received = hook.next()
        finally:
            audit.close()

    assert received.path == "/cme"
    assert received.body["kind"] == "executor.finished"
    assert received.body["status"] == "failed"
    assert received.body["error"] == "no instance"
    assert received.body["time"] == "2026-12-01T10:00:00+01:00"
