"""Issue 10's acceptance: with dry run on, a full local-mode run of every built-in attack
leaves every target untouched.

One run of the real ``chaos-monkey-engine`` command (``--demo``, a data directory of its
own; its API, its moto EC2 and the HTTP target on 127.0.0.1, the SSH hosts on the lab's
private bridge) plans every attack of its catalogue with ``"dry_run": true``
through the HTTP API, each due two seconds ahead (exact planner), and waits until every
executor is terminal. The targets are the ones each family really attacks:

- EC2 attacks: the demo instances of the moto EC2 local mode serves (the three web ones
  carry the opt-in tag, demo-db-1 the exclude tag);
- Libcloud node attacks: Libcloud's EC2 driver pointed at that same endpoint, its key,
  secret and signature version by ``CME_SECRET_*`` reference (the only way the schema
  takes them). A dry run with secret references stops before the provider, by design:
  listing nodes would need the secrets;
- SSH script attacks: the SSH lab's hosts (real sshd in network namespaces);
- ApiRequest: a recording HTTP server on 127.0.0.1.

Every executor must end ``skipped`` with a reason starting ``dry run:``, the
target-picking ones naming their targets in ``result.targets``, and every target must be
untouched, each checked where the fault would show if it ran: every EC2 instance still
``running`` and no Terminate/Stop/RebootInstances call in moto's own request recording
(a reboot leaves a moto instance ``running``) and none signed with the node attacks'
key; on each SSH host no new process, the
victims of kill_processes alive, and iptables, ip6tables, tc qdiscs, routes, the DNS
files, the hosts' directories and the free disk space as before; the HTTP server
received no request.

A built-in attack with no entry in ``CASES`` fails
``test_every_built_in_attack_has_a_case``: a new attack must be added here.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib.local.fake_aws import FAKE_AWS
from chalicelib.plugins.contract import Attack
from chalicelib.plugins.registry import load_plugins
from chalicelib.settings import builtin_folder
from tests.e2e.conftest import (
    Engine,
    Target,
    http,
    start_engine,
    stop_engine,
    wait_for,
    wait_until_listening,
)
from tests.ssh.conftest import (
    Host,
    Lab,
    lab,  # noqa: F401 (makes the SSH lab fixture available here)
)

pytestmark = pytest.mark.e2e

REGION = "eu-west-1"
# Long enough that a fault that did run would still be in place when the hosts are
# looked at again (each script leaves its reverter to undo it after this many seconds).
FAULT_SECONDS = 60
# fill_disk's size, and how much less free space the check tolerates: other processes
# share this filesystem, but a real fill takes at least FILL_MB.
FILL_MB = 512
FREE_SPACE_TOLERANCE = FILL_MB // 2 * 1024 * 1024
EC2_ACTIONS = {"TerminateInstances", "StopInstances", "RebootInstances"}
NODE_SECRETS = {
    # Not the engine's own key id: a request a node attack sent would be told by it.
    "CME_SECRET_DRYRUN_NODE_KEY": "AKIDDRYRUNNODES",
    "CME_SECRET_DRYRUN_NODE_SECRET": "testing",
    # Libcloud signs eu-west-1 with signature version 2 unless told otherwise (moto reads
    # no region from that); "signature" looks secret to the schema: a reference it is.
    "CME_SECRET_DRYRUN_NODE_SIGNATURE_VERSION": "4",
}


@dataclass(frozen=True)
class World:
    """What the cases build their arguments from."""

    ec2_endpoint: str
    lab: Lab
    http_target: Target
    workdir: Path  # on the lab's filesystem, beside the hosts' directories
    victim: str  # the program kill_processes would kill
    null_cidr: str  # a lab address no host holds


# --- the cases: one per built-in attack ---------------------------------------------------

Case = Callable[[World], dict[str, Any]]


def ec2_instances(world: World) -> dict[str, Any]:
    """Every demo instance (Chaos true or false): the engine's exclude tag spares demo-db-1."""
    return {"filters": {"tag:Chaos": ["true", "false"]}, "region": REGION, "count": "all"}


def ec2_not_in_zone_c(world: World) -> dict[str, Any]:
    return {**ec2_instances(world), "excluded": {"availability-zone": f"{REGION}c"}}


