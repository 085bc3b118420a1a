"""What every SSH attack shares: its arguments, its targets, its key, and running a script.

This module's name starts with ``_`` so the plugin loader does not load it as a plugin;
attack modules import it as ``from . import _ssh_attack`` (a module, not its classes, so
``SshScriptAttack`` never shows up as a ref of its own).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from chalicelib.adapters.secrets import SECRET_REFERENCE_SCHEMA
from chalicelib.plugins.contract import AttackContext, AttackEnvironment
from chalicelib.plugins.targeting import (
    BLAST_RADIUS_PROPERTIES,
    BLAST_RADIUS_RULES,
    BlastRadius,
    Outcome,
    Strike,
    TargetKind,
)
from chaosmonkey.attacks import Attack, AttackFailed, AttackSkipped

if TYPE_CHECKING:
    from chalicelib.adapters.ssh import ScriptOutcome, SshRunner, SshTarget

SCRIPTS = Path(__file__).resolve().parent / "scripts"
# A script's own time limit. With the connection's and one round of hosts it stays under
# what the engine allows an attack (the attack function's 900 s timeout less the wait for
# the executor's second, the guards' time and a margin: 715 s); see ``max_ssh_duration``.
MAX_TIMEOUT_SECONDS = 600
MAX_PARALLEL_HOSTS = 8
# How long the runner may read output after a script exits (adapters.ssh's grace).
OUTPUT_GRACE_SECONDS = 2.0
_SCRIPT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_LEGACY_PREFIX = "script_attacks/"

# The 2017 docs name scripts like ``script_attacks/s_burncpu.sh``; SimianArmy named them
# ``burncpu.sh``. Both map to the bundled script of the same chaos type.
LEGACY_SCRIPT_NAMES = {
    "burncpu.sh": "burn_cpu.sh",
    "burnio.sh": "burn_io.sh",
    "filldisk.sh": "fill_disk.sh",
    "killprocesses.sh": "kill_processes.sh",
    "blockallnetworktraffic.sh": "block_all_network_traffic.sh",
    "networkloss.sh": "network_loss.sh",
    "networklatency.sh": "network_latency.sh",
    "nullroute.sh": "null_route.sh",
    "faildns.sh": "fail_dns.sh",
}

SSH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "user": {"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]*$"},
        "pem": {"type": "string", "minLength": 1},
        "key": SECRET_REFERENCE_SCHEMA,
        "passphrase": SECRET_REFERENCE_SCHEMA,
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "known_hosts": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "connect_timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 120},
        "sudo": {"type": "boolean"},
    },
    "required": ["user"],
    "oneOf": [{"required": ["pem"]}, {"required": ["key"]}],
    "additionalProperties": False,
}

HOST_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "minLength": 1, "pattern": r"^[^\s@/]+$"},
        {
            "type": "object",
            "properties": {
                "host": {"type": "string", "minLength": 1, "pattern": r"^[^\s@/]+$"},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "name": {"type": "string"},
            },
            "required": ["host"],
            "additionalProperties": False,
        },
    ]
}

TARGET_PROPERTIES: dict[str, Any] = {
    "filters": {"type": "object", "minProperties": 1},
    "address": {"type": "string", "enum": ["private", "public"]},
    "region": {"type": "string", "minLength": 1},
    "hosts": {"type": "array", "items": HOST_SCHEMA, "minItems": 1},
    # count: every listed host by default, one of a filter's matches ("all": every one).
    **BLAST_RADIUS_PROPERTIES,
    "ssh": SSH_SCHEMA,
    "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_SECONDS},
    "remote_script": {"type": "string", "pattern": "^/[^\\x00]*[^/]$"},
}
TARGET_CHOICE: list[dict[str, Any]] = [{"required": ["filters"]}, {"required": ["hosts"]}]


def attack_schema(
    properties: dict[str, Any], required: list[str], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The whole ``{"ref", "args"}`` schema of an SSH attack: targets + ssh + its own args."""
    args: dict[str, Any] = {
        "type": "object",
        "properties": {**TARGET_PROPERTIES, **properties},
        "required": ["ssh", *required],
        "oneOf": TARGET_CHOICE,
        "additionalProperties": False,
        # An attack whose own argument is called percent (NetworkLoss: the packets to
        # drop) has no blast radius percent: count and its percent go together.
        **({} if "percent" in properties else BLAST_RADIUS_RULES),
    }
    args.update(extra or {})
    return {
        "type": "object",
        "properties": {"ref": {"type": "string"}, "args": args},
        "required": ["ref", "args"],
    }


