"""Run one executor: wait for its second, claim it, run its attack, record the outcome.

This is what the attack Lambda and local mode's scheduler both call. A delivery may come
up to EARLY_DELIVERY_WINDOW early (EventBridge Scheduler fires anywhere in a minute, so
the deployed engine schedules the minute before): the runner waits for the executor's
second, so no attack starts before it. The claim is a conditional write
(``scheduled -> running`` while the executor still has the time this delivery is for and
its plan is committed), so a duplicate, retried or stale delivery never runs an attack
twice or at an old time; a delivery later than the allowed lateness ends ``missed``.

The safety guards (services/guards.py) decide whether a due executor's attack may run:
those that record nothing (kill switch, halt, calendar, stop conditions) before the
claim, a refusal ending the executor ``skipped`` unclaimed; the minimum interval, which
records the attack, after it, a refusal ending it ``skipped`` from ``running``.

``reap_lost`` (the reaper Lambda, and a job in local mode) ends what nothing else will:
executors ``running`` past their lease (their process died) are ``failed`` as lost,
executors never delivered are ``missed``, orphans (executors whose plan is gone) and
creations that died half way (uncommitted plans) are removed. One bad item is logged
and passed over; it never stops the rest.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from chalicelib.domain.errors import OrphanExecutor, UnknownPlugin
from chalicelib.domain.model import EARLY_DELIVERY_WINDOW, Executor, ExecutorStatus, Plan
from chalicelib.domain.ports import Clock, Scheduler, Store
from chalicelib.domain.redaction import redact
from chalicelib.plugins.contract import (
    Attack,
    AttackContext,
    AttackEnvironment,
    AttackFailed,
    AttackSkipped,
)
from chalicelib.plugins.registry import PluginSet
from chalicelib.plugins.secret_policy import SecretVault
from chalicelib.services.audit import AuditTrail
from chalicelib.services.guards import SafetyGuards
from chalicelib.services.paging import plan_executor_ids

log = logging.getLogger(__name__)

MAX_RESULT_BYTES = 32_000
MAX_ERROR_CHARS = 2_000
# How many lost executors one reap_lost call ends; the next call takes the rest.
REAP_BATCH = 100
# How long after the allowed lateness a never-delivered executor is declared missed.
UNDELIVERED_MARGIN = timedelta(minutes=1)
# An uncommitted plan older than this is a creation that died (its Lambda was killed, or
# its undo cut short): creation never takes longer than the plan deadline (< 29 s).
ABANDONED_AFTER = timedelta(minutes=5)


def _storable(result: Any) -> Any:
    """A JSON-able copy of an attack's result, bounded in size."""
    if result is None:
        return None
    text = json.dumps(result, default=str)
    if len(text) > MAX_RESULT_BYTES:
        return {"truncated": True, "text": text[:MAX_RESULT_BYTES]}
    return json.loads(text)


