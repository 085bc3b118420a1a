"""Create, read and delete plans; a plan and its schedules are stored all or nothing."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from chalicelib.domain.errors import (
    EngineError,
    InvalidRequest,
    PlanningError,
    PlanNotFound,
    SchedulingError,
)
from chalicelib.domain.model import Executor, Plan, ProposedExecutor
from chalicelib.domain.ports import Clock, Scheduler, Store
from chalicelib.domain.times import ceil_to_second
from chalicelib.plugins.contract import Attack, Planner
from chalicelib.plugins.registry import PluginSet
from chalicelib.plugins.validation import validate

log = logging.getLogger(__name__)

PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 256},
        "dry_run": {"type": "boolean"},
        "attack": {
            "type": "object",
            "properties": {"ref": {"type": "string", "minLength": 1}, "args": {"type": "object"}},
            "required": ["ref"],
        },
        "planner": {
            "type": "object",
            "properties": {"ref": {"type": "string", "minLength": 1}, "args": {"type": "object"}},
            "required": ["ref", "args"],
        },
    },
    "required": ["name", "attack", "planner"],
}


@dataclass(frozen=True)
class PlanView:
    """A plan with what the API shows beside it."""

    plan: Plan
    next_execution: datetime | None
    executors: list[Executor] | None = None


@dataclass
class PlanService:
    store: Store
    scheduler: Scheduler
    attacks: PluginSet[Attack]
    planners: PluginSet[Planner]
    clock: Clock
    timezone: tzinfo
    max_executors: int
    list_limit: int

    def create(self, payload: Any) -> Plan:
        """Validate, plan, store and schedule; on any failure nothing is left behind."""
        validate(payload, PLAN_SCHEMA, "plan")
        planner_class = self.planners.resolve(payload["planner"]["ref"])
        attack_class = self.attacks.resolve(payload["attack"]["ref"])
        attack_config = {"args": {}, **payload["attack"]}
        validate(payload["planner"]["args"], planner_class.schema, "planner.args")
        validate(attack_config, attack_class.schema, "attack")

        proposals = self._propose(planner_class, payload["name"], payload["planner"], attack_config)
        plan = Plan(
            id=uuid.uuid4().hex,
            name=payload["name"],
            created=self.clock.now(),
            planner=payload["planner"],
            attack=attack_config,
            dry_run=bool(payload.get("dry_run", False)),
        )
        executors = [
            Executor(
                id=uuid.uuid4().hex,
                plan_id=plan.id,
                name=proposal.name,
                next_run_time=ceil_to_second(proposal.run_at),
                attack=proposal.attack,
                dry_run=plan.dry_run,
            )
            for proposal in proposals
        ]
        self.store.add_plan(plan, executors)
        try:
            self.scheduler.create(executors)
        except Exception as error:
            self._undo(plan, executors)
            if isinstance(error, EngineError):
                raise
            raise SchedulingError(str(error)) from error
        log.info(
            "plan created",
            extra={"plan_id": plan.id, "executors": len(executors), "attack": attack_class.ref},
        )
        return plan

    def _propose(
        self,
        planner_class: type[Planner],
        name: str,
        planner_config: dict[str, Any],
        attack_config: dict[str, Any],
    ) -> list[ProposedExecutor]:
        planner = planner_class(name)
        planner.timezone = self.timezone
        planner.clock = self.clock
        planner.max_executors = self.max_executors
        try:
            planner.plan(planner_config, attack_config)
        except InvalidRequest:
            raise
        except Exception as error:  # a planner choking on its input is the input's fault
            raise PlanningError(f"{type(error).__name__}: {error}") from error
        proposals = planner.proposals
        if not proposals:
            raise PlanningError("the planner proposed no executors")
        if len(proposals) > self.max_executors:
            raise PlanningError(
                f"the planner proposed {len(proposals)} executors; "
                f"the limit is {self.max_executors} per plan"
            )
        now = self.clock.now()
        for proposal in proposals:
            if proposal.run_at <= now:
                raise PlanningError(f"executor date {proposal.run_at.isoformat()} is in the past")
            if proposal.attack is not attack_config:
                attack_class = self.attacks.resolve(proposal.attack.get("ref"))
                validate(proposal.attack, attack_class.schema, "attack")
        return proposals

    def _undo(self, plan: Plan, executors: list[Executor]) -> None:
        log.warning("scheduling failed; removing the plan", extra={"plan_id": plan.id})
        try:
            self.scheduler.delete([executor.id for executor in executors])
        finally:
            self.store.delete_plan(plan, executors)

    def get(self, plan_id: str) -> PlanView:
        plan = self.store.get_plan(plan_id)
        if plan is None:
            raise PlanNotFound(plan_id)
        executors = self.store.list_plan_executors(plan_id, limit=max(self.max_executors, 1))
        pending = [executor.next_run_time for executor in executors if not executor.executed]
        return PlanView(plan, min(pending, default=None), executors)

    def list(self, include_executed: bool, limit: int | None = None) -> list[PlanView]:
        bound = self._bound(limit)
        plans = self.store.list_plans(include_executed, bound)
        if not include_executed:
            plans = [plan for plan in plans if not plan.executed]
        return [
            PlanView(plan, None if plan.executed else self.store.next_pending_time(plan.id))
            for plan in plans
        ]

    def delete(self, plan_id: str) -> None:
        plan = self.store.get_plan(plan_id)
        if plan is None:
            raise PlanNotFound(plan_id)
        executors = self.store.list_plan_executors(plan_id, limit=max(self.max_executors, 1))
        self.scheduler.delete([executor.id for executor in executors])
        self.store.delete_plan(plan, executors)
        log.info("plan deleted", extra={"plan_id": plan_id, "executors": len(executors)})

    def _bound(self, limit: int | None) -> int:
        if limit is None:
            return self.list_limit
        return max(1, min(limit, self.list_limit))
