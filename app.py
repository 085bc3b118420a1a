"""Chalice app: the v1 HAL API and the attack Lambda. It only wires."""

from __future__ import annotations

from typing import Any

from chalice.app import Chalice

from chalicelib.api.context import engine_of
from chalicelib.api.routes import api

app = Chalice(app_name="chaos-monkey-engine")
app.register_blueprint(api, url_prefix="/api/1")


@app.lambda_function(name="attack")
def attack(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Run the executor an EventBridge schedule fired for: ``{"executor_id": ...}``."""
    executor_id = event.get("executor_id") if isinstance(event, dict) else None
    if not isinstance(executor_id, str) or not executor_id:
        app.log.error("attack invoked without an executor_id")
        return {"executor_id": None, "status": "rejected"}
    executor = engine_of(app).runner.run(executor_id)
    return {
        "executor_id": executor_id,
        "status": executor.status.value if executor else "unknown",
    }
