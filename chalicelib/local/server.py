"""The local mode's HTTP server: Chalice's local gateway behind a sturdier ``http.server``.

``chalice.local.create_local_server`` is a development server: a listen backlog of 5
(a burst of clients gets connection resets), HTML pages for the errors ``http.server``
produces itself, API Gateway's 403 "Missing Authentication Token" for an unknown route,
and no socket timeout (a client that stops sending mid-body holds a thread forever).
:func:`make_server` keeps Chalice's gateway, so routes, middleware and the app's own
answers are exactly those of ``chalice local``, and changes only the HTTP layer:

- a threading server with a backlog of :data:`REQUEST_QUEUE_SIZE` and daemon threads;
- a per-connection socket timeout (:data:`CONNECTION_TIMEOUT`): a body that stops
  arriving is answered 408, an idle keep-alive connection is closed;
- every error the HTTP layer answers is ``application/json`` ``{"msg": ...}`` (DESIGN §3):
  400 malformed request, 404 unknown route, 405 wrong method (with ``Allow``), 408, 411
  chunked body, 413 body over :data:`MAX_BODY_BYTES`, 414 request line over 65536 bytes,
  431 more than 100 header lines or one over 65536 bytes (``http.client``'s bounds), 501
  unknown method; Chalice's own ``{"Code", "Message"}`` error bodies become ``{"msg"}``;
- a lingering close, so a client whose request was refused before it was read in full
  receives the answer instead of a connection reset.
"""

from __future__ import annotations

import functools
import json
import logging
import socket
import sys
import time
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from chalice.app import Chalice
from chalice.config import Config
from chalice.local import (
    ChaliceRequestHandler,
    CustomLocalChalice,
    LocalChalice,
    LocalDevServer,
    LocalGatewayException,
    RouteMatcher,
)

from chalicelib.domain.errors import clip

log = logging.getLogger(__name__)

JSON = "application/json"

# A connection that sends nothing for this long (the rest of a body, or its next request
# on a keep-alive connection) is answered 408 or closed, and its thread is freed.
CONNECTION_TIMEOUT = 30.0
# Connections the kernel queues while every thread is busy starting (http.server: 5).
REQUEST_QUEUE_SIZE = 128
# API Gateway refuses payloads over 10 MB; local mode refuses the same.
MAX_BODY_BYTES = 10 * 1024 * 1024
# After answering, read and drop what the client still sends, for at most this long and
# this much: closing a socket with unread input sends a reset, which can destroy the
# answer before the client reads it (a refused 70 KB request line, say).
LINGER_SECONDS = 2.0
LINGER_BYTES = 1024 * 1024

# What the errors http.server raises by itself mean, as sentences for {"msg": ...}.
_HTTP_ERRORS = {
    400: "malformed HTTP request",
    408: "request timed out",
    413: "request body too large",
    414: "request line longer than 65536 bytes",
    431: "request headers too large (at most 100 lines of at most 65536 bytes)",
    501: "unsupported HTTP method",
}


class EngineHTTPServer(ThreadingHTTPServer):
    """One daemon thread per connection, a deep listen queue, and a lingering close."""

    request_queue_size = REQUEST_QUEUE_SIZE
    daemon_threads = True

    def shutdown_request(self, request: Any) -> None:
        try:
            request.shutdown(socket.SHUT_WR)
            _drain(request)
        except OSError:
            pass
        self.close_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Called inside the except block of the request's thread.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):  # the client went away: nothing to fix here
            log.info("connection from %s closed by the client: %s", client_address[0], error)
            return
        log.warning("connection from %s ended in error", client_address[0], exc_info=True)


def _drain(connection: socket.socket) -> None:
    deadline = time.monotonic() + LINGER_SECONDS
    received = 0
    while received < LINGER_BYTES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        connection.settimeout(remaining)
        chunk = connection.recv(65536)
        if not chunk:
            return
        received += len(chunk)


class _Refused(Exception):
    """The request was answered with an error; stop handling it."""


