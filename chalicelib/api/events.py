"""The audit trail's route (mounted at /api/1): ``GET events/``, newest first, paged."""

from __future__ import annotations

import json
from datetime import tzinfo
from typing import Any
from urllib.parse import urlencode

from chalice.app import Blueprint, Response

from chalicelib.api.context import engine_of
from chalicelib.api.errors import json_errors
from chalicelib.api.hal import BASE, HAL_JSON, executor_href, link, plan_href
from chalicelib.domain.errors import InvalidRequest, ServiceUnavailable
from chalicelib.domain.events import Event, EventKind
from chalicelib.domain.ports import MAX_PAGE_SIZE, EventLog
from chalicelib.domain.redaction import redact
from chalicelib.domain.times import to_api

events_api = Blueprint(__name__)

PATH = "events/"
# The longest plan id a filter may name (ids are 32 hex characters).
MAX_PLAN_ID = 200


def event_log() -> EventLog:
    """The event log of the engine serving this request (503 for an engine built
    without an audit trail)."""
    audit = engine_of(events_api.current_app).audit
    if audit is None:
        raise ServiceUnavailable("this engine keeps no audit trail")
    return audit.events


def params() -> dict[str, str]:
    return dict(events_api.current_request.query_params or {})


def href(values: dict[str, str]) -> str:
    query = urlencode(sorted(values.items()))
    return f"{BASE}/{PATH}" + (f"?{query}" if query else "")


def limit_param(values: dict[str, str], default: int) -> int:
    raw = values.get("limit")
    if raw is None:
        return default
    if not raw.strip().isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(raw)


def kind_param(values: dict[str, str]) -> EventKind | None:
    raw = values.get("kind")
    return EventKind.named(raw.strip()) if raw is not None and raw.strip() else None


def plan_param(values: dict[str, str]) -> str | None:
    raw = (values.get("plan_id") or "").strip()
    if len(raw) > MAX_PLAN_ID:
        raise InvalidRequest(f"plan_id must be at most {MAX_PLAN_ID} characters")
    return raw or None


def event_document(event: Event, zone: tzinfo) -> dict[str, Any]:
    links: dict[str, Any] = {}
    if event.plan_id is not None:
        links["plan"] = link(plan_href(event.plan_id))
    if event.executor_id is not None:
        links["executor"] = link(executor_href(event.executor_id))
    return {
        "id": event.id,
        "time": to_api(event.time, zone),
        "kind": event.kind.value,
        "actor": event.actor,
        "plan_id": event.plan_id,
        "executor_id": event.executor_id,
        # Masked when recorded; masked again for whatever was stored before a rule changed.
        "changes": redact(event.changes),
        "_links": links,
    }


@events_api.route("/events", methods=["GET"])
@json_errors
def list_events() -> Response:
    """The audit trail, newest first; ``plan_id`` and ``kind`` filter, ``limit`` and
    ``cursor`` page (follow ``_links.next``)."""
    engine = engine_of(events_api.current_app)
    values = params()
    page = event_log().list(
        plan_param(values),
        kind_param(values),
        limit_param(values, engine.settings.list_limit),
        values.get("cursor"),
    )
    zone = engine.settings.timezone
    links: dict[str, Any] = {"self": link(href(values))}
    if page.cursor is not None:
        links["next"] = link(href({**values, "cursor": page.cursor}))
    document = {
        "_embedded": {"events": [event_document(event, zone) for event in page.items]},
        "_links": links,
    }
    return Response(body=json.dumps(document), status_code=200, headers={"Content-Type": HAL_JSON})
