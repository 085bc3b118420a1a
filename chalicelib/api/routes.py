"""The v1 routes (mounted at /api/1); each delegates to a service and renders HAL."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from chalice.app import Blueprint, Response

from chalicelib.api.context import engine_of
from chalicelib.api.errors import json_errors, message
from chalicelib.api.hal import (
    BASE,
    HAL_JSON,
    executor_document,
    link,
    plan_document,
    plan_href,
)
from chalicelib.bootstrap import Engine
from chalicelib.domain.errors import InvalidRequest
from chalicelib.settings import is_true

api = Blueprint(__name__)

BODY_TYPES = [
    "application/json",
    "application/hal+json",
    "application/x-www-form-urlencoded",
    "text/plain",
]


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


def query_param(name: str) -> str | None:
    params: dict[str, str] = dict(api.current_request.query_params or {})
    return params.get(name)


def self_href(path: str) -> str:
    """The request's own URL, query string kept."""
    params: dict[str, str] = dict(api.current_request.query_params or {})
    query = urlencode(sorted(params.items()))
    return f"{BASE}/{path}" + (f"?{query}" if query else "")


def json_body() -> Any:
    raw = api.current_request.raw_body
    try:
        return json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("payload must be a valid json") from None


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
    plan = engine().plans.create(json_body())
    href = plan_href(plan.id)
    return hal(
        {"msg": "ok", "id": plan.id, "_links": {"self": link(href)}},
        headers={"Location": href},
    )


@api.route("/plans", methods=["GET"])
@json_errors
def list_plans() -> Response:
    current = engine()
    views = current.plans.list(include_executed=is_true(query_param("all")))
    zone = current.settings.timezone
    return hal(
        {
            "plans": [plan_document(view, zone) for view in views],
            "_links": {"self": link(self_href("plans/"))},
        }
    )


@api.route("/plans/{plan_id}", methods=["GET"])
@json_errors
def get_plan(plan_id: str) -> Response:
    current = engine()
    return hal(plan_document(current.plans.get(plan_id), current.settings.timezone))


@api.route("/plans/{plan_id}", methods=["DELETE"])
@json_errors
def delete_plan(plan_id: str) -> Response:
    engine().plans.delete(plan_id)
    return message(f"Plan {plan_id} successfully deleted")


@api.route("/executors", methods=["GET"])
@json_errors
def list_executors() -> Response:
    current = engine()
    executors = current.executors.list(executed=is_true(query_param("executed")))
    zone = current.settings.timezone
    return hal(
        {
            "_embedded": {"executors": [executor_document(e, zone) for e in executors]},
            "_links": {"self": link(self_href("executors/"))},
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
    executor = current.executors.reschedule(executor_id, json_body())
    return hal(executor_document(executor, current.settings.timezone))


@api.route("/executors/{executor_id}", methods=["DELETE"])
@json_errors
def delete_executor(executor_id: str) -> Response:
    engine().executors.delete(executor_id)
    return message(f"Executor {executor_id} successfully deleted")
