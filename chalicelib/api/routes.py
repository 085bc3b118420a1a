"""The v1 routes (mounted at /api/1); each delegates to a service and renders HAL."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from chalice.app import Blueprint, Response

from chalicelib.api.auth import principal
from chalicelib.api.context import engine_of
from chalicelib.api.errors import json_errors, message
from chalicelib.api.hal import (
    BASE,
    HAL_JSON,
    executor_document,
    halt_document,
    link,
    plan_document,
    plan_href,
    preview_document,
)
from chalicelib.bootstrap import Engine
from chalicelib.domain.errors import InvalidPayload, InvalidRequest, PayloadTooLarge
from chalicelib.domain.model import ExecutorStatus
from chalicelib.domain.ports import MAX_PAGE_SIZE, ExecutorQuery, PlanQuery
from chalicelib.domain.times import Deadline, parse_datetime
from chalicelib.services.limits import MAX_DEPTH, check_json
from chalicelib.services.safety import read_halt_request
from chalicelib.settings import is_true

api = Blueprint(__name__)

BODY_TYPES = [
    "application/json",
    "application/hal+json",
    "application/x-www-form-urlencoded",
    "text/plain",
]
# Left free of a deployed request's remaining time, to answer after an undo.
RESPONSE_MARGIN_SECONDS = 2.0
# ``executed`` values that ask for every executor, pending and executed.
BOTH_WORDS = frozenset({"any", "all"})
PLAN_STATUSES = ("pending", "executed")


def engine() -> Engine:
    """The engine of the app serving this request (built on first use when deployed)."""
    return engine_of(api.current_app)


def hal(
    document: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        body=json.dumps(document),
        status_code=status,
        headers={"Content-Type": HAL_JSON, **(headers or {})},
    )


def params() -> dict[str, str]:
    return dict(api.current_request.query_params or {})


def query_param(name: str) -> str | None:
    return params().get(name)


def href_with(path: str, values: dict[str, str]) -> str:
    query = urlencode(sorted(values.items()))
    return f"{BASE}/{path}" + (f"?{query}" if query else "")


def self_href(path: str) -> str:
    """The request's own URL, query string kept."""
    return href_with(path, params())


def page_links(path: str, cursor: str | None) -> dict[str, Any]:
    """``self``, and ``next`` (the same query from the cursor on) when there is more."""
    links: dict[str, Any] = {"self": link(self_href(path))}
    if cursor is not None:
        links["next"] = link(href_with(path, {**params(), "cursor": cursor}))
    return links


def limit_param() -> int | None:
    raw = query_param("limit")
    if raw is None:
        return None
    if not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(raw)


def json_body() -> Any:
    """The request's JSON body, within the size, depth and string bounds (limits.py)."""
    raw = api.current_request.raw_body or b""
    limit = engine().settings.max_body_bytes
    if len(raw) > limit:
        raise PayloadTooLarge(len(raw), limit)
    try:
        payload = json.loads(raw)
    except RecursionError:
        # The parser recurses per level: far past MAX_DEPTH it runs out of stack.
        raise InvalidPayload(f"body: nested more than {MAX_DEPTH} levels deep") from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("payload must be a valid json") from None
    check_json(payload)
    return payload


def actor(current: Engine) -> str:
    """Who is asking: the IAM principal (or API key id) deployed, "local" locally."""
    settings = current.settings
    return principal(api.current_request, settings.auth, deployed=settings.on_lambda)


def request_deadline(current: Engine) -> Deadline:
    """The plan deadline, shortened to what a deployed Lambda has left of its own time."""
    seconds = current.settings.plan_deadline.total_seconds()
    context = getattr(api.current_app, "lambda_context", None)
    if current.settings.on_lambda and context is not None:
        left = context.get_remaining_time_in_millis() / 1000 - RESPONSE_MARGIN_SECONDS
        seconds = min(seconds, left)
    return Deadline(seconds)


@api.route("/attacks", methods=["GET"])
@json_errors
def list_attacks() -> Response:
    attacks = engine().attacks.catalogue()
    return hal({"attacks": attacks, "_links": {"self": link(self_href("attacks/"))}})


@api.route("/planners", methods=["GET"])
@json_errors
def list_planners() -> Response:
    planners = engine().planners.catalogue()
    return hal({"planners": planners, "_links": {"self": link(self_href("planners/"))}})


@api.route("/plans", methods=["POST"], content_types=BODY_TYPES)
@json_errors
def add_plan() -> Response:
    current = engine()
    plan = current.plans.create(
        json_body(),
        idempotency_key=api.current_request.headers.get("idempotency-key"),
        deadline=request_deadline(current),
        actor=actor(current),
    )
    href = plan_href(plan.id)
    return hal(
        {"msg": "ok", "id": plan.id, "_links": {"self": link(href)}},
        headers={"Location": href},
    )


@api.route("/plans/preview", methods=["POST"], content_types=BODY_TYPES)
@json_errors
def preview_plan() -> Response:
    """What ``POST /plans`` would do with this body now; nothing is stored or scheduled."""
    current = engine()
    preview = current.plans.preview(
        json_body(), current.guards, current.settings.attack_environment
    )
    return hal(preview_document(preview, current.settings.timezone))


