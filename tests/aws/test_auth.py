"""Who may call the API: IAM / API keys when deployed, a bearer token in local mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib import error, request

import pytest
from chalice.test import Client

from chalicelib.api.auth import is_loopback
from chalicelib.api.context import set_engine
from chalicelib.bootstrap import Engine
from chalicelib.local import cli
from chalicelib.local.fake_aws import FAKE_AWS
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "correct-horse-battery-staple"
EVERYWHERE = "0.0.0.0"  # noqa: S104 - parsed, never bound

ROUTES_BY_MODE = """
import json, os
from app import app
print(json.dumps([
    [path, method, type(entry.authorizer).__name__ if entry.authorizer else None,
     bool(entry.api_key_required)]
    for path, methods in app.routes.items() for method, entry in methods.items()
]))
"""


def routes_under(mode: str) -> subprocess.CompletedProcess[str]:
    """Import the app in a fresh interpreter, as `chalice package` does for a stage."""
    env = {**os.environ, **FAKE_AWS, "CME_AUTH": mode}
    return subprocess.run(
        [sys.executable, "-c", ROUTES_BY_MODE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_iam_mode_puts_the_iam_authorizer_on_every_route():
    result = routes_under("iam")
    routes = json.loads(result.stdout)
    assert len(routes) >= 10
    assert all(authorizer == "IAMAuthorizer" for _, _, authorizer, _ in routes), routes


def test_api_key_mode_requires_a_key_on_every_route():
    routes = json.loads(routes_under("api_key").stdout)
    assert all(key and authorizer is None for _, _, authorizer, key in routes), routes


def test_local_mode_has_no_gateway_authorization():
    routes = json.loads(routes_under("none").stdout)
    assert not any(authorizer or key for _, _, authorizer, key in routes), routes


def test_an_unknown_mode_stops_the_import_with_the_choices():
    result = routes_under("sometimes")
    assert result.returncode != 0
    assert "CME_AUTH 'sometimes' is not one of none, iam, api_key" in result.stderr


# -- the bearer token -----------------------------------------------------------------------


@pytest.fixture
def guarded_app(chalice_app: Any, engine: Engine) -> Any:
    engine.settings = type(engine.settings)(**{**engine.settings.__dict__, "api_token": TOKEN})
    set_engine(chalice_app, engine)
    return chalice_app


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
)
def test_requests_without_the_token_get_401_json(guarded_app: Any, headers: dict[str, str]):
    with Client(guarded_app) as client:
        response = client.http.get("/api/1/attacks", headers=headers)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert "bearer token" in json.loads(response.body)["msg"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_requests_with_the_token_are_served(guarded_app: Any):
    with Client(guarded_app) as client:
        response = client.http.get("/api/1/attacks", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200


def test_without_a_configured_token_nothing_is_asked(chalice_app: Any, engine: Engine):
    set_engine(chalice_app, engine)
    with Client(chalice_app) as client:
        assert client.http.get("/api/1/attacks").status_code == 200


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        (EVERYWHERE, False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.org", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool):
    assert is_loopback(host) is loopback


def test_a_public_host_without_a_token_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.delenv("CME_API_TOKEN", raising=False)
    assert cli.main(["--host", EVERYWHERE]) == 2
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert len(error_lines) == 1
    assert "--token" in error_lines[0]
    assert "CME_API_TOKEN" in error_lines[0]


def test_the_token_comes_from_the_option_or_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CME_API_TOKEN", raising=False)
    options = cli.parser().parse_args(["--host", EVERYWHERE, "--token", "from-option"])
    assert cli.settings_from(options).api_token == "from-option"
    monkeypatch.setenv("CME_API_TOKEN", "from-env")
    options = cli.parser().parse_args(["--host", EVERYWHERE])
    assert cli.settings_from(options).api_token == "from-env"
    options = cli.parser().parse_args([])
    assert cli.settings_from(options).api_token == "from-env"


# -- the real command ------------------------------------------------------------------------


def get(url: str, headers: dict[str, str]) -> tuple[int, Any]:
    try:
        with request.urlopen(request.Request(url, headers=headers), timeout=5) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except error.HTTPError as failure:
        return failure.code, json.loads(failure.read() or b"null")


@pytest.fixture
def guarded_command() -> Iterator[str]:
    port = free_port()
    env = {**os.environ, **FAKE_AWS, "CME_API_TOKEN": TOKEN}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "chaos-monkey-engine"), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}/api/1/attacks"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                get(base, {})
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("chaos-monkey-engine did not start within 60 s") from None
                time.sleep(0.05)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout:
            process.stdout.close()


@pytest.mark.e2e
def test_the_command_with_a_token_refuses_requests_without_it(guarded_command: str):
    status, body = get(guarded_command, {})
    assert status == 401
    assert set(body) == {"msg"}
    status, body = get(guarded_command, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    assert "attacks" in body


def test_an_engine_that_cannot_be_built_answers_500_json(
    chalice_app: Any, monkeypatch: pytest.MonkeyPatch
):
    def broken(settings: Any) -> Engine:
        raise RuntimeError("no tables")

    monkeypatch.delattr(chalice_app, "cme_engine", raising=False)
    monkeypatch.setattr("chalicelib.bootstrap.build_aws_engine", broken)
    with Client(chalice_app) as client:
        response = client.http.get("/api/1/attacks")
    assert response.status_code == 500
    assert json.loads(response.body) == {"msg": "internal error; the engine's log has the details"}


def test_a_stage_cannot_set_a_bearer_token_that_would_fight_sigv4():
    from chalicelib.settings import Settings

    assert Settings.from_env({"CME_API_TOKEN": "x"}).api_token is None
