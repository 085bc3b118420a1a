"""The halt on the deployed path: API Gateway's Lambda proxy events into the app, DynamoDB
and EventBridge Scheduler on moto, the IAM principal recorded, the attack Lambda skipping."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.api.context import set_engine
from chalicelib.bootstrap import Engine
from chalicelib.domain.ports import ExecutorQuery
from chalicelib.settings import Settings
from tests.aws import conftest as aws_fixtures
from tests.conftest import FixedClock

# The deployed-path fixtures of tests/aws: moto's Scheduler and an engine on moto's
# DynamoDB and the EventBridge adapter.
scheduler_client = aws_fixtures.scheduler_client
sleeps = aws_fixtures.sleeps
aws_engine_on = aws_fixtures.aws_engine_on
chalice_app = aws_fixtures.chalice_app

ROLE = "arn:aws:sts::123456789012:assumed-role/oncall/alice"
REASON = "incident INC-42: checkout is degraded"


@pytest.fixture
def aws_settings() -> Settings:
    """tests/aws's deployed-path settings, as a Lambda of a stage with CME_AUTH=iam."""
    return Settings(
        plans_table="cme-test-plans",
        executors_table="cme-test-executors",
        control_table="cme-test-control",
        schedule_group=aws_fixtures.GROUP,
        allowed_lateness=timedelta(minutes=2),
        auth="iam",
        on_lambda=True,
    )


class LambdaContext:
    """What the API Lambda's handler is given besides the event (its time left)."""

    def get_remaining_time_in_millis(self) -> int:
        return 29_000


def proxy_event(
    method: str, resource: str, body: Any = None, identity: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An API Gateway REST (Lambda proxy) event for ``resource``, signed by ``identity``.

    https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html#api-gateway-simple-proxy-for-lambda-input-format
    """
    return {
        "resource": resource,
        "path": resource,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method,
            "path": f"/api{resource}",
            "stage": "api",
            "apiId": "abcdef1234",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "identity": {"sourceIp": "192.0.2.10", **(identity or {})},
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


@pytest.fixture
def call(chalice_app: Any, aws_engine_on: Any) -> Any:
    engine: Engine = aws_engine_on()
    set_engine(chalice_app, engine)

    def send(method: str, resource: str, body: Any = None, **identity: Any) -> Any:
        answer = chalice_app(proxy_event(method, resource, body, identity), LambdaContext())
        text = answer.get("body") or ""
        return answer["statusCode"], json.loads(text) if text else None

    send.engine = engine  # type: ignore[attr-defined]
    return send


def test_the_iam_principal_sets_the_halt_and_the_attack_lambda_skips(
    call: Any, chalice_app: Any, clock: FixedClock
) -> None:
    status, halt = call("GET", "/api/1/halt", userArn=ROLE)
    assert (status, halt["halted"], halt["by"]) == (200, False, None)

    status, halt = call(
        "PUT", "/api/1/halt", {"halted": True, "reason": REASON}, userArn=ROLE, caller="AROA:x"
    )
    assert status == 200, halt
    assert (halt["halted"], halt["reason"], halt["by"]) == (True, REASON, ROLE)
    assert halt["since"] == "2026-12-01T10:00:00+01:00"
    status, stored = call("GET", "/api/1/halt", userArn="arn:aws:iam::123456789012:user/bob")
    assert stored["by"] == ROLE  # who set it, not who reads it

    plan = {
        "name": "due while halted",
        "attack": {
            "ref": "api_request:ApiRequest",
            "args": {"endpoint": "http://127.0.0.1:9/", "method": "GET"},
        },
        "planner": {
            "ref": "exact_planner:ExactPlanner",
            "args": {"date": "2026-12-01T12:00:00+01:00"},
        },
    }
    status, created = call("POST", "/api/1/plans", plan, userArn=ROLE)
    assert status == 200, created
    engine: Engine = call.engine
    [executor] = engine.executors.list(ExecutorQuery(executed=None, plan_id=created["id"])).items
    clock.current = executor.next_run_time
    from app import attack  # the attack Lambda's handler

    answer = attack({"executor_id": executor.id}, LambdaContext())
    assert answer["status"] == "skipped"
    skipped = engine.executors.get(executor.id)
    assert skipped.reason is not None
    assert skipped.reason.startswith("halted: ")
    assert REASON in skipped.reason
    assert f"set by {ROLE}" in skipped.reason


def test_the_caller_is_recorded_when_there_is_no_user_arn(call: Any) -> None:
    status, halt = call(
        "PUT", "/api/1/halt", {"halted": False}, userArn=None, caller="AROAEXAMPLE:session"
    )
    assert (status, halt["by"]) == (200, "AROAEXAMPLE:session")
