"""The dev stage's configuration, as a deployed Lambda sees it, builds a working engine."""

from __future__ import annotations

import importlib.util
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from chalice.test import Client

from chalicelib.adapters.dynamo import DynamoStore
from chalicelib.domain.model import EARLY_DELIVERY_WINDOW
from chalicelib.settings import ATTACK_TIME_MARGIN, GUARD_TIME_BUDGET, Settings
from tests.aws.conftest import ACCOUNT, REGION

ROOT = Path(__file__).resolve().parents[2]
CONFIG = json.loads((ROOT / ".chalice" / "config.json").read_text())


def stage_environment(stage: str) -> dict[str, str]:
    stage_config = CONFIG["stages"][stage]
    return {**CONFIG["environment_variables"], **stage_config.get("environment_variables", {})}


def test_a_plan_posted_to_the_dev_stage_is_scheduled_with_its_resources(
    aws: None, chalice_app: Any
):
    settings = Settings.from_env({**stage_environment("dev"), "AWS_REGION": REGION})
    DynamoStore(settings).create_tables()
    scheduler = boto3.client("scheduler", region_name=REGION)
    scheduler.create_schedule_group(Name=settings.schedule_group)

    plan = {
        "name": "wired",
        "attack": {
            "ref": "api_request:ApiRequest",
            "args": {"endpoint": "http://127.0.0.1:9/", "method": "GET"},
        },
        "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": "2099-01-01T10:00:00"}},
    }
    with Client(chalice_app, stage_name="dev", project_dir=str(ROOT)) as client:
        response = client.http.post(
            "/api/1/plans", headers={"Content-Type": "application/json"}, body=json.dumps(plan)
        )
    assert response.status_code == 200, response.body

    engine = chalice_app.cme_engine  # built on the request, from the stage's variables
    assert engine.settings.executors_table == "chaos-monkey-engine-dev-executors"
    assert engine.settings.control_table == "chaos-monkey-engine-dev-control"
    assert engine.runner.allowed_lateness == timedelta(minutes=10)
    (summary,) = scheduler.list_schedules(GroupName="chaos-monkey-engine-dev")["Schedules"]
    schedule = scheduler.get_schedule(Name=summary["Name"], GroupName="chaos-monkey-engine-dev")
    # Madrid wall time 10:00 in winter is 09:00 UTC; Scheduler fires anywhere in the minute
    # of its at(), so the schedule is for the minute before and the attack Lambda waits.
    assert schedule["ScheduleExpression"] == "at(2099-01-01T08:59:00)"
    target = schedule["Target"]
    assert json.loads(target["Input"]) == {
        "executor_id": summary["Name"],
        "run_at": "2099-01-01T09:00:00+00:00",
    }
    assert target["Arn"] == (
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:chaos-monkey-engine-dev-attack"
    )
    assert target["RoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/chaos-monkey-engine-dev-scheduler"
    assert target["DeadLetterConfig"]["Arn"] == (
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:chaos-monkey-engine-dev-dead-letters"
    )
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == 600


def test_dev_and_prod_name_their_own_resources():
    for stage in ("dev", "prod"):
        environment = stage_environment(stage)
        prefix = f"chaos-monkey-engine-{stage}"
        assert environment["CME_AUTH"] == "iam"
        assert environment["CME_SCHEDULE_GROUP"] == prefix
        assert environment["CME_PLANS_TABLE"] == f"{prefix}-plans"
        assert environment["CME_EXECUTORS_TABLE"] == f"{prefix}-executors"
        assert environment["CME_CONTROL_TABLE"] == f"{prefix}-control"
        assert environment["CME_EVENTS_TABLE"] == f"{prefix}-events"
        # Notifications are opt-in: nothing is sent, and nothing may be published, until
        # the stage names a webhook or a topic (docs/deploy.md).
        assert environment["CME_NOTIFY_WEBHOOK_URL"] == ""
        assert environment["CME_NOTIFY_SNS_TOPIC_ARN"] == ""
        settings = Settings.from_env(environment)
        assert settings.events_table == f"{prefix}-events"
        assert settings.notify_webhook_url is None and settings.notify_sns_topic_arn is None
        for name in ("CME_SCHEDULER_ROLE_ARN", "CME_ATTACK_FUNCTION_ARN", "CME_DEAD_LETTER_ARN"):
            assert prefix in environment[name]
    assert "CME_AUTH" not in stage_environment("local")


# -- the attack Lambda's timeout, the setting that mirrors it, and the lease ---------------

LAMBDA_MAX_TIMEOUT = 900  # Lambda's own maximum (docs/deploy.md, "Time limits")


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_attack_timeout_setting_is_the_attack_lambdas_timeout_and_within_the_lease(
    stage: str,
):
    timeout = CONFIG["stages"][stage]["lambda_functions"]["attack"]["lambda_timeout"]
    environment = stage_environment(stage)
    assert timeout == LAMBDA_MAX_TIMEOUT
    assert int(environment["CME_ATTACK_FUNCTION_TIMEOUT_SECONDS"]) == timeout
    # The reaper never ends a run whose Lambda may still be alive.
    assert int(environment["CME_MAX_RUN_SECONDS"]) >= timeout
    settings = Settings.from_env(environment)
    assert settings.attack_function_timeout == timedelta(seconds=timeout)
    # What plans may ask of an attack: the Lambda's time less the longest wait for the
    # executor's second, the guards and a margin (900 - 125 - 30 - 30 = 715 s).
    limit = (
        timedelta(seconds=timeout) - EARLY_DELIVERY_WINDOW - GUARD_TIME_BUDGET - ATTACK_TIME_MARGIN
    )
    assert settings.attack_time_limit == limit == timedelta(seconds=715)


def test_every_stage_with_an_attack_lambda_declares_its_timeout():
    for name, stage in CONFIG["stages"].items():
        attack = stage.get("lambda_functions", {}).get("attack")
        environment = stage_environment(name)
        if attack is None:
            assert "CME_ATTACK_FUNCTION_TIMEOUT_SECONDS" not in environment, name
        else:
            assert environment["CME_ATTACK_FUNCTION_TIMEOUT_SECONDS"] == str(
                attack["lambda_timeout"]
            ), name


# -- the scheduler role: only Scheduler, for this account and this stage's group ----------


def merged_template(stage: str) -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("cme_infra_merge", ROOT / "infra" / "merge.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.merged(stage))


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_only_the_stages_schedule_group_may_have_scheduler_assume_its_role(stage: str):
    resources = merged_template(stage)["Resources"]
    role = resources["SchedulerRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
        # The Scheduler user guide: aws:SourceArn is the schedule *group*'s ARN.
        "ArnLike": {"aws:SourceArn": {"Fn::GetAtt": ["ScheduleGroup", "Arn"]}},
    }
    # ... and that group is the one the stage's engine creates its schedules in.
    group = resources["ScheduleGroup"]["Properties"]["Name"]
    assert group == {"Fn::Sub": "chaos-monkey-engine-${Stage}"}
    assert stage_environment(stage)["CME_SCHEDULE_GROUP"] == f"chaos-monkey-engine-{stage}"


# -- the tables: the stage's names, kept like data --------------------------------------------

TABLES = {
    "PlansTable": "CME_PLANS_TABLE",
    "ExecutorsTable": "CME_EXECUTORS_TABLE",
    "ControlTable": "CME_CONTROL_TABLE",
    "EventsTable": "CME_EVENTS_TABLE",
}


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_every_table_is_named_for_the_stage_and_kept_like_data(stage: str):
    """The control table holds the live halt: it is encrypted, recoverable and retained
    when the stack goes, like the plans."""
    resources = merged_template(stage)["Resources"]
    environment = stage_environment(stage)
    for logical, variable in TABLES.items():
        table = resources[logical]
        properties = table["Properties"]
        name = properties["TableName"]["Fn::Sub"].replace("${Stage}", stage)
        assert name == environment[variable], logical
        assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain", logical
        assert properties["BillingMode"] == "PAY_PER_REQUEST", logical
        assert properties["SSESpecification"] == {"SSEEnabled": True}, logical
        assert properties["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": True
        }, logical


@pytest.mark.parametrize("function", ["APIHandler", "Attack", "Reaper", "Expander"])
def test_the_packaged_functions_are_given_every_table(function: str):
    variables = merged_template("dev")["Resources"][function]["Properties"]["Environment"][
        "Variables"
    ]
    for logical, variable in TABLES.items():
        assert variables[variable] == {"Ref": logical}
    # The notification settings are the stack's parameters (empty by default).
    assert variables["CME_NOTIFY_SNS_TOPIC_ARN"] == {"Ref": "NotifySnsTopicArn"}
    assert variables["CME_NOTIFY_WEBHOOK_URL"] == {"Ref": "NotifyWebhookUrl"}


# -- the events table: what DynamoEventLog.create_table makes -------------------------------


def test_the_template_declares_the_events_table_the_event_log_creates(aws: None):
    """Keys, attributes and indexes (with their projections) exactly as the deployed code's
    own create_table makes them (local mode's --store moto, the tests), and TTL on
    ``expires_at`` as that table has it: an index the code queries that the template lacks
    (or a key of another type) fails here, not as a ValidationException in AWS."""
    from chalicelib.adapters.dynamo_events import DynamoEventLog

    settings = Settings.from_env({**stage_environment("dev"), "AWS_REGION": REGION})
    DynamoEventLog(settings).create_table()
    client = boto3.client("dynamodb", region_name=REGION)
    actual = client.describe_table(TableName=settings.events_table)["Table"]
    declared = merged_template("dev")["Resources"]["EventsTable"]["Properties"]

    assert declared["KeySchema"] == actual["KeySchema"]
    assert declared["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert sorted(declared["AttributeDefinitions"], key=str) == sorted(
        actual["AttributeDefinitions"], key=str
    )

    def indexes(table: dict[str, Any]) -> dict[str, Any]:
        return {
            index["IndexName"]: (index["KeySchema"], index["Projection"])
            for index in table["GlobalSecondaryIndexes"]
        }

    assert indexes(declared) == indexes(actual)
    assert set(indexes(declared)) == {"by_time", "by_kind", "by_plan"}
    assert declared["BillingMode"] == actual["BillingModeSummary"]["BillingMode"]
    ttl = client.describe_time_to_live(TableName=settings.events_table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    assert declared["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


# -- notifications: sns:Publish on exactly the stage's topic, only when it is set -----------

NOTIFYING_ROLES = ["ApiHandlerRole", "AttackRole", "ReaperRole"]


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_only_a_set_topic_is_granted_and_only_to_the_functions_that_notify(stage: str):
    """The attack and the reaper end executors, the API changes the halt; the expander
    notifies nothing. The grant is a policy of its own that exists only under
    HasNotifyTopic, on the parameter's topic, so an empty parameter grants nothing."""
    template = merged_template(stage)
    parameter = template["Parameters"]["NotifySnsTopicArn"]
    assert parameter["Default"] == ""
    assert template["Parameters"]["NotifyWebhookUrl"] == {
        "Type": "String",
        "Default": "",
        "NoEcho": True,  # webhook services put their tokens in the URL
        "Description": template["Parameters"]["NotifyWebhookUrl"]["Description"],
    }
    assert template["Conditions"]["HasNotifyTopic"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "NotifySnsTopicArn"}, ""]}]
    }
    resources = template["Resources"]
    publishing = [
        (logical, resource)
        for logical, resource in resources.items()
        if "sns:Publish" in json.dumps(resource)
    ]
    ((logical, policy),) = publishing
    assert logical == "NotifyTopicPolicy"
    assert policy["Type"] == "AWS::IAM::Policy"
    assert policy["Condition"] == "HasNotifyTopic"
    properties = policy["Properties"]
    assert properties["Roles"] == [{"Ref": role} for role in NOTIFYING_ROLES]
    assert properties["PolicyDocument"]["Statement"] == [
        {
            "Sid": "NotifyTopic",
            "Effect": "Allow",
            "Action": "sns:Publish",
            "Resource": {"Ref": "NotifySnsTopicArn"},
        }
    ]
    # The parameter takes any partition's standard topic and refuses anything else.
    pattern = re.compile(parameter["AllowedPattern"])
    for accepted in (
        "",
        f"arn:aws:sns:{REGION}:{ACCOUNT}:cme",
        f"arn:aws-cn:sns:cn-north-1:{ACCOUNT}:a_b-c",
    ):
        assert pattern.fullmatch(accepted), accepted
    for refused in (
        "*",
        f"arn:aws:sns:{REGION}:{ACCOUNT}:*",
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:cme",
        f"arn:aws:sns:{REGION}:{ACCOUNT}:cme.fifo",
    ):
        assert not pattern.fullmatch(refused), refused


