"""Fixtures for the deployed path: moto's Scheduler, an EventBridge-backed engine, a target."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib.adapters.eventbridge import EventBridgeScheduler, ScheduleTarget
from chalicelib.bootstrap import Engine, build_engine
from chalicelib.settings import Settings
from tests.conftest import FixedClock

ACCOUNT = "123456789012"  # moto's account
# What the EventBridge adapter takes as "now" unless a test gives it a clock: the start
# of tests.conftest's fixed clock, so that schedules in these tests are ahead of it.
ADAPTER_NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
REGION = "eu-west-1"
GROUP = "cme-test"
TARGET = ScheduleTarget(
    attack_function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:cme-test-attack",
    role_arn=f"arn:aws:iam::{ACCOUNT}:role/cme-test-scheduler",
    dead_letter_arn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:cme-test-dead-letters",
)


def throttled(operation: str) -> Exception:
    error: Exception = ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, operation
    )
    return error


class FlakyClient:
    """A real (moto) scheduler client with failures injected by a callback.

    ``fail(operation, call_number, request)`` returns an exception to raise instead of
    calling moto, or None. ``calls`` records every request in order.
    """

    def __init__(
        self, client: Any, fail: Callable[[str, int, dict[str, Any]], Exception | None]
    ) -> None:
        self._client = client
        self._fail = fail
        self._lock = threading.Lock()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        method = getattr(self._client, operation)

        def call(**request: Any) -> Any:
            with self._lock:
                self.calls.append((operation, request))
                number = sum(1 for name, _ in self.calls if name == operation)
            error = self._fail(operation, number, request)
            if error is not None:
                raise error
            return method(**request)

        return call


@pytest.fixture
def scheduler_client(aws: None) -> Any:
    client = boto3.client("scheduler", region_name=REGION)
    client.create_schedule_group(Name=GROUP)
    return client


@dataclass
class Sleeps:
    """Stands in for time.sleep in the adapter: records, never waits."""

    seconds: list[float] = field(default_factory=list)

    def __call__(self, delay: float) -> None:
        self.seconds.append(delay)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_scheduler(scheduler_client: Any, sleeps: Sleeps) -> Callable[..., EventBridgeScheduler]:
    def make(client: Any = None, **overrides: Any) -> EventBridgeScheduler:
        options: dict[str, Any] = {
            "client_factory": lambda: client or scheduler_client,
            "target_factory": lambda: TARGET,
            "group": GROUP,
            "allowed_lateness": timedelta(minutes=10),
            "rate_per_second": 0,
            "sleep": sleeps,
            "now": lambda: ADAPTER_NOW,
        }
        options.update(overrides)
        return EventBridgeScheduler(**options)

    return make


def schedule_names(client: Any, group: str = GROUP) -> list[str]:
    names: list[str] = []
    for page in client.get_paginator("list_schedules").paginate(GroupName=group):
        names.extend(item["Name"] for item in page["Schedules"])
    return sorted(names)


@pytest.fixture
def aws_settings() -> Settings:
    return Settings(
        plans_table="cme-test-plans",
        executors_table="cme-test-executors",
        control_table="cme-test-control",
        schedule_group=GROUP,
        allowed_lateness=timedelta(minutes=2),
    )


@pytest.fixture
def aws_engine_on(
    aws: None, aws_settings: Settings, clock: FixedClock, scheduler_client: Any, sleeps: Sleeps
) -> Callable[..., Engine]:
    """Build an engine on moto's DynamoDB and the EventBridge adapter (optionally flaky)."""
    from chalicelib.adapters.dynamo import DynamoStore

    store = DynamoStore(aws_settings)
    store.create_tables()

    def build(client: Any = None) -> Engine:
        def scheduler(runner: object) -> EventBridgeScheduler:
            return EventBridgeScheduler(
                client_factory=lambda: client or scheduler_client,
                target_factory=lambda: TARGET,
                group=GROUP,
                allowed_lateness=aws_settings.allowed_lateness,
                concurrency=4,
                rate_per_second=0,
                plan_deadline=aws_settings.plan_deadline,
                now=clock.now,
                sleep=sleeps,
            )

        return build_engine(aws_settings, store, scheduler, clock)

    return build


@pytest.fixture
def chalice_app() -> Iterator[Any]:
    """The Chalice app, with whatever engine a test gives it removed afterwards."""
    from app import app

    before = getattr(app, "cme_engine", None)
    yield app
    if before is None:
        if hasattr(app, "cme_engine"):
            delattr(app, "cme_engine")
    else:
        setattr(app, "cme_engine", before)  # noqa: B010


@dataclass
class Target:
    """An HTTP endpoint on 127.0.0.1 that counts the requests an attack sends it."""

    url: str
    hits: list[str]


@pytest.fixture
def http_target() -> Iterator[Target]:
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Target(f"http://127.0.0.1:{server.server_address[1]}/attack", hits)
    finally:
        server.shutdown()
        server.server_close()
