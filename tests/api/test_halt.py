"""The live halt through the API (local mode's engine on SQLite): read, set, lift, refuse
bad bodies, and an executor that comes due while halted is skipped, not replayed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from chalicelib.api.auth import principal
from chalicelib.bootstrap import Engine
from chalicelib.services.safety import MAX_HALT_REASON
from tests.api.conftest import Api
from tests.conftest import FixedClock

HALT = "/api/1/halt"
REASON = "incident INC-42: checkout is degraded"


def plan(date: str = "2026-12-01T12:00:00+01:00") -> dict[str, Any]:
    return {
        "name": "due while halted",
        "attack": {"ref": "scripted:Scripted", "args": {"mode": "ok"}},
        "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": date}},
    }


def test_the_halt_is_off_until_someone_sets_it(api: Api) -> None:
    for path in (HALT, f"{HALT}/"):
        answer = api.get(path)
        assert answer.status == 200, answer.body
        assert answer.headers["content-type"] == "application/hal+json"
        assert {key: answer.body[key] for key in ("halted", "reason", "since", "by")} == {
            "halted": False,
            "reason": None,
            "since": None,
            "by": None,
        }
        assert answer.body["_links"]["self"]["href"] == HALT


def test_put_halts_and_records_why_when_and_who(api: Api, clock: FixedClock) -> None:
    answer = api.put(HALT, {"halted": True, "reason": REASON})
    assert answer.status == 200, answer.body
    expected = {
        "halted": True,
        "reason": REASON,
        # The clock's now (09:00 UTC) in the engine's timezone (Europe/Madrid).
        "since": "2026-12-01T10:00:00+01:00",
        "by": "local",
    }
    assert {key: answer.body[key] for key in expected} == expected
    assert {key: api.get(HALT).body[key] for key in expected} == expected

    clock.advance(minutes=5)
    lifted = api.put(f"{HALT}/", {"halted": False})
    assert lifted.status == 200, lifted.body
    assert lifted.body["halted"] is False
    assert lifted.body["reason"] is None
    assert lifted.body["since"] == "2026-12-01T10:05:00+01:00"
    assert lifted.body["by"] == "local"
    assert api.get(HALT).body["halted"] is False


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"reason": REASON}, "invalid payload halted: must be true or false"),
        ({"halted": "yes", "reason": REASON}, "invalid payload halted: must be true or false"),
        ({"halted": 1, "reason": REASON}, "invalid payload halted: must be true or false"),
        ({"halted": True, "reason": 42}, "invalid payload reason: must be a string"),
        (
            {"halted": True, "reason": "x" * (MAX_HALT_REASON + 1)},
            f"invalid payload reason: {MAX_HALT_REASON + 1} characters; the limit is "
            f"{MAX_HALT_REASON}",
        ),
        (
            {"halted": True},
            "invalid payload reason: required to halt (it is quoted on every executor "
            "the halt skips)",
        ),
        (
            {"halted": True, "reason": "   "},
            "invalid payload reason: required to halt (it is quoted on every executor "
            "the halt skips)",
        ),
        (
            {"halted": True, "reason": REASON, "until": "tomorrow"},
            "invalid payload halt: unknown field(s) 'until'; known: halted, reason",
        ),
        (
            [True],
            'invalid payload halt: expected an object {"halted": true|false, "reason": "..."}',
        ),
    ],
)
def test_a_bad_body_is_refused_naming_the_field_and_changes_nothing(
    api: Api, body: Any, message: str
) -> None:
    answer = api.put(HALT, body)
    assert answer.status == 400
    assert answer.body == {"msg": message}
    assert api.get(HALT).body["halted"] is False


def test_a_reason_of_the_limit_is_kept_whole(api: Api) -> None:
    reason = "r" * MAX_HALT_REASON
    assert api.put(HALT, {"halted": True, "reason": reason}).body["reason"] == reason


def test_a_body_that_is_not_json_is_refused(api: Api) -> None:
    answer = api.put(HALT, raw=b"{halted: true")
    assert answer.status == 400
    assert answer.body == {"msg": "payload must be a valid json"}


def test_an_executor_due_while_halted_is_skipped_and_lifting_replays_nothing(
    api: Api, engine: Engine, clock: FixedClock
) -> None:
    created = api.post("/api/1/plans/", plan())
    assert created.status == 200, created.body
    [executor] = api.get(created.body["_links"]["self"]["href"]).body["_embedded"]["executors"]
    assert api.put(HALT, {"halted": True, "reason": REASON}).status == 200

    clock.current = engine.executors.get(executor["id"]).next_run_time
    engine.runner.run(executor["id"])

    skipped = api.get(f"/api/1/executors/{executor['id']}").body
    assert skipped["status"] == "skipped"
    assert skipped["reason"].startswith("halted: ")
    assert REASON in skipped["reason"]
    assert skipped["started_at"] is None  # never claimed: the attack did not start

    assert api.put(HALT, {"halted": False}).status == 200
    engine.runner.run(executor["id"])  # a late or repeated delivery after the lift
    again = api.get(f"/api/1/executors/{executor['id']}").body
    assert again["status"] == "skipped"
    assert again["reason"] == skipped["reason"]


def test_an_executor_due_after_the_halt_is_lifted_runs(
    api: Api, engine: Engine, clock: FixedClock
) -> None:
    api.put(HALT, {"halted": True, "reason": REASON})
    api.put(HALT, {"halted": False, "reason": "INC-42 resolved"})
    created = api.post("/api/1/plans/", plan())
    [executor] = api.get(created.body["_links"]["self"]["href"]).body["_embedded"]["executors"]
    clock.current = engine.executors.get(executor["id"]).next_run_time
    engine.runner.run(executor["id"])
    assert api.get(f"/api/1/executors/{executor['id']}").body["status"] == "succeeded"


# -- who set it ----------------------------------------------------------------------------


def request_with(identity: dict[str, Any] | None) -> Any:
    """What the principal is read from: API Gateway's request context."""
    context = {} if identity is None else {"identity": identity}
    return SimpleNamespace(context=context)


# https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-mapping-template-reference.html#context-variable-reference
# ($context.identity.userArn, .caller, .apiKeyId)
IAM_USER = "arn:aws:iam::123456789012:user/oncall"


@pytest.mark.parametrize(
    ("mode", "deployed", "identity", "expected"),
    [
        ("iam", True, {"userArn": IAM_USER, "caller": "AIDAEXAMPLE"}, IAM_USER),
        ("iam", True, {"userArn": None, "caller": "AROAEXAMPLE:session"}, "AROAEXAMPLE:session"),
        ("iam", True, {}, "iam:unknown principal"),
        ("api_key", True, {"apiKeyId": "k1a2b3", "apiKey": "the-secret-key"}, "api key k1a2b3"),
        ("api_key", True, {"apiKey": "the-secret-key"}, "api key (unknown id)"),
        ("none", False, {"userArn": IAM_USER}, "local"),
        ("none", True, None, "anonymous"),
    ],
)
def test_the_principal_is_what_api_gateway_authenticated(
    mode: str, deployed: bool, identity: dict[str, Any] | None, expected: str
) -> None:
    by = principal(request_with(identity), mode, deployed=deployed)
    assert by == expected
    assert "the-secret-key" not in by