def libcloud_ec2_nodes(world: World) -> dict[str, Any]:
    host, port = world.ec2_endpoint.removeprefix("http://").split(":")
    return {
        "provider": "ec2",
        "key": {"env": "CME_SECRET_DRYRUN_NODE_KEY"},
        "secret": {"env": "CME_SECRET_DRYRUN_NODE_SECRET"},
        "driver_args": {
            "region": REGION,
            "host": host,
            "port": int(port),
            "secure": False,
            "signature_version": {"env": "CME_SECRET_DRYRUN_NODE_SIGNATURE_VERSION"},
        },
        "name_pattern": "*",
        "count": "all",
    }


def lab_hosts(world: World, **own: Any) -> dict[str, Any]:
    """Every lab host by address (count defaults to all of them), host keys checked."""
    return {
        "hosts": [host.address for host in world.lab.hosts],
        "ssh": world.lab.ssh(known_hosts=[host.known_hosts_line for host in world.lab.hosts]),
        **own,
    }


def fault(**own: Any) -> Case:
    return lambda world: lab_hosts(world, duration=FAULT_SECONDS, **own)


def in_workdir(**own: Any) -> Case:
    return lambda world: lab_hosts(world, duration=FAULT_SECONDS, path=str(world.workdir), **own)


def kill_the_victim(world: World) -> dict[str, Any]:
    return lab_hosts(world, duration=FAULT_SECONDS, pattern=f"^{world.victim}$", signal="KILL")


def null_route(world: World) -> dict[str, Any]:
    return lab_hosts(world, duration=FAULT_SECONDS, cidr=world.null_cidr)


def inline_script(world: World) -> dict[str, Any]:
    """A script that leaves a mark in the workdir and a process behind it."""
    script = (
        "#!/bin/sh\n"
        f"echo ran >> {world.workdir}/run_script-ran\n"
        f"setsid nohup sleep {FAULT_SECONDS} >/dev/null 2>&1 </dev/null &\n"
    )
    return lab_hosts(world, script=script)


def call_the_target(world: World) -> dict[str, Any]:
    return {
        "endpoint": world.http_target.url("/dry-run"),
        "method": "POST",
        "payload": {"dry": "run"},
    }


# ref -> (family, the arguments it is planned with)
CASES: dict[str, tuple[str, Case]] = {
    "api_request:ApiRequest": ("http", call_the_target),
    "terminate_ec2_instance:TerminateEC2Instance": ("ec2", ec2_instances),
    "terminate_ec2_instance:TerminateEC2InstanceNotExcluded": ("ec2", ec2_not_in_zone_c),
    "terminate_ec2_instance_not_excluded:TerminateEC2InstanceNotExcluded": (
        "ec2",
        ec2_not_in_zone_c,
    ),
    "stop_ec2_instance:StopEC2Instance": ("ec2", ec2_instances),
    "reboot_ec2_instance:RebootEC2Instance": ("ec2", ec2_instances),
    "terminate_node:TerminateNode": ("node", libcloud_ec2_nodes),
    "stop_node:StopNode": ("node", libcloud_ec2_nodes),
    "reboot_node:RebootNode": ("node", libcloud_ec2_nodes),
    "run_script:RunScript": ("ssh", inline_script),
    "block_all_network_traffic:BlockAllNetworkTraffic": ("ssh", fault()),
    "burn_cpu:BurnCpu": ("ssh", fault(cpus=1)),
    "burn_io:BurnIo": ("ssh", in_workdir(size_mb=4)),
    "fail_dns:FailDns": ("ssh", fault()),
    "fill_disk:FillDisk": ("ssh", in_workdir(size_mb=FILL_MB, keep_free_mb=0)),
    "kill_processes:KillProcesses": ("ssh", kill_the_victim),
    "network_latency:NetworkLatency": ("ssh", fault(delay_ms=500)),
    "network_loss:NetworkLoss": ("ssh", fault(percent=100)),
    "null_route:NullRoute": ("ssh", null_route),
}
NODE_ACTIONS = {
    "terminate_node:TerminateNode": "terminate",
    "stop_node:StopNode": "stop",
    "reboot_node:RebootNode": "reboot",
}


def built_in_refs() -> set[str]:
    plugins = load_plugins("attacks", Attack, [builtin_folder("attacks")])
    return {entry["ref"] for entry in plugins.catalogue()}


def test_every_built_in_attack_has_a_case() -> None:
    missing = built_in_refs() - set(CASES)
    assert not missing, f"give these built-in attacks a dry-run case in CASES: {sorted(missing)}"
    assert not set(CASES) - built_in_refs(), "a case for an attack that is not built in"