EXAMPLE_SSH = {"user": "ec2-user", "key": {"ssm": "/chaos-monkey-engine/ssh-key"}}


def bundled_script(name: str) -> tuple[str, bytes]:
    """The canonical name and text of a script of the bundled library.

    Accepts a file name inside ``attacks/scripts/``, the 2017 form
    ``script_attacks/s_<name>.sh`` and SimianArmy's names; refuses anything else (no
    paths, no ``..``, nothing outside the library).
    """
    wanted = name[len(_LEGACY_PREFIX) :] if name.startswith(_LEGACY_PREFIX) else name
    if wanted.startswith("s_") and wanted[2:] in LEGACY_SCRIPT_NAMES:
        wanted = wanted[2:]
    wanted = LEGACY_SCRIPT_NAMES.get(wanted, wanted)
    available = sorted(p.name for p in SCRIPTS.glob("*.sh"))
    if not _SCRIPT_NAME.match(wanted) or wanted.startswith("_"):
        raise AttackFailed(f"local_script {name!r} is not a script name; known: {available}")
    path = (SCRIPTS / wanted).resolve()
    if path.parent != SCRIPTS or not path.is_file():
        raise AttackFailed(f"no bundled script {name!r}; known: {available}")
    return wanted, path.read_bytes()


@dataclass(frozen=True)
class SshCandidate:
    """A host an SSH attack may run on: where to connect, and what the guards read.

    ``id``: the instance id of a host found by filters, the address (``host`` or
    ``host:port``) of a listed one. ``tags``: the instance's tags; None for a host the
    plan names by address, which has none to read (the plan itself chose it).
    """

    target: SshTarget
    id: str
    tags: Mapping[str, str] | None = None

    def describe(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"host": self.target.host, "port": self.target.port}
        if self.target.name:
            shown["name"] = self.target.name
        return shown


def host_kind(noun: str) -> TargetKind[SshCandidate]:
    """How the targeting path reads SSH candidates: listed "host"s or found "instance"s."""
    return TargetKind(
        noun=noun,
        id_of=lambda candidate: candidate.id,
        tags_of=lambda candidate: candidate.tags,
        describe=lambda candidate: candidate.describe(),
        label=lambda candidate: candidate.target.label,
    )


def _static_targets(hosts: list[Any], default_port: int) -> list[SshCandidate]:
    from chalicelib.adapters.ssh import SshTarget

    found = []
    for host in hosts:
        if isinstance(host, str):
            address, port = _split_port(host, default_port)
            target = SshTarget(host=address, port=port)
        else:
            target = SshTarget(
                host=host["host"],
                port=int(host.get("port", default_port)),
                name=host.get("name", ""),
            )
        where = target.host if target.port == 22 else f"{target.host}:{target.port}"
        found.append(SshCandidate(target, id=where))
    return found


