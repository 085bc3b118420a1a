"""One table from engine errors to HTTP statuses, and the JSON error body."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from chalice.app import Response

from chalicelib.domain.errors import (
    Conflict,
    EngineError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    SchedulingError,
    ServiceUnavailable,
    StorageError,
)
from chalicelib.domain.redaction import redact_text

log = logging.getLogger(__name__)

JSON = "application/json"

STATUS_BY_ERROR: tuple[tuple[type[EngineError], int], ...] = (
    (NotFound, 404),
    (PayloadTooLarge, 413),
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


# What a client is told when a backend fails: the domain error's message names tables,
# paths, request ids and botocore's text, so it goes to the log only, under a reference.
UNAVAILABLE: tuple[tuple[type[ServiceUnavailable], str], ...] = (
    (StorageError, "storage unavailable; try again"),
    (SchedulingError, "scheduling failed; try again"),
    (ServiceUnavailable, "service unavailable; try again"),
)


def _unavailable(error: ServiceUnavailable, where: str) -> Response:
    reference = secrets.token_hex(4)
    log.error(
        "%s failed: %s",
        where,
        error.message,
        extra={"error_reference": reference, "error": type(error).__name__},
    )
    sentence = next(text for kind, text in UNAVAILABLE if isinstance(error, kind))
    return message(f"{sentence} (log reference {reference})", status_of(error))


def json_errors(handler: F) -> F:
    """Turn every error a route raises into a JSON answer; never a stack trace."""

    @wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        try:
            return handler(*args, **kwargs)
        except ServiceUnavailable as error:
            return _unavailable(error, handler.__name__)
        except EngineError as error:
            return message(redact_text(error.message), status_of(error))
        except Exception:
            log.exception("unexpected error in %s", handler.__name__)
            return message("internal error; the engine's log has the details", 500)

    return wrapper  # type: ignore[return-value]
