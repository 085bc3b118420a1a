"""FailDns: make name resolution fail on hosts (SimianArmy's faildns)."""

from __future__ import annotations

from . import _ssh_attack as ssh_attack


class FailDns(ssh_attack.SshScriptAttack):
    """Drop every DNS query (UDP and TCP to port 53) each target sends for ``duration``
    seconds. A detached reverter on the host removes the rules afterwards."""

    ref = "fail_dns:FailDns"
    script = "fail_dns.sh"
    schema = ssh_attack.fault_schema({}, required=[])
    example = ssh_attack.fault_example(ref)