def _split_port(host: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""
    if host.startswith("["):
        address, _, rest = host[1:].partition("]")
        has_port = rest.startswith(":") and rest[1:].isdigit()
        return address, int(rest[1:]) if has_port else default_port
    if host.count(":") == 1:
        address, _, port = host.partition(":")
        if port.isdigit():
            return address, int(port)
    return host, default_port


def _ec2_targets(
    args: dict[str, Any], default_port: int, where: AttackEnvironment, result: dict[str, Any]
) -> list[SshCandidate]:
    """The instances the filters match that have the address asked for; those that lack
    it are listed in ``result["instances_without_address"]``."""
    from chalicelib.adapters.ec2_targets import SimulatedInstances, find_hosts
    from chalicelib.adapters.ssh import SshTarget

    address = args.get("address", "private")
    try:
        found = find_hosts(
            args["filters"],
            address=address,
            region=args.get("region") or where.aws_region,
            endpoint=where.ec2_endpoint,
            simulated=where.simulated_ec2,
        )
    except SimulatedInstances as refusal:
        raise AttackSkipped(str(refusal), result=result) from None
    without = [host.instance_id for host in found if not host.address]
    if without:
        result["instances_without_address"] = without
    candidates = [
        SshCandidate(
            SshTarget(host=host.address, port=default_port, name=host.instance_id),
            id=host.instance_id,
            tags=host.tags,
        )
        for host in found
        if host.address
    ]
    if found and not candidates:
        raise AttackSkipped(f"no matching instance has a {address} address: {without}", result)
    return candidates


def blast_radius(args: dict[str, Any], takes_percent: bool = True) -> BlastRadius:
    """The blast radius of an SSH attack: ``count`` is every listed host by default (the
    2017 behaviour), one of the instances the filters match otherwise.
    ``takes_percent`` False: the attack's ``percent`` is its own (NetworkLoss's loss)."""
    if not takes_percent:
        args = {name: value for name, value in args.items() if name != "percent"}
    return BlastRadius.from_args(args, default_count="all" if "hosts" in args else 1)


def most_hosts(args: dict[str, Any], takes_percent: bool = True) -> int | None:
    """The most hosts one run can reach, when the arguments bound it; None when it
    depends on how many instances match (a percent, or "all", of a filter's)."""
    radius = blast_radius(args, takes_percent)
    return radius.bound(len(args["hosts"]) if "hosts" in args else None)


def max_ssh_duration(args: dict[str, Any], takes_percent: bool = True) -> float:
    """The longest an SSH attack with these arguments may run: each round of at most
    MAX_PARALLEL_HOSTS hosts connects, runs the script to its timeout and reads the rest
    of its output. An unbounded number of hosts runs in one round."""
    per_round = (
        float(args.get("ssh", {}).get("connect_timeout", 10))
        + float(args.get("timeout", 120))
        + OUTPUT_GRACE_SECONDS
    )
    most = most_hosts(args, takes_percent)
    rounds = 1 if most is None else math.ceil(max(most, 1) / MAX_PARALLEL_HOSTS)
    return per_round * rounds


def build_runner(
    ssh: dict[str, Any], region: str | None, context: AttackContext | None = None
) -> SshRunner:
    """An SSH runner with the plan's key (inline base64 ``pem`` or a secret reference).

    References resolve under ``context``'s secret policy, into its run's vault (None: a
    context of its own, with the default policy).
    """
    from chalicelib.adapters.secrets import SecretError, describe, resolver
    from chalicelib.adapters.ssh import KnownHosts, SshKeyError, SshRunner, load_private_key

    resolve_secret = resolver(context or AttackContext(), region)
    try:
        passphrase = resolve_secret(ssh["passphrase"]) if ssh.get("passphrase") else None
        if "pem" in ssh:
            try:
                text = base64.b64decode("".join(ssh["pem"].split()), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise AttackFailed("ssh.pem is not base64-encoded PEM text") from None
            key = load_private_key(text, "ssh.pem", passphrase)
        else:
            key = load_private_key(resolve_secret(ssh["key"]), describe(ssh["key"]), passphrase)
        known = KnownHosts.parse(ssh.get("known_hosts", []))
    except (SecretError, SshKeyError, ValueError) as error:
        raise AttackFailed(str(error)) from None
    return SshRunner(
        user=ssh["user"],
        key=key,
        known_hosts=known,
        connect_timeout=float(ssh.get("connect_timeout", 10)),
    )


class ScriptActuator:
    """Runs one script on each picked host over SSH, MAX_PARALLEL_HOSTS at a time (every
    host at once when the arguments do not bound how many there are)."""

    def __init__(
        self,
        attack: Attack,
        script_name: str,
        script: bytes,
        *,
        env: dict[str, str] | None,
        interpreter: str | None,
        needs_root: bool,
        takes_percent: bool = True,
    ) -> None:
        self.attack = attack
        self.script_name = script_name
        self.script = script
        self.env = env
        self.interpreter = interpreter
        self.needs_root = needs_root
        self.takes_percent = takes_percent

    def act(self, targets: Sequence[SshCandidate], result: dict[str, Any]) -> list[Outcome]:
        args = self.attack.attack_config
        ssh = args["ssh"]
        context = self.attack.context
        runner = build_runner(ssh, args.get("region") or context.environment.aws_region, context)
        run_id = (context.executor_id or uuid.uuid4().hex)[:8]
        result["run_id"] = run_id
        full_env = {"CME_RUN_ID": run_id, **(self.env or {})}
        sudo = bool(ssh.get("sudo", self.needs_root and ssh["user"] != "root"))
        timeout = float(args.get("timeout", 120))
        script_name = self.script_name

        def run_on(candidate: SshCandidate) -> ScriptOutcome:
            # Unique per host by default: hosts may share a filesystem (NFS homes, labs).
            # bandit B108: a path on the target host, unique per run, created 0700 there.
            default_path = f"/tmp/cme-{run_id}-{uuid.uuid4().hex[:6]}-{script_name}"  # noqa: S108  # nosec B108
            return runner.run_script(
                candidate.target,
                self.script,
                args.get("remote_script") or default_path,
                timeout=timeout,
                env=full_env,
                sudo=sudo,
                interpreter=self.interpreter,
            )

        # An unbounded number of hosts runs in one round, however many match, so that
        # the attack's longest run stays the one max_ssh_duration declared at plan time.
        bounded = most_hosts(args, self.takes_percent) is not None
        workers = MAX_PARALLEL_HOSTS if bounded else len(targets)
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(targets)))) as pool:
            outcomes = list(pool.map(run_on, targets))
        return [
            Outcome(
                candidate.id,
                outcome.as_result(),
                None if outcome.is_success else _why(outcome),
            )
            for candidate, outcome in zip(targets, outcomes, strict=True)
        ]


