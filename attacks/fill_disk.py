"""FillDisk: take a bounded amount of a host's disk for a while (SimianArmy's filldisk)."""

from __future__ import annotations

from typing import Any

from . import _ssh_attack as ssh_attack


class FillDisk(ssh_attack.SshScriptAttack):
    """Write a ``size_mb`` file in ``path`` and remove it after ``duration`` seconds.

    Bounded: the script refuses to take more than the free space minus ``keep_free_mb``.
    The reverter that removes the file is started on the host before the file is written.
    """

    ref = "fill_disk:FillDisk"
    script = "fill_disk.sh"
    schema = ssh_attack.fault_schema(
        {
            "path": {"type": "string", "pattern": "^/"},
            "size_mb": {"type": "integer", "minimum": 1, "maximum": 1_048_576},
            "keep_free_mb": {"type": "integer", "minimum": 0},
        },
        required=[],
    )
    example = ssh_attack.fault_example(
        ref,
        duration=120,
        # a directory on the target host, not here (ruff S108, bandit B108)
        path="/var/tmp",  # noqa: S108  # nosec B108
        size_mb=1024,
        keep_free_mb=100,
    )

    def fault_environment(self, args: dict[str, Any]) -> dict[str, str]:
        return {
            # a directory on the target host, not here (ruff S108, bandit B108)
            "CME_PATH": args.get("path", "/tmp"),  # noqa: S108  # nosec B108
            "CME_SIZE_MB": str(args.get("size_mb", 512)),
            "CME_KEEP_FREE_MB": str(args.get("keep_free_mb", 100)),
        }
