"""A loopback HTTP server that records what webhooks send it."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Hook:
    """What the server answers (``status``, a ``location`` for redirects), whether it
    holds each request until ``release`` is set, and what it received."""

    url: str = ""
    status: int = 204
    location: str | None = None
    hold: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    received: queue.Queue[Received] = field(default_factory=queue.Queue)

    def next(self, timeout: float = 10.0) -> Received:
        return self.received.get(timeout=timeout)

    def all(self) -> list[Received]:
        items: list[Received] = []
        while not self.received.empty():
            items.append(self.received.get_nowait())
        return items


@contextmanager
def webhook_server() -> Iterator[Hook]:
    hook = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            hook.received.put(
                Received(
                    "POST",
                    self.path,
                    {key.lower(): value for key, value in self.headers.items()},
                    json.loads(raw) if raw else None,
                )
            )
            if hook.hold:
                hook.release.wait(30)
            self.send_response(hook.status)
            if hook.location:
                self.send_header("Location", hook.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST  # a followed redirect would arrive as a GET

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    hook.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        hook.release.set()
        server.shutdown()
        server.server_close()
