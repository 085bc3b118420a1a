"""The README's Quickstart, run as written (bash, GNU date, curl) against a running engine."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.conftest import Engine, http, start_engine, stop_engine, wait_for

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"


def quickstart_blocks() -> list[str]:
    """The ```sh blocks of the README's Quickstart section, in order."""
    text = README.read_text()
    start = text.index("## Quickstart")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)


@pytest.fixture
def demo_engine() -> Iterator[Engine]:
    """The command as the Quickstart's last example starts it (``--demo``)."""
    engine = start_engine("--demo")
    try:
        wait_for(
            lambda: (
                any("listening on" in line for line in engine.output)
                or engine.process.poll() is not None
            ),
            what="the engine to listen",
        )
        assert engine.process.poll() is None, "\n".join(engine.output)
        yield engine
    finally:
        stop_engine(engine)


def executed(engine: Engine) -> list[dict[str, Any]]:
    _, _, body = http("GET", engine.url("/api/1/executors/?executed=true"))
    return list(body["_embedded"]["executors"])


def test_the_quickstart_blocks_are_found() -> None:
    blocks = quickstart_blocks()
    script = "".join(blocks)
    assert len(blocks) >= 4
    assert "cat > plan.json" in script
    assert script.count("curl -X POST") == 3


def test_the_quickstart_runs_as_written(demo_engine: Engine, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    if datetime.now(ZoneInfo("Europe/Madrid")).strftime("%H:%M") == "23:59":
        pytest.skip("the README says: in the last minute of the day in Madrid, wait a minute")
    port = demo_engine.base.rsplit(":", 1)[1]
    blocks = quickstart_blocks()
    script = "\n".join(blocks)
    script = script.replace("localhost:5000", f"127.0.0.1:{port}")
    script = script.replace("127.0.0.1:5000", f"127.0.0.1:{port}")
    # Every curl of the README must get a 2xx answer, or the script stops there.
    preamble = (
        'set -eu\ncurl() { command curl --silent --show-error --fail-with-body "$@"; echo; }\n'
    )
    run = subprocess.run(
        ["bash", "-c", preamble + script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-1500:] + run.stderr  # the catalogues are long

    # The shell-computed plan was valid JSON with a window of today in Madrid.
    plan = json.loads((tmp_path / "plan.json").read_text())
    window = plan["planner"]["args"]
    assert re.fullmatch(r"\d\d:\d\d", window["min_time"]), window
    assert window["min_time"] < window["max_time"], window
    answers = [json.loads(line) for line in run.stdout.splitlines() if '"msg": "ok"' in line]
    assert len(answers) == script.count("curl -X POST") == 3

    # The exact-planner examples run ten seconds later, and do what the README says.
    exact = {"Poke it once, now", "Terminate random running instance"}

    def both_ran() -> list[dict[str, Any]] | None:
        done = [e for e in executed(demo_engine) if e["name"] in exact]
        return done if len(done) == len(exact) else None

    by_name = {e["name"]: e for e in wait_for(both_ran, timeout=60, what="the exact plans")}
    poke = by_name["Poke it once, now"]
    assert poke["status"] == "succeeded", poke
    assert poke["result"]["status_code"] == 200
    terminate = by_name["Terminate random running instance"]
    assert terminate["status"] == "succeeded", terminate
    result = terminate["result"]
    assert result["instance"]["name"] in ("demo-web-1", "demo-web-2", "demo-web-3")
    assert [target["id"] for target in result["targets"]] == [result["instance"]["id"]]

    # What the README says of the demo: the filter matched all four running instances,
    # the engine spared demo-db-1 (exclude tag, no opt-in tag), and only one web
    # instance was terminated; the db instance was never touched.
    states = demo_instances(demo_engine)
    db_id = next(i for i, (name, _) in states.items() if name == "demo-db-1")
    assert (result["selection"]["matched"], result["selection"]["eligible"]) == (4, 3)
    assert result["selection"]["spared"] == [
        {"id": db_id, "why": "carries the exclude tag chaos-monkey-engine-exclude"}
    ]
    assert states[db_id] == ("demo-db-1", "running")
    assert [name for name, state in states.values() if state != "running"] == [
        result["instance"]["name"]
    ]


def demo_instances(engine: Engine) -> dict[str, tuple[str, str]]:
    """Instance id -> (Name tag, state) in the engine's moto EC2 (the endpoint it printed)."""
    import boto3

    line = next(line for line in engine.output if "EC2 targets: moto at " in line)
    endpoint = line.split("moto at ")[1].split(" ")[0].rstrip(";")
    client = boto3.client("ec2", endpoint_url=endpoint, region_name="eu-west-1")
    found = {}
    for reservation in client.describe_instances()["Reservations"]:
        for instance in reservation["Instances"]:
            tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
            found[instance["InstanceId"]] = (tags.get("Name", ""), instance["State"]["Name"])
    return found
