"""In local mode with moto's EC2, SSH attacks never connect to made-up instance addresses."""

from __future__ import annotations

import boto3
import pytest

from chalicelib.plugins.contract import (
    Attack,
    AttackContext,
    AttackEnvironment,
    AttackFailed,
    AttackSkipped,
)
from chalicelib.plugins.registry import load_plugins
from chalicelib.settings import builtin_folder


def test_filters_in_simulated_ec2_are_refused_before_any_connection(aws: None) -> None:
    ec2 = boto3.client("ec2", region_name="eu-west-1")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    ec2.run_instances(
        ImageId=image,
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [
                    {"Key": "Chaos", "Value": "1"},
                    {"Key": "chaos-monkey-engine", "Value": "target"},  # the opt-in tag
                ],
            }
        ],
    )
    attacks = load_plugins("attacks", Attack, [builtin_folder("attacks")])
    attack = attacks.resolve("run_script:RunScript")(
        {
            "filters": {"tag:Chaos": "1"},
            "script": "true",
            "ssh": {"user": "root", "key": {"env": "CME_SECRET_NO_SUCH_KEY"}},
        }
    )
    # Local mode's settings mark its moto EC2 simulated; the attack learns it from its context.
    attack.context = AttackContext(environment=AttackEnvironment(simulated_ec2=True))
    with pytest.raises(AttackSkipped, match="not real hosts"):
        attack.run()
    # Against a real EC2 the same attack goes on to its key (which this test never set).
    attack.context = AttackContext(environment=AttackEnvironment(simulated_ec2=False))
    with pytest.raises(AttackFailed, match="CME_SECRET_NO_SUCH_KEY is not set"):
        attack.run()
