"""Chalice app: the v1 HAL API, the attack Lambda and the reaper Lambda. It only wires."""

from __future__ import annotations

import os
from typing import Any

from chalice.app import Chalice, CloudWatchEvent

from chalicelib.api.auth import bearer_token_required, protect_routes
from chalicelib.api.context import engine_of
from chalicelib.api.routes import api
from chalicelib.settings import auth_mode

app = Chalice(app_name="chaos-monkey-engine")
app.register_blueprint(api, url_prefix="/api/1")
# API Gateway's authorization is part of the API definition, so the stage's CME_AUTH is
# read here, when `chalice deploy` / `chalice package` import the app.
protect_routes(app, auth_mode(os.environ.get("CME_AUTH", "none")))
app.register_middleware(bearer_token_required(app), "http")


@app.lambda_function(name="attack")
def attack(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run the executor an EventBridge schedule fired for: ``{"executor_id": ...}``.

    It never raises for a bad or unknown executor id (a retry would not fix it); the
    runner's claim makes a duplicate delivery a no-op.
    """
    executor_id = event.get("executor_id") if isinstance(event, dict) else None
    if not isinstance(executor_id, str) or not executor_id:
        app.log.error("attack invoked without an executor_id: %r", event)
        return {"executor_id": None, "status": "rejected"}
    executor = engine_of(app).runner.run(executor_id)
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
    return {"reaped": engine_of(app).runner.reap_lost()}