class JsonRequestHandler(ChaliceRequestHandler):
    """Chalice's request handler with a socket timeout and JSON answers for every error."""

    error_content_type = JSON
    request_version: str
    # The answer goes out in two writes (headers, then body); with Nagle's algorithm the
    # second waits for the client's delayed ACK of the first: 40 ms on every request of
    # a keep-alive connection. TCP_NODELAY sends it at once.
    disable_nagle_algorithm = True

    def __init__(
        self,
        request: Any,
        client_address: Any,
        server: Any,
        *,
        app_object: Chalice,
        config: Config,
        timeout: float = CONNECTION_TIMEOUT,
    ) -> None:
        # Both are read while the base class's __init__ handles the connection.
        self.timeout = timeout  # StreamRequestHandler.setup applies it to the socket
        self.routes = app_object.routes
        self.route_matcher = RouteMatcher(list(app_object.routes))
        super().__init__(request, client_address, server, app_object=app_object, config=config)

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.request_version == "HTTP/0.9":
            self.send_error(400, "a request line needs an HTTP version ('GET /path HTTP/1.1')")
            return False
        return True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer an error of the HTTP layer as ``{"msg": ...}`` JSON and close."""
        if self.request_version == "HTTP/0.9":
            # http.server would send an HTTP/0.9 answer: a body with no status line.
            self.request_version = "HTTP/1.1"
        summary = _HTTP_ERRORS.get(code) or self.responses.get(code, ("error", ""))[0]
        self.log_error("code %d, message %s", code, message)
        self._send_message(code, f"{summary}: {message}" if message else summary, close=True)

    def _send_message(
        self, code: int, text: str, headers: dict[str, str] | None = None, close: bool = False
    ) -> None:
        body = json.dumps({"msg": text}).encode()
        self.send_response(code)
        if close:
            self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", JSON)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self._send_message(411, "send the request body with a Content-Length", close=True)
            raise _Refused
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return None
        if not length_header.strip().isdigit():
            self._send_message(400, f"invalid Content-Length {length_header!r}", close=True)
            raise _Refused
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            self._send_message(
                413, f"request body of {length} bytes; the limit is {MAX_BODY_BYTES}", close=True
            )
            raise _Refused
        if length == 0:
            return None
        try:
            body: bytes = self.rfile.read(length)
        except TimeoutError:
            self._send_message(
                408,
                f"request timed out: the body stopped arriving ({length} bytes announced, "
                f"nothing for {self.timeout:g} s)",
                close=True,
            )
            raise _Refused from None
        if len(body) < length:  # the client closed its side before sending it all
            self.close_connection = True
            raise _Refused
        return body

    def _check_route(self) -> None:
        path = urlsplit(self.path).path
        try:
            match = self.route_matcher.match_route(self.path)
        except ValueError:
            self._send_message(404, f"no resource at {clip(path)}; the API is under /api/1/")
            raise _Refused from None
        methods = self.routes[match.route]
        # OPTIONS without a route of its own is the CORS preflight Chalice answers.
        if self.command not in methods and self.command != "OPTIONS":
            allowed = ", ".join(sorted(methods))
            self._send_message(
                405,
                f"method {clip(self.command, 40)} not allowed on {clip(path)}; allowed: {allowed}",
                headers={"Allow": allowed},
            )
            raise _Refused

    def _generic_handle(self) -> None:
        try:
            body = self._read_body()
            self._check_route()
        except _Refused:
            return
        try:
            response = self.local_gateway.handle_request(
                method=self.command, path=self.path, headers=dict(self.headers), body=body
            )
        except LocalGatewayException as error:
            self._send_message(error.CODE, _message_of(error.body) or "forbidden")
            return
        except Exception:
            log.exception("unexpected error handling %s %s", self.command, self.path)
            self._send_message(500, "internal error; the engine's log has the details")
            return
        headers = {**response["headers"], **response["multiValueHeaders"]}
        response = self._handle_binary(response)
        status = response["statusCode"]
        body_out = response["body"]
        if status >= 400:
            text = _message_of(body_out)
            if text is not None:  # Chalice's own {"Code", "Message"} error
                body_out = json.dumps({"msg": text})
                headers["Content-Type"] = JSON
        self._send_http_response(status, headers, body_out)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


def _message_of(body: Any) -> str | None:
    """The message of a Chalice or API Gateway error body, or None for any other body."""
    try:
        document = json.loads(body)
    except (TypeError, ValueError):
        return None
    if isinstance(document, dict) and set(document) in ({"Code", "Message"}, {"message"}):
        text = document.get("Message", document.get("message"))
        return text if isinstance(text, str) else None
    return None


def make_server(
    app: Chalice, host: str, port: int, *, timeout: float = CONNECTION_TIMEOUT
) -> LocalDevServer:
    """The local API server for ``app`` on ``host:port``, bound and ready to serve.

    Run it with ``.server.serve_forever()``, stop it with ``.shutdown()`` from another
    thread, then ``.server.server_close()``. ``timeout`` is the per-connection socket
    timeout in seconds. Raises OSError when the address cannot be bound.
    """
    if not isinstance(app, LocalChalice):
        # What create_local_server does: a thread-local current_request, since requests
        # are handled on several threads at once.
        CustomLocalChalice.__bases__ = (LocalChalice, app.__class__)
        app.__class__ = CustomLocalChalice
    config = Config.create(chalice_stage="local", app_name=app.app_name)
    return LocalDevServer(
        app,
        config,
        host,
        port,
        handler_cls=functools.partial(JsonRequestHandler, timeout=timeout),
        server_cls=EngineHTTPServer,
    )