def run_script_everywhere(
    attack: Attack,
    script_name: str,
    script: bytes,
    *,
    env: dict[str, str] | None = None,
    interpreter: str | None = None,
    summary: dict[str, Any] | None = None,
    needs_root: bool = False,
    takes_percent: bool = True,
) -> dict[str, Any]:
    """Run one script on the hosts the targeting path picks; the result lists each
    host's outcome.

    Hosts are the listed ``hosts`` or the instances ``filters`` match (the engine's
    opt-in and exclude tags apply to those), sized by the blast radius. A dry run
    resolves the targets and stops there (``skipped``). With ``needs_root`` the script
    runs through ``sudo -n`` unless the user is root or ``ssh.sudo`` says no. Any host
    that did not exit 0 fails the attack, with every host's outcome (and output tail)
    in the result. ``takes_percent`` False: ``percent`` is the attack's own argument,
    not the blast radius's.
    """
    args = attack.attack_config
    port = int(args["ssh"].get("port", 22))
    where = attack.context.environment
    result: dict[str, Any] = {"script": script_name, **(summary or {})}

    def find(may_use_secrets: bool) -> list[SshCandidate]:
        # Static hosts are the plan's own; filters use the engine's EC2 credentials.
        if "hosts" in args:
            return _static_targets(args["hosts"], port)
        return _ec2_targets(args, port, where, result)

    def failure(failed: list[Outcome], total: int) -> str:
        return f"{script_name} failed on {len(failed)} of {total} host(s): " + "; ".join(
            str(outcome.error) for outcome in failed
        )

    strike = Strike(
        kind=host_kind("host" if "hosts" in args else "instance"),
        action=f"run {script_name} on",
        find=find,
        actuator=lambda: ScriptActuator(
            attack,
            script_name,
            script,
            env=env,
            interpreter=interpreter,
            needs_root=needs_root,
            takes_percent=takes_percent,
        ),
        radius=blast_radius(args, takes_percent),
        no_match="no instance matched",
        result=result,
        seed=args.get("seed"),
        failure=failure,
    )
    return strike.run(attack.context)


