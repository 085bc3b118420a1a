"""TerminateEC2Instance: terminate random EC2 instances found by EC2 filters."""

from __future__ import annotations

from . import _ec2_attack

# The 2017 docs name this ref ``terminate_ec2_instance:TerminateEC2InstanceNotExcluded``.
from .terminate_ec2_instance_not_excluded import TerminateEC2InstanceNotExcluded


class TerminateEC2Instance(_ec2_attack.EC2InstanceAttack):
    """Terminate running instances, at random, among those matching ``filters``: one, or
    as many as the blast radius (``count``/``percent``, ``max_targets``,
    ``min_remaining``) allows, of those carrying the engine's opt-in tag.

    ``filters`` are any EC2 DescribeInstances filters (``{"tag:Chaos": "true"}``);
    ``instance-state-name=running`` is added when they name no state. ``region`` is
    optional (AWS_DEFAULT_REGION). The result lists each instance hit (id, Name tag,
    private IP, zone) in ``targets`` (and ``instance`` when it is one) and the pick in
    ``selection``. No match ends the executor skipped: "no instance matched".
    """

    ref = "terminate_ec2_instance:TerminateEC2Instance"
    action = "terminate"
    schema = _ec2_attack.ec2_schema()
    example = {
        "ref": ref,
        "args": {"filters": {"tag:Chaos": "true"}, "region": "eu-west-1"},
    }


__all__ = ["TerminateEC2Instance", "TerminateEC2InstanceNotExcluded"]
