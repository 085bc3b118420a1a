"""HAL documents for plans and executors."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from chalicelib.domain.model import Executor, redact
from chalicelib.domain.times import to_api
from chalicelib.services.plans import PlanView

BASE = "/api/1"
HAL_JSON = "application/hal+json"


def link(href: str) -> dict[str, str]:
    return {"href": href}


def plan_href(plan_id: str) -> str:
    return f"{BASE}/plans/{plan_id}"


def executor_href(executor_id: str) -> str:
    return f"{BASE}/executors/{executor_id}"


def executor_document(executor: Executor, zone: tzinfo) -> dict[str, Any]:
    href = executor_href(executor.id)
    return {
        "id": executor.id,
        "plan_id": executor.plan_id,
        "name": executor.name,
        "next_run_time": to_api(executor.next_run_time, zone),
        "executed": executor.executed,
        "status": executor.status.value,
        "dry_run": executor.dry_run,
        "started_at": to_api(executor.started_at, zone),
        "finished_at": to_api(executor.finished_at, zone),
        "result": executor.result,
        "error": executor.error,
        "reason": executor.reason,
        "attack": redact(executor.attack),
        "_links": {
            "self": link(href),
            "update": link(href),
            "delete": link(href),
            "plan": link(plan_href(executor.plan_id)),
        },
    }


def plan_document(view: PlanView, zone: tzinfo) -> dict[str, Any]:
    plan = view.plan
    href = plan_href(plan.id)
    document: dict[str, Any] = {
        "id": plan.id,
        "name": plan.name,
        "created": to_api(plan.created, zone),
        "executors_count": plan.executors_count,
        "next_execution": to_api(view.next_execution, zone),
        "executed": plan.executed,
        "status_counts": plan.counts.as_dict(),
        "dry_run": plan.dry_run,
        "planner": redact(plan.planner),
        "attack": redact(plan.attack),
        "_links": {"self": link(href), "delete": link(href)},
    }
    if view.executors is not None:
        document["_embedded"] = {
            "executors": [executor_document(executor, zone) for executor in view.executors]
        }
    return document