def _message(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    if not isinstance(error, AttackFailed) and type(error).__name__ not in text:
        text = f"{type(error).__name__}: {text}"
    return text[:MAX_ERROR_CHARS]


@dataclass
class ExecutorRunner:
    store: Store
    attacks: PluginSet[Attack]
    clock: Clock
    allowed_lateness: timedelta
    # The kill switch, the halt, the calendar, stop conditions and the minimum interval.
    guards: SafetyGuards
    max_run_time: timedelta = timedelta(seconds=900)
    # Set after construction (the scheduler is built from the runner): the reaper removes
    # the schedules of orphans and abandoned plans through it.
    scheduler: Scheduler | None = None
    # Where attacks' cloud calls go (region, EC2 endpoint), on every attack's context.
    environment: AttackEnvironment = field(default_factory=AttackEnvironment)
    # Every start and end of an executor is an event (and a notification); None: none.
    audit: AuditTrail | None = None

    def _move(self, executor: Executor, target: ExecutorStatus, changes: dict[str, Any]) -> bool:
        """``store.transition``, and the event of the move when it happened (the audit
        trail never raises: a failed event or notification changes no outcome)."""
        if not self.store.transition(executor, target, changes):
            return False
        if self.audit is not None:
            if target is ExecutorStatus.RUNNING:
                self.audit.executor_started(executor)
            else:
                self.audit.executor_finished(executor)
        return True

    def run(self, executor_id: str, run_at: datetime | None = None) -> Executor | None:
        """Run the executor once; returns it as recorded, or None if it does not exist.

        ``run_at`` is the time the delivering schedule was made for: a delivery for
        another time than the executor's is stale (the executor was moved) and ignored.
        """
        fields = {"executor_id": executor_id}
        executor = self.store.get_executor(executor_id)
        if executor is None:
            log.warning("no such executor; nothing to run", extra=fields)
            return None
        fields["plan_id"] = executor.plan_id
        ignored = self._ignored(executor, run_at)
        if ignored is not None:
            log.info("delivery ignored: %s", ignored, extra=fields)
            return executor
        early = executor.next_run_time - self.clock.now()
        if early > timedelta(0):
            # EventBridge Scheduler fires anywhere in a minute: wait for the second.
            self.clock.sleep(early.total_seconds())
        return self._run_due(executor, self.clock.now())

    def _run_due(self, executor: Executor, now: datetime) -> Executor | None:
        """Run an executor whose second has come: lateness, its plan, the guards, the
        claim, the minimum interval, the attack; each may end it before the next."""
        fields = {"executor_id": executor.id, "plan_id": executor.plan_id}
        late = self._lateness(executor, now)
        if late is not None:
            return self._end_unclaimed(executor, ExecutorStatus.MISSED, late)
        plan = self.store.get_plan(executor.plan_id)
        if plan is None:
            # No transition of it can be recorded. The reaper removes orphans (the attack
            # function is granted no deletes: it only reads and updates executors).
            log.warning("executor without a plan; not run, left to the reaper", extra=fields)
            return executor
        if not plan.committed:
            # Its creation is still under way or died: the claim would fail; record nothing.
            log.info("the executor's plan is not committed; not run", extra=fields)
            return executor
        refusal = self.guards.before_claim(executor, plan, now)
        if refusal is not None:
            return self._end_unclaimed(executor, ExecutorStatus.SKIPPED, refusal.reason)
        if not self._move(executor, ExecutorStatus.RUNNING, {"started_at": now}):
            log.info("executor claimed elsewhere, moved or not committed; not run", extra=fields)
            return self.store.get_executor(executor.id)
        return self._attack_once_allowed(executor, plan, now)

    def _attack_once_allowed(self, executor: Executor, plan: Plan, now: datetime) -> Executor:
        """Run a claimed executor's attack unless the minimum interval refuses it.

        Only after the claim: the interval records this attack, so the record must be
        made for an executor that nobody else is running (the claim made sure)."""
        refusal = self.guards.after_claim(executor, plan, now)
        if refusal is None:
            return self._attack(executor)
        changes = {"finished_at": self.clock.now(), "reason": refusal.reason}
        fields = {"executor_id": executor.id, "plan_id": executor.plan_id}
        if self._move(executor, ExecutorStatus.SKIPPED, changes):
            log.warning("executor skipped: %s", refusal.reason, extra=fields)
        else:
            log.error("executor changed while it was claimed; refusal not recorded", extra=fields)
        return executor

    def _ignored(self, executor: Executor, run_at: datetime | None) -> str | None:
        """Why this delivery is not the executor's to act on, if it is not."""
        if executor.status is not ExecutorStatus.SCHEDULED:
            return f"the executor is already {executor.status.value}"
        if run_at is not None and run_at != executor.next_run_time:
            return "it was for another time (the executor was moved)"
        early = executor.next_run_time - self.clock.now()
        if early > EARLY_DELIVERY_WINDOW:
            # Not a delivery of the executor's current schedule: that one will come.
            return f"it came {int(early.total_seconds())} s before the executor's time"
        return None

    def reap_lost(self) -> int:
        """End the executors nothing else will ever end; returns how many it ended.

        - Running longer than ``max_run_time``: failed ("lost"). The attack's process died
          or timed out before recording an outcome.
        - Still scheduled more than the allowed lateness (plus a minute) after their time:
          missed. Their schedule never delivered them (dead-lettered, or deleted by hand);
          a delivery now would be refused as late anyway.
        - Orphans (their plan is gone) are removed with their schedules; plans whose
          creation died half way (uncommitted after ABANDONED_AFTER) are removed.

        Each change is conditional on the executor's status, so an attack that finishes,
        or a delivery that arrives, at the same moment keeps its own outcome. Any single
        item that fails is logged and passed over.
        """
        now = self.clock.now()
        reaped = 0
        for executor_id in self.store.list_running(now - self.max_run_time, limit=REAP_BATCH):
            reaped += self._reap_one(executor_id, ExecutorStatus.RUNNING, now)
        due_before = now - self.allowed_lateness - UNDELIVERED_MARGIN
        for executor_id in self.store.list_undelivered(due_before, limit=REAP_BATCH):
            reaped += self._reap_one(executor_id, ExecutorStatus.SCHEDULED, now)
        for plan in self.store.list_abandoned_plans(now - ABANDONED_AFTER, limit=REAP_BATCH):
            try:
                self._remove_abandoned(plan.id)
            except Exception:
                log.exception("could not remove an abandoned plan", extra={"plan_id": plan.id})
        return reaped

    def _reap_one(self, executor_id: str, expected: ExecutorStatus, now: datetime) -> int:
        fields = {"executor_id": executor_id}
        try:
            executor = self.store.get_executor(executor_id)
            if executor is None or executor.status is not expected:
                return 0  # it changed since the list was read (or the index lagged)
            fields["plan_id"] = executor.plan_id
            if expected is ExecutorStatus.RUNNING:
                started = executor.started_at or executor.next_run_time
                error = (
                    f"lost: still running {int((now - started).total_seconds())} s after it "
                    "started (the attack's process died or timed out); its outcome is unknown"
                )
                return self._reap(executor, ExecutorStatus.FAILED, {"error": error}, now)
            overdue = int((now - executor.next_run_time).total_seconds())
            reason = (
                f"never delivered: still scheduled {overdue} s after its time "
                "(its schedule did not run it); the attack did not run"
            )
            return self._reap(executor, ExecutorStatus.MISSED, {"reason": reason}, now)
        except OrphanExecutor:
            log.warning("executor without a plan; removed", extra=fields)
            self._purge(executor_id)
            return 1
        except Exception:
            # A record that cannot be read or written: log it and go on with the rest.
            log.exception("could not reap an executor; passed over", extra=fields)
            return 0

    def _purge(self, executor_id: str) -> None:
        if self.scheduler is not None:
            self.scheduler.delete([executor_id])
        self.store.purge_executor(executor_id)

    def _remove_abandoned(self, plan_id: str) -> None:
        plan = self.store.get_plan(plan_id)
        if plan is None or plan.committed:
            return
        ids = plan_executor_ids(self.store, plan_id)
        if self.scheduler is not None:
            self.scheduler.delete(ids)
        self.store.delete_plan(plan)
        log.warning("removed a plan whose creation never finished", extra={"plan_id": plan_id})

    def _reap(
        self, executor: Executor, status: ExecutorStatus, changes: dict[str, Any], now: datetime
    ) -> int:
        fields = {"executor_id": executor.id, "plan_id": executor.plan_id}
        if self._move(executor, status, {"finished_at": now, **changes}):
            log.warning("executor %s: %s", status.value, next(iter(changes.values())), extra=fields)
            return 1
        log.info("executor changed while it was being reaped; left as it is", extra=fields)
        return 0

    def _lateness(self, executor: Executor, now: datetime) -> str | None:
        """Why this delivery is too late to run the attack at all, if it is (checked
        before every guard: a late executor is missed, whatever the guards say)."""
        lateness = now - executor.next_run_time
        if lateness > self.allowed_lateness:
            return (
                f"delivered {int(lateness.total_seconds())} s late; "
                f"the allowed lateness is {int(self.allowed_lateness.total_seconds())} s"
            )
        return None

    def _end_unclaimed(self, executor: Executor, status: ExecutorStatus, reason: str) -> Executor:
        now = self.clock.now()
        changes = {"finished_at": now, "reason": reason}
        if self._move(executor, status, changes):
            log.warning(
                "executor %s: %s",
                status.value,
                reason,
                extra={"executor_id": executor.id, "plan_id": executor.plan_id},
            )
        return executor

    def _attack(self, executor: Executor) -> Executor:
        ref = executor.attack.get("ref")
        fields = {"executor_id": executor.id, "plan_id": executor.plan_id, "attack": ref}
        status = ExecutorStatus.SUCCEEDED
        changes: dict[str, Any] = {}
        # The secrets the attack resolves: scrubbed from everything stored or logged.
        vault = SecretVault()
        raised: BaseException | None = None
        try:
            attack_class = self.attacks.resolve(ref)
            if executor.dry_run and not attack_class.supports_dry_run:
                raise AttackSkipped(f"dry run: {ref} was not executed")
            attack = attack_class(executor.attack.get("args") or {})
            attack.context = AttackContext(
                executor_id=executor.id,
                plan_id=executor.plan_id,
                dry_run=executor.dry_run,
                logger=logging.getLogger(f"attacks.{ref}"),
                clock=self.clock,
                environment=self.environment,
                secrets=vault,
            )
            with attack.context.active():
                outcome = attack.run()
            if executor.dry_run:
                # A dry run is recorded like a real run but always ends skipped.
                raise AttackSkipped(f"dry run: {ref} reported what it would do", outcome)
            changes["result"] = _storable(outcome)
        except AttackSkipped as skipped:
            status = ExecutorStatus.SKIPPED
            changes["reason"] = skipped.reason[:MAX_ERROR_CHARS]
            changes["result"] = _storable(skipped.result)
        except AttackFailed as failed:
            status = ExecutorStatus.FAILED
            changes["error"] = _message(failed)
            changes["result"] = _storable(failed.result)
        except UnknownPlugin as unknown:
            status = ExecutorStatus.FAILED
            changes["error"] = unknown.message[:MAX_ERROR_CHARS]
        except Exception as error:  # any attack error is the executor's outcome, not a crash
            status = ExecutorStatus.FAILED
            changes["error"] = _message(error)
            raised = error
        changes = vault.scrub(changes)
        if raised is not None:
            # The traceback quotes the error, which may hold a secret: only without one.
            log.warning(
                "attack raised: %s",
                changes["error"],
                exc_info=None if vault else raised,
                extra=fields,
            )
        # The outcome is shown by the API and kept: URL passwords, tokens in query strings
        # and values under secret-looking names never reach the store.
        changes = redact(changes)
        changes["finished_at"] = self.clock.now()
        if not self._move(executor, status, changes):
            log.error("executor changed while its attack ran; outcome not recorded", extra=fields)
        log.info("executor %s", status.value, extra=fields)
        return executor
