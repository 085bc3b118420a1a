"""TerminateEC2InstanceNotExcluded: terminate random instances no `excluded` filter spares."""

from __future__ import annotations

from typing import Any

from . import _ec2_attack


class TerminateEC2InstanceNotExcluded(_ec2_attack.EC2InstanceAttack):
    """Terminate random running instances matching ``filters`` and none of ``excluded``.

    ``excluded`` uses the same ``name: value`` form as ``filters`` (``tag:Key``,
    ``availability-zone``, ``instance-type``...); an instance matching *any* of them is
    spared. The instances come from one describe call and the exclusion is applied to
    what it returned, so no instance costs an extra call.
    """

    ref = "terminate_ec2_instance_not_excluded:TerminateEC2InstanceNotExcluded"
    action = "terminate"
    schema = _ec2_attack.ec2_schema(excluded=_ec2_attack.EXCLUDED_SCHEMA)
    example = {
        "ref": ref,
        "args": {
            "filters": {"tag:Chaos": "true"},
            "excluded": {"tag:Protected": "true", "availability-zone": "eu-west-1c"},
            "region": "eu-west-1",
        },
    }

    def why_excluded(self, instance: Any) -> str | None:
        from chalicelib.adapters.ec2 import is_excluded

        if is_excluded(instance, self.attack_config.get("excluded") or {}):
            return "matches the attack's excluded filters"
        return None
