"""What the EC2 instance attacks share: argument schemas, finding instances, acting on them.

A private module (its name starts with ``_``), so the plugin loader does not list it;
attack modules import it as a module (``from . import _ec2_attack``), never its
classes, so its base class is not registered under their names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from chalicelib.plugins.contract import AttackContext
from chalicelib.plugins.targeting import (
    BLAST_RADIUS_PROPERTIES,
    BLAST_RADIUS_RULES,
    ActOnEach,
    BlastRadius,
    Strike,
    TargetKind,
)
from chaosmonkey.attacks import Attack, AttackFailed

if TYPE_CHECKING:
    from chalicelib.adapters.ec2 import EC2Instances, Instance

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
                "properties": {
                    "filters": FILTERS_SCHEMA,
                    "region": REGION_SCHEMA,
                    **BLAST_RADIUS_PROPERTIES,
                    **extra,
                },
                "required": ["filters"],
                "additionalProperties": False,
                **BLAST_RADIUS_RULES,
            },
        },
        "required": ["ref", "args"],
    }


def _label(instance: Instance) -> str:
    return (
        f"{instance.id} (name {instance.name}, private IP {instance.private_ip}, "
        f"zone {instance.zone})"
    )


INSTANCES: TargetKind[Instance] = TargetKind(
    noun="instance",
    id_of=lambda instance: instance.id,
    tags_of=lambda instance: instance.tags,
    describe=lambda instance: instance.describe(),
    label=_label,
    single_key="instance",
)


def instance_actuator(
    instances: EC2Instances, action: str, context: AttackContext
) -> ActOnEach[Instance]:
    """Terminates, stops or reboots each picked instance through Libcloud."""
    from chalicelib.adapters.ec2 import EC2Error

    def done(target: Instance) -> None:
        context.logger.info(
            "%s %s",
            action,
            target.id,
            extra={
                "executor_id": context.executor_id,
                "instance_id": target.id,
                "region": instances.region,
            },
        )

    return ActOnEach(INSTANCES, getattr(instances, action), (EC2Error,), done)


class EC2InstanceAttack(Attack):
    """Find instances by ``filters``, pick as many as the blast radius allows, ``action`` them.

    ``instance-state-name=running`` is added when the filters name no state (the
    stored config is not changed). The engine's opt-in and exclude tags, the attack's
    own exclusions (``why_excluded``) and the blast radius (``count``/``percent``,
    ``max_targets``, ``min_remaining``) apply on the one path of
    ``chalicelib.plugins.targeting``. No match ends the executor skipped; a dry run
    reports the instances it would have hit and does nothing.
    """

    action: ClassVar[str] = ""
    supports_dry_run = True

    def why_excluded(self, instance: Instance) -> str | None:
        """Why the attack's own arguments spare ``instance``; None (nothing) by default."""
        return None

    @classmethod
    def warm_up(cls) -> None:
        import chalicelib.adapters.ec2  # noqa: F401

    def run(self) -> dict[str, Any]:
        from chalicelib.adapters.ec2 import EC2Error, EC2Instances, with_running_default

        args = self.attack_config
        filters = with_running_default(args.get("filters") or {})
        where = self.context.environment
        try:
            instances = EC2Instances(
                args.get("region") or where.aws_region, endpoint=where.ec2_endpoint
            )
        except EC2Error as error:
            raise AttackFailed(str(error), result={"filters": filters}) from None

        def find(may_use_secrets: bool) -> list[Instance]:
            # The engine's own credentials (its role), never a plan's secret: a dry run
            # describes instances as a real run does.
            try:
                return instances.find(filters)
            except EC2Error as error:
                raise AttackFailed(str(error), result={"filters": filters}) from None

        result: dict[str, Any] = {
            "action": self.action,
            "region": instances.region,
            "filters": filters,
        }
        strike = Strike(
            kind=INSTANCES,
            action=self.action,
            find=find,
            actuator=lambda: instance_actuator(instances, self.action, self.context),
            radius=BlastRadius.from_args(args),
            no_match=NO_MATCH,
            result=result,
            spare=self.why_excluded,
            seed=args.get("seed"),
        )
        return strike.run(self.context)