def _why(outcome: ScriptOutcome) -> str:
    if outcome.error:
        return f"{outcome.target.label}: {outcome.error}"
    if outcome.timed_out:
        return f"{outcome.target.label}: no exit within the timeout"
    last = (outcome.stderr_tail.strip() or outcome.stdout_tail.strip()).splitlines()[-1:]
    detail = f": {last[0][:300]}" if last else ""
    return f"{outcome.target.label}: exit code {outcome.exit_code}{detail}"


MAX_DURATION = 3600
INTERFACE_SCHEMA: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z0-9_.:@-]{1,15}$"}


class SshScriptAttack(Attack):
    """A SimianArmy chaos type: one bundled script, run with its arguments as environment.

    Subclasses name ``script``, build ``schema`` with ``fault_schema`` and ``example`` with
    ``fault_example``, and map their own arguments to the script's environment in
    ``fault_environment``; ``duration`` (``CME_DURATION``) is handled here. The script
    applies the fault and leaves a detached reverter on the host that undoes it after
    ``duration`` seconds without the engine.
    """

    script: ClassVar[str] = ""
    default_duration: ClassVar[int] = 60
    supports_dry_run = True
    # False for a chaos type whose own argument is called ``percent``.
    radius_takes_percent: ClassVar[bool] = True

    @classmethod
    def warm_up(cls) -> None:
        import chalicelib.adapters.ssh  # noqa: F401

    @classmethod
    def max_duration(cls, args: dict[str, Any]) -> float | None:
        return max_ssh_duration(args, cls.radius_takes_percent)

    def fault_environment(self, args: dict[str, Any]) -> dict[str, str]:
        """The script's environment for this chaos type's own arguments (none by default)."""
        return {}

    def environment(self, args: dict[str, Any]) -> dict[str, str]:
        duration = args.get("duration", self.default_duration)
        return {"CME_DURATION": str(duration), **self.fault_environment(args)}

    def run(self) -> dict[str, Any]:
        args = self.attack_config
        name, text = bundled_script(self.script)
        env = self.environment(args)
        summary = {
            "duration": int(env["CME_DURATION"]),
            "parameters": {key.removeprefix("CME_").lower(): value for key, value in env.items()},
        }
        return run_script_everywhere(
            self,
            name,
            text,
            env=env,
            interpreter="/bin/sh",
            summary=summary,
            needs_root=True,
            takes_percent=self.radius_takes_percent,
        )


def fault_schema(
    properties: dict[str, Any], required: list[str], minimum_duration: int = 1
) -> dict[str, Any]:
    """``attack_schema`` for a chaos type: its own arguments plus ``duration``."""
    duration = {"type": "integer", "minimum": minimum_duration, "maximum": MAX_DURATION}
    return attack_schema({"duration": duration, **properties}, required=required)


def fault_example(ref: str, duration: int = 60, **args: Any) -> dict[str, Any]:
    """An example plan attack for a chaos type: tagged EC2 targets, a key from SSM."""
    return {
        "ref": ref,
        "args": {
            "filters": {"tag:Chaos": "true"},
            "ssh": EXAMPLE_SSH,
            "duration": duration,
            **args,
        },
    }
