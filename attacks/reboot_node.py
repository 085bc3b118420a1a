"""RebootNode: reboot nodes of any Libcloud compute provider, chosen by name and filters."""

from __future__ import annotations

from . import _node_attack


class RebootNode(_node_attack.NodeAttack):
    """Reboot nodes (one by default), at random, among those matching ``name_pattern``.

    ``provider`` is a Libcloud compute provider name; ``key``, ``secret`` and the
    secret-looking ``driver_args`` are secret references, never inline values;
    ``filters`` are passed to the provider when its driver supports them.
    """

    ref = "reboot_node:RebootNode"
    action = "reboot"
    schema = _node_attack.node_schema()
    example = _node_attack.node_example(ref)
