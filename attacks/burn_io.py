"""BurnIo: saturate the disk of hosts with writes for a while (SimianArmy's burnio)."""

from __future__ import annotations

from typing import Any

from . import _ssh_attack as ssh_attack


class BurnIo(ssh_attack.SshScriptAttack):
    """Write and fsync a ``size_mb`` file in ``path`` over and over for ``duration`` seconds.

    The writer runs under ``timeout`` and a detached reverter removes the file, both on
    the host, so nothing outlives ``duration``.
    """

    ref = "burn_io:BurnIo"
    script = "burn_io.sh"
    schema = ssh_attack.fault_schema(
        {
            "path": {"type": "string", "pattern": "^/"},
            "size_mb": {"type": "integer", "minimum": 1, "maximum": 10_240},
        },
        required=[],
    )
    example = ssh_attack.fault_example(
        ref,
        # a directory on the target host, not here (ruff S108, bandit B108)
        path="/var/tmp",  # noqa: S108  # nosec B108
        size_mb=256,
    )

    def fault_environment(self, args: dict[str, Any]) -> dict[str, str]:
        return {
            # a directory on the target host, not here (ruff S108, bandit B108)
            "CME_PATH": args.get("path", "/tmp"),  # noqa: S108  # nosec B108
            "CME_SIZE_MB": str(args.get("size_mb", 256)),
        }
