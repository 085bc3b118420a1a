"""The reaper Lambda, invoked as its EventBridge rule would, and what its policy must grant."""

from __future__ import annotations

import fnmatch
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from chalice.test import Client

from chalicelib.api.context import set_engine
from chalicelib.bootstrap import Engine, build_audit, build_aws_engine, build_engine
from chalicelib.domain.model import Executor, ExecutorStatus, Plan
from chalicelib.services.execution import ABANDONED_AFTER
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
    """An engine on moto's DynamoDB with the dev stage's table names (its events table
    too, recording the audit trail as deployed), given to the app."""
    from chalicelib.adapters.dynamo import DynamoStore
    from chalicelib.adapters.dynamo_events import DynamoEventLog

    settings = Settings.from_env({**stage_environment("dev"), "AWS_REGION": REGION})
    store = DynamoStore(settings)
    store.create_tables()
    DynamoEventLog(settings).create_table()
    audit = build_audit(settings, local=False, clock=clock)
    engine = build_engine(
        settings, store, lambda runner: RecordingScheduler({}), clock, audit=audit
    )
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
    if operation in ("BatchWriteItem", "BatchGetItem"):
        return [(f"dynamodb:{operation}", table + name) for name in request["RequestItems"]]
    resource = table + request["TableName"]
    if "IndexName" in request:
        resource += f"/index/{request['IndexName']}"
    return [(f"dynamodb:{operation}", resource)]


def schedule_arn(group: str, name: str) -> str:
    return f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/{group}/{name}"


def iam_requests(service: str, operation: str, request: dict[str, Any]) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs one AWS API call is authorized as."""
    if service == "dynamodb":
        return authorized_calls(operation, request)
    if service == "scheduler" and "Name" in request:
        # A schedule's ARN names its group ("default" when the request names none).
        group = request.get("GroupName", "default")
        return [(f"scheduler:{operation}", schedule_arn(group, request["Name"]))]
    if service == "sns" and "TopicArn" in request:
        return [(f"sns:{operation}", request["TopicArn"])]
    return [(f"{service}:{operation}", "*")]


def dev_settings() -> Settings:
    return Settings.from_env({**stage_environment("dev"), "AWS_REGION": REGION})


@pytest.fixture
def reaper_engine(
    dev_engine: Engine, chalice_app: Any, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> Engine:
    """The engine a deployed reaper builds (build_aws_engine from the dev stage's
    variables: DynamoDB and EventBridge Scheduler, on moto) on the test's clock."""
    boto3.client("scheduler", region_name=REGION).create_schedule_group(
        Name=dev_settings().schedule_group
    )
    monkeypatch.setattr("chalicelib.bootstrap.SystemClock", lambda: clock)
    engine = build_aws_engine(dev_settings())
    set_engine(chalice_app, engine)
    return engine


def create_schedules(names: list[str]) -> None:
    """Schedules in the dev group, as the API would have made them for these executors."""
    client = boto3.client("scheduler", region_name=REGION)
    for name in names:
        client.create_schedule(
            Name=name,
            GroupName=dev_settings().schedule_group,
            ScheduleExpression="at(2026-12-01T12:00:00)",
            FlexibleTimeWindow={"Mode": "OFF"},
            Target={
                "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:chaos-monkey-engine-dev-attack",
                "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/chaos-monkey-engine-dev-scheduler",
            },
        )


def schedules_left() -> set[str]:
    client = boto3.client("scheduler", region_name=REGION)
    found = client.list_schedules(GroupName=dev_settings().schedule_group)["Schedules"]
    return {schedule["Name"] for schedule in found}


def orphan_executor(engine: Engine) -> Executor:
    """An executor due at 09:20 whose plan item is gone (deleted by hand, or a deletion
    cut short): nothing but the reaper will ever remove it."""
    plan = engine.plans.create(
        {
            "name": "orphaned",
            "attack": {
                "ref": "api_request:ApiRequest",
                "args": {"endpoint": "http://127.0.0.1:9/", "method": "GET"},
            },
            "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": "2026-12-01T09:20Z"}},
        }
    )
    (executor,) = engine.plans.get(plan.id).executors.items
    boto3.client("dynamodb", region_name=REGION).delete_item(
        TableName=engine.settings.plans_table, Key={"id": {"S": plan.id}}
    )
    return executor


def abandoned_plan(engine: Engine, clock: FixedClock) -> tuple[Plan, list[Executor]]:
    """A plan whose creation died after storing it and its executors: uncommitted, and
    created a second more than ABANDONED_AFTER before the clock's now."""
    created = clock.now() - ABANDONED_AFTER - timedelta(seconds=1)
    plan = Plan(
        id="a" * 32,
        name="died half way",
        created=created,
        planner={"ref": "exact_planner:ExactPlanner", "args": {}},
        attack={"ref": "api_request:ApiRequest", "args": {"endpoint": "http://127.0.0.1:9/"}},
        committed=False,
    )
    executors = [
        Executor(
            id=letter * 32,
            plan_id=plan.id,
            name=f"never committed {letter}",
            next_run_time=datetime(2026, 12, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=minutes),
            attack=plan.attack,
        )
        for minutes, letter in enumerate("bc")
    ]
    engine.store.add_plan(plan, executors)
    return plan, executors


