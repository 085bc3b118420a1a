"""What the EC2 instance attacks share: argument schemas and the find-pick-act run.

A private module (its name starts with ``_``), so the plugin loader does not list it;
attack modules import it as a module (``from . import _ec2_attack``), never its
classes, so its base class is not registered under their names.
"""

from __future__ import annotations

from typing import Any, ClassVar

from chaosmonkey.attacks import Attack, AttackFailed, AttackSkipped

NO_MATCH = "no instance matched"

FILTER_VALUE_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
    ]
}

FILTERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "EC2 DescribeInstances filters: name -> value or list of values",
    "minProperties": 1,
    "propertyNames": {"type": "string", "minLength": 1},
    "additionalProperties": FILTER_VALUE_SCHEMA,
}

EXCLUDED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "instances matching any of these filters are never attacked",
    "minProperties": 1,
    "propertyNames": {
        "type": "string",
        "pattern": (
            "^(tag:.+|tag-key|instance-id|availability-zone|instance-type|"
            "instance-state-name|private-ip-address|ip-address|image-id|vpc-id|"
            "subnet-id|key-name)$"
        ),
    },
    "additionalProperties": FILTER_VALUE_SCHEMA,
}

REGION_SCHEMA: dict[str, Any] = {
    "type": "string",
    "description": "AWS region; the engine's when absent",
    "pattern": "^[a-z]{2}(-[a-z]+)+-[0-9]+$",
}


def ec2_schema(**extra: dict[str, Any]) -> dict[str, Any]:
    """The schema of ``{"ref", "args"}`` for an attack on EC2 instances found by filters."""
    return {
        "type": "object",
        "properties": {
            "ref": {"type": "string"},
            "args": {
                "type": "object",
                "properties": {"filters": FILTERS_SCHEMA, "region": REGION_SCHEMA, **extra},
                "required": ["filters"],
                "additionalProperties": False,
            },
        },
        "required": ["ref", "args"],
    }


class EC2InstanceAttack(Attack):
    """Find running instances by ``filters``, pick one at random, apply ``action``.

    ``instance-state-name=running`` is added when the filters name no state (the
    stored config is not changed). No match ends the executor skipped; a dry run
    reports the instance it would have hit and does nothing.
    """

    action: ClassVar[str] = ""
    supports_dry_run = True

    def spare(self, candidates: list[Any]) -> tuple[list[Any], list[Any]]:
        """Split candidates into (attackable, spared). Nothing is spared by default."""
        return candidates, []

    @classmethod
    def warm_up(cls) -> None:
        import chalicelib.adapters.ec2  # noqa: F401

    def run(self) -> dict[str, Any]:
        from chalicelib.adapters.ec2 import EC2Error, EC2Instances, pick, with_running_default

        args = self.attack_config
        filters = with_running_default(args.get("filters") or {})
        where = self.context.environment
        try:
            instances = EC2Instances(
                args.get("region") or where.aws_region, endpoint=where.ec2_endpoint
            )
            candidates, spared = self.spare(instances.find(filters))
        except EC2Error as error:
            raise AttackFailed(str(error), result={"filters": filters}) from None
        result: dict[str, Any] = {
            "action": self.action,
            "region": instances.region,
            "filters": filters,
            "matched": len(candidates) + len(spared),
        }
        if spared:
            result["spared"] = sorted(instance.id for instance in spared)
        if not candidates:
            raise AttackSkipped(NO_MATCH if not spared else f"{NO_MATCH} that is not excluded")
        target = pick(candidates)
        result["instance"] = target.describe()
        fields = {
            "executor_id": self.context.executor_id,
            "instance_id": target.id,
            "region": instances.region,
        }
        if self.context.dry_run:
            raise AttackSkipped(
                f"dry run: would {self.action} {target.id} (name {target.name}, "
                f"private IP {target.private_ip}, zone {target.zone}); nothing was done",
                result=result,
            )
        try:
            getattr(instances, self.action)(target)
        except EC2Error as error:
            raise AttackFailed(str(error), result=result) from None
        self.context.logger.info("%s %s", self.action, target.id, extra=fields)
        return result