# --- what the targets look like -----------------------------------------------------------


@dataclass(frozen=True)
class HostState:
    """What one lab host shows of every fault a script could leave in place."""

    processes: dict[int, str]
    iptables: str
    ip6tables: str
    qdiscs: str
    routes: str


def host_state(host: Host) -> HostState:
    return HostState(
        processes=host.processes(),
        iptables=host.iptables_rules(),
        ip6tables=str(host.run("ip6tables", "-w", "-S", check=False).stdout),
        qdiscs=str(host.run("tc", "qdisc", "show").stdout),
        routes=str(host.run("ip", "route", "show", "table", "all").stdout),
    )


@dataclass(frozen=True)
class SharedState:
    """What the lab's hosts share (one filesystem): DNS files, work files, free space."""

    resolv_conf: str
    etc_hosts: str
    files: list[str]
    free_bytes: int


def shared_state(ssh_lab: Lab) -> SharedState:
    root = ssh_lab.hosts[0].directory.parent
    return SharedState(
        resolv_conf=Path("/etc/resolv.conf").read_text(),
        etc_hosts=Path("/etc/hosts").read_text(),
        files=sorted(str(path.relative_to(root)) for path in root.rglob("*")),
        free_bytes=shutil.disk_usage(root).free,
    )


def instance_states(endpoint: str) -> dict[str, tuple[str, str]]:
    """Instance id -> (Name tag, state), read through the EC2 endpoint local mode serves."""
    import boto3

    client = boto3.client("ec2", endpoint_url=endpoint, region_name=REGION)
    found = {}
    for reservation in client.describe_instances()["Reservations"]:
        for instance in reservation["Instances"]:
            tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
            found[instance["InstanceId"]] = (tags.get("Name", ""), instance["State"]["Name"])
    return found


@dataclass(frozen=True)
class Ec2Call:
    """One EC2 request moto answered in the engine's process: its action and access key."""

    action: str
    access_key: str


def ec2_calls(recording: Path) -> list[Ec2Call]:
    """Every EC2 request moto's recorder saw in the engine's process (its EC2 server's)."""
    calls: list[Ec2Call] = []
    if not recording.exists():
        return calls
    for line in recording.read_text().splitlines():
        entry = json.loads(line)
        body = entry.get("body") or ""
        if entry.get("body_encoded"):
            body = base64.b64decode(body).decode(errors="replace")
        fields = {**parse_qs(urlsplit(entry["url"]).query), **parse_qs(body)}
        headers = {name.lower(): value for name, value in entry["headers"].items()}
        # SigV4: "AWS4-HMAC-SHA256 Credential=<access key>/<date>/<region>/ec2/..."
        credential = headers.get("authorization", "").partition("Credential=")[2]
        for action in fields.get("Action", []):
            calls.append(Ec2Call(action, credential.split("/")[0]))
    return calls


def settled(host: Host, victim: str) -> dict[int, str] | None:
    """The host's processes once only its sshd and the victim run (no session left)."""
    processes = host.processes()
    others = [c for c in processes.values() if victim not in c and SSHD_LISTENER not in c]
    return processes if not others and any(victim in c for c in processes.values()) else None


# The host's sshd (its PID 1) calls itself this; a session's processes do not.
SSHD_LISTENER = "[listener]"


# --- the run --------------------------------------------------------------------------------


@dataclass
class Run:
    """Everything the run saw, before and after; the engine is stopped by then."""

    catalogue: set[str]
    executors: dict[str, dict[str, Any]]  # ref -> the executor as the API shows it
    web_ids: set[str]
    db_id: str
    instances_before: dict[str, tuple[str, str]]
    instances_after: dict[str, tuple[str, str]]
    ec2_calls: list[Ec2Call]
    hosts_before: dict[str, HostState]
    hosts_after: dict[str, HostState]
    shared_before: SharedState
    shared_after: SharedState
    victims: dict[str, int]  # host name -> the victim's pid
    addresses: list[str]
    workdir: Path
    received: list[Any]


