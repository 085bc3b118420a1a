"""The live halt in local mode, end to end: the command's own server and scheduler."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    Engine,
    Target,
    http,
    start_engine,
    stop_engine,
    wait_for,
    wait_until_listening,
)
from tests.e2e.test_local_mode import api_request_plan, executor_of, finished

pytestmark = pytest.mark.e2e

REASON = "incident INC-42: checkout is degraded"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory that outlives one engine process (a restart keeps the halt)."""
    folder = Path(tempfile.mkdtemp(prefix="cme-e2e-halt-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def engine(data_dir: Path) -> Iterator[Engine]:
    running = start_engine("--data-dir", str(data_dir))
    try:
        wait_until_listening(running)
        yield running
    finally:
        stop_engine(running)


def test_a_halt_skips_what_comes_due_and_lifting_it_lets_attacks_run(
    engine: Engine, target: Target
) -> None:
    status, _, halt = http("GET", engine.url("/api/1/halt"))
    assert status == 200
    assert (halt["halted"], halt["reason"], halt["since"], halt["by"]) == (
        False,
        None,
        None,
        None,
    )

    status, _, halt = http("PUT", engine.url("/api/1/halt"), {"halted": True, "reason": REASON})
    assert status == 200, halt
    assert (halt["halted"], halt["reason"], halt["by"]) == (True, REASON, "local")
    assert halt["since"][-6] in "+-"  # ISO 8601 with the engine timezone's offset

    _, _, created = http("POST", engine.url("/api/1/plans/"), api_request_plan(target.url("/x")))
    executor = executor_of(engine, created["id"])
    done = wait_for(lambda: finished(engine, executor["id"]), what="the halted executor")
    assert done["status"] == "skipped", done
    assert done["reason"].startswith("halted: "), done
    assert REASON in done["reason"]
    assert target.received == []

    status, _, lifted = http("PUT", engine.url("/api/1/halt/"), {"halted": False})
    assert status == 200, lifted
    assert lifted["halted"] is False
    _, _, again = http("GET", engine.url(f"/api/1/executors/{executor['id']}"))
    assert again["status"] == "skipped"  # lifting replays nothing

    _, _, created = http("POST", engine.url("/api/1/plans/"), api_request_plan(target.url("/y")))
    executor = executor_of(engine, created["id"])
    done = wait_for(lambda: finished(engine, executor["id"]), what="the executor after the lift")
    assert done["status"] == "succeeded", done
    assert [received.path for received in target.received] == ["/y"]


def test_a_bad_halt_body_is_refused_naming_the_field(engine: Engine) -> None:
    status, _, answer = http("PUT", engine.url("/api/1/halt"), {"halted": "yes"})
    assert status == 400
    assert answer == {"msg": "invalid payload halted: must be true or false"}
    _, _, halt = http("GET", engine.url("/api/1/halt"))
    assert halt["halted"] is False


def test_the_halt_outlives_a_restart(data_dir: Path) -> None:
    first = start_engine("--data-dir", str(data_dir))
    try:
        wait_until_listening(first)
        status, _, _ = http("PUT", first.url("/api/1/halt"), {"halted": True, "reason": REASON})
        assert status == 200
    finally:
        stop_engine(first)
    second = start_engine("--data-dir", str(data_dir))
    try:
        wait_until_listening(second)
        _, _, halt = http("GET", second.url("/api/1/halt"))
        assert (halt["halted"], halt["reason"], halt["by"]) == (True, REASON, "local")
    finally:
        stop_engine(second)
