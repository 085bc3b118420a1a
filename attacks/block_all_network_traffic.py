"""BlockAllNetworkTraffic: cut hosts off the network for a while (a SimianArmy type)."""

from __future__ import annotations

from . import _ssh_attack as ssh_attack


class BlockAllNetworkTraffic(ssh_attack.SshScriptAttack):
    """Drop every packet in and out of each target except loopback for ``duration`` seconds.

    The established SSH session running the script is let through so the engine hears the
    outcome; new connections are dropped. A detached reverter on the host removes the
    rules after ``duration``: the engine cannot reach the host to do it.
    """

    ref = "block_all_network_traffic:BlockAllNetworkTraffic"
    script = "block_all_network_traffic.sh"
    schema = ssh_attack.fault_schema({}, required=[])
    example = ssh_attack.fault_example(ref)
