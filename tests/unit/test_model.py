"""The executor state machine and the redaction of secrets."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.bootstrap import Engine
from chalicelib.domain.errors import InvalidTransition
from chalicelib.domain.model import ExecutorStatus, can_transition, redact

S = ExecutorStatus


@pytest.mark.parametrize(
    ("source", "target", "allowed"),
    [
        (S.SCHEDULED, S.RUNNING, True),
        (S.SCHEDULED, S.MISSED, True),
        (S.SCHEDULED, S.SKIPPED, True),
        (S.RUNNING, S.SUCCEEDED, True),
        (S.RUNNING, S.FAILED, True),
        (S.RUNNING, S.SKIPPED, True),
        (S.SCHEDULED, S.SUCCEEDED, False),
        (S.SUCCEEDED, S.RUNNING, False),
        (S.FAILED, S.SCHEDULED, False),
        (S.MISSED, S.RUNNING, False),
        (S.RUNNING, S.SCHEDULED, False),
    ],
)
def test_transitions(source: ExecutorStatus, target: ExecutorStatus, allowed: bool) -> None:
    assert can_transition(source, target) is allowed


def test_terminal_statuses_are_executed() -> None:
    assert {s for s in S if s.is_terminal} == {S.SUCCEEDED, S.FAILED, S.SKIPPED, S.MISSED}


def test_the_store_refuses_an_illegal_transition(engine: Engine) -> None:
    plan = engine.plans.create(
        {
            "name": "n",
            "attack": {
                "ref": "api_request:ApiRequest",
                "args": {"endpoint": "http://x", "method": "GET"},
            },
            "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": "2026-12-02T10:00"}},
        }
    )
    executor = engine.plans.get(plan.id).executors.items[0]
    with pytest.raises(InvalidTransition, match="cannot go from scheduled to succeeded"):
        engine.store.transition(executor, S.SUCCEEDED, {})
    assert engine.executors.get(executor.id).status is S.SCHEDULED


def test_redact_hides_secret_looking_keys_at_any_depth() -> None:
    config: dict[str, Any] = {
        "ssh": {"user": "root", "pem": "QUJD", "key": {"ssm": "/k"}},
        "headers": {"Authorization": "Bearer x", "X-Api-Key": "k", "Accept": "json"},
        "hosts": [{"password": "p", "host": "h"}],
    }
    shown = redact(config)
    assert shown["ssh"] == {"user": "root", "pem": "<redacted>", "key": {"ssm": "/k"}}
    assert shown["headers"] == {
        "Authorization": "<redacted>",
        "X-Api-Key": "<redacted>",
        "Accept": "json",
    }
    assert shown["hosts"] == [{"password": "<redacted>", "host": "h"}]
    assert config["ssh"]["pem"] == "QUJD"  # the stored config is untouched
