"""The audit trail: one event per change, and a notification for executor runs and halts.

The services and the runner call one small method per change after the change is made.
None of them ever raises: an event log or a notifier that fails is logged and the
caller's outcome stands (an attack that ran is not undone because its event could not be
written). The event is written first, then the notification is sent; both hold only
masked values (``Event.record`` masks ``changes``; messages are built from it).

Notification message (docs/events.md)::

    {"event_id", "kind", "time", "actor", "plan_id", "executor_id",
     "status", "target", "error", "reason"}          executor.started / executor.finished
    {"event_id", "kind", "time", "actor", "halted", "reason"}   halt.changed
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, tzinfo
from typing import Any

from chalicelib.domain.events import NOTIFIED_KINDS, Event, EventKind
from chalicelib.domain.model import Executor, Plan
from chalicelib.domain.ports import Clock, EventLog, Notifier
from chalicelib.domain.redaction import redact, redact_text
from chalicelib.domain.safety import Halt
from chalicelib.domain.times import to_api

log = logging.getLogger(__name__)

# Who an event is by when the engine acts on its own (runs, ends, reaps an executor).
ENGINE_ACTOR = "engine"
# The largest value (as JSON) an event keeps of a config or a result; a longer one is
# cut (an event is a record of what changed, not a copy of a 100 KB argument).
MAX_VALUE_CHARS = 2048
# The keys of an attack's result that say what it targeted, in order of preference
# ("endpoint": the bundled api_request attack's).
TARGET_KEYS = ("target", "targets", "instance", "node", "url", "endpoint", "host", "hosts")


def small(value: Any, limit: int = MAX_VALUE_CHARS) -> Any:
    """``value`` (masked) if its JSON is at most ``limit`` characters; else its start, as
    text, saying how much was left out."""
    masked = redact(value)
    text = json.dumps(masked, default=str, separators=(",", ":"))
    if len(text) <= limit:
        return masked
    return f"{text[:limit]}…({len(text) - limit} more characters)"


def target_summary(result: Any) -> Any:
    """What an executor's result says it targeted (None when it does not say)."""
    if isinstance(result, dict):
        for key in TARGET_KEYS:
            if result.get(key) is not None:
                return small(result[key])
    return None


