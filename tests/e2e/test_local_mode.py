"""The chaos-monkey-engine command, end to end, as a new user runs it."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import COMMAND, Engine, Target, http, start_engine, stop_engine, wait_for

pytestmark = pytest.mark.e2e


def soon(seconds: float = 2) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def api_request_plan(endpoint: str, **args: Any) -> dict[str, Any]:
    return {
        "name": "call the target",
        "attack": {
            "ref": "api_request:ApiRequest",
            "args": {
                "endpoint": endpoint,
                "method": "POST",
                "headers": {"X-Chaos": "yes"},
                "payload": {"test": "1"},
                **args,
            },
        },
        "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": soon()}},
    }


def executor_of(engine: Engine, plan_id: str) -> dict[str, Any]:
    status, _, plan = http("GET", engine.url(f"/api/1/plans/{plan_id}"))
    assert status == 200
    [executor] = plan["_embedded"]["executors"]
    return dict(executor)


def finished(engine: Engine, executor_id: str) -> dict[str, Any] | None:
    _, _, executor = http("GET", engine.url(f"/api/1/executors/{executor_id}"))
    return executor if executor["executed"] else None


def test_announces_where_it_listens_and_serves_the_catalogues(running_engine: Engine) -> None:
    [line] = [line for line in running_engine.output if "listening on" in line]
    assert line.endswith(running_engine.base)
    status, headers, body = http("GET", running_engine.url("/api/1/attacks/"))
    assert status == 200
    assert headers["Content-Type"] == "application/hal+json"
    refs = {attack["ref"] for attack in body["attacks"]}
    assert {"api_request:ApiRequest", "my_attack:MyAttack"} <= refs
    _, _, planners = http("GET", running_engine.url("/api/1/planners/"))
    assert {"exact_planner:ExactPlanner", "my_planner:MyPlanner"} <= {
        planner["ref"] for planner in planners["planners"]
    }


def test_an_api_request_runs_at_its_time_and_succeeds(
    running_engine: Engine, target: Target
) -> None:
    status, headers, created = http(
        "POST", running_engine.url("/api/1/plans/"), api_request_plan(target.url("/hit"))
    )
    assert status == 200, created
    assert headers["Location"] == f"/api/1/plans/{created['id']}"
    executor = executor_of(running_engine, created["id"])
    assert executor["status"] == "scheduled"
    _, _, pending = http("GET", running_engine.url("/api/1/executors/"))
    assert executor["id"] in [e["id"] for e in pending["_embedded"]["executors"]]

    done = wait_for(lambda: finished(running_engine, executor["id"]), what="the executor to run")
    assert done["status"] == "succeeded", done
    assert done["result"]["status_code"] == 200
    assert done["result"]["elapsed_ms"] >= 0
    [received] = target.received
    assert received.method == "POST"
    assert received.path == "/hit"
    assert received.headers["X-Chaos"] == "yes"
    assert received.headers["Content-Type"] == "application/json"
    assert json.loads(received.body) == {"test": "1"}

    _, _, plan = http("GET", running_engine.url(f"/api/1/plans/{created['id']}"))
    assert plan["executed"] is True
    assert plan["status_counts"]["succeeded"] == 1
    _, _, executed = http("GET", running_engine.url("/api/1/executors/?executed=true"))
    assert executor["id"] in [e["id"] for e in executed["_embedded"]["executors"]]


def test_an_unexpected_status_fails_the_executor(running_engine: Engine, target: Target) -> None:
    plan = api_request_plan(target.url("/status/500"), expected_status=[200])
    _, _, created = http("POST", running_engine.url("/api/1/plans/"), plan)
    executor = executor_of(running_engine, created["id"])
    done = wait_for(lambda: finished(running_engine, executor["id"]), what="the executor to run")
    assert done["status"] == "failed"
    assert "500" in done["error"]
    assert done["result"]["status_code"] == 500
    assert len(target.received) == 1


def test_sigterm_stops_it_cleanly(target: Target) -> None:
    engine = start_engine()
    wait_for(lambda: any("listening on" in line for line in engine.output), what="listening")
    assert stop_engine(engine) == 0
    assert not any("Traceback" in line for line in engine.output)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--timezone", "Mars/Olympus"], "unknown timezone 'Mars/Olympus'"),
        (["-t", "Europe/Nowhere"], "unknown timezone"),
        (
            ["--attacks-folder", "/no/such/folder"],
            "attacks folder '/no/such/folder' does not exist",
        ),
        (["-l", "/no/such/planners"], "planners folder '/no/such/planners' does not exist"),
    ],
)
def test_bad_options_are_one_line_errors_with_exit_code_2(args: list[str], words: str) -> None:
    done = subprocess.run(
        [str(COMMAND), *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert words in lines[0]


def test_help_gives_each_short_option_to_one_option() -> None:
    done = subprocess.run(
        [str(COMMAND), "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "-p PORT, --port PORT" in done.stdout
    assert "-l FOLDER, --planners-folder FOLDER" in done.stdout
    assert "-a FOLDER, --attacks-folder FOLDER" in done.stdout
    assert "-t TIMEZONE, --timezone TIMEZONE" in done.stdout
