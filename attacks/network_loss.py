"""NetworkLoss: drop a share of the packets hosts send (SimianArmy's networkloss)."""

from __future__ import annotations

from typing import Any

from . import _ssh_attack as ssh_attack


class NetworkLoss(ssh_attack.SshScriptAttack):
    """Drop ``percent`` % of the packets each target sends (on ``interface``, default all
    but loopback) for ``duration`` seconds, with iptables' ``statistic`` match: unlike
    ``netem`` it needs no extra kernel module. The SSH session running it is spared.

    ``percent`` is the share of packets (its SimianArmy name), so this attack's blast
    radius is ``count``, ``max_targets`` and ``min_remaining``, without a percent."""

    ref = "network_loss:NetworkLoss"
    script = "network_loss.sh"
    radius_takes_percent = False
    schema = ssh_attack.fault_schema(
        {
            "percent": {"type": "integer", "minimum": 1, "maximum": 100},
            "interface": ssh_attack.INTERFACE_SCHEMA,
        },
        required=[],
    )
    example = ssh_attack.fault_example(ref, percent=10)

    def fault_environment(self, args: dict[str, Any]) -> dict[str, str]:
        env = {"CME_PERCENT": str(args.get("percent", 10))}
        if args.get("interface"):
            env["CME_INTERFACE"] = args["interface"]
        return env
