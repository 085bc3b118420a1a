"""Unit-test fixtures: an engine that also loads the scripted test attacks."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.bootstrap import Engine
from chalicelib.settings import Settings
from tests.conftest import FIXTURES

SCRIPTED = "scripted:Scripted"


@pytest.fixture
def settings() -> Settings:
    return Settings(
        plans_table="test-plans",
        executors_table="test-executors",
        attack_folders=(FIXTURES / "test_attacks",),
    )


@pytest.fixture
def runs(engine: Engine) -> Iterator[list[dict[str, Any]]]:
    """What the scripted attack ran, in order; its gate is opened at the end."""
    module = sys.modules[engine.attacks.resolve(SCRIPTED).__module__]
    module.RUNS.clear()
    module.GATE.clear()
    yield module.RUNS
    module.GATE.set()
