"""Chalice app: the v1 HAL API and the attack, reaper and expander Lambdas. It only wires."""

from __future__ import annotations

import os
from datetime import UTC
from typing import Any

from chalice.app import Chalice, CloudWatchEvent

from chalicelib import logfmt
from chalicelib.api.auth import bearer_token_required, protect_routes
from chalicelib.api.context import engine_of
from chalicelib.api.events import events_api
from chalicelib.api.routes import api
from chalicelib.domain.errors import InvalidDate
from chalicelib.domain.times import parse_datetime
from chalicelib.settings import auth_mode

# Every log record of the Lambda (ours, Chalice's, botocore's) has its secrets masked; the
# runtime owns the handler (and its root level, WARNING, keeps request loggers quiet).
logfmt.install_scrubbing()

app = Chalice(app_name="chaos-monkey-engine")
app.register_blueprint(api, url_prefix="/api/1")
app.register_blueprint(events_api, url_prefix="/api/1")
# API Gateway's authorization is part of the API definition, so the stage's CME_AUTH is
# read here, when `chalice deploy` / `chalice package` import the app.
protect_routes(app, auth_mode(os.environ.get("CME_AUTH", "none")))
app.register_middleware(bearer_token_required(app), "http")


@app.lambda_function(name="attack")
def attack(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run the executor an EventBridge schedule fired for: ``{"executor_id", "run_at"}``.

    ``run_at`` (the time the schedule was made for; absent in older schedules) lets the
    runner ignore a delivery of a time the executor no longer has. It never raises for a
    bad or unknown executor id (a retry would not fix it); the runner's claim makes a
    duplicate delivery a no-op.
    """
    executor_id = event.get("executor_id") if isinstance(event, dict) else None
    if not isinstance(executor_id, str) or not executor_id:
        app.log.error("attack invoked without an executor_id: %r", event)
        return {"executor_id": None, "status": "rejected"}
    try:
        run_at = parse_datetime(event["run_at"], UTC) if "run_at" in event else None
    except InvalidDate:
        app.log.error("attack invoked with a bad run_at: %r", event)
        return {"executor_id": executor_id, "status": "rejected"}
    engine = engine_of(app)
    executor = engine.runner.run(executor_id, run_at)
    _flush(engine)
    return {
        "executor_id": executor_id,
        "status": executor.status.value if executor else "unknown",
    }


@app.schedule("rate(5 minutes)", name="reaper")
def reaper(event: CloudWatchEvent) -> dict[str, Any]:
    """End as failed ("lost") the executors whose attack Lambda died or timed out.

    An executor still ``running`` longer than CME_MAX_RUN_SECONDS after it started would
    otherwise stay running, and its plan pending, forever.
    """
    engine = engine_of(app)
    reaped = engine.runner.reap_lost()
    _flush(engine)
    return {"reaped": reaped}


@app.schedule("rate(1 hour)", name="expander")
def expander(event: CloudWatchEvent) -> dict[str, Any]:
    """Expand each recurring plan whose next day is due into that day's executors.

    A day is due from 00:00 (engine timezone) of the day before, so an hourly run has
    each day's executors in place about a day ahead; a run that is late, repeated or
    concurrent with another adds nothing twice (chalicelib/services/recurrence.py).
    """
    return {"expanded": engine_of(app).expansion.expand_due()}


def _flush(engine: Any) -> None:
    """Send the notifications a run queued before the Lambda returns: a frozen Lambda
    runs no background thread, so what is not sent now may never be."""
    if engine.audit is not None:
        engine.audit.flush()
