"""Who may call the API: IAM or API keys on API Gateway, a bearer token in local mode."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from chalice.app import Chalice, IAMAuthorizer, Request, Response

from chalicelib.api.context import engine_of
from chalicelib.api.errors import message

log = logging.getLogger(__name__)


def protect_routes(app: Chalice, mode: str) -> None:
    """Require ``mode`` ("iam", "api_key" or "none") on every route of ``app``.

    API Gateway enforces it, so it must be in place when Chalice builds the API (at
    import, from the stage's ``CME_AUTH``); routes added later are not covered.
    """
    authorizer = IAMAuthorizer() if mode == "iam" else None
    for methods in app.routes.values():
        for entry in methods.values():
            if authorizer is not None:
                entry.authorizer = authorizer
            if mode == "api_key":
                entry.api_key_required = True


def bearer_token_required(app: Chalice) -> Callable[[Request, Callable[[Request], Any]], Any]:
    """HTTP middleware: with a token in the settings, refuse requests that lack it (401)."""

    def check(request: Request, get_response: Callable[[Request], Any]) -> Any:
        try:
            expected = engine_of(app).settings.api_token
        except Exception:  # fail closed, in the API's own error format
            log.exception("could not build the engine to check the bearer token")
            return message("internal error; the engine's log has the details", 500)
        if expected:
            header = request.headers.get("authorization") or ""
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), expected.encode()
            ):
                return _unauthorized()
        return get_response(request)

    return check


def _unauthorized() -> Response:
    response = message("missing or wrong bearer token; send 'Authorization: Bearer <token>'", 401)
    response.headers["WWW-Authenticate"] = 'Bearer realm="chaos-monkey-engine"'
    return response


def principal(request: Request, mode: str, deployed: bool) -> str:
    """Who sent ``request``, as API Gateway authenticated it: the IAM principal with
    ``CME_AUTH=iam`` (``identity.userArn``, else ``identity.caller``), the API key id with
    ``api_key``; "local" in local mode (its bearer token has no name to give).

    Recorded with the halt; never trusted from a header the caller writes.
    """
    context = request.context if isinstance(request.context, dict) else {}
    identity = context.get("identity")
    identity = identity if isinstance(identity, dict) else {}
    if mode == "iam":
        return str(identity.get("userArn") or identity.get("caller") or "iam:unknown principal")
    if mode == "api_key":
        # The key's id, never ``identity.apiKey`` (the key itself, a secret).
        key_id = identity.get("apiKeyId")
        return f"api key {key_id}" if key_id else "api key (unknown id)"
    return "anonymous" if deployed else "local"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
