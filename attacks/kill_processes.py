"""KillProcesses: kill the processes of hosts that match a name (SimianArmy's killprocesses)."""

from __future__ import annotations

from typing import Any

from . import _ssh_attack as ssh_attack

SIGNALS = ["KILL", "TERM", "INT", "HUP", "QUIT", "ABRT", "USR1", "USR2", "STOP"]


class KillProcesses(ssh_attack.SshScriptAttack):
    """Send ``signal`` to processes whose name matches ``pattern`` (an extended regex;
    with ``full_command_line`` the whole command line), and keep killing new matches for
    ``duration`` seconds (0: once). The SSH session running the attack is spared."""

    ref = "kill_processes:KillProcesses"
    script = "kill_processes.sh"
    default_duration = 0
    schema = ssh_attack.fault_schema(
        {
            "pattern": {"type": "string", "minLength": 1, "maxLength": 200},
            "full_command_line": {"type": "boolean"},
            "signal": {"type": "string", "enum": SIGNALS},
        },
        required=["pattern"],
        minimum_duration=0,
    )
    example = ssh_attack.fault_example(ref, duration=30, pattern="^java$", signal="KILL")

    def fault_environment(self, args: dict[str, Any]) -> dict[str, str]:
        return {
            "CME_PATTERN": args["pattern"],
            "CME_FULL": "1" if args.get("full_command_line") else "0",
            "CME_SIGNAL": args.get("signal", "KILL"),
        }
