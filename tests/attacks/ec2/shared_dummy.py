"""A Libcloud Dummy driver whose nodes outlive the driver, so tests can see effects.

Registered with Libcloud under ``cme_shared_dummy`` by the ``shared_dummy`` fixture; it
adds what the Dummy driver lacks: ``stop_node``, provider filters (``ex_filters``) and
tags (in ``extra["tags"]``, where Libcloud's EC2 and Azure drivers keep them).
"""

from __future__ import annotations

from typing import Any, ClassVar

from libcloud.compute.base import Node
from libcloud.compute.drivers.dummy import DummyNodeDriver
from libcloud.compute.types import NodeState

PROVIDER = "cme_shared_dummy"
# The engine's default opt-in tag: every node carries it unless a test says otherwise.
OPT_IN = {"chaos-monkey-engine": "target"}


class SharedDummyNodeDriver(DummyNodeDriver):
    nodes: ClassVar[list[Node]] = []
    built_with: ClassVar[list[tuple[tuple[Any, ...], dict[str, Any]]]] = []
    # Names of nodes whose stop the provider does not confirm.
    refusing: ClassVar[set[str]] = set()

    def __init__(self, *args: Any, **options: Any) -> None:
        type(self).built_with.append((args, options))
        super().__init__(0)
        self.nl = type(self).nodes

    @classmethod
    def reset(
        cls,
        names_and_zones: list[tuple[str, str]],
        tags: dict[str, dict[str, str]] | None = None,
    ) -> None:
        """Nodes named and zoned so; ``tags`` by name (the opt-in tag for the others)."""
        cls.built_with.clear()
        cls.nodes[:] = [
            Node(
                id=str(number),
                name=name,
                state=NodeState.RUNNING,
                public_ips=[f"192.0.2.{number}"],
                private_ips=[f"10.0.0.{number}"],
                driver=None,
                extra={"zone": zone, "tags": (tags or {}).get(name, OPT_IN)},
            )
            for number, (name, zone) in enumerate(names_and_zones, start=1)
        ]

    @classmethod
    def by_name(cls) -> dict[str, str]:
        return {node.name: node.state for node in cls.nodes}

    def list_nodes(self, ex_filters: dict[str, Any] | None = None) -> list[Node]:
        wanted = (ex_filters or {}).get("zone")
        return [node for node in self.nl if wanted is None or node.extra["zone"] == wanted]

    def stop_node(self, node: Node) -> bool:
        if node.name in type(self).refusing:
            return False
        node.state = NodeState.STOPPED
        return True