def soon(seconds: float = 2) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def plan(engine: Engine, ref: str, args: dict[str, Any]) -> str:
    """Plan ``ref`` as a dry run due two seconds ahead; its executor's id."""
    body = {
        "name": f"dry run of {ref}",
        "dry_run": True,
        "attack": {"ref": ref, "args": args},
        "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": soon()}},
    }
    status, _, created = http("POST", engine.url("/api/1/plans/"), body)
    assert status == 200, (ref, created)
    _, _, shown = http("GET", engine.url(f"/api/1/plans/{created['id']}"))
    assert shown["dry_run"] is True, shown
    [executor] = shown["_embedded"]["executors"]
    return str(executor["id"])


def all_terminal(engine: Engine, ids: dict[str, str]) -> dict[str, dict[str, Any]] | None:
    found = {}
    for ref, executor_id in ids.items():
        _, _, executor = http("GET", engine.url(f"/api/1/executors/{executor_id}"))
        if not executor["executed"]:
            return None
        found[ref] = executor
    return found


@pytest.fixture(scope="module")
def victims(lab: Lab) -> Iterator[tuple[str, dict[str, int]]]:  # noqa: F811 (the lab fixture)
    """A uniquely named copy of sleep running on every lab host, ended by pid after."""
    name = f"dryvictim{uuid.uuid4().hex[:6]}"
    program = lab.hosts[0].directory.parent / name
    shutil.copy("/bin/sleep", program)
    pids: dict[str, int] = {}
    try:
        for host in lab.hosts:
            code, output = lab.shell(
                host, f"setsid nohup {program} 600 >/dev/null 2>&1 </dev/null &"
            )
            assert code == 0, output
            processes = wait_for(partial(settled, host, name), 10, f"{host.name} to settle")
            [pids[host.name]] = [pid for pid, c in processes.items() if name in c]
        yield name, pids
    finally:
        for pid in pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        program.unlink()


