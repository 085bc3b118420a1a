"""What the API and the logs never give away: secrets by value, a caller's megabyte, the
Authorization header, the names of tables and requests behind a 503."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib import error, request

import pytest
from chalice.test import Client

from app import app
from chalicelib import logfmt
from chalicelib.api.context import set_engine
from chalicelib.bootstrap import Engine
from chalicelib.domain.errors import StorageError
from chalicelib.local.server import make_server
from tests.api.conftest import Api
from tests.conftest import FixedClock

PASSWORD = "hunter2"
TOKEN = "abc-t0k3n"
API_KEY = "k3y-v4lu3"
SECRETS = (PASSWORD, TOKEN, API_KEY)
MEGABYTE = "x" * 1_000_000
# Under the request body limit (a megabyte body is refused whole, 413).
BIG = "x" * 100_000
# shown() quotes at most 200 characters: the quote and 199 of the value.
TOO_MUCH = "x" * 201


@pytest.fixture
def failing_endpoint() -> Iterator[int]:
    """A server on 127.0.0.1 that answers every request 500."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def leaky_plan(port: int) -> dict[str, Any]:
    endpoint = f"http://u:{PASSWORD}@127.0.0.1:{port}/x?token={TOKEN}&q=1"
    return {
        "name": "leaky",
        "attack": {
            "ref": "api_request:ApiRequest",
            "args": {
                "endpoint": endpoint,
                "method": "GET",
                "headers": {"X-Api-Key": API_KEY},
                "expected_status": [200],
                "timeout": 5,
            },
        },
        "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": "2026-12-01T12:00"}},
    }


def assert_hidden(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


class TestSecretsByValue:
    @pytest.fixture
    def ran(  # noqa: PLR0917 - pytest passes fixtures by name
        self,
        api: Api,
        engine: Engine,
        clock: FixedClock,
        failing_endpoint: int,
        scrubbed_logs: None,
        caplog: pytest.LogCaptureFixture,
    ) -> tuple[str, str]:
        """A plan whose endpoint carries a password and a token, run once (it fails)."""
        for name in ("", "urllib3", "botocore", "requests"):
            caplog.set_level(logging.DEBUG, logger=name or None)
        answer = api.post("/api/1/plans/", leaky_plan(failing_endpoint))
        assert answer.status == 200, answer.body
        plan_id = str(answer.body["id"])
        executor = engine.plans.get(plan_id).executors.items[0]
        clock.current = executor.next_run_time
        engine.runner.run(executor.id)
        return plan_id, executor.id

    def test_the_stored_outcome_holds_no_secret(self, ran: tuple[str, str], engine: Engine):
        stored = engine.store.get_executor(ran[1])
        assert stored is not None
        assert stored.status.value == "failed"
        assert "answered 500" in (stored.error or "")
        assert "<redacted>" in (stored.error or "")
        assert_hidden(json.dumps([stored.error, stored.result, stored.reason]))

    def test_no_response_shows_them(self, ran: tuple[str, str], api: Api):
        plan_id, executor_id = ran
        for path in (
            f"/api/1/plans/{plan_id}",
            "/api/1/plans/?all=true",
            f"/api/1/executors/{executor_id}",
            "/api/1/executors/?executed=true",
        ):
            answer = api.get(path)
            assert answer.status == 200
            assert_hidden(json.dumps(answer.body))
        shown = api.get(f"/api/1/executors/{executor_id}").body
        assert shown["attack"]["args"]["headers"] == {"X-Api-Key": "<redacted>"}
        assert shown["attack"]["args"]["endpoint"].startswith("http://u:<redacted>@127.0.0.1:")
        assert shown["attack"]["args"]["endpoint"].endswith("/x?token=<redacted>&q=1")

    def test_no_log_line_shows_them(self, ran: tuple[str, str], caplog: pytest.LogCaptureFixture):
        records = caplog.get_records("setup")  # the plan ran in the fixture
        # Every message, and every line of the engine's handler with its fields.
        formatter = logfmt.FieldsFormatter()
        text = "\n".join(f"{r.getMessage()}\n{formatter.format(r)}" for r in records)
        # urllib3 logged the request line, query string included, at DEBUG.
        assert any(r.name.startswith("urllib3") for r in records), text
        assert "token=<redacted>&q=1" in text
        assert_hidden(text)

    def test_an_outcome_stored_before_redaction_is_masked_when_shown(
        self, ran: tuple[str, str], api: Api, engine: Engine, monkeypatch: pytest.MonkeyPatch
    ):
        stored = engine.store.get_executor(ran[1])
        assert stored is not None
        raw = stored.__class__(
            **{
                **stored.__dict__,
                "error": f"GET http://u:{PASSWORD}@h/?token={TOKEN} answered 500",
                "result": {"endpoint": f"http://h/?api_key={API_KEY}"},
                "reason": f"Bearer {TOKEN}",
            }
        )
        monkeypatch.setattr(engine.store, "get_executor", lambda executor_id: raw)
        assert_hidden(json.dumps(api.get(f"/api/1/executors/{ran[1]}").body))


class TestMessagesQuoteLittle:
    def test_a_megabyte_body_is_refused_without_being_quoted(self, api: Api):
        payload = {
            "name": MEGABYTE,
            "attack": {"ref": "scripted:Scripted", "args": {"mode": MEGABYTE}},
            "planner": {"ref": MEGABYTE, "args": {}},
        }
        answer = api.post("/api/1/plans/", payload)
        assert 400 <= answer.status < 500
        assert TOO_MUCH not in answer.body["msg"]

    def test_a_megabyte_that_fails_a_schema_is_quoted_200_characters(self, api: Api):
        payload = {
            "name": "big",
            "attack": {"ref": "scripted:Scripted", "args": {"mode": BIG}},
            "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": "2026-12-01T12:00"}},
        }
        answer = api.post("/api/1/plans/", payload)
        assert answer.status == 400
        message = answer.body["msg"]
        assert "attack.args.mode" in message
        assert TOO_MUCH not in message
        assert len(message) < 500

    @pytest.mark.parametrize(
        "planner",
        [
            {"ref": BIG, "args": {}},
            {"ref": "exact_planner:ExactPlanner", "args": {"date": BIG}},
        ],
        ids=["unknown-ref", "date"],
    )
    def test_plan_fields_are_quoted_200_characters(self, api: Api, planner: dict[str, Any]):
        payload = {"name": "big", "attack": {"ref": "scripted:Scripted", "args": {"mode": "ok"}}}
        answer = api.post("/api/1/plans/", {**payload, "planner": planner})
        assert answer.status == 400
        assert TOO_MUCH not in answer.body["msg"]
        assert len(answer.body["msg"]) < 1000

    @pytest.mark.parametrize(
        "trigger",
        [{"type": BIG, "args": {}}, {"type": "date", "args": {"date": BIG}}],
        ids=["trigger-type", "date"],
    )
    def test_reschedule_fields_are_quoted_200_characters(
        self, api: Api, engine: Engine, trigger: dict[str, Any]
    ):
        answer = api.post(
            "/api/1/plans/",
            {
                "name": "small",
                "attack": {"ref": "scripted:Scripted", "args": {"mode": "ok"}},
                "planner": {
                    "ref": "exact_planner:ExactPlanner",
                    "args": {"date": "2026-12-01T12:00"},
                },
            },
        )
        executor = engine.plans.get(str(answer.body["id"])).executors.items[0]
        refused = api.put(f"/api/1/executors/{executor.id}", trigger)
        assert refused.status == 400
        assert TOO_MUCH not in refused.body["msg"]
        assert len(refused.body["msg"]) < 1000

    def test_a_cursor_is_quoted_briefly(self, api: Api):
        answer = api.get(f"/api/1/executors/?cursor={'x' * 100_000}")
        assert answer.status == 400
        assert "x" * 81 not in answer.body["msg"]