def grants(policy: dict[str, Any], services: tuple[str, ...]) -> set[tuple[str, str]]:
    """Every (action, resource pattern) an Allow statement grants, for these services."""
    pairs: set[tuple[str, str]] = set()
    for statement in policy["Statement"]:
        actions = statement["Action"]
        resources = statement["Resource"]
        for action in actions if isinstance(actions, list) else [actions]:
            if statement["Effect"] == "Allow" and action.split(":")[0] in services:
                pairs.update(
                    (action, resource)
                    for resource in (resources if isinstance(resources, list) else [resources])
                )
    return pairs


def test_the_reaper_policy_grants_every_call_the_reaper_makes(
    chalice_app: Any,
    dev_engine: Engine,
    reaper_engine: Engine,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
):
    """The three paths of reap_lost, recorded at botocore (every AWS call, DynamoDB's and
    Scheduler's): a lost executor, an orphan and an abandoned plan. Checked on dev's file;
    test_package proves prod's and the template's grant the same actions."""
    from botocore.client import BaseClient

    orphan = orphan_executor(dev_engine)  # due 09:20: never delivered at 09:46
    lost = lost_executor(dev_engine, clock)  # claimed at 09:30; the clock is now 09:46
    plan, abandoned = abandoned_plan(dev_engine, clock)
    removed = [orphan.id, *(executor.id for executor in abandoned)]
    create_schedules(removed)

    calls: list[tuple[str, str, dict[str, Any]]] = []
    lock = threading.Lock()
    real_call = BaseClient._make_api_call

    def recording(self: BaseClient, operation: str, request: dict[str, Any]) -> Any:
        service = self.meta.service_model.service_name
        with lock:
            calls.append((service, operation, json.loads(json.dumps(request, default=str))))
        return real_call(self, operation, request)

    with monkeypatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", recording)
        assert invoke_reaper(chalice_app) == {"reaped": 2}  # the lost one, and the orphan

    # All three paths ran to the end.
    stored = dev_engine.store.get_executor(lost.id)
    assert stored is not None and stored.status is ExecutorStatus.FAILED
    assert dev_engine.store.get_executor(orphan.id) is None
    assert dev_engine.store.get_plan(plan.id) is None
    assert all(dev_engine.store.get_executor(e.id) is None for e in abandoned)
    assert schedules_left() == set()

    # Deleting schedules needs no schedule target, so no STS call (nor anything else).
    assert {service for service, _, _ in calls} == {"dynamodb", "scheduler"}
    needed = {
        pair
        for service, operation, request in calls
        for pair in iam_requests(service, operation, request)
    }
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/chaos-monkey-engine-dev-"
    executors, plans, events = table + "executors", table + "plans", table + "events"
    group = dev_settings().schedule_group
    assert needed == {
        ("dynamodb:PutItem", events),  # executor.finished of the lost one
        ("dynamodb:Query", executors + "/index/by_bucket"),  # running, never delivered
        ("dynamodb:Query", plans + "/index/by_bucket"),  # abandoned plans
        ("dynamodb:Query", executors + "/index/by_plan"),  # next_execution, a plan's executors
        ("dynamodb:GetItem", executors),
        ("dynamodb:GetItem", plans),
        ("dynamodb:UpdateItem", executors),  # the transaction's two items
        ("dynamodb:UpdateItem", plans),
        ("dynamodb:DeleteItem", executors),  # the orphan
        ("dynamodb:DeleteItem", plans),  # the abandoned plan
        ("dynamodb:BatchWriteItem", executors),  # its executors
        *(("scheduler:DeleteSchedule", schedule_arn(group, name)) for name in removed),
    }

    policy = json.loads((ROOT / ".chalice" / "policy-reaper-dev.json").read_text())
    for action, resource in sorted(needed):
        assert granted(policy, action, resource), f"{action} on {resource} is not granted"
    # Nothing beyond: every table or schedule grant is one some call needed.
    for action, pattern in sorted(grants(policy, ("dynamodb", "scheduler"))):
        assert any(
            action == used and fnmatch.fnmatchcase(resource, pattern) for used, resource in needed
        ), f"{action} on {pattern} is granted but never needed"
    # The check can refuse.
    assert not granted(policy, "dynamodb:PutItem", executors)
    assert not granted(policy, "dynamodb:PutItem", plans)
    assert not granted(policy, "dynamodb:BatchGetItem", plans)
    assert not granted(policy, "dynamodb:BatchWriteItem", plans)
    assert not granted(policy, "dynamodb:Query", executors)
    assert not granted(policy, "dynamodb:Query", events + "/index/by_time")
    assert not granted(policy, "dynamodb:PutItem", events.replace("-dev-", "-prod-"))
    for action in ("GetItem", "UpdateItem", "DeleteItem"):
        assert not granted(policy, f"dynamodb:{action}", executors.replace("-dev-", "-prod-"))
        assert not granted(policy, f"dynamodb:{action}", plans.replace("-dev-", "-prod-"))
    assert not granted(
        policy, "dynamodb:Query", executors.replace("-dev-", "-prod-") + "/index/by_plan"
    )
    assert not granted(policy, "scheduler:DeleteSchedule", schedule_arn("default", orphan.id))
    assert not granted(
        policy, "scheduler:DeleteSchedule", schedule_arn("chaos-monkey-engine-prod", orphan.id)
    )
    for action in ("CreateSchedule", "UpdateSchedule", "GetSchedule"):
        assert not granted(policy, f"scheduler:{action}", schedule_arn(group, orphan.id))
    assert not granted(
        policy, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/chaos-monkey-engine-dev-scheduler"
    )


