"""TerminateEC2Instance: terminate a random EC2 instance found by EC2 filters."""

from __future__ import annotations

from . import _ec2_attack

# The 2017 docs name this ref ``terminate_ec2_instance:TerminateEC2InstanceNotExcluded``.
from .terminate_ec2_instance_not_excluded import TerminateEC2InstanceNotExcluded


class TerminateEC2Instance(_ec2_attack.EC2InstanceAttack):
    """Terminate one running instance, at random, among those matching ``filters``.

    ``filters`` are any EC2 DescribeInstances filters (``{"tag:Chaos": "true"}``);
    ``instance-state-name=running`` is added when they name no state. ``region`` is
    optional (AWS_DEFAULT_REGION). The result names the instance: id, Name tag,
    private IP and zone. No match ends the executor skipped: "no instance matched".
    """

    ref = "terminate_ec2_instance:TerminateEC2Instance"
    action = "terminate"
    schema = _ec2_attack.ec2_schema()
    example = {
        "ref": ref,
        "args": {"filters": {"tag:Chaos": "true"}, "region": "eu-west-1"},
    }


__all__ = ["TerminateEC2Instance", "TerminateEC2InstanceNotExcluded"]
