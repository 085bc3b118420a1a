"""NullRoute: blackhole a network on hosts (SimianArmy's nullroute)."""

from __future__ import annotations

import ipaddress
from typing import Any

from chaosmonkey.attacks import AttackFailed

from . import _ssh_attack as ssh_attack

IPV4_CIDR = r"^([0-9]{1,3}\.){3}[0-9]{1,3}/([0-9]|[12][0-9]|3[0-2])$"


class NullRoute(ssh_attack.SshScriptAttack):
    """Add a blackhole route to the IPv4 network ``cidr`` on each target for ``duration``
    seconds: nothing the host sends there arrives. A CIDR that holds the engine's own
    address (as the host sees it) is refused, since it would cut the engine off."""

    ref = "null_route:NullRoute"
    script = "null_route.sh"
    schema = ssh_attack.fault_schema(
        {"cidr": {"type": "string", "pattern": IPV4_CIDR}}, required=["cidr"]
    )
    example = ssh_attack.fault_example(ref, cidr="10.0.0.0/8")

    def fault_environment(self, args: dict[str, Any]) -> dict[str, str]:
        try:
            network = ipaddress.IPv4Network(args["cidr"], strict=False)
        except ValueError as error:
            raise AttackFailed(f"cidr {args['cidr']!r} is not an IPv4 network: {error}") from None
        return {"CME_CIDR": str(network)}
