"""Local mode's attack targets: moto's EC2 by default, --demo instances, --real-aws-targets."""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib import request

import boto3
import pytest
from moto import mock_aws
from moto.core.config import passthrough_service

from chalicelib.domain.safety import TargetTags
from chalicelib.local import cli
from chalicelib.local import targets as local_targets
from chalicelib.local.fake_aws import FAKE_AWS
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[3]
REGION = FAKE_AWS["AWS_DEFAULT_REGION"]
QUICKSTART_ATTACK = {
    "ref": "terminate_ec2_instance:TerminateEC2Instance",
    "args": {"filters": {"instance-state-name": "running"}},
}


def options(*argv: str) -> argparse.Namespace:
    return cli.parser().parse_args(list(argv))


# --- the pieces, in-process -----------------------------------------------------------------


def test_moto_answers_are_reworded_like_real_ec2() -> None:
    moto = (
        b'<?xml version="1.0"?><RebootInstancesResponse '
        b'xmlns="http://ec2.amazonaws.com/doc/2016-11-15"><requestId>r</requestId>'
        b"</RebootInstancesResponse>"
    )

    reworded = local_targets.like_real_ec2(moto)

    assert reworded == (
        b'<?xml version="1.0"?><RebootInstancesResponse '
        b'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId>'
        b"<return>true</return></RebootInstancesResponse>"
    )
    assert local_targets.like_real_ec2(b'{"TableNames": []}') == b'{"TableNames": []}'


def test_by_default_every_fake_variable_is_set() -> None:
    targets = local_targets.from_options(options("--demo"))

    assert targets == local_targets.Targets(real_aws=False, demo=True)
    assert local_targets.environment(targets, FAKE_AWS) == FAKE_AWS
    # moto mocks every service and leaves os.environ alone (set once, at start).
    assert local_targets.mock_config(targets) == {
        "core": {**local_targets.mock_config(targets)["core"], "mock_credentials": False}
    }
    assert local_targets.mock_config(targets)["core"]["passthrough"]["services"] == []


def test_real_targets_keep_the_environment_credentials_and_region() -> None:
    targets = local_targets.from_options(options("--real-aws-targets"))

    variables = local_targets.environment(targets, FAKE_AWS)

    assert variables == {"AWS_EC2_METADATA_DISABLED": "true"}


def test_real_targets_let_attack_services_through_moto_but_not_storage() -> None:
    config = local_targets.mock_config(local_targets.Targets(real_aws=True))

    with mock_aws(config=config):
        assert passthrough_service("ec2")
        assert passthrough_service("ssm")
        assert passthrough_service("secretsmanager")
        assert not passthrough_service("dynamodb")
        # moto must not swap the real credentials for its own while it runs.
        assert os.environ["AWS_ACCESS_KEY_ID"] == FAKE_AWS["AWS_ACCESS_KEY_ID"]
    assert not passthrough_service("ec2")


def test_demo_and_real_targets_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--demo", "--real-aws-targets"]) == 2
    assert "cannot be combined with --real-aws-targets" in capsys.readouterr().err


def test_real_targets_without_credentials_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in local_targets.CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setattr(cli, "serve", lambda *args: pytest.fail("must not start"))

    assert cli.main(["--real-aws-targets", "--port", str(free_port())]) == 2
    assert "--real-aws-targets: no AWS credentials" in capsys.readouterr().err


def test_real_targets_without_a_region_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in local_targets.REGION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setattr(cli, "serve", lambda *args: pytest.fail("must not start"))

    assert cli.main(["--real-aws-targets", "--port", str(free_port())]) == 2
    assert "set AWS_DEFAULT_REGION" in capsys.readouterr().err


