"""`make package`, merged with infra/ and slimmed: what the zip holds, what the template grants."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from chalicelib.local.fake_aws import FAKE_AWS
from infra.slim_package import (
    BOTOCORE_SERVICES,
    RUNTIME_PROVIDED,
    is_shipped,
    runtime_stand_in,
    unpack,
)
from tests.aws.test_stage_wiring import stage_environment

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MAX_ZIPPED_BYTES = 20_000_000

# The code of the Lambda functions, as shipped; local mode's modules are in the zip (they
# live in chalicelib/) but the Lambda functions never import them.
FIRST_PARTY = ("app.py", "chalicelib/", "attacks/", "planners/", "chaosmonkey/")
LOCAL_ONLY = ("chalicelib.local", "chalicelib.adapters.local_scheduler", "apscheduler", "moto")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dev stage packaged by the Makefile's own `package` recipe, into a temporary dir."""
    out = tmp_path_factory.mktemp("package")
    subprocess.run(
        # -o install: use this virtualenv as it is; never reinstall it from a test.
        ["make", "-o", "install", "package", "STAGE=dev", f"OUT={out}", f"BIN={BIN}"],
        check=True,
        cwd=ROOT,
        env={**os.environ, "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1"},
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


def test_every_plugin_and_fault_script_survives_the_slimming(names: list[str]):
    for folder in ("attacks", "planners", "chaosmonkey"):
        shipped = [
            path.relative_to(ROOT).as_posix()
            for path in (ROOT / folder).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts
        ]
        assert shipped, folder
        assert set(shipped) <= set(names), set(shipped) - set(names)
    assert any(name.startswith("attacks/scripts/") for name in names)


def test_the_zip_holds_no_tests_and_no_project_tooling(names: list[str]):
    tops = {name.split("/", 1)[0] for name in names}
    for unwanted in ("tests", "infra", "bench", "docs", ".venv", "vendor", "out", ".chalice"):
        assert unwanted not in tops, unwanted
    assert not any(name.startswith(("moto/", "apscheduler/", "pytest/")) for name in names)


def test_the_zip_holds_no_test_suites_byte_code_or_unused_botocore_models(names: list[str]):
    assert not [name for name in names if name.startswith("libcloud/test/")]
    suites = [
        name
        for name in names
        if {"test", "tests", "benchmarks", "__pycache__"} & set(PurePosixPath(name).parts[:-1])
    ]
    assert suites == []
    assert not [name for name in names if name.endswith((".pyc", ".pyi"))]
    services = {
        name.split("/")[2]
        for name in names
        if name.count("/") > 3 and name.startswith("botocore/data/")
    }
    assert services == BOTOCORE_SERVICES


def test_the_zip_keeps_what_the_attacks_load_at_run_time(names: list[str]):
    for kept in (
        "libcloud/compute/drivers/ec2.py",
        "libcloud/compute/drivers/gce.py",  # terminate_node takes any provider
        "libcloud/data/pricing.json",  # GCE's list_nodes reads it
        "paramiko/transport.py",
        "botocore/data/endpoints.json",
        "botocore/data/scheduler/2021-06-30/service-2.json.gz",
    ):
        assert kept in names, kept
    assert not any(name.startswith(RUNTIME_PROVIDED) for name in names)


def test_the_zip_is_under_twenty_megabytes(package: Path):
    size = (package / "deployment.zip").stat().st_size
    assert size < MAX_ZIPPED_BYTES, f"deployment.zip is {size / 1e6:.1f} MB zipped"


def test_the_slimming_keeps_code_and_drops_suites():
    """The rule itself, on names taken from real packages."""
    for kept in (
        "app.py",
        "attacks/scripts/burn_cpu.sh",
        "libcloud/compute/drivers/ec2.py",
        "libcloud/data/pricing.json",
        "botocore/data/endpoints.json",
        "botocore/data/dynamodb/2012-08-10/service-2.json.gz",
        "cryptography-50.0.2.dist-info/licenses/LICENSE",
    ):
        assert is_shipped(kept), kept
    for dropped in (
        "libcloud/test/compute/fixtures/ec2/describe_instances.xml",
        "jsonschema/tests/test_validators.py",
        "jsonschema/benchmarks/issue232.py",
        "certifi/tests/test_certify.py",
        "chalicelib/__pycache__/app.cpython-311.pyc",
        "rpds/__init__.pyi",
        "botocore/data/s3/2006-03-01/service-2.json.gz",
    ):
        assert not is_shipped(dropped), dropped


# The names of the boto3 clients the code creates: boto3.client("x") and _client("x").
CLIENT_CALL = re.compile(r"""(?:boto3\.client|_client)\(\s*["']([a-z0-9-]+)["']""")


def shipped_sources(names: list[str]) -> list[str]:
    return [
        name
        for name in names
        if name.endswith(".py")
        and name.startswith(FIRST_PARTY)
        and not name.removesuffix(".py").replace("/", ".").startswith(LOCAL_ONLY)
    ]


def test_every_aws_service_the_code_calls_keeps_its_botocore_model(names: list[str]):
    called = {"dynamodb"}  # through PynamoDB
    for name in shipped_sources(names):
        called.update(CLIENT_CALL.findall((ROOT / name).read_text()))
    assert {"scheduler", "sts", "ssm", "secretsmanager", "ec2"} <= called  # the scan works
    assert called <= BOTOCORE_SERVICES, called - BOTOCORE_SERVICES


def imported_modules(source: str) -> set[str]:
    """Absolute imports of a module, at any depth, except `if TYPE_CHECKING:` blocks."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return found


# Run with `python -S` in the unzipped package: no site-packages, so every module comes
# from the zip, the standard library, or the stand-ins for what the Lambda runtime has.
AS_LAMBDA = """
import importlib, json, os, sys
from app import app
from chalicelib.api.context import engine_of
engine = engine_of(app)  # what the API Lambda's first request does
import boto3
for service in sorted(SERVICES):
    boto3.client(service, region_name="eu-west-1")
for module in sorted(MODULES):
    importlib.import_module(module)
from libcloud.compute.providers import get_driver
from libcloud.compute.types import Provider
from libcloud.pricing import get_pricing
for provider in (Provider.EC2, Provider.GCE):
    get_driver(provider)
get_pricing("compute", "gce_instances")
files = {getattr(module, "__file__", None) for module in list(sys.modules.values())}
print(json.dumps({
    "scheduler": type(engine.scheduler).__name__,
    "attacks": [attack["ref"] for attack in engine.attacks.catalogue()],
    "files": sorted(file for file in files if file),
}))
"""


@pytest.fixture(scope="module")
def lambda_task(package: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return unpack(package / "deployment.zip", tmp_path_factory.mktemp("lambda") / "task")


def test_the_slim_zip_runs_the_lambda_code_path_on_its_own(
    names: list[str], lambda_task: Path, tmp_path: Path
):
    """Import every module the shipped code imports, from the unzipped package alone.

    boto3 and s3transfer are not in the zip: the Lambda runtime provides them, and here
    this virtualenv's copies stand in for the runtime's. Nothing else of the virtualenv is
    visible (``-S``), so a module the slimming removed fails the import.
    """
    modules = set()
    for name in shipped_sources(names):
        modules |= imported_modules((lambda_task / name).read_text())
    modules = {module for module in modules if not module.startswith(LOCAL_ONLY)}
    assert {"libcloud.compute.providers", "paramiko", "pynamodb.models"} <= modules
    stand_in = runtime_stand_in(tmp_path / "runtime")
    probe = AS_LAMBDA.replace("SERVICES", repr(sorted(BOTOCORE_SERVICES))).replace(
        "MODULES", repr(sorted(modules))
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CME_", "PYTHON", "PYTEST", "COV_"))
    }
    env.update(FAKE_AWS)
    env.update(stage_environment("dev"))
    env["PYTHONPATH"] = os.pathsep.join([str(lambda_task), str(stand_in)])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        cwd=lambda_task,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["scheduler"] == "EventBridgeScheduler"
    assert "terminate_node:TerminateNode" in report["attacks"]
    standard = tuple({sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]})
    outside = [
        file
        for file in report["files"]
        if not file.startswith((str(lambda_task), str(stand_in), *standard))
    ]
    assert outside == []
    from_stand_in = {
        Path(file).relative_to(stand_in).parts[0]
        for file in report["files"]
        if file.startswith(str(stand_in))
    }
    assert "boto3" in from_stand_in
    assert from_stand_in <= set(RUNTIME_PROVIDED)


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


def test_every_scheduled_or_invoked_function_has_an_errors_alarm(template: dict[str, Any]):
    """A function that raises (storage trouble, a bug) is alarmed: the attack, reaper and
    expander run with nobody waiting on their answer (the API's errors reach its caller)."""
    resources = template["Resources"]
    alarmed = {
        properties["Dimensions"][0]["Value"]["Fn::Sub"]
        for properties in (
            resource["Properties"]
            for resource in resources.values()
            if resource["Type"] == "AWS::CloudWatch::Alarm"
        )
        if properties.get("Namespace") == "AWS/Lambda" and properties["MetricName"] == "Errors"
    }
    functions = {
        resources[name]["Properties"]["FunctionName"]["Fn::Sub"]
        for name in ("Attack", "Reaper", "Expander")
    }
    assert functions <= alarmed, functions - alarmed


def test_functions_follow_chalice_deploy_naming_and_get_exact_arns(template: dict[str, Any]):
    resources = template["Resources"]
    api = resources["APIHandler"]["Properties"]
    attack = resources["Attack"]["Properties"]
    reaper = resources["Reaper"]["Properties"]
    expander = resources["Expander"]["Properties"]
    assert api["FunctionName"] == {"Fn::Sub": "chaos-monkey-engine-${Stage}"}
    assert attack["FunctionName"] == {"Fn::Sub": "chaos-monkey-engine-${Stage}-attack"}
    assert reaper["FunctionName"] == {"Fn::Sub": "chaos-monkey-engine-${Stage}-reaper"}
    assert expander["FunctionName"] == {"Fn::Sub": "chaos-monkey-engine-${Stage}-expander"}
    for function in (api, attack, reaper, expander):
        variables = function["Environment"]["Variables"]
        assert variables["CME_EXECUTORS_TABLE"] == {"Ref": "ExecutorsTable"}
        assert variables["CME_PLANS_TABLE"] == {"Ref": "PlansTable"}
        assert variables["CME_EVENTS_TABLE"] == {"Ref": "EventsTable"}
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
    assert len(roles) == 5  # the four functions' and the scheduler's
    # ... and the grant to publish notifications, when a topic is set.
    policies = [r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Policy"]
    assert len(policies) == 1
    for role in roles + [{"Properties": {"Policies": [p["Properties"]]}} for p in policies]:
        for statement in statements(role):
            actions = as_list(statement["Action"])
            assert all("*" not in action for action in actions), statement
            if "*" in as_list(statement.get("Resource")):
                # IAM has no narrower resource for these (DescribeAlarms answers composite
                # alarms only to a grant scoped to *).
                assert set(actions) <= {
                    "ec2:DescribeInstances",
                    "ec2:DescribeRegions",
                    "ec2:DescribeAddresses",
                } or set(actions) == {"cloudwatch:DescribeAlarms"}


def test_the_api_may_only_touch_its_own_schedules_and_pass_only_the_scheduler_role(
    template: dict[str, Any],
):
    by_sid = {s["Sid"]: s for s in statements(template["Resources"]["ApiHandlerRole"])}
    assert set(by_sid) == {
        "OwnLogs",
        "EngineTables",
        "EngineControl",
        "RecordEvents",
        "ReadEvents",
        "OwnSchedules",
        "PassSchedulerRole",
    }
    # The audit trail: events are only added (never changed or removed: TTL expires
    # them), and read through the three indexes GET /api/1/events queries.
    assert by_sid["RecordEvents"]["Action"] == ["dynamodb:PutItem"]
    assert by_sid["RecordEvents"]["Resource"] == {"Fn::GetAtt": ["EventsTable", "Arn"]}
    assert by_sid["ReadEvents"]["Action"] == ["dynamodb:Query"]
    assert by_sid["ReadEvents"]["Resource"] == [
        {"Fn::Sub": f"${{EventsTable.Arn}}/index/{index}"}
        for index in ("by_time", "by_kind", "by_plan")
    ]
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


def test_the_reaper_runs_every_five_minutes_and_may_only_find_end_and_remove(
    template: dict[str, Any],
):
    reaper = template["Resources"]["Reaper"]["Properties"]
    assert reaper["Handler"] == "app.reaper"
    (event,) = reaper["Events"].values()
    assert event == {"Type": "Schedule", "Properties": {"Schedule": "rate(5 minutes)"}}
    by_sid = {s["Sid"]: s for s in statements(template["Resources"]["ReaperRole"])}
    assert set(by_sid) == {
        "OwnLogs",
        "FindRunningExecutors",
        "FindAbandonedPlans",
        "FindPlanExecutors",
        "ReadExecutorsAndPlans",
        "EndLostExecutors",
        "RemoveOrphansAndAbandonedPlans",
        "RemoveAbandonedPlansExecutors",
        "RecordEvents",
        "DeleteOwnSchedules",
    }
    assert by_sid["RecordEvents"]["Action"] == ["dynamodb:PutItem"]
    assert by_sid["RecordEvents"]["Resource"] == {"Fn::GetAtt": ["EventsTable", "Arn"]}
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
    assert by_sid["RemoveAbandonedPlansExecutors"]["Resource"] == {
        "Fn::GetAtt": ["ExecutorsTable", "Arn"]
    }
    schedules = by_sid["DeleteOwnSchedules"]
    assert schedules["Action"] == ["scheduler:DeleteSchedule"]
    assert schedules["Resource"]["Fn::Sub"].endswith(":schedule/${ScheduleGroup}/*")
    alarmed = [
        alarm["Properties"]["Dimensions"]
        for alarm in template["Resources"].values()
        if alarm["Type"] == "AWS::CloudWatch::Alarm"
        and alarm["Properties"]["MetricName"] == "Errors"
    ]
    reaper_name = {"Fn::Sub": "chaos-monkey-engine-${Stage}-reaper"}
    assert [{"Name": "FunctionName", "Value": reaper_name}] in alarmed


def test_the_expander_runs_hourly_and_may_only_expand_and_schedule(
    template: dict[str, Any],
):
    expander = template["Resources"]["Expander"]["Properties"]
    assert expander["Handler"] == "app.expander"
    (event,) = expander["Events"].values()
    assert event == {"Type": "Schedule", "Properties": {"Schedule": "rate(1 hour)"}}
    variables = expander["Environment"]["Variables"]
    assert variables["CME_ATTACK_FUNCTION_ARN"] == {"Fn::GetAtt": ["Attack", "Arn"]}
    assert variables["CME_SCHEDULER_ROLE_ARN"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    by_sid = {s["Sid"]: s for s in statements(template["Resources"]["ExpanderRole"])}
    assert set(by_sid) == {
        "OwnLogs",
        "FindDueExpansions",
        "FindPlanExecutors",
        "ReadPlansAndExecutors",
        "AddExecutors",
        "RecordExpansions",
        "RemoveWhatAPauseStopped",
        "OwnSchedules",
        "PassSchedulerRole",
    }
    assert by_sid["FindDueExpansions"]["Resource"] == {
        "Fn::Sub": "${PlansTable.Arn}/index/by_expansion"
    }
    assert by_sid["OwnSchedules"]["Action"] == [
        "scheduler:CreateSchedule",
        "scheduler:DeleteSchedule",
    ]
    assert by_sid["OwnSchedules"]["Resource"]["Fn::Sub"].endswith(":schedule/${ScheduleGroup}/*")
    passed = by_sid["PassSchedulerRole"]
    assert passed["Resource"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    assert passed["Condition"] == {
        "StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}
    }


def test_storage_and_queue_are_durable_and_encrypted(template: dict[str, Any]):
    resources = template["Resources"]
    for name in ("PlansTable", "ExecutorsTable", "ControlTable", "EventsTable"):
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
    [
        ("ApiHandlerRole", "api"),
        ("AttackRole", "attack"),
        ("ReaperRole", "reaper"),
        ("ExpanderRole", "expander"),
    ],
)
@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_chalice_deploy_policies_grant_what_the_package_grants(
    template: dict[str, Any], role: str, function: str, stage: str
):
    """The static .chalice policy files (chalice deploy route) and the template agree."""
    path = ROOT / ".chalice" / f"policy-{function}-{stage}.json"
    # NotifyTopic is in the file only when the stage sets a topic, and in the template a
    # conditional policy of its own (test_stage_wiring checks both).
    from_file = {
        s["Sid"]: sorted(as_list(s["Action"]))
        for s in json.loads(path.read_text())["Statement"]
        if s["Sid"] != "NotifyTopic"
    }
    from_template = {
        s["Sid"]: sorted(as_list(s["Action"])) for s in statements(template["Resources"][role])
    }
    assert from_file == from_template
    text = path.read_text()
    assert f"chaos-monkey-engine-{stage}" in text
    other = "prod" if stage == "dev" else "dev"
    assert f"chaos-monkey-engine-{other}" not in text
