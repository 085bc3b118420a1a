"""One table from engine errors to HTTP statuses, and the JSON error body."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from chalice.app import Response

from chalicelib.domain.errors import (
    Conflict,
    EngineError,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
)

log = logging.getLogger(__name__)

JSON = "application/json"

STATUS_BY_ERROR: tuple[tuple[type[EngineError], int], ...] = (
    (NotFound, 404),
    (InvalidRequest, 400),
    (Conflict, 409),
    (ServiceUnavailable, 503),
)

F = TypeVar("F", bound=Callable[..., Response])


def message(text: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A ``{"msg": ...}`` JSON response."""
    return Response(
        body=json.dumps({"msg": text}),
        status_code=status,
        headers={"Content-Type": JSON, **(headers or {})},
    )


def status_of(error: EngineError) -> int:
    for error_type, status in STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return status
    return 500


def json_errors(handler: F) -> F:
    """Turn every error a route raises into a JSON answer; never a stack trace."""

    @wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return handler(*args, **kwargs)
        except EngineError as error:
            return message(error.message, status_of(error))
        except Exception:
            log.exception("unexpected error in %s", handler.__name__)
            return message("internal error; the engine's log has the details", 500)

    return wrapper  # type: ignore[return-value]