FUNCTIONS = {"api": True, "attack": True, "reaper": True, "expander": False}  # notifies?


def notify_grant_problems(topic: str, policies: dict[str, dict[str, Any]]) -> list[str]:
    """How the `chalice deploy` policies (function -> document) differ from: sns:Publish on
    exactly ``topic`` for the functions that notify, when it is set; no SNS grant else."""
    problems = []
    for function, document in policies.items():
        sns = [
            statement
            for statement in document["Statement"]
            if "sns:" in json.dumps(statement.get("Action"))
        ]
        wanted = (
            [{"Sid": "NotifyTopic", "Effect": "Allow", "Action": "sns:Publish", "Resource": topic}]
            if topic and FUNCTIONS[function]
            else []
        )
        if sns != wanted:
            problems.append(f"{function}: grants {sns}, wanted {wanted}")
    return problems


def policy_files(stage: str) -> dict[str, dict[str, Any]]:
    return {
        function: json.loads((ROOT / ".chalice" / f"policy-{function}-{stage}.json").read_text())
        for function in FUNCTIONS
    }


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_chalice_deploy_policies_grant_sns_only_for_the_stages_topic(stage: str):
    """A static policy cannot be conditional: whoever sets CME_NOTIFY_SNS_TOPIC_ARN in a
    stage adds the NotifyTopic statement to that stage's api, attack and reaper files
    (docs/deploy.md), and this test holds the two together."""
    topic = stage_environment(stage)["CME_NOTIFY_SNS_TOPIC_ARN"]
    assert notify_grant_problems(topic, policy_files(stage)) == []