class TestBackendFailures:
    def test_a_storage_error_is_a_generic_503_and_the_detail_is_logged(
        self, api: Api, engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog
    ):
        detail = (
            "GetItem on table cme-prod-plans failed: ProvisionedThroughputExceededException "
            "(RequestId: 4KJ2ABCD)"
        )

        def broken(plan_id: str) -> None:
            raise StorageError(detail)

        monkeypatch.setattr(engine.store, "get_plan", broken)
        with caplog.at_level(logging.ERROR, logger="chalicelib.api.errors"):
            answer = api.get("/api/1/plans/p-1")
        assert answer.status == 503
        assert answer.headers["content-type"] == "application/json"
        message = answer.body["msg"]
        assert message.startswith("storage unavailable; try again")
        for internal in ("cme-prod-plans", "4KJ2ABCD", "Provisioned", "GetItem"):
            assert internal not in message
        (record,) = [r for r in caplog.records if r.name == "chalicelib.api.errors"]
        assert detail in record.getMessage()
        assert record.error_reference in message


# -- the Authorization header ---------------------------------------------------------------

SIGV4 = "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/s3cr3t-sig"


@pytest.fixture
def token_engine(engine: Engine) -> Iterator[Engine]:
    engine.settings = type(engine.settings)(**{**engine.settings.__dict__, "api_token": "t"})
    set_engine(app, engine)
    try:
        yield engine
    finally:
        set_engine(app, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("header", [f"Bearer {SIGV4}", SIGV4, "Basic czNjcjN0LXNpZw=="])
def test_a_refused_token_is_not_echoed(token_engine: Engine, header: str):
    with Client(app) as client:
        response = client.http.get("/api/1/attacks", headers={"Authorization": header})
    assert response.status_code == 401
    body = response.body.decode()
    assert "s3cr3t" not in body
    assert "czNjcjN0" not in body
    assert header not in json.dumps(dict(response.headers))


@pytest.fixture
def local_server(token_engine: Engine) -> Iterator[str]:
    """The local mode's HTTP server on 127.0.0.1 (a free port), with a bearer token."""
    server = make_server(app, "127.0.0.1", 0)
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server.server_address[1]}"
    finally:
        server.shutdown()
        server.server.server_close()
        thread.join()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/1/attacks"),
        ("GET", "/api/1/nope"),
        ("GET", "/nothing/here"),
        ("POST", "/api/1/attacks"),
        ("DELETE", "/api/1/plans/x"),
    ],
)
def test_the_local_server_never_echoes_the_authorization_header(
    local_server: str, method: str, path: str
):
    call = request.Request(
        local_server + path, method=method, headers={"Authorization": f"Bearer {SIGV4}"}
    )
    try:
        with request.urlopen(call, timeout=10) as answer:
            status, body = answer.status, answer.read().decode()
    except error.HTTPError as refused:
        status, body = refused.code, refused.read().decode()
    assert status in (401, 403, 404, 405)
    assert "s3cr3t" not in body
    assert "AKIAEXAMPLE" not in body
    assert "msg" in json.loads(body)
