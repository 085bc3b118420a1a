"""The Chalice test client on an engine backed by moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from chalice.test import Client

from app import app
from chalicelib.api.context import set_engine
from chalicelib.bootstrap import Engine
from chalicelib.settings import Settings
from tests.conftest import FIXTURES


@pytest.fixture
def settings() -> Settings:
    return Settings(
        plans_table="test-plans",
        executors_table="test-executors",
        attack_folders=(FIXTURES / "test_attacks",),
    )


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


class Api:
    """A thin wrapper over the Chalice test client that decodes JSON answers."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        *,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        sent = {"Content-Type": content_type} if data is not None else {}
        sent.update(headers or {})
        response = getattr(self.client.http, method)(path, body=data, headers=sent)
        text = response.body.decode() if response.body else ""
        answered = {key.lower(): value for key, value in response.headers.items()}
        return Answer(response.status_code, answered, json.loads(text) if text else None)

    def get(self, path: str) -> Answer:
        return self.call("get", path)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Answer:
        return self.call("post", path, body, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> Answer:
        return self.call("put", path, body, **kwargs)

    def delete(self, path: str) -> Answer:
        return self.call("delete", path)


@pytest.fixture
def api(engine: Engine) -> Iterator[Api]:
    set_engine(app, engine)
    try:
        with Client(app) as client:
            yield Api(client)
    finally:
        set_engine(app, None)  # type: ignore[arg-type]
