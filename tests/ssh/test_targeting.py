"""SSH attacks on the one targeting path: listed hosts (no tags) and EC2-found hosts (the
engine's opt-in and exclude tags), the blast radius, the recorded seed and dry run."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from chaosmonkey.attacks import AttackSkipped
from tests.ssh.conftest import Lab

RUN_SCRIPT = "run_script:RunScript"
OPT_IN = {"chaos-monkey-engine": "target"}
EXCLUDE = {"chaos-monkey-engine-exclude": "true"}
TAGS_TEXT = "opt-in tag chaos-monkey-engine=target, exclude tag chaos-monkey-engine-exclude"


def marking(lab: Lab) -> tuple[str, Path]:
    """A script that leaves ``<marker>-<address>`` beside the hosts' directories."""
    marker = lab.hosts[0].directory.parent / f"mark-{uuid.uuid4().hex[:8]}"
    script = f'#!/bin/sh\nme=$(hostname -I | tr -d " ")\ntouch "{marker}-$me"\n'
    return script, marker


def marked(lab: Lab, marker: Path) -> list[str]:
    """The addresses of the hosts the script ran on."""
    return sorted(host.address for host in lab.hosts if Path(f"{marker}-{host.address}").exists())


def skipped(attack: Any, args: dict[str, Any], **kw: Any) -> AttackSkipped:
    with pytest.raises(AttackSkipped) as raised:
        attack(RUN_SCRIPT, args, **kw)
    return raised.value


# --- hosts listed by address --------------------------------------------------------------------


def test_listed_hosts_have_no_tags_and_pass_the_guards(lab: Lab, ssh_key_env: None, attack: Any):
    script, marker = marking(lab)
    hosts = [host.address for host in lab.hosts]

    result = attack(RUN_SCRIPT, {"hosts": hosts, "script": script, "ssh": lab.ssh()})

    assert marked(lab, marker) == sorted(hosts)
    assert result["selection"]["spared"] == []
    assert (result["selection"]["matched"], result["selection"]["eligible"]) == (3, 3)
    assert result["selection"]["radius"] == {"count": "all", "min_remaining": 0}


@pytest.mark.parametrize(
    ("radius", "expected"),
    [
        ({"count": 2}, 2),
        ({"percent": 50}, 2),  # 1.5 rounded up
        ({"percent": 1}, 1),  # at least one
        ({"max_targets": 1}, 1),  # over the listed hosts' default, every one
        ({"min_remaining": 2}, 1),  # the boundary: one of three may be hit
    ],
)
def test_the_blast_radius_applies_to_listed_hosts(
    lab: Lab, ssh_key_env: None, attack: Any, radius: dict[str, Any], expected: int
):
    script, marker = marking(lab)
    hosts = [host.address for host in lab.hosts]

    result = attack(RUN_SCRIPT, {"hosts": hosts, "script": script, "ssh": lab.ssh(), **radius})

    ran = marked(lab, marker)
    assert len(ran) == expected
    assert sorted(target["host"] for target in result["targets"]) == ran


def test_min_remaining_that_leaves_no_host_refuses_before_connecting(lab: Lab, attack: Any):
    script, marker = marking(lab)
    # No key in the environment: reaching the hosts would fail the run, not skip it.
    args = {
        "hosts": [host.address for host in lab.hosts],
        "script": script,
        "ssh": lab.ssh(),
        "min_remaining": 3,
    }

    refusal = skipped(attack, args)

    assert refusal.reason == (
        "blast radius: min_remaining 3 leaves nothing to hit: 3 eligible hosts of 3 matched, "
        "at most 3 - 3 = 0 may be hit"
    )
    assert refusal.result["targets"] == []
    assert marked(lab, marker) == []


