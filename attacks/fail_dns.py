"""FailDns: make name resolution fail on hosts (SimianArmy's faildns)."""

from __future__ import annotations

from typing import Any

from . import _ssh_attack as ssh_attack


class FailDns(ssh_attack.SshScriptAttack):
    """Drop every DNS query (UDP and TCP to port 53) each target sends for ``duration``
    seconds. A detached reverter on the host removes the rules afterwards."""

    ref = "fail_dns:FailDns"
    script = "fail_dns.sh"
    schema = ssh_attack.attack_schema({"duration": ssh_attack.DURATION_SCHEMA}, required=[])
    example = {
        "ref": ref,
        "args": {"filters": {"tag:Chaos": "true"}, "ssh": ssh_attack.EXAMPLE_SSH, "duration": 60},
    }

    def environment(self, args: dict[str, Any]) -> dict[str, str]:
        return {"CME_DURATION": str(args.get("duration", ssh_attack.DEFAULT_DURATION))}