@pytest.fixture(scope="module")
def run(
    lab: Lab,  # noqa: F811 (the lab fixture)
    victims: tuple[str, dict[str, int]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Run]:
    victim, victim_pids = victims
    recording = tmp_path_factory.mktemp("moto-recording") / "requests.jsonl"
    workdir = Path(tempfile.mkdtemp(prefix="dry-run-", dir=lab.hosts[0].directory.parent))
    http_target = Target()
    http_target.thread.start()
    engine = start_engine(
        "--demo",
        env={
            **NODE_SECRETS,
            "CME_SECRET_TEST_SSH_KEY": lab.key_pem,
            # moto records every request it answers in the engine's process (its EC2
            # server's included): a reboot would show there, not in an instance's state.
            "MOTO_ENABLE_RECORDING": "true",
            "MOTO_RECORDER_FILEPATH": str(recording),
        },
    )
    try:
        wait_until_listening(engine)
        line = next(line for line in engine.output if "EC2 targets: moto at " in line)
        endpoint = line.split("moto at ")[1].split(" ")[0]
        _, _, served = http("GET", engine.url("/api/1/attacks/"))
        catalogue = {entry["ref"] for entry in served["attacks"]}

        addresses = [str(address) for address in lab.network.hosts()]
        world = World(
            ec2_endpoint=endpoint,
            lab=lab,
            http_target=http_target,
            workdir=workdir,
            victim=victim,
            null_cidr=f"{addresses[200]}/32",
        )
        instances_before = instance_states(endpoint)
        hosts_before = {host.name: host_state(host) for host in lab.hosts}
        shared_before = shared_state(lab)

        ids = {ref: plan(engine, ref, case(world)) for ref, (_, case) in CASES.items()}
        executors = wait_for(
            lambda: all_terminal(engine, ids), timeout=60, what="every executor to end"
        )

        hosts_after = {host.name: host_state(host) for host in lab.hosts}
        shared_after = shared_state(lab)
        instances_after = instance_states(endpoint)
    finally:
        stop_engine(engine)
        http_target.server.shutdown()
        http_target.server.server_close()
    names = {name: instance_id for instance_id, (name, _) in instances_before.items()}
    try:
        yield Run(
            catalogue=catalogue,
            executors=executors,
            web_ids={names[f"demo-web-{n}"] for n in (1, 2, 3)},
            db_id=names["demo-db-1"],
            instances_before=instances_before,
            instances_after=instances_after,
            ec2_calls=ec2_calls(recording),
            hosts_before=hosts_before,
            hosts_after=hosts_after,
            shared_before=shared_before,
            shared_after=shared_after,
            victims=victim_pids,
            addresses=[host.address for host in lab.hosts],
            workdir=workdir,
            received=list(http_target.received),
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --- each executor: skipped, a dry run, naming its targets --------------------------------


@pytest.mark.parametrize("ref", sorted(CASES))
def test_each_attack_ends_skipped_as_a_dry_run(run: Run, ref: str) -> None:
    executor = run.executors[ref]
    family = CASES[ref][0]
    assert executor["status"] == "skipped", executor
    assert executor["reason"].startswith("dry run:"), executor
    assert not executor.get("error"), executor
    result = executor.get("result") or {}
    if family == "ec2":
        action = ref.split("_", 1)[0]
        assert executor["reason"].startswith(f"dry run: would {action} "), executor
        assert executor["reason"].endswith("; nothing was done")
        hit = {target["id"] for target in result["targets"]}
        expected = run.web_ids
        if "NotExcluded" in ref:
            zone_c = {t["id"] for t in result["targets"] if t["zone"].endswith("c")}
            assert not zone_c, "the attack's own exclusion spared the zone c instance"
            expected = {i for i in run.web_ids if run.instances_before[i][0] != "demo-web-3"}
        assert hit == expected, result
        assert run.db_id not in hit
        assert {"id": run.db_id, "why": "carries the exclude tag chaos-monkey-engine-exclude"} in (
            result["selection"]["spared"]
        )
        for target_id in hit:
            assert target_id in executor["reason"]
    elif family == "node":
        # Listing the nodes would need the secrets, which a dry run never resolves.
        assert executor["reason"] == (
            f"dry run: would {NODE_ACTIONS[ref]} ec2 nodes matching '*'; its secrets were not "
            "resolved and the provider was not contacted; nothing was done"
        )
        assert result["targets"] == []
    elif family == "ssh":
        assert executor["reason"].startswith(f"dry run: would run {result['script']} on "), executor
        assert executor["reason"].endswith("; nothing was done")
        assert [target["host"] for target in result["targets"]] == run.addresses, result
        assert "run_id" not in result, "no script was sent"
    else:
        assert executor["reason"] == f"dry run: {ref} was not executed"


def test_the_engine_served_exactly_the_attacks_planned(run: Run) -> None:
    assert run.catalogue == set(CASES)


# --- every target untouched ---------------------------------------------------------------


def test_every_ec2_instance_is_still_running_and_none_was_acted_on(run: Run) -> None:
    assert len(run.instances_before) == 4
    assert run.instances_after == run.instances_before
    assert {state for _, state in run.instances_after.values()} == {"running"}
    actions = [call.action for call in run.ec2_calls]
    # The recording is live: the EC2 attacks' own describe calls are in it.
    assert "DescribeInstances" in actions
    assert not EC2_ACTIONS & set(actions), actions


def test_the_node_attacks_contacted_no_provider(run: Run) -> None:
    """Their dry run stops before Libcloud's driver is built: no request with their key."""
    keys = {call.access_key for call in run.ec2_calls}
    assert FAKE_AWS["AWS_ACCESS_KEY_ID"] in keys, "the recording tells who signed each call"
    assert NODE_SECRETS["CME_SECRET_DRYRUN_NODE_KEY"] not in keys


def test_no_ssh_host_runs_a_fault_or_shows_one(run: Run) -> None:
    """Each host as before: every way a fault shows is checked, and all are reported."""
    changed = []
    for name, before in run.hosts_before.items():
        after = run.hosts_after[name]
        new = {pid: c for pid, c in after.processes.items() if pid not in before.processes}
        if new:
            changed.append(f"{name}: new processes {new}")
        if run.victims[name] not in after.processes:
            changed.append(f"{name}: the victim (pid {run.victims[name]}) was killed")
        for view in ("iptables", "ip6tables", "qdiscs", "routes"):
            if getattr(after, view) != getattr(before, view):
                changed.append(f"{name}: {view} changed, now {getattr(after, view)!r}")
    assert not changed, "\n".join(changed)


def test_the_lab_filesystem_and_dns_files_are_as_before(run: Run) -> None:
    before, after = run.shared_before, run.shared_after
    assert after.resolv_conf == before.resolv_conf
    assert after.etc_hosts == before.etc_hosts
    assert after.files == before.files, set(after.files) ^ set(before.files)
    assert not list(run.workdir.iterdir())
    assert before.free_bytes - after.free_bytes < FREE_SPACE_TOLERANCE


def test_the_http_target_received_nothing(run: Run) -> None:
    assert run.received == []