def test_the_recorded_seed_replays_the_pick_and_dry_run_runs_nothing(
    lab: Lab, ssh_key_env: None, attack: Any
):
    script, marker = marking(lab)
    args = {
        "hosts": [host.address for host in lab.hosts],
        "script": script,
        "ssh": lab.ssh(),
        "count": 2,
    }

    dry = skipped(attack, args, dry_run=True)
    assert marked(lab, marker) == []
    picked = sorted(target["host"] for target in dry.result["targets"])
    assert (
        dry.reason == f"dry run: would run inline-script on {', '.join(picked)}; nothing was done"
    )

    result = attack(RUN_SCRIPT, {**args, "seed": dry.result["selection"]["seed"]})

    assert marked(lab, marker) == picked
    assert sorted(target["host"] for target in result["targets"]) == picked


# --- hosts found by EC2 filters: the engine's tag guards -----------------------------------------


def launch_at(lab: Lab, tags_by_host: dict[int, dict[str, str]]) -> dict[int, str]:
    """moto instances at the lab hosts' addresses, tagged; host index -> instance id."""
    ec2 = boto3.client("ec2", region_name="eu-west-1")
    vpc = ec2.create_vpc(CidrBlock=str(lab.network.supernet(new_prefix=16)))["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=str(lab.network))["Subnet"]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ids = {}
    for index, tags in tags_by_host.items():
        instance = ec2.run_instances(
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            SubnetId=subnet,
            PrivateIpAddress=lab.hosts[index].address,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": key, "Value": value} for key, value in tags.items()],
                }
            ],
        )["Instances"][0]
        ids[index] = instance["InstanceId"]
    return ids


def test_found_hosts_must_carry_the_opt_in_tag_and_not_the_exclude_tag(
    lab: Lab, ssh_key_env: None, attack: Any, aws: None
):
    suite = {"Lab": uuid.uuid4().hex}
    ids = launch_at(lab, {0: {**suite, **OPT_IN}, 1: {**suite, **OPT_IN, **EXCLUDE}, 2: suite})
    script, marker = marking(lab)
    args = {
        "filters": {"tag:Lab": suite["Lab"]},
        "script": script,
        "ssh": lab.ssh(),
        "region": "eu-west-1",
        "count": "all",
    }

    result = attack(RUN_SCRIPT, args)

    assert marked(lab, marker) == [lab.hosts[0].address]
    assert [target["name"] for target in result["targets"]] == [ids[0]]
    assert {item["id"]: item["why"] for item in result["selection"]["spared"]} == {
        ids[1]: "carries the exclude tag chaos-monkey-engine-exclude",
        ids[2]: "lacks the opt-in tag chaos-monkey-engine=target",
    }


def test_when_every_found_host_is_spared_nothing_connects(lab: Lab, attack: Any, aws: None):
    suite = {"Lab": uuid.uuid4().hex}
    launch_at(lab, {1: {**suite, **OPT_IN, **EXCLUDE}, 2: suite})
    script, marker = marking(lab)
    # No key in the environment: reaching a host would fail the run, not skip it.
    args = {"filters": {"tag:Lab": suite["Lab"]}, "script": script, "ssh": lab.ssh()}

    refusal = skipped(attack, args)

    assert refusal.reason == (
        f"opt-in and exclude: 2 instances matched and none may be attacked ({TAGS_TEXT}): "
        "1 lacks the opt-in tag chaos-monkey-engine=target; 1 carries the exclude tag "
        "chaos-monkey-engine-exclude"
    )
    assert refusal.result["targets"] == []
    assert marked(lab, marker) == []


def test_a_dry_run_of_found_hosts_lists_them_and_runs_nothing(
    lab: Lab, ssh_key_env: None, attack: Any, aws: None
):
    suite = {"Lab": uuid.uuid4().hex}
    ids = launch_at(lab, {0: {**suite, **OPT_IN}, 1: {**suite, **OPT_IN}})
    script, marker = marking(lab)
    args = {"filters": {"tag:Lab": suite["Lab"]}, "script": script, "ssh": lab.ssh(), "count": 2}

    refusal = skipped(attack, args, dry_run=True)

    assert marked(lab, marker) == []
    assert sorted(refusal.result["targets"], key=lambda target: str(target["name"])) == sorted(
        ({"host": lab.hosts[index].address, "port": 22, "name": ids[index]} for index in (0, 1)),
        key=lambda target: str(target["name"]),
    )
    assert refusal.reason.startswith("dry run: would run inline-script on ")
