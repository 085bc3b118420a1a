"""HAL documents for plans and executors."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any
from urllib.parse import urlencode

from chalicelib.domain.model import Executor, Plan
from chalicelib.domain.ports import Page
from chalicelib.domain.redaction import redact
from chalicelib.domain.safety import Halt
from chalicelib.domain.times import to_api
from chalicelib.services.plans import PlanPreview

BASE = "/api/1"
HAL_JSON = "application/hal+json"


def link(href: str) -> dict[str, str]:
    return {"href": href}


HALT_HREF = f"{BASE}/halt"
PREVIEW_HREF = f"{BASE}/plans/preview"


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
        # Outcomes are scrubbed when stored; scrubbed again here for those stored before.
        "result": redact(executor.result),
        "error": redact(executor.error),
        "reason": redact(executor.reason),
        "attack": redact(executor.attack),
        "_links": {
            "self": link(href),
            "update": link(href),
            "delete": link(href),
            "plan": link(plan_href(executor.plan_id)),
        },
    }


def plan_executors_href(plan_id: str, cursor: str | None = None) -> str:
    """The list of one plan's executors, pending and executed, soonest first."""
    values = {"executed": "any", "plan_id": plan_id}
    if cursor is not None:
        values["cursor"] = cursor
    return f"{BASE}/executors/?{urlencode(sorted(values.items()))}"


def recurrence_of(plan: Plan) -> dict[str, Any] | None:
    """A recurring plan's stored planner args (seed included); None for a one-shot plan.

    Only a recurring plan has an expansion state (``next_expansion``, ``last_expanded``)
    and only its planner stores a ``seed`` (one it drew when the body gave none), so
    either marks it, paused or past its end alike.
    """
    args = plan.planner.get("args")
    if not isinstance(args, dict):
        return None
    expands = plan.next_expansion is not None or plan.last_expanded is not None
    seeded = isinstance(args.get("seed"), int) and not isinstance(args.get("seed"), bool)
    return redact(args) if expands or seeded else None


def plan_document(
    plan: Plan, zone: tzinfo, executors: Page[Executor] | None = None
) -> dict[str, Any]:
    """A plan; with ``executors``, the first page of them embedded and a link to the rest."""
    href = plan_href(plan.id)
    links: dict[str, Any] = {
        "self": link(href),
        "delete": link(href),
        "executors": link(plan_executors_href(plan.id)),
    }
    document: dict[str, Any] = {
        "id": plan.id,
        "name": plan.name,
        "created": to_api(plan.created, zone),
        "executors_count": plan.executors_count,
        "next_execution": to_api(plan.next_execution, zone),
        "executed": plan.executed,
        "status_counts": plan.counts.as_dict(),
        "dry_run": plan.dry_run,
        "planner": redact(plan.planner),
        "attack": redact(plan.attack),
        # Stop conditions and the minimum interval; null when the plan gave none.
        "safety": redact(plan.safety),
        # Recurring plans: the stored args (with their seed) each day is expanded from.
        "recurrence": recurrence_of(plan),
        "paused": plan.paused,
        "next_expansion": to_api(plan.next_expansion, zone),
        "last_expanded": None if plan.last_expanded is None else plan.last_expanded.isoformat(),
        "_links": links,
    }
    if executors is not None:
        document["_embedded"] = {
            "executors": [executor_document(executor, zone) for executor in executors.items]
        }
        if executors.cursor is not None:
            links["next_executors"] = link(plan_executors_href(plan.id, executors.cursor))
    return document


def halt_document(halt: Halt, zone: tzinfo) -> dict[str, Any]:
    """The live halt: on or off, why, since when and set by whom."""
    return {
        "halted": halt.halted,
        "reason": halt.reason,
        "since": to_api(halt.since, zone),
        "by": halt.by,
        "_links": {"self": link(HALT_HREF)},
    }


def preview_document(preview: PlanPreview, zone: tzinfo) -> dict[str, Any]:
    """What creating a plan would do now: executors, targets, guards' verdicts."""
    document: dict[str, Any] = {
        "executors": [
            {"name": executor.name, "next_run_time": to_api(executor.next_run_time, zone)}
            for executor in preview.draft.executors
        ],
        "targets": preview.targets,
        "guards": [verdict.as_dict() for verdict in preview.verdicts],
        "recurrence": recurrence_of(preview.draft.plan),
        "next_expansion": to_api(preview.draft.plan.next_expansion, zone),
        "_links": {"self": link(PREVIEW_HREF)},
    }
    if preview.targets_note is not None:
        document["targets_note"] = preview.targets_note
    return document