def test_the_sns_grant_check_refuses_a_missing_a_wider_or_an_unset_topics_grant():
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:cme-dev"
    unset = policy_files("dev")
    assert notify_grant_problems("", unset) == []
    assert [p.split(":")[0] for p in notify_grant_problems(topic, unset)] == [
        "api",
        "attack",
        "reaper",
    ]

    def with_statement(resource: str, functions: tuple[str, ...]) -> dict[str, Any]:
        policies = policy_files("dev")
        for function in functions:
            policies[function]["Statement"].append(
                {
                    "Sid": "NotifyTopic",
                    "Effect": "Allow",
                    "Action": "sns:Publish",
                    "Resource": resource,
                }
            )
        return policies

    assert notify_grant_problems(topic, with_statement(topic, ("api", "attack", "reaper"))) == []
    wider = with_statement(f"arn:aws:sns:{REGION}:{ACCOUNT}:*", ("api", "attack", "reaper"))
    assert len(notify_grant_problems(topic, wider)) == 3
    expander = with_statement(topic, ("api", "attack", "reaper", "expander"))
    assert [p.split(":")[0] for p in notify_grant_problems(topic, expander)] == ["expander"]
    # A grant left behind once the stage's topic is unset.
    assert len(notify_grant_problems("", with_statement(topic, ("attack",)))) == 1
