"""A running ``chaos-monkey-engine`` and a recording HTTP server, both on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib import error, request

import pytest

from chalicelib.local.fake_aws import FAKE_AWS
from tests.conftest import FIXTURES, free_port

COMMAND = Path(sys.executable).parent / "chaos-monkey-engine"


def wait_for(condition: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def http(method: str, url: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    call = request.Request(url, data=data, method=method)
    if data is not None:
        call.add_header("Content-Type", "application/json")
    try:
        with request.urlopen(call, timeout=10) as answer:
            text = answer.read().decode()
            return answer.status, dict(answer.headers), json.loads(text) if text else None
    except error.HTTPError as failure:
        text = failure.read().decode()
        return failure.code, dict(failure.headers), json.loads(text) if text else None


@dataclass
class Engine:
    process: subprocess.Popen[str]
    base: str
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None
    # A data directory made for this engine alone, removed when it stops.
    scratch: Path | None = None

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Target:
    """An HTTP server that records requests; /status/<code> answers with that code."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        target = self

        class Handler(BaseHTTPRequestHandler):
            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                target.received.append(Received(self.command, self.path, dict(self.headers), body))
                code = int(self.path.rsplit("/", 1)[-1]) if "/status/" in self.path else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_DELETE = handle_any

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def target() -> Iterator[Target]:
    server = Target()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


# Options that say where the engine keeps its state.
STATE_OPTIONS = ("--data-dir", "-d", "--database-uri", "--store")


def start_engine(*args: str, env: dict[str, str] | None = None) -> Engine:
    """The command on a free port. Unless ``args`` say where its state lives, it gets a
    data directory of its own (never the user's default one), removed when it stops."""
    port = free_port()
    scratch = None
    if not any(arg.split("=")[0] in STATE_OPTIONS for arg in args):
        scratch = Path(tempfile.mkdtemp(prefix="cme-e2e-"))
        args = (*args, "--data-dir", str(scratch))
    environment = {**os.environ, **FAKE_AWS, "PYTHONUNBUFFERED": "1", **(env or {})}
    process = subprocess.Popen(
        [str(COMMAND), "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    engine = Engine(process, f"http://127.0.0.1:{port}", scratch=scratch)
    engine.reader = threading.Thread(target=_collect, args=(process, engine.output), daemon=True)
    engine.reader.start()
    return engine


def wait_until_listening(engine: Engine, timeout: float = 60) -> None:
    """Until the engine says where it listens; fails with its output if it exits first."""
    wait_for(
        lambda: (
            any("listening on" in line for line in engine.output)
            or engine.process.poll() is not None
        ),
        timeout=timeout,
        what="the engine to listen",
    )
    assert engine.process.poll() is None, "\n".join(engine.output)


def _collect(process: subprocess.Popen[str], lines: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip("\n"))


def stop_engine(engine: Engine) -> int:
    if engine.process.poll() is None:
        engine.process.send_signal(signal.SIGTERM)
    try:
        return engine.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        engine.process.kill()
        engine.process.wait(timeout=10)
        raise
    finally:
        _release(engine)


def kill_engine(engine: Engine) -> int:
    """SIGKILL: the engine dies at once, as in a crash, with no chance to tidy up."""
    if engine.process.poll() is None:
        engine.process.send_signal(signal.SIGKILL)
    try:
        return engine.process.wait(timeout=20)
    finally:
        _release(engine)


def _release(engine: Engine) -> None:
    if engine.reader is not None:
        engine.reader.join(timeout=10)
    if engine.process.stdout is not None:
        engine.process.stdout.close()
    if engine.scratch is not None:
        shutil.rmtree(engine.scratch, ignore_errors=True)


@pytest.fixture
def running_engine() -> Iterator[Engine]:
    """The command with the 2017-style plugin folders added."""
    plugins = FIXTURES / "plugins_2017"
    engine = start_engine("-a", str(plugins / "attacks"), "-l", str(plugins / "planners"))
    try:
        wait_until_listening(engine)
        yield engine
    finally:
        stop_engine(engine)