def test_local_targets_serve_moto_ec2_with_the_demo_instances(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = dict(os.environ)
    with mock_aws():
        running = local_targets.start(local_targets.Targets(demo=True), REGION)
        try:
            endpoint = running.ec2_endpoint
            seen_in_process = boto3.client("ec2").describe_instances()["Reservations"]
            from chalicelib.adapters.ec2 import EC2Instances

            found = EC2Instances(REGION, endpoint=endpoint).find({"tag:Chaos": "true"})
            everything = EC2Instances(REGION, endpoint=endpoint).find({"tag-key": "Name"})
        finally:
            running.stop()

    assert endpoint is not None
    assert endpoint.startswith("http://127.0.0.1:")
    assert running.simulated_ec2
    assert sorted(instance.name or "" for instance in found) == [
        "demo-web-1",
        "demo-web-2",
        "demo-web-3",
    ]
    assert len(seen_in_process) == len(local_targets.DEMO_INSTANCES)
    # The web instances carry the engine's opt-in tag; the db its exclude tag, and no
    # opt-in tag: the engine spares it whatever a plan's filters match.
    tags = TargetTags()
    assert {instance.name: tags.why_spared(instance.tags) for instance in everything} == {
        "demo-web-1": None,
        "demo-web-2": None,
        "demo-web-3": None,
        "demo-db-1": "carries the exclude tag chaos-monkey-engine-exclude",
    }
    db = next(instance for instance in everything if instance.name == "demo-db-1")
    assert "chaos-monkey-engine" not in db.tags
    assert db.tags["Chaos"] == "false"
    assert f"EC2 targets: moto at {endpoint}" in capsys.readouterr().out
    # The endpoint travels as a value: nothing was written to the environment.
    assert {key: os.environ.get(key) for key in before} == before
    assert set(os.environ) - set(before) == set()


def test_real_targets_are_not_simulated_and_keep_the_configured_endpoint() -> None:
    running = local_targets.start(local_targets.Targets(real_aws=True), REGION)

    assert (running.ec2_endpoint, running.simulated_ec2) == (None, False)


# --- the command, as a user runs it ------------------------------------------------------------


class Command:
    """``chaos-monkey-engine`` as a subprocess, its output lines read as they come."""

    def __init__(self, *argv: str) -> None:
        environment = {**os.environ, **FAKE_AWS, "PYTHONUNBUFFERED": "1"}
        environment.pop("CME_EC2_ENDPOINT", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chalicelib.local.cli", *argv],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def line_with(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in time; output so far: {self.seen}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # The process is gone, so the reader reaches the end of its output.
        self.reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


def api(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    call = request.Request(url, data=data, method=method)
    call.add_header("Content-Type", "application/json")
    with request.urlopen(call, timeout=10) as answer:
        return json.loads(answer.read().decode())


def poll(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[Command, str, str]]:
    port = free_port()
    command = Command("--demo", "--port", str(port), "--data-dir", str(tmp_path / "data"))
    try:
        ec2_line = command.line_with("EC2 targets: moto at")
        command.line_with("listening on")
        endpoint = ec2_line.split("moto at ")[1].split(" ")[0]
        yield command, f"http://127.0.0.1:{port}/api/1", endpoint
    finally:
        command.stop()


@pytest.mark.e2e
def test_the_quickstart_terminate_plan_terminates_a_demo_instance(
    demo: tuple[Command, str, str],
) -> None:
    _, base, endpoint = demo
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name=FAKE_AWS["AWS_DEFAULT_REGION"])

    def states() -> dict[str, str]:
        return {
            instance["InstanceId"]: instance["State"]["Name"]
            for reservation in ec2.describe_instances()["Reservations"]
            for instance in reservation["Instances"]
        }

    before = states()
    assert len(before) == len(local_targets.DEMO_INSTANCES)
    assert set(before.values()) == {"running"}
    at = (datetime.now(UTC) + timedelta(seconds=3)).isoformat(timespec="seconds")
    created = api(
        "POST",
        f"{base}/plans/",
        {
            "name": "Terminate random running instance",
            "attack": QUICKSTART_ATTACK,
            "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": at}},
        },
    )
    plan = api("GET", f"{base}/plans/{created['id']}")
    (executor,) = plan["_embedded"]["executors"]

    done = poll(
        lambda: (found := api("GET", f"{base}/executors/{executor['id']}"))["executed"] and found,
        timeout=60,
        what="the executor to run",
    )

    assert done["status"] == "succeeded", done
    victim = done["result"]["instance"]["id"]
    after = states()
    assert after[victim] in ("shutting-down", "terminated")
    assert [i for i, state in after.items() if state != "running"] == [victim]
    assert done["result"]["instance"]["name"].startswith("demo-web-")
    spared = done["result"]["selection"]["spared"]
    assert [item["why"] for item in spared] == [
        "carries the exclude tag chaos-monkey-engine-exclude"
    ]
    assert after[spared[0]["id"]] == "running"


def test_the_demo_instances_carry_the_engines_own_tag_settings() -> None:
    custom = TargetTags(opt_in=("chaos", None), exclude=("keep-out", "yes"))

    assert local_targets.demo_tags(True, custom) == {"chaos": "true"}
    assert local_targets.demo_tags(False, custom) == {"keep-out": "yes"}
    assert local_targets.demo_tags(True, TargetTags(opt_in=None)) == {}
    assert local_targets.demo_tags(True, TargetTags()) == {"chaos-monkey-engine": "target"}
