"""Restarts lose nothing: the engine is SIGKILLed mid-plan and started again on its data.

The plan's executors, on a planner and an attack written for this test:

- two due 2 s after creation: one of them blocks (it is running when the engine is
  killed), the other finishes before the kill;
- one due 5 s after creation and one due 13 s after: both come due while the engine is
  down. The restarted engine allows a lateness between theirs, so the first ends
  ``missed`` and the second runs;
- one due 19 s after creation, still ahead when the engine comes back: it is re-armed.

The restart has a 1 s lease, so the executor left ``running`` by the crash is reaped at
once. Every attack run appends a line to a file: nothing may run twice.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    Engine,
    http,
    kill_engine,
    start_engine,
    stop_engine,
    wait_for,
    wait_until_listening,
)

pytestmark = pytest.mark.e2e

RECORDER = '''
"""Test attack: records every run; the first run to take the marker file blocks."""
import os
import threading

from chaosmonkey.attacks import Attack


class Recorder(Attack):
    ref = "recorder:Recorder"
    schema = {
        "type": "object",
        "properties": {"ref": {"type": "string"}, "args": {"type": "object"}},
        "required": ["ref", "args"],
    }
    example = {"ref": ref, "args": {"log": "/tmp/runs", "marker": "/tmp/marker"}}

    def _write(self, word):
        with open(self.attack_config["log"], "a") as log:
            log.write(f"{word} {self.context.executor_id}\\n")
            log.flush()
            os.fsync(log.fileno())

    def run(self):
        self._write("run")
        marker = self.attack_config["marker"]
        try:
            os.rename(marker, marker + ".taken")
        except FileNotFoundError:
            return {"recorded": self.context.executor_id}
        self._write("block")
        threading.Event().wait(300)  # until the engine is killed
        return {"recorded": self.context.executor_id}
'''

DATES = '''
"""Test planner: one executor at each of the given dates."""
from datetime import datetime

from chaosmonkey.planners import Planner


class Dates(Planner):
    ref = "dates:Dates"
    schema = {
        "type": "object",
        "properties": {"dates": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
        "required": ["dates"],
    }
    example = {"ref": ref, "args": {"dates": ["2030-01-01T00:00:00+00:00"]}}

    def plan(self, planner_config, attack_config):
        for number, text in enumerate(planner_config["args"]["dates"]):
            self._add_job(datetime.fromisoformat(text), f"{self.name} #{number}", attack_config)
'''


def plugins(folder: Path) -> tuple[Path, Path]:
    attacks, planners = folder / "attacks", folder / "planners"
    attacks.mkdir()
    planners.mkdir()
    (attacks / "recorder.py").write_text(textwrap.dedent(RECORDER))
    (planners / "dates.py").write_text(textwrap.dedent(DATES))
    return attacks, planners


def executors(engine: Engine, plan_id: str) -> dict[str, dict[str, Any]]:
    status, _, plan = http("GET", engine.url(f"/api/1/plans/{plan_id}"))
    assert status == 200, plan
    return {executor["id"]: executor for executor in plan["_embedded"]["executors"]}


def runs(log: Path) -> list[tuple[str, str]]:
    if not log.exists():
        return []
    return [tuple(line.split()) for line in log.read_text().splitlines()]  # type: ignore[misc]


def test_a_killed_engine_restarts_with_nothing_lost_and_nothing_run_twice(
    tmp_path: Path,
) -> None:
    attacks, planners = plugins(tmp_path)
    data, log, marker = tmp_path / "data", tmp_path / "runs.log", tmp_path / "block.marker"
    marker.touch()
    common = ("--data-dir", str(data), "-a", str(attacks), "-l", str(planners), "-t", "UTC")

    first = start_engine(*common)
    try:
        wait_until_listening(first)
        created_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        offsets = (2, 2, 5, 13, 19)
        status, _, created = http(
            "POST",
            first.url("/api/1/plans/"),
            {
                "name": "restart",
                "attack": {
                    "ref": "recorder:Recorder",
                    "args": {"log": str(log), "marker": str(marker)},
                },
                "planner": {
                    "ref": "dates:Dates",
                    "args": {
                        "dates": [(created_at + timedelta(seconds=s)).isoformat() for s in offsets]
                    },
                },
            },
        )
        assert status == 200, created
        plan_id = created["id"]
        planned = executors(first, plan_id)
        by_offset = {
            offset: sorted(
                executor_id
                for executor_id, executor in planned.items()
                if datetime.fromisoformat(executor["next_run_time"])
                == created_at + timedelta(seconds=offset)
            )
            for offset in set(offsets)
        }
        early, (missed,), (late,), (ahead,) = (by_offset[s] for s in (2, 5, 13, 19))

        # The blocking run has started and the other early one has finished: kill.
        blocked = wait_for(
            lambda: [executor for word, executor in runs(log) if word == "block"],
            what="one early executor to block",
        )[0]
        (finished,) = [executor for executor in early if executor != blocked]
        wait_for(
            lambda: executors(first, plan_id)[finished]["executed"],
            what="the other early executor to finish",
        )
        before_kill = executors(first, plan_id)
    finally:
        kill_engine(first)
    killed_at = datetime.now(UTC)
    assert killed_at < created_at + timedelta(seconds=5), "too slow: killed after the 5 s one"
    assert before_kill[blocked]["status"] == "running"
    assert before_kill[finished]["status"] == "succeeded"
    assert {before_kill[e]["status"] for e in (missed, late, ahead)} == {"scheduled"}

    # Restart once the 13 s executor is due too, allowing a lateness between the two
    # that came due while the engine was down (the 5 s one is always later than it).
    wait_for(
        lambda: datetime.now(UTC) > created_at + timedelta(seconds=13.3),
        timeout=30,
        what="the 13 s executor's time to pass",
    )
    allowed = (datetime.now(UTC) - (created_at + timedelta(seconds=5))).total_seconds() - 0.25
    second = start_engine(
        *common,
        "--allowed-lateness",
        f"{allowed:.2f}",
        "--max-run-seconds",
        "1",
        "--reap-interval",
        "0.5",
    )
    try:
        wait_until_listening(second)
        done = wait_for(
            lambda: (
                (found := executors(second, plan_id))
                and all(executor["executed"] for executor in found.values())
                and found
            ),
            timeout=60,
            what="every executor to end",
        )
        output = list(second.output)
    finally:
        assert stop_engine(second) == 0

    # Nothing lost: the same five executors, each with an outcome and a reason.
    assert set(done) == set(planned)
    assert done[blocked]["status"] == "failed"
    assert done[blocked]["error"].startswith("lost: still running"), done[blocked]
    assert done[finished]["status"] == "succeeded"
    assert done[missed]["status"] == "missed", done[missed]
    assert "late" in done[missed]["reason"]
    assert done[late]["status"] == "succeeded", done[late]
    assert done[ahead]["status"] == "succeeded", done[ahead]
    # Nothing run twice; the one missed never ran.
    assert Counter(executor for word, executor in runs(log) if word == "run") == {
        blocked: 1,
        finished: 1,
        late: 1,
        ahead: 1,
    }
    assert any("re-armed 3 scheduled executors" in line for line in output), output
    # The restart was on the same file (it said so), not on a fresh one.
    assert any(f"State: {data}" in line for line in output), output
    assert not any("Traceback" in line for line in output), output


def test_a_restart_keeps_plans_and_their_history(tmp_path: Path) -> None:
    attacks, planners = plugins(tmp_path)
    log = tmp_path / "runs.log"
    common = ("-d", f"sqlite:///{tmp_path}/cme.sqlite", "-a", str(attacks), "-l", str(planners))
    first = start_engine(*common)
    try:
        wait_until_listening(first)
        at = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
        _, _, created = http(
            "POST",
            first.url("/api/1/plans/"),
            {
                "name": "kept",
                "attack": {
                    "ref": "recorder:Recorder",
                    "args": {"log": str(log), "marker": str(tmp_path / "none")},
                },
                "planner": {"ref": "dates:Dates", "args": {"dates": [at]}},
            },
        )
        wait_for(
            lambda: all(e["executed"] for e in executors(first, created["id"]).values()),
            what="the executor to run",
        )
    finally:
        assert stop_engine(first) == 0

    second = start_engine(*common)
    try:
        wait_until_listening(second)
        status, _, plans = http("GET", second.url("/api/1/plans/?all=true"))
        kept = executors(second, created["id"])
    finally:
        assert stop_engine(second) == 0

    assert status == 200
    assert [plan["id"] for plan in plans["plans"]] == [created["id"]]
    assert [executor["status"] for executor in kept.values()] == ["succeeded"]
    assert (tmp_path / "cme.sqlite").is_file()