def test_the_reaper_never_touches_a_running_executor_of_now(
    chalice_app: Any, dev_engine: Engine, clock: FixedClock
):
    executor = lost_executor(dev_engine, clock)
    clock.current = datetime(2026, 12, 1, 9, 44, tzinfo=UTC)  # 14 minutes after it started
    assert invoke_reaper(chalice_app) == {"reaped": 0}
    stored = dev_engine.store.get_executor(executor.id)
    assert stored is not None and stored.status is ExecutorStatus.RUNNING


def test_with_a_topic_set_the_reaper_publishes_to_it_as_the_template_grants(
    chalice_app: Any,
    dev_engine: Engine,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
):
    """CME_NOTIFY_SNS_TOPIC_ARN set (the stack's NotifySnsTopicArn): the reaper's one
    executor.finished reaches the topic before the Lambda returns, through sns:Publish on
    that topic and nothing else, which the template's conditional NotifyTopicPolicy grants
    the reaper's role."""
    from botocore.client import BaseClient

    from tests.aws.test_stage_wiring import merged_template

    sns = boto3.client("sns", region_name=REGION)
    topic = sns.create_topic(Name="chaos-monkey-engine-dev-notify")["TopicArn"]
    sqs = boto3.client("sqs", region_name=REGION)
    queue = sqs.create_queue(QueueName="notified")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=queue_arn["Attributes"]["QueueArn"],
        Attributes={"RawMessageDelivery": "true"},
    )
    boto3.client("scheduler", region_name=REGION).create_schedule_group(
        Name=dev_settings().schedule_group
    )
    monkeypatch.setattr("chalicelib.bootstrap.SystemClock", lambda: clock)
    settings = Settings.from_env(
        {**stage_environment("dev"), "AWS_REGION": REGION, "CME_NOTIFY_SNS_TOPIC_ARN": topic}
    )
    set_engine(chalice_app, build_aws_engine(settings))
    lost = lost_executor(dev_engine, clock)

    calls: list[tuple[str, str, dict[str, Any]]] = []
    lock = threading.Lock()
    real_call = BaseClient._make_api_call

    def recording(self: BaseClient, operation: str, request: dict[str, Any]) -> Any:
        with lock:
            calls.append((self.meta.service_model.service_name, operation, dict(request)))
        return real_call(self, operation, request)

    with monkeypatch.context() as patch:
        patch.setattr(BaseClient, "_make_api_call", recording)
        assert invoke_reaper(chalice_app) == {"reaped": 1}

    published = {
        pair
        for service, operation, request in calls
        if service == "sns"
        for pair in iam_requests(service, operation, request)
    }
    assert published == {("sns:Publish", topic)}
    (message,) = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    body = json.loads(message["Body"])
    assert (body["kind"], body["executor_id"], body["status"]) == (
        "executor.finished",
        lost.id,
        "failed",
    )

    resources = merged_template("dev")["Resources"]
    policy = resources["NotifyTopicPolicy"]
    assert {"Ref": "ReaperRole"} in policy["Properties"]["Roles"]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Resource"] == {"Ref": "NotifySnsTopicArn"}
    # The parameter's value in place of its Ref: exactly the topic the reaper published to.
    document = {"Statement": [{**statement, "Resource": topic}]}
    assert granted(document, "sns:Publish", topic)
    assert not granted(document, "sns:Publish", topic + "-other")
    assert resources["Reaper"]["Properties"]["Environment"]["Variables"][
        "CME_NOTIFY_SNS_TOPIC_ARN"
    ] == {"Ref": "NotifySnsTopicArn"}
