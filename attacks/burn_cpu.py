"""BurnCpu: keep the processors of hosts busy for a while (SimianArmy's burncpu)."""

from __future__ import annotations

from typing import Any

from . import _ssh_attack as ssh_attack


class BurnCpu(ssh_attack.SshScriptAttack):
    """Busy-loop on ``cpus`` processors (0: all) of each target for ``duration`` seconds.

    Every burner runs under ``timeout`` on the host, so it stops after ``duration`` even
    if the engine or the SSH session is gone.
    """

    ref = "burn_cpu:BurnCpu"
    script = "burn_cpu.sh"
    schema = ssh_attack.fault_schema(
        {"cpus": {"type": "integer", "minimum": 0, "maximum": 1024}}, required=[]
    )
    example = ssh_attack.fault_example(ref, cpus=0)

    def fault_environment(self, args: dict[str, Any]) -> dict[str, str]:
        return {"CME_CPUS": str(args.get("cpus", 0))}
