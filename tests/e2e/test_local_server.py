"""The local mode's HTTP server holds up: bursts, bad requests, stalled clients, all in JSON."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from app import app
from chalicelib.api.context import set_engine
from chalicelib.bootstrap import Engine
from chalicelib.local.server import make_server
from tests.conftest import free_port
from tests.e2e.conftest import http, wait_for

pytestmark = pytest.mark.e2e

# Short enough for a test to watch it expire; the command uses CONNECTION_TIMEOUT.
TIMEOUT = 1.0


@dataclass
class Server:
    base: str
    port: int

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture
def server(engine: Engine) -> Iterator[Server]:
    set_engine(app, engine)
    port = free_port()
    local = make_server(app, "127.0.0.1", port, timeout=TIMEOUT)
    thread = threading.Thread(target=local.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{port}", port)
    finally:
        local.shutdown()
        local.server.server_close()
        thread.join(timeout=10)
        set_engine(app, None)  # type: ignore[arg-type]


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: Any


def raw_request(port: int, data: bytes) -> RawAnswer:
    """Send ``data`` as is, read until the server closes, parse the one answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(data)
        received = read_until_closed(connection)
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawAnswer(int(status_line.split()[1]), headers, json.loads(body))


def read_until_closed(connection: socket.socket) -> bytes:
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def assert_json_message(answer: RawAnswer, status: int) -> None:
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/json"
    assert isinstance(answer.body["msg"], str)
    assert answer.body["msg"]


def test_twenty_simultaneous_requests_are_all_answered(server: Server) -> None:
    clients = 20
    barrier = threading.Barrier(clients)
    statuses: list[int | str] = []

    def client() -> None:
        barrier.wait(timeout=10)
        try:
            status, _, _ = http("GET", server.url("/api/1/attacks/"))
            statuses.append(status)
        except OSError as error:  # a reset connection
            statuses.append(repr(error))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200] * clients


def test_twenty_connections_wait_in_the_queue_while_the_server_is_busy(engine: Engine) -> None:
    """The kernel keeps a burst of connections until the server accepts them (backlog)."""
    set_engine(app, engine)
    port = free_port()
    local = make_server(app, "127.0.0.1", port, timeout=TIMEOUT)
    connections: list[socket.socket] = []
    thread = threading.Thread(target=local.server.serve_forever, daemon=True)
    try:
        # Not serving yet: every connection waits in the listen queue. Past the backlog
        # the kernel drops the handshake and connect() times out.
        for _ in range(20):
            connections.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        for connection in connections:
            connection.settimeout(10)
            connection.sendall(
                b"GET /api/1/attacks/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
        thread.start()
        answers = [read_until_closed(connection) for connection in connections]
        assert [answer.split(b" ", 2)[1] for answer in answers] == [b"200"] * 20
    finally:
        for connection in connections:
            connection.close()
        if thread.is_alive():
            local.shutdown()
        local.server.server_close()
        set_engine(app, None)  # type: ignore[arg-type]


def test_an_unknown_route_is_a_json_404(server: Server) -> None:
    answer = raw_request(server.port, b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert_json_message(answer, 404)
    assert "/nope" in answer.body["msg"]


def test_an_unknown_long_route_is_quoted_at_most_200_characters(server: Server) -> None:
    path = "/" + "a" * 5000
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    answer = raw_request(server.port, request)
    assert_json_message(answer, 404)
    assert len(answer.body["msg"]) < 300
    assert "more characters" in answer.body["msg"]


def test_a_wrong_method_is_a_json_405_with_allow(server: Server) -> None:
    answer = raw_request(
        server.port, b"PATCH /api/1/attacks/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert_json_message(answer, 405)
    assert answer.headers["allow"] == "GET"
    assert "PATCH" in answer.body["msg"]


def test_an_unknown_method_is_a_json_501(server: Server) -> None:
    answer = raw_request(server.port, b"BREW /api/1/attacks/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert_json_message(answer, 501)


def test_a_70_kb_request_line_is_a_json_414(server: Server) -> None:
    path = "/api/1/attacks/?q=" + "a" * 70_000
    answer = raw_request(server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert_json_message(answer, 414)


def test_two_hundred_headers_are_a_json_431(server: Server) -> None:
    headers = "".join(f"X-Header-{index}: {index}\r\n" for index in range(200))
    answer = raw_request(
        server.port, f"GET /api/1/attacks/ HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode()
    )
    assert_json_message(answer, 431)


@pytest.mark.parametrize(
    "request_line",
    [b"GARBAGE", b"GET /api/1/attacks/ HTTP/one", b"GET /api/1/attacks/", b"A B C D"],
)
def test_a_malformed_request_line_is_a_json_400(server: Server, request_line: bytes) -> None:
    answer = raw_request(server.port, request_line + b"\r\nHost: x\r\n\r\n")
    assert_json_message(answer, 400)


def test_a_bad_content_length_is_a_json_400(server: Server) -> None:
    answer = raw_request(
        server.port, b"POST /api/1/plans/ HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n"
    )
    assert_json_message(answer, 400)
    assert "'ten'" in answer.body["msg"]


def test_a_route_error_keeps_the_api_message(server: Server) -> None:
    status, headers, body = http("POST", server.url("/api/1/plans/"), {"name": "x"})
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert body["msg"].startswith("invalid payload")


def request_threads() -> list[threading.Thread]:
    return [
        thread
        for thread in threading.enumerate()
        if "process_request_thread" in thread.name and thread.is_alive()
    ]


def test_a_client_that_stalls_mid_body_is_answered_408_and_its_thread_freed(
    server: Server,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled:
        stalled.sendall(
            b"POST /api/1/plans/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b'{"name": "'
        )
        wait_for(request_threads, timeout=5, what="the server to take the connection")
        # The server answers and closes once TIMEOUT passes with nothing more sent.
        received = read_until_closed(stalled)
    assert received.startswith(b"HTTP/1.1 408 "), received
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"Content-Type: application/json" in head
    assert "timed out" in json.loads(body)["msg"]
    wait_for(lambda: not request_threads(), timeout=10, what="the request thread to end")
    status, _, _ = http("GET", server.url("/api/1/attacks/"))
    assert status == 200


def test_an_idle_keep_alive_connection_is_closed_after_the_timeout(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
        idle.sendall(b"GET /api/1/attacks/ HTTP/1.1\r\nHost: x\r\n\r\n")
        received = read_until_closed(idle)
    assert received.startswith(b"HTTP/1.1 200 ")
    wait_for(lambda: not request_threads(), timeout=10, what="the request thread to end")


def test_answers_are_not_held_back_by_nagles_algorithm() -> None:
    """Headers and body go out in two writes; with Nagle's algorithm the body waited for
    the client's delayed ACK, 40 ms per request on a keep-alive connection (measured by
    bench/local_scale.py: GET plans/ 44 ms before, 1 ms after)."""
    import socket as sockets

    from chalicelib.local.server import JsonRequestHandler

    assert JsonRequestHandler.disable_nagle_algorithm is True
    probe = sockets.socket()
    try:
        # What StreamRequestHandler.setup does with the flag on this platform.
        probe.setsockopt(sockets.IPPROTO_TCP, sockets.TCP_NODELAY, True)
        assert probe.getsockopt(sockets.IPPROTO_TCP, sockets.TCP_NODELAY)
    finally:
        probe.close()
