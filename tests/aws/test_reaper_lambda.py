"""The reaper Lambda, invoked as its EventBridge rule would, and what its policy must grant."""

from __future__ import annotations

import fnmatch
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.api.context import set_engine
from chalicelib.bootstrap import Engine, build_engine
from chalicelib.domain.model import Executor, ExecutorStatus
from chalicelib.settings import Settings
from tests.aws.conftest import ACCOUNT, REGION
from tests.aws.test_stage_wiring import CONFIG, stage_environment
from tests.conftest import FixedClock, RecordingScheduler

ROOT = Path(__file__).resolve().parents[2]
# The single-item action IAM authorizes each item of a transaction as.
TRANSACTION_ITEM_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
}


@pytest.fixture
def dev_engine(aws: None, chalice_app: Any, clock: FixedClock) -> Engine:
    """An engine on moto's DynamoDB with the dev stage's table names, given to the app."""
    from chalicelib.adapters.dynamo import DynamoStore

    settings = Settings.from_env({**stage_environment("dev"), "AWS_REGION": REGION})
    store = DynamoStore(settings)
    store.create_tables()
    engine = build_engine(settings, store, lambda runner: RecordingScheduler({}), clock)
    set_engine(chalice_app, engine)
    return engine


def lost_executor(engine: Engine, clock: FixedClock) -> Executor:
    """An executor claimed at its time whose attack Lambda then died, 16 minutes ago."""
    plan = engine.plans.create(
        {
            "name": "died",
            "attack": {
                "ref": "api_request:ApiRequest",
                "args": {"endpoint": "http://127.0.0.1:9/", "method": "GET"},
            },
            "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": "2026-12-01T09:30Z"}},
        }
    )
    (executor,) = engine.plans.get(plan.id).executors.items
    clock.current = executor.next_run_time
    assert engine.store.transition(executor, ExecutorStatus.RUNNING, {"started_at": clock.now()})
    clock.advance(minutes=16)
    return executor


def invoke_reaper(app: Any) -> Any:
    with Client(app) as client:
        event = client.events.generate_cw_event(
            source="aws.events",
            detail_type="Scheduled Event",
            detail={},
            resources=[f"arn:aws:events:{REGION}:{ACCOUNT}:rule/chaos-monkey-engine-dev-reaper"],
            region=REGION,
        )
        return client.lambda_.invoke("reaper", event).payload


def test_the_reaper_lambda_ends_lost_executors(
    chalice_app: Any, dev_engine: Engine, clock: FixedClock
):
    executor = lost_executor(dev_engine, clock)

    assert invoke_reaper(chalice_app) == {"reaped": 1}
    assert invoke_reaper(chalice_app) == {"reaped": 0}

    stored = dev_engine.store.get_executor(executor.id)
    assert stored is not None
    assert stored.status is ExecutorStatus.FAILED
    assert (stored.error or "").startswith("lost: still running 960 s after it started")
    plan = dev_engine.store.get_plan(executor.plan_id)
    assert plan is not None and plan.executed


def test_the_deployed_lease_outlasts_the_attack_lambda_and_comes_from_the_environment():
    for stage in ("dev", "prod"):
        settings = Settings.from_env({**stage_environment(stage), "AWS_REGION": REGION})
        functions = CONFIG["stages"][stage]["lambda_functions"]
        attack_timeout = timedelta(seconds=functions["attack"]["lambda_timeout"])
        # A lease shorter than the attack's timeout would end attacks that are still alive.
        # Equal is safe: an executor is claimed (started_at) only after its Lambda has
        # waited for its second, so the Lambda's own timeout always comes first.
        assert settings.max_run_time >= attack_timeout, stage
        assert settings.max_run_time == timedelta(seconds=900)
        assert functions["reaper"]["iam_policy_file"] == f"policy-reaper-{stage}.json"


# -- the reaper's policy covers exactly what it calls --------------------------------------


def granted(policy: dict[str, Any], action: str, resource: str) -> bool:
    for statement in policy["Statement"]:
        actions = statement["Action"]
        resources = statement["Resource"]
        actions = actions if isinstance(actions, list) else [actions]
        resources = resources if isinstance(resources, list) else [resources]
        matches = any(fnmatch.fnmatchcase(resource, pattern) for pattern in resources)
        if statement["Effect"] == "Allow" and action in actions and matches:
            return True
    return False


def authorized_calls(operation: str, request: dict[str, Any]) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs one DynamoDB request is authorized as."""
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/"
    if operation == "TransactWriteItems":
        return [
            (TRANSACTION_ITEM_ACTIONS[kind], table + body["TableName"])
            for item in request["TransactItems"]
            for kind, body in item.items()
        ]
    resource = table + request["TableName"]
    if "IndexName" in request:
        resource += f"/index/{request['IndexName']}"
    return [(f"dynamodb:{operation}", resource)]


def test_the_reaper_policy_grants_every_call_the_reaper_makes(
    chalice_app: Any, dev_engine: Engine, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
):
    """Checked on dev's file; test_package proves prod's grants the same actions."""
    from pynamodb.connection.base import Connection

    lost_executor(dev_engine, clock)
    calls: list[tuple[str, dict[str, Any]]] = []
    real_call = Connection._make_api_call

    def recording(self: Connection, operation: str, request: dict[str, Any]) -> Any:
        calls.append((operation, json.loads(json.dumps(request))))
        return real_call(self, operation, request)

    monkeypatch.setattr(Connection, "_make_api_call", recording)
    assert invoke_reaper(chalice_app) == {"reaped": 1}

    policy = json.loads((ROOT / ".chalice" / "policy-reaper-dev.json").read_text())
    needed = {pair for operation, request in calls for pair in authorized_calls(operation, request)}
    assert {action for action, _ in needed} == {"dynamodb:Query", "dynamodb:UpdateItem"}
    for action, resource in sorted(needed):
        assert granted(policy, action, resource), f"{action} on {resource} is not granted"
    # The check can refuse: nothing beyond the reaper's own needs is granted.
    executors = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/chaos-monkey-engine-dev-executors"
    assert not granted(policy, "dynamodb:GetItem", executors)
    assert not granted(policy, "dynamodb:Query", executors + "/index/by_plan")
    assert not granted(policy, "dynamodb:UpdateItem", executors.replace("-dev-", "-prod-"))


def test_the_reaper_never_touches_a_running_executor_of_now(
    chalice_app: Any, dev_engine: Engine, clock: FixedClock
):
    executor = lost_executor(dev_engine, clock)
    clock.current = datetime(2026, 12, 1, 9, 44, tzinfo=UTC)  # 14 minutes after it started
    assert invoke_reaper(chalice_app) == {"reaped": 0}
    stored = dev_engine.store.get_executor(executor.id)
    assert stored is not None and stored.status is ExecutorStatus.RUNNING
