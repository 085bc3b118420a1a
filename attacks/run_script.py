"""RunScript: upload a script to hosts over SSH, run it, and record exit code and output."""

from __future__ import annotations

from typing import Any

from chaosmonkey.attacks import Attack

from . import _ssh_attack as ssh_attack


class RunScript(Attack):
    """Run ``local_script`` (a script of the bundled library) or inline ``script`` text.

    Targets are EC2 instances selected by ``filters`` (their ``private`` or ``public``
    address, see ``address``; one at random unless ``count`` says otherwise) or the
    static ``hosts``. The script is uploaded to ``remote_script`` and executed (through
    its ``#!`` line); a non-zero exit on any host fails the executor with the output tail.
    """

    ref = "run_script:RunScript"
    supports_dry_run = True
    schema = ssh_attack.attack_schema(
        {
            "local_script": {"type": "string", "minLength": 1},
            "script": {"type": "string", "minLength": 1, "maxLength": 200_000},
            "env": {
                "type": "object",
                "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                "additionalProperties": {"type": "string"},
            },
        },
        required=[],
        extra={
            "allOf": [
                {"oneOf": [{"required": ["local_script"]}, {"required": ["script"]}]},
            ]
        },
    )
    example = {
        "ref": ref,
        "args": {
            "filters": {"tag:Chaos": "true"},
            "address": "private",
            "local_script": "burn_cpu.sh",
            "remote_script": "/opt/chaos/burn_cpu.sh",
            "env": {"CME_DURATION": "60"},
            "ssh": {"user": "ec2-user", "key": {"ssm": "/chaos-monkey-engine/ssh-key"}},
            "region": "eu-west-1",
            "timeout": 60,
        },
    }

    @classmethod
    def warm_up(cls) -> None:
        import chalicelib.adapters.ssh  # noqa: F401

    @classmethod
    def max_duration(cls, args: dict[str, Any]) -> float | None:
        return ssh_attack.max_ssh_duration(args)

    def run(self) -> dict[str, Any]:
        args = self.attack_config
        if "local_script" in args:
            name, text = ssh_attack.bundled_script(args["local_script"])
        else:
            name, text = "inline-script", args["script"].encode("utf-8")
        return ssh_attack.run_script_everywhere(self, name, text, env=args.get("env"))
