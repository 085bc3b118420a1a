"""NetworkLatency: delay the packets hosts send (SimianArmy's networklatency, with netem)."""

from __future__ import annotations

from typing import Any

from . import _ssh_attack as ssh_attack


class NetworkLatency(ssh_attack.SshScriptAttack):
    """Delay every packet each target sends on ``interface`` (default: the one the engine
    reaches it through) by ``delay_ms`` +/- ``jitter_ms`` for ``duration`` seconds.

    Needs the ``sch_netem`` kernel module on the host; without it the executor fails with
    a message saying so and nothing is changed.
    """

    ref = "network_latency:NetworkLatency"
    script = "network_latency.sh"
    schema = ssh_attack.fault_schema(
        {
            "delay_ms": {"type": "integer", "minimum": 1, "maximum": 60_000},
            "jitter_ms": {"type": "integer", "minimum": 0, "maximum": 60_000},
            "interface": ssh_attack.INTERFACE_SCHEMA,
        },
        required=[],
    )
    example = ssh_attack.fault_example(ref, delay_ms=200, jitter_ms=50)

    def fault_environment(self, args: dict[str, Any]) -> dict[str, str]:
        env = {
            "CME_DELAY_MS": str(args.get("delay_ms", 200)),
            "CME_JITTER_MS": str(args.get("jitter_ms", 0)),
        }
        if args.get("interface"):
            env["CME_INTERFACE"] = args["interface"]
        return env
