"""RebootEC2Instance: reboot random EC2 instances found by EC2 filters."""

from __future__ import annotations

from . import _ec2_attack


class RebootEC2Instance(_ec2_attack.EC2InstanceAttack):
    """Reboot running instances (one by default), at random, among those matching ``filters``.

    Same arguments and result as ``terminate_ec2_instance:TerminateEC2Instance``.
    """

    ref = "reboot_ec2_instance:RebootEC2Instance"
    action = "reboot"
    schema = _ec2_attack.ec2_schema()
    example = {
        "ref": ref,
        "args": {"filters": {"tag:Chaos": "true"}, "region": "eu-west-1"},
    }
