"""`chalice package` merged with infra/: what the zip holds and what the template grants."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dev stage packaged exactly as `make package` does it."""
    out = tmp_path_factory.mktemp("package")
    env = {**os.environ, "AWS_DEFAULT_REGION": "eu-west-1"}
    merge = out / "merge.json"
    subprocess.run(
        [sys.executable, str(ROOT / "infra" / "merge.py"), "dev", str(merge)],
        check=True,
        cwd=ROOT,
        env=env,
    )
    subprocess.run(
        [
            str(BIN / "chalice"),
            "package",
            "--stage",
            "dev",
            "--merge-template",
            str(merge),
            str(out),
        ],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=600,
    )
    return out


@pytest.fixture(scope="module")
def template(package: Path) -> dict[str, Any]:
    return dict(json.loads((package / "sam.json").read_text()))


@pytest.fixture(scope="module")
def names(package: Path) -> list[str]:
    with zipfile.ZipFile(package / "deployment.zip") as archive:
        return archive.namelist()


def statements(policy_holder: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for policy in policy_holder["Properties"]["Policies"]:
        yield from policy["PolicyDocument"]["Statement"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# -- the zip ------------------------------------------------------------------------------


def test_the_zip_holds_the_plugins_through_the_vendor_symlinks(names: list[str]):
    for expected in (
        "app.py",
        "chalicelib/bootstrap.py",
        "chalicelib/adapters/eventbridge.py",
        "attacks/api_request.py",
        "planners/simple_planner.py",
        "planners/exact_planner.py",
        "chaosmonkey/attacks/__init__.py",
    ):
        assert expected in names, expected


def test_the_zip_holds_no_tests_and_no_project_tooling(names: list[str]):
    tops = {name.split("/", 1)[0] for name in names}
    for unwanted in ("tests", "infra", "bench", "docs", ".venv", "vendor", "out", ".chalice"):
        assert unwanted not in tops, unwanted
    assert not any(name.startswith(("moto/", "apscheduler/", "pytest/")) for name in names)


# -- the template -------------------------------------------------------------------------


def test_cfn_lint_finds_nothing(package: Path):
    result = subprocess.run(
        [str(BIN / "cfn-lint"), str(package / "sam.json"), str(ROOT / "infra" / "resources.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_route_requires_iam_authorization(template: dict[str, Any]):
    api = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    assert api["securityDefinitions"]["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    operations = [
        (path, method, operation)
        for path, methods in api["paths"].items()
        for method, operation in methods.items()
        if method != "options"
    ]
    assert len(operations) >= 10
    for path, method, operation in operations:
        assert operation.get("security") == [{"sigv4": []}], f"{method} {path}"


def test_functions_follow_chalice_deploy_naming_and_get_exact_arns(template: dict[str, Any]):
    resources = template["Resources"]
    api = resources["APIHandler"]["Properties"]
    attack = resources["Attack"]["Properties"]
    reaper = resources["Reaper"]["Properties"]
    assert api["FunctionName"] == {"Fn::Sub": "chaos-monkey-engine-${Stage}"}
    assert attack["FunctionName"] == {"Fn::Sub": "chaos-monkey-engine-${Stage}-attack"}
    assert reaper["FunctionName"] == {"Fn::Sub": "chaos-monkey-engine-${Stage}-reaper"}
    for function in (api, attack, reaper):
        variables = function["Environment"]["Variables"]
        assert variables["CME_EXECUTORS_TABLE"] == {"Ref": "ExecutorsTable"}
        assert variables["CME_PLANS_TABLE"] == {"Ref": "PlansTable"}
        assert variables["CME_MAX_RUN_SECONDS"] == "900"
    variables = api["Environment"]["Variables"]
    assert variables["CME_ATTACK_FUNCTION_ARN"] == {"Fn::GetAtt": ["Attack", "Arn"]}
    assert variables["CME_SCHEDULER_ROLE_ARN"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    assert variables["CME_DEAD_LETTER_ARN"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert variables["CME_SCHEDULE_GROUP"] == {"Ref": "ScheduleGroup"}
    assert variables["CME_ALLOWED_LATENESS_SECONDS"] == "600"
    assert api["Timeout"] <= 30  # API Gateway gives up at 29 s
    assert template["Parameters"]["Stage"]["AllowedValues"] == ["dev"]


def test_no_statement_grants_everything(template: dict[str, Any]):
    roles = [r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    assert len(roles) == 4  # the three functions' and the scheduler's
    for role in roles:
        for statement in statements(role):
            actions = as_list(statement["Action"])
            assert all("*" not in action for action in actions), statement
            if "*" in as_list(statement.get("Resource")):
                # IAM has no narrower resource for these.
                assert set(actions) <= {
                    "ec2:DescribeInstances",
                    "ec2:DescribeRegions",
                    "ec2:DescribeAddresses",
                }


def test_the_api_may_only_touch_its_own_schedules_and_pass_only_the_scheduler_role(
    template: dict[str, Any],
):
    by_sid = {s["Sid"]: s for s in statements(template["Resources"]["ApiHandlerRole"])}
    assert set(by_sid) == {"OwnLogs", "EngineTables", "OwnSchedules", "PassSchedulerRole"}
    schedules = by_sid["OwnSchedules"]
    assert "${ScheduleGroup}/*" in schedules["Resource"]["Fn::Sub"]
    assert set(schedules["Action"]) == {
        "scheduler:CreateSchedule",
        "scheduler:UpdateSchedule",
        "scheduler:DeleteSchedule",
        "scheduler:GetSchedule",
    }
    passing = by_sid["PassSchedulerRole"]
    assert passing["Action"] == "iam:PassRole"
    assert passing["Resource"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}
    }


def test_the_scheduler_role_is_for_this_account_and_invokes_only_the_attack(
    template: dict[str, Any],
):
    role = template["Resources"]["SchedulerRole"]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    granted = {s["Action"]: s["Resource"] for s in statements(role)}
    assert set(granted) == {"lambda:InvokeFunction", "sqs:SendMessage"}
    assert granted["lambda:InvokeFunction"]["Fn::Sub"].endswith(
        ":function:chaos-monkey-engine-${Stage}-attack"
    )
    assert granted["sqs:SendMessage"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}


def test_the_reaper_runs_every_five_minutes_and_may_only_find_and_end_executors(
    template: dict[str, Any],
):
    reaper = template["Resources"]["Reaper"]["Properties"]
    assert reaper["Handler"] == "app.reaper"
    (event,) = reaper["Events"].values()
    assert event == {"Type": "Schedule", "Properties": {"Schedule": "rate(5 minutes)"}}
    by_sid = {s["Sid"]: s for s in statements(template["Resources"]["ReaperRole"])}
    assert set(by_sid) == {"OwnLogs", "FindRunningExecutors", "EndLostExecutors"}
    assert all(
        "chaos-monkey-engine-${Stage}-reaper" in resource["Fn::Sub"]
        for resource in by_sid["OwnLogs"]["Resource"]
    )
    assert by_sid["FindRunningExecutors"]["Action"] == ["dynamodb:Query"]
    assert by_sid["FindRunningExecutors"]["Resource"] == {
        "Fn::Sub": "${ExecutorsTable.Arn}/index/by_bucket"
    }
    assert by_sid["EndLostExecutors"]["Action"] == ["dynamodb:UpdateItem"]
    assert by_sid["EndLostExecutors"]["Resource"] == [
        {"Fn::GetAtt": ["ExecutorsTable", "Arn"]},
        {"Fn::GetAtt": ["PlansTable", "Arn"]},
    ]
    alarmed = [
        alarm["Properties"]["Dimensions"]
        for alarm in template["Resources"].values()
        if alarm["Type"] == "AWS::CloudWatch::Alarm"
        and alarm["Properties"]["MetricName"] == "Errors"
    ]
    reaper_name = {"Fn::Sub": "chaos-monkey-engine-${Stage}-reaper"}
    assert [{"Name": "FunctionName", "Value": reaper_name}] in alarmed


def test_storage_and_queue_are_durable_and_encrypted(template: dict[str, Any]):
    resources = template["Resources"]
    for name in ("PlansTable", "ExecutorsTable"):
        table = resources[name]["Properties"]
        assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert table["SSESpecification"] == {"SSEEnabled": True}
        assert resources[name]["DeletionPolicy"] == "Retain"
    indexes = {
        index["IndexName"]
        for index in resources["ExecutorsTable"]["Properties"]["GlobalSecondaryIndexes"]
    }
    assert indexes == {"by_bucket", "by_plan"}
    assert resources["DeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"] is True
    alarms = {
        alarm["Properties"]["MetricName"]
        for alarm in resources.values()
        if alarm["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert alarms == {"ApproximateNumberOfMessagesVisible", "Errors"}


def test_the_tables_match_what_the_store_creates(template: dict[str, Any], aws: None):
    """The template's tables and moto's tables made by DynamoStore have the same keys."""
    import boto3

    from chalicelib.adapters.dynamo import DynamoStore
    from chalicelib.settings import Settings

    settings = Settings(plans_table="p", executors_table="e")
    DynamoStore(settings).create_tables()
    client = boto3.client("dynamodb", region_name="eu-west-1")
    for logical, physical in (("PlansTable", "p"), ("ExecutorsTable", "e")):
        declared = template["Resources"][logical]["Properties"]
        actual = client.describe_table(TableName=physical)["Table"]
        assert declared["KeySchema"] == actual["KeySchema"]
        assert sorted(declared["AttributeDefinitions"], key=str) == sorted(
            actual["AttributeDefinitions"], key=str
        )
        declared_indexes = {
            i["IndexName"]: i["KeySchema"] for i in declared["GlobalSecondaryIndexes"]
        }
        actual_indexes = {i["IndexName"]: i["KeySchema"] for i in actual["GlobalSecondaryIndexes"]}
        assert declared_indexes == actual_indexes


@pytest.mark.parametrize(
    ("role", "function"),
    [("ApiHandlerRole", "api"), ("AttackRole", "attack"), ("ReaperRole", "reaper")],
)
@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_chalice_deploy_policies_grant_what_the_package_grants(
    template: dict[str, Any], role: str, function: str, stage: str
):
    """The static .chalice policy files (chalice deploy route) and the template agree."""
    path = ROOT / ".chalice" / f"policy-{function}-{stage}.json"
    from_file = {
        s["Sid"]: sorted(as_list(s["Action"])) for s in json.loads(path.read_text())["Statement"]
    }
    from_template = {
        s["Sid"]: sorted(as_list(s["Action"])) for s in statements(template["Resources"][role])
    }
    assert from_file == from_template
    text = path.read_text()
    assert f"chaos-monkey-engine-{stage}" in text
    other = "prod" if stage == "dev" else "dev"
    assert f"chaos-monkey-engine-{other}" not in text
