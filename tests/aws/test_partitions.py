"""The engine deploys in every AWS partition (aws, aws-cn, aws-us-gov): no ARN names one.

`chalice deploy` uses the static .chalice/policy-*.json files as they are, so their ARNs
say ``arn:*:`` (IAM allows wildcards in every ARN segment but the service, and an account
lives in one partition, so ``*`` grants nothing more). `make package` builds every ARN
with ``${AWS::Partition}`` or from the resource itself; infra/merge.py refuses to build a
template that writes a partition out.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
POLICY_FILES = sorted((ROOT / ".chalice").glob("policy-*.json"))
PARTITIONS = ("aws", "aws-cn", "aws-us-gov")


def load_merge() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cme_infra_merge", ROOT / "infra" / "merge.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


merge = load_merge()


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resources(policy: dict[str, Any]) -> list[str]:
    return [r for s in policy["Statement"] for r in as_list(s.get("Resource", []))]


def allows(policy: dict[str, Any], action: str, arn: str) -> bool:
    """IAM's reading of Resource patterns: ``*`` any characters, ``?`` one."""
    return any(
        statement["Effect"] == "Allow"
        and action in as_list(statement["Action"])
        and any(fnmatch.fnmatchcase(arn, pattern) for pattern in as_list(statement["Resource"]))
        for statement in policy["Statement"]
    )


def test_there_are_policy_files_to_check():
    names = {path.name for path in POLICY_FILES}
    assert names == {
        f"policy-{function}-{stage}.json"
        for function in ("api", "attack", "reaper", "expander")
        for stage in ("dev", "prod")
    }


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda path: path.name)
def test_no_policy_file_names_a_partition(path: Path):
    policy = json.loads(path.read_text())
    assert merge.literal_partitions(policy) == []
    for arn in resources(policy):
        if arn == "*":
            continue
        prefix, partition, service, *_ = arn.split(":")
        assert (prefix, partition) == ("arn", "*"), arn
        # IAM refuses a wildcard in the service segment.
        assert service.isalnum() and service.islower(), arn


@pytest.mark.parametrize("partition", PARTITIONS)
def test_the_static_policies_grant_the_same_resources_in_every_partition(partition: str):
    region = {"aws": "eu-west-1", "aws-cn": "cn-north-1", "aws-us-gov": "us-gov-west-1"}
    arn = f"arn:{partition}:dynamodb:{region[partition]}:123456789012:table/"
    api = json.loads((ROOT / ".chalice" / "policy-api-dev.json").read_text())
    attack = json.loads((ROOT / ".chalice" / "policy-attack-dev.json").read_text())
    reaper = json.loads((ROOT / ".chalice" / "policy-reaper-dev.json").read_text())
    executors = arn + "chaos-monkey-engine-dev-executors"
    assert allows(api, "dynamodb:PutItem", executors)
    assert allows(api, "dynamodb:Query", executors + "/index/by_plan")
    assert allows(attack, "dynamodb:UpdateItem", executors)
    assert allows(reaper, "dynamodb:UpdateItem", executors)
    assert not allows(attack, "dynamodb:UpdateItem", executors.replace("-dev-", "-prod-"))
    schedules = f"arn:{partition}:scheduler:{region[partition]}:123456789012:schedule/"
    assert allows(api, "scheduler:CreateSchedule", schedules + "chaos-monkey-engine-dev/abc")
    assert not allows(api, "scheduler:CreateSchedule", schedules + "default/abc")
    role = f"arn:{partition}:iam::123456789012:role/chaos-monkey-engine-dev-scheduler"
    assert allows(api, "iam:PassRole", role)


def test_the_stage_arns_name_the_partition_by_placeholder():
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert merge.literal_partitions(config) == []
    for stage in ("dev", "prod"):
        variables = config["stages"][stage]["environment_variables"]
        arns = [value for value in variables.values() if value.startswith("arn:")]
        assert len(arns) == 3
        assert all(arn.startswith("arn:{partition}:") for arn in arns), arns


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_merged_template_names_no_partition(stage: str):
    template = merge.merged(stage)
    assert merge.literal_partitions(template) == []
    assert plain_arns(template) == [], "ARNs are built with ${AWS::Partition}, Ref or GetAtt"


def test_merge_refuses_a_template_that_names_a_partition(monkeypatch: pytest.MonkeyPatch):
    real_load = merge.load

    def with_a_literal_arn(name: str) -> dict[str, Any]:
        template: dict[str, Any] = real_load(name)
        if name == "resources.yaml":
            template["Outputs"]["Hardcoded"] = {"Value": "arn:aws-us-gov:sqs:us-gov-west-1:1:q"}
        return template

    monkeypatch.setattr(merge, "load", with_a_literal_arn)
    with pytest.raises(SystemExit, match=r"/Outputs/Hardcoded/Value: arn:aws-us-gov:sqs"):
        merge.merged("dev")


def test_the_packaged_template_names_no_partition(tmp_path: Path):
    """What `make package` deploys: Chalice's own resources merged with infra/."""
    env = {**os.environ, "AWS_DEFAULT_REGION": "eu-west-1"}
    merged = tmp_path / "merge.json"
    subprocess.run(
        [sys.executable, str(ROOT / "infra" / "merge.py"), "dev", str(merged)],
        check=True,
        cwd=ROOT,
        env=env,
    )
    out = tmp_path / "out"
    subprocess.run(
        [
            str(BIN / "chalice"),
            "package",
            "--stage",
            "dev",
            "--merge-template",
            str(merged),
            str(out),
        ],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=600,
    )
    template = json.loads((out / "sam.json").read_text())
    assert merge.literal_partitions(template) == []
    # The only plain ARNs are the stage's run-time placeholders ({partition} is filled in
    # from the function's own identity).
    plain = plain_arns(template)
    assert plain and all(hit.startswith("arn:{partition}:") for hit in plain), plain
    roles = [r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    assert len(roles) == 5  # the four functions' and the scheduler's
    for role in roles:
        for policy in role["Properties"].get("Policies", []):
            for resource in resources(policy["PolicyDocument"]):
                assert not (isinstance(resource, str) and resource.startswith("arn:*:")), (
                    "the package grants exact ARNs, not the static files' wildcards"
                )


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def plain_arns(template: dict[str, Any]) -> list[str]:
    """ARN strings (plain or in Fn::Sub) whose partition is not ${AWS::Partition}."""
    return [
        hit
        for hit in strings(template)
        if hit.startswith("arn:") and "${AWS::Partition}" not in hit
    ]
