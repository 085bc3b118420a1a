"""In local mode with moto's EC2, SSH attacks never connect to made-up instance addresses."""

from __future__ import annotations

import boto3
import pytest

from chalicelib.plugins.contract import Attack, AttackSkipped
from chalicelib.plugins.registry import load_plugins
from chalicelib.settings import builtin_folder


def test_filters_in_simulated_ec2_are_refused_before_any_connection(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ec2 = boto3.client("ec2", region_name="eu-west-1")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Chaos", "Value": "1"}]}],
    )
    monkeypatch.setenv("CME_SIMULATED_EC2", "1")
    attacks = load_plugins("attacks", Attack, [builtin_folder("attacks")])
    attack = attacks.resolve("run_script:RunScript")(
        {
            "filters": {"tag:Chaos": "1"},
            "script": "true",
            "ssh": {"user": "root", "key": {"env": "NO_SUCH_KEY"}},
        }
    )
    with pytest.raises(AttackSkipped, match="not real hosts"):
        attack.run()
