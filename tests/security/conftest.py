"""An engine on the API (Chalice test client) and a loopback HTTP server that records
what it is sent, for the security tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib.api.context import set_engine
from chalicelib.bootstrap import Engine

PLANNER = {"ref": "exact_planner:ExactPlanner", "args": {"date": "2026-12-01T10:00:00+00:00"}}


@dataclass
class Answer:
    status: int
    text: str

    @property
    def body(self) -> Any:
        return json.loads(self.text) if self.text else None


class Api:
    """The engine's API through Chalice's test client; every answer's text is kept."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.seen: list[str] = []

    def call(self, method: str, path: str, body: Any = None) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        response = getattr(self.client.http, method)(path, body=data, headers=headers)
        answer = Answer(response.status_code, response.body.decode() if response.body else "")
        self.seen.append(answer.text)
        return answer

    def plan(self, attack: dict[str, Any], dry_run: bool = False) -> Answer:
        payload = {"name": "security", "dry_run": dry_run, "attack": attack, "planner": PLANNER}
        return self.call("post", "/api/1/plans/", payload)


@pytest.fixture
def api(engine: Engine) -> Iterator[Api]:
    set_engine(app, engine)
    try:
        with Client(app) as client:
            yield Api(client)
    finally:
        set_engine(app, None)  # type: ignore[arg-type]


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingServer:
    """A loopback HTTP server: records each request, answers what ``answer`` says."""

    url: str
    port: int
    requests: list[Received] = field(default_factory=list)
    answer: Callable[[Received], tuple[int, dict[str, str], bytes]] = lambda request: (
        200,
        {},
        b"",
    )


@pytest.fixture
def recording_server() -> Iterator[RecordingServer]:
    holder: list[RecordingServer] = []

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received = Received(
                self.command, self.path, dict(self.headers.items()), self.rfile.read(length)
            )
            server = holder[0]
            server.requests.append(received)
            status, headers, body = server.answer(received)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = int(httpd.server_address[1])
    holder.append(RecordingServer(url=f"http://127.0.0.1:{port}", port=port))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
