"""Run one executor: claim it, run its attack, record the outcome.

This is what the attack Lambda and local mode's scheduler both call. The claim is a
conditional write (``scheduled -> running``), so a duplicate or retried delivery never
runs an attack twice; a delivery later than the allowed lateness ends ``missed``. An
executor still ``running`` after ``max_run_time`` (its process died or timed out) is
``failed`` as lost by ``reap_lost``, which the reaper Lambda and local mode call.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chalicelib.domain.errors import UnknownPlugin
from chalicelib.domain.model import EARLY_TOLERANCE, Executor, ExecutorStatus
from chalicelib.domain.ports import Clock, Store
from chalicelib.plugins.contract import Attack, AttackContext, AttackFailed, AttackSkipped
from chalicelib.plugins.registry import PluginSet

log = logging.getLogger(__name__)

MAX_RESULT_BYTES = 32_000
MAX_ERROR_CHARS = 2_000
# How many lost executors one reap_lost call ends; the next call takes the rest.
REAP_BATCH = 100
# How long after the allowed lateness a never-delivered executor is declared missed.
UNDELIVERED_MARGIN = timedelta(minutes=1)


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
    kill_switch: bool = False
    max_run_time: timedelta = timedelta(seconds=900)

    def run(self, executor_id: str) -> Executor | None:
        """Run the executor once; returns it as recorded, or None if it does not exist."""
        fields = {"executor_id": executor_id}
        executor = self.store.get_executor(executor_id)
        if executor is None:
            log.warning("no such executor; nothing to run", extra=fields)
            return None
        fields["plan_id"] = executor.plan_id
        if executor.status is not ExecutorStatus.SCHEDULED:
            log.info("executor already %s; not run again", executor.status.value, extra=fields)
            return executor

        now = self.clock.now()
        if executor.next_run_time - now > EARLY_TOLERANCE:
            # A stale delivery (the executor was moved later, or a retried schedule fired
            # again): its current schedule will deliver it at the right time.
            log.info("executor delivered before its time; not run now", extra=fields)
            return executor
        refusal = self._refusal(executor, now)
        if refusal is not None:
            return self._end_unclaimed(executor, *refusal)
        if not self.store.transition(executor, ExecutorStatus.RUNNING, {"started_at": now}):
            log.info("executor claimed by another delivery; not run", extra=fields)
            return self.store.get_executor(executor_id)
        return self._attack(executor)

    def reap_lost(self) -> int:
        """End the executors nothing else will ever end; returns how many it ended.

        - Running longer than ``max_run_time``: failed ("lost"). The attack's process died
          or timed out before recording an outcome.
        - Still scheduled more than the allowed lateness (plus a minute) after their time:
          missed. Their schedule never delivered them (dead-lettered, or deleted by hand);
          a delivery now would be refused as late anyway.

        Each change is conditional on the executor's status, so an attack that finishes,
        or a delivery that arrives, at the same moment keeps its own outcome.
        """
        now = self.clock.now()
        reaped = 0
        for executor in self.store.list_running(now - self.max_run_time, limit=REAP_BATCH):
            started = executor.started_at or executor.next_run_time
            error = (
                f"lost: still running {int((now - started).total_seconds())} s after it "
                "started (the attack's process died or timed out); its outcome is unknown"
            )
            reaped += self._reap(executor, ExecutorStatus.FAILED, {"error": error}, now)
        due_before = now - self.allowed_lateness - UNDELIVERED_MARGIN
        for executor in self.store.list_undelivered(due_before, limit=REAP_BATCH):
            overdue = int((now - executor.next_run_time).total_seconds())
            reason = (
                f"never delivered: still scheduled {overdue} s after its time "
                "(its schedule did not run it); the attack did not run"
            )
            reaped += self._reap(executor, ExecutorStatus.MISSED, {"reason": reason}, now)
        return reaped

    def _reap(
        self, executor: Executor, status: ExecutorStatus, changes: dict[str, Any], now: datetime
    ) -> int:
        fields = {"executor_id": executor.id, "plan_id": executor.plan_id}
        if self.store.transition(executor, status, {"finished_at": now, **changes}):
            log.warning("executor %s: %s", status.value, next(iter(changes.values())), extra=fields)
            return 1
        log.info("executor changed while it was being reaped; left as it is", extra=fields)
        return 0

    def _refusal(self, executor: Executor, now: datetime) -> tuple[ExecutorStatus, str] | None:
        """Why this delivery must not run the attack at all, if it must not."""
        lateness = now - executor.next_run_time
        if lateness > self.allowed_lateness:
            return ExecutorStatus.MISSED, (
                f"delivered {int(lateness.total_seconds())} s late; "
                f"the allowed lateness is {int(self.allowed_lateness.total_seconds())} s"
            )
        if self.kill_switch:
            return ExecutorStatus.SKIPPED, "the kill switch is on"
        return None

    def _end_unclaimed(self, executor: Executor, status: ExecutorStatus, reason: str) -> Executor:
        now = self.clock.now()
        changes = {"finished_at": now, "reason": reason}
        if self.store.transition(executor, status, changes):
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
            )
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
            log.warning("attack raised", exc_info=True, extra=fields)
        changes["finished_at"] = self.clock.now()
        if not self.store.transition(executor, status, changes):
            log.error("executor changed while its attack ran; outcome not recorded", extra=fields)
        log.info("executor %s", status.value, extra=fields)
        return executor