class AuditTrail:
    """Appends the engine's events to an EventLog and sends notifications."""

    def __init__(
        self,
        events: EventLog,
        notifier: Notifier | None,
        clock: Clock,
        *,
        zone: tzinfo = UTC,
    ) -> None:
        self.events = events
        self.notifier = notifier
        self.clock = clock
        self.zone = zone

    # -- plans -------------------------------------------------------------------------

    def plan_created(self, plan: Plan, actor: str) -> None:
        self._record(
            EventKind.PLAN_CREATED,
            actor,
            plan_id=plan.id,
            changes={
                "name": plan.name,
                "planner": small(plan.planner),
                "attack": small(plan.attack),
                "dry_run": plan.dry_run,
                "executors_count": plan.executors_count,
            },
        )

    def plan_paused(self, plan: Plan, actor: str) -> None:
        self._record(
            EventKind.PLAN_PAUSED,
            actor,
            plan_id=plan.id,
            changes={"name": plan.name, "paused": True},
        )

    def plan_resumed(self, plan: Plan, actor: str) -> None:
        self._record(
            EventKind.PLAN_RESUMED,
            actor,
            plan_id=plan.id,
            changes={"name": plan.name, "paused": False},
        )

    def plan_deleted(self, plan_id: str, actor: str, name: str | None = None) -> None:
        changes = {"name": name} if name is not None else {}
        self._record(EventKind.PLAN_DELETED, actor, plan_id=plan_id, changes=changes)

    # -- executors ---------------------------------------------------------------------

    def executor_moved(self, executor: Executor, old_time: datetime, actor: str) -> None:
        self._record(
            EventKind.EXECUTOR_MOVED,
            actor,
            plan_id=executor.plan_id,
            executor_id=executor.id,
            changes={
                "from": to_api(old_time, self.zone),
                "to": to_api(executor.next_run_time, self.zone),
            },
        )

    def executor_deleted(self, executor: Executor, actor: str) -> None:
        self._record(
            EventKind.EXECUTOR_DELETED,
            actor,
            plan_id=executor.plan_id,
            executor_id=executor.id,
            changes={
                "status": executor.status.value,
                "next_run_time": to_api(executor.next_run_time, self.zone),
            },
        )

    def executor_started(self, executor: Executor) -> None:
        """After the claim, before the attack runs."""
        self._record(
            EventKind.EXECUTOR_STARTED,
            ENGINE_ACTOR,
            plan_id=executor.plan_id,
            executor_id=executor.id,
            changes={
                "status": executor.status.value,
                "started_at": to_api(executor.started_at, self.zone),
                "next_run_time": to_api(executor.next_run_time, self.zone),
                "attack": small(executor.attack.get("ref")),
                "dry_run": executor.dry_run,
            },
        )

    def executor_finished(self, executor: Executor) -> None:
        """Once its terminal status is stored (succeeded, failed, skipped, missed)."""
        changes: dict[str, Any] = {
            "status": executor.status.value,
            "started_at": to_api(executor.started_at, self.zone),
            "finished_at": to_api(executor.finished_at, self.zone),
            "target": target_summary(executor.result),
            "dry_run": executor.dry_run,
        }
        if executor.error is not None:
            changes["error"] = small(executor.error)
        if executor.reason is not None:
            changes["reason"] = small(executor.reason)
        self._record(
            EventKind.EXECUTOR_FINISHED,
            ENGINE_ACTOR,
            plan_id=executor.plan_id,
            executor_id=executor.id,
            changes=changes,
        )

    # -- the halt ----------------------------------------------------------------------

    def halt_changed(self, halt: Halt) -> None:
        self._record(
            EventKind.HALT_CHANGED,
            halt.by or "unknown",
            changes={
                "halted": halt.halted,
                "reason": small(halt.reason),
                "since": to_api(halt.since, self.zone),
            },
        )

    # -- lifecycle ---------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` s for queued notifications (the attack Lambda, before it
        returns); True when none is left. Never raises."""
        flush = getattr(self.notifier, "flush", None)
        if flush is None:
            return True
        try:
            return bool(flush(timeout))
        except Exception:  # the audit trail never raises
            log.warning("could not flush notifications")
            return False

    def close(self) -> None:
        """Send what is queued, then release the event log. Never raises."""
        for part in (self.notifier, self.events):
            close = getattr(part, "close", None)
            if close is None:
                continue
            try:
                close()
            except Exception:
                log.warning("could not close %s", type(part).__name__)

    # -- recording ---------------------------------------------------------------------

    def _record(
        self,
        kind: EventKind,
        actor: str,
        *,
        plan_id: str | None = None,
        executor_id: str | None = None,
        changes: dict[str, Any],
    ) -> Event | None:
        fields = {"event_kind": kind.value, "plan_id": plan_id, "executor_id": executor_id}
        try:
            event = Event.record(
                kind,
                self.clock.now(),
                actor,
                plan_id=plan_id,
                executor_id=executor_id,
                changes=changes,
            )
        except Exception as error:  # the audit trail never raises
            log.warning("could not build an event: %s", _reason(error), extra=fields)
            return None
        try:
            self.events.append(event)
        except Exception as error:
            # Still notified below: the notification does not depend on the log.
            log.warning("could not record an event: %s", _reason(error), extra=fields)
        if kind in NOTIFIED_KINDS and self.notifier is not None:
            try:
                self.notifier.send(self.message(event))
            except Exception as error:  # a notifier broke its contract
                log.warning("could not send a notification: %s", _reason(error), extra=fields)
        return event

    def message(self, event: Event) -> dict[str, Any]:
        """The notification for an event (masked values only: they come from it)."""
        message: dict[str, Any] = {
            "event_id": event.id,
            "kind": event.kind.value,
            "time": to_api(event.time, self.zone),
            "actor": event.actor,
        }
        changes = event.changes
        if event.kind is EventKind.HALT_CHANGED:
            message["halted"] = changes.get("halted")
            message["reason"] = changes.get("reason")
            return message
        message.update(
            {
                "plan_id": event.plan_id,
                "executor_id": event.executor_id,
                "status": changes.get("status"),
                "target": changes.get("target"),
                "error": changes.get("error"),
                "reason": changes.get("reason"),
            }
        )
        return message


def _reason(error: Exception) -> str:
    return f"{type(error).__name__}: {redact_text(str(error))}"
