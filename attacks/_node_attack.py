"""What the Libcloud node attacks share: argument schemas, finding nodes, acting on them.

A private module (not listed as a plugin); attack modules import it as a module so
its base class is not registered under their names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from chalicelib.adapters.secrets import SECRET_REFERENCE_SCHEMA
from chalicelib.domain.redaction import SENSITIVE_NAME_PATTERN
from chalicelib.plugins.contract import AttackContext
from chalicelib.plugins.targeting import (
    BLAST_RADIUS_PROPERTIES,
    BLAST_RADIUS_RULES,
    ActOnEach,
    BlastRadius,
    Strike,
    TargetKind,
)
from chaosmonkey.attacks import Attack, AttackFailed, AttackSkipped

if TYPE_CHECKING:
    from chalicelib.adapters.cloud_nodes import CloudNode, CloudNodes

NO_MATCH = "no node matched"

NODE_STATES = [
    "running",
    "starting",
    "rebooting",
    "terminated",
    "pending",
    "unknown",
    "stopping",
    "stopped",
    "suspended",
    "error",
    "paused",
    "reconfiguring",
    "migrating",
    "normal",
    "updating",
]

# Driver options whose name says "secret" must be secret references, never inline.
CONFIDENTIAL_NAMES = SENSITIVE_NAME_PATTERN  # the one list: chalicelib/domain/redaction.py

DRIVER_ARGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "keyword arguments of the Libcloud driver (region, project, ...); "
    "secret-looking names must be secret references",
    "propertyNames": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
    "patternProperties": {CONFIDENTIAL_NAMES: SECRET_REFERENCE_SCHEMA},
    "additionalProperties": {
        "oneOf": [
            {"type": ["string", "number", "boolean"]},
            SECRET_REFERENCE_SCHEMA,
        ]
    },
}


def node_schema() -> dict[str, Any]:
    """The schema of ``{"ref", "args"}`` for an attack on the nodes of a Libcloud provider."""
    return {
        "type": "object",
        "properties": {
            "ref": {"type": "string"},
            "args": {
                "type": "object",
                "properties": {
                    "provider": {
                        "type": "string",
                        "description": "Libcloud compute provider name (ec2, gce, azure_arm...)",
                        "pattern": "^[a-z][a-z0-9_]*$",
                    },
                    "key": {**SECRET_REFERENCE_SCHEMA, "description": "the driver's key"},
                    "secret": {**SECRET_REFERENCE_SCHEMA, "description": "the driver's secret"},
                    "driver_args": DRIVER_ARGS_SCHEMA,
                    "secrets_region": {
                        "type": "string",
                        "pattern": "^[a-z]{2}(-[a-z]+)+-[0-9]+$",
                        "description": "AWS region of SSM / Secrets Manager references",
                    },
                    "name_pattern": {
                        "type": "string",
                        "minLength": 1,
                        "description": "shell-style pattern of node names ('web-*'; '*' for any)",
                    },
                    "filters": {
                        "type": "object",
                        "minProperties": 1,
                        "description": "provider filters (list_nodes ex_filters), if supported",
                    },
                    "states": {
                        "type": "array",
                        "items": {"enum": NODE_STATES},
                        "minItems": 1,
                        "uniqueItems": True,
                        "description": "node states that may be attacked (running)",
                    },
                    **BLAST_RADIUS_PROPERTIES,
                },
                "required": ["provider", "name_pattern"],
                "additionalProperties": False,
                **BLAST_RADIUS_RULES,
            },
        },
        "required": ["ref", "args"],
    }


def node_example(ref: str) -> dict[str, Any]:
    """An example plan attack for ``ref``: a GCE project, secrets by reference."""
    return {
        "ref": ref,
        "args": {
            "provider": "gce",
            "key": {"env": "CME_SECRET_GCE_SERVICE_ACCOUNT"},
            "secret": {"secretsmanager": "chaos-monkey-engine/gce-key", "key": "private_key"},
            "driver_args": {"project": "my-project", "datacenter": "europe-west1-b"},
            "name_pattern": "web-*",
        },
    }


def node_kind(provider: str) -> TargetKind[CloudNode]:
    """How the targeting path reads the nodes of ``provider``."""
    return TargetKind(
        noun="node",
        id_of=lambda node: node.id,
        tags_of=lambda node: node.tags,
        describe=lambda node: node.describe(),
        label=lambda node: f"{provider} node {node.name} ({node.id})",
        single_key="node",
    )


def node_actuator(nodes: CloudNodes, action: str, context: AttackContext) -> ActOnEach[CloudNode]:
    """Terminates, stops or reboots each picked node through its provider's driver."""
    from chalicelib.adapters.cloud_nodes import NodeError

    def done(target: CloudNode) -> None:
        context.logger.info(
            "%s %s node %s",
            action,
            nodes.provider,
            target.id,
            extra={"executor_id": context.executor_id, "node_id": target.id},
        )

    return ActOnEach(
        node_kind(nodes.provider), lambda target: nodes.act(action, target), (NodeError,), done
    )


