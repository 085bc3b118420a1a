"""StopEC2Instance: stop random EC2 instances found by EC2 filters."""

from __future__ import annotations

from . import _ec2_attack


class StopEC2Instance(_ec2_attack.EC2InstanceAttack):
    """Stop running instances (one by default), at random, among those matching ``filters``.

    Same arguments and result as ``terminate_ec2_instance:TerminateEC2Instance``; the
    instances can be started again (EBS-backed instances only: EC2 refuses to stop an
    instance-store one, and the executor fails with EC2's message).
    """

    ref = "stop_ec2_instance:StopEC2Instance"
    action = "stop"
    schema = _ec2_attack.ec2_schema()
    example = {
        "ref": ref,
        "args": {"filters": {"tag:Chaos": "true"}, "region": "eu-west-1"},
    }