def plan_query() -> PlanQuery:
    status = query_param("status")
    if status is not None:
        if status not in PLAN_STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(PLAN_STATUSES)}")
        return PlanQuery(pending=status == "pending", executed=status == "executed")
    return PlanQuery(pending=True, executed=is_true(query_param("all")))


@api.route("/plans", methods=["GET"])
@json_errors
def list_plans() -> Response:
    current = engine()
    page = current.plans.list(plan_query(), limit_param(), query_param("cursor"))
    zone = current.settings.timezone
    return hal(
        {
            "plans": [plan_document(plan, zone) for plan in page.items],
            "_links": page_links("plans/", page.cursor),
        }
    )


@api.route("/plans/{plan_id}", methods=["GET"])
@json_errors
def get_plan(plan_id: str) -> Response:
    current = engine()
    view = current.plans.get(plan_id, limit_param())
    return hal(plan_document(view.plan, current.settings.timezone, view.executors))


@api.route("/plans/{plan_id}", methods=["PUT"], content_types=BODY_TYPES)
@json_errors
def update_plan(plan_id: str) -> Response:
    """Pause (``{"paused": true}``) or resume (``{"paused": false}``) a plan."""
    current = engine()
    view = current.plans.update(plan_id, json_body(), actor(current))
    return hal(plan_document(view.plan, current.settings.timezone, view.executors))


@api.route("/plans/{plan_id}", methods=["DELETE"])
@json_errors
def delete_plan(plan_id: str) -> Response:
    current = engine()
    current.plans.delete(plan_id, actor(current))
    return message(f"Plan {plan_id} successfully deleted")


def executor_query() -> ExecutorQuery:
    """The 2017 query (``executed``), narrowed by plan, status and a time range."""
    current = engine()
    values = params()
    executed_word = (values.get("executed") or "").strip().lower()
    statuses: set[ExecutorStatus] = set()
    for word in filter(None, (values.get("status") or "").split(",")):
        try:
            statuses.add(ExecutorStatus(word.strip().lower()))
        except ValueError:
            known = ", ".join(status.value for status in ExecutorStatus)
            raise InvalidRequest(f"unknown status {word[:40]!r}; known: {known}") from None
    executed: bool | None
    if executed_word in BOTH_WORDS or (statuses and not executed_word):
        executed = None
    else:
        executed = is_true(executed_word)
    zone = current.settings.timezone
    due_from = parse_datetime(values["after"], zone) if "after" in values else None
    due_until = parse_datetime(values["before"], zone) if "before" in values else None
    return ExecutorQuery(
        executed=executed,
        plan_id=values.get("plan_id") or None,
        statuses=frozenset(statuses),
        due_from=due_from,
        due_until=due_until,
        # Executed: the latest first, so a bounded list shows what just happened.
        latest_first=executed is True,
    )


@api.route("/executors", methods=["GET"])
@json_errors
def list_executors() -> Response:
    current = engine()
    page = current.executors.list(executor_query(), limit_param(), query_param("cursor"))
    zone = current.settings.timezone
    return hal(
        {
            "_embedded": {"executors": [executor_document(e, zone) for e in page.items]},
            "_links": page_links("executors/", page.cursor),
        }
    )


@api.route("/executors/{executor_id}", methods=["GET"])
@json_errors
def get_executor(executor_id: str) -> Response:
    current = engine()
    return hal(executor_document(current.executors.get(executor_id), current.settings.timezone))


@api.route("/executors/{executor_id}", methods=["PUT"], content_types=BODY_TYPES)
@json_errors
def reschedule_executor(executor_id: str) -> Response:
    current = engine()
    executor = current.executors.reschedule(executor_id, json_body(), actor(current))
    return hal(executor_document(executor, current.settings.timezone))


@api.route("/executors/{executor_id}", methods=["DELETE"])
@json_errors
def delete_executor(executor_id: str) -> Response:
    current = engine()
    current.executors.delete(executor_id, actor(current))
    return message(f"Executor {executor_id} successfully deleted")


@api.route("/halt", methods=["GET"])
@json_errors
def get_halt() -> Response:
    current = engine()
    return hal(halt_document(current.halt.get(), current.settings.timezone))


@api.route("/halt", methods=["PUT"], content_types=BODY_TYPES)
@json_errors
def set_halt() -> Response:
    """Halt every attack from the next executor that comes due on, or lift the halt."""
    current = engine()
    request = read_halt_request(json_body())
    halt = current.halt.set(request, actor(current))
    if current.settings.on_lambda and current.audit is not None:
        # Its halt.changed notification is sent from a background thread, which a frozen
        # Lambda does not run: send it before answering (as the attack Lambda does).
        current.audit.flush()
    return hal(halt_document(halt, current.settings.timezone))


@api.route("/openapi.json", methods=["GET"])
@json_errors
def openapi_document() -> Response:
    """This API's OpenAPI document: docs/openapi.yaml as JSON (scripts/openapi_json.py)."""
    from pathlib import Path

    text = Path(__file__).with_name("openapi.json").read_text(encoding="utf-8")
    return Response(body=text, status_code=200, headers={"Content-Type": "application/json"})