class NodeAttack(Attack):
    """Find nodes of a Libcloud provider by name pattern and filters; ``action`` some of them.

    Secrets (``key``, ``secret``, secret-looking ``driver_args``) are references
    resolved at run time (environment, SSM, Secrets Manager) and never appear in the
    result or the logs, and only what the engine's secret policy allows resolves. A
    driver that cannot do ``action`` fails the executor before anything is touched. The
    engine's opt-in and exclude tags (read from the node's tags or labels) and the blast
    radius apply on the one path of ``chalicelib.plugins.targeting``. No match ends the
    executor skipped; a dry run names the nodes only, and a dry run whose arguments hold
    secret references contacts nothing (listing nodes would need them).
    """

    action: ClassVar[str] = ""
    supports_dry_run = True

    @classmethod
    def warm_up(cls) -> None:
        import chalicelib.adapters.cloud_nodes  # noqa: F401

    def run(self) -> dict[str, Any]:
        from chalicelib.adapters.cloud_nodes import CloudNodes, NodeError, node_driver
        from chalicelib.adapters.http import OutboundRefused
        from chalicelib.adapters.secrets import SecretError, resolver
        from chalicelib.plugins.secret_policy import find_references

        args = self.attack_config
        provider = str(args["provider"])
        result: dict[str, Any] = {"action": self.action, "provider": provider}
        found: list[CloudNodes] = []

        def find(may_use_secrets: bool) -> list[CloudNode]:
            if not may_use_secrets and any(find_references(args, "args")):
                # Listing nodes needs the credentials; a dry run never resolves a secret
                # nor sends one anywhere, so it stops before the provider.
                raise AttackSkipped(
                    f"dry run: would {self.action} {provider} nodes matching "
                    f"{args['name_pattern']!r}; its secrets were not resolved and the "
                    "provider was not contacted; nothing was done",
                    result=result,
                )
            region = args.get("secrets_region") or self.context.environment.aws_region
            resolve = resolver(self.context, region)
            try:
                key = resolve(args["key"]) if "key" in args else None
                secret = resolve(args["secret"]) if "secret" in args else None
                options = {
                    name: resolve(value) if isinstance(value, dict) else value
                    for name, value in (args.get("driver_args") or {}).items()
                }
                driver = node_driver(
                    provider, key, secret, options, outbound=self.context.environment.outbound
                )
                nodes = CloudNodes(provider, driver)
                if not nodes.supports(self.action):
                    raise NodeError(f"the {provider!r} driver cannot {self.action} nodes")
                states = args.get("states") or ["running"]
                candidates = nodes.find(args["name_pattern"], args.get("filters"), states)
            except (SecretError, NodeError, OutboundRefused) as error:
                raise AttackFailed(str(error), result=result) from None
            found.append(nodes)
            return candidates

        strike = Strike(
            kind=node_kind(provider),
            action=self.action,
            find=find,
            actuator=lambda: node_actuator(found[0], self.action, self.context),
            radius=BlastRadius.from_args(args),
            no_match=NO_MATCH,
            result=result,
            seed=args.get("seed"),
        )
        return strike.run(self.context)
