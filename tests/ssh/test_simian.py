"""The SimianArmy chaos types on real hosts: each fault is seen, then seen reverted.

Every attack returns as soon as its fault is in place and its SSH session is closed, so
each revert observed here is done by the host alone (the detached reverter or
``timeout``), not by the engine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chaosmonkey.attacks import AttackFailed
from tests.ssh.conftest import Host, Lab, wait_until

DURATION = 3


def args_for(lab: Lab, host: Host, **extra: Any) -> dict[str, Any]:
    return {"hosts": [host.address], "ssh": lab.ssh(), "duration": DURATION, **extra}


def test_burn_cpu_burns_then_stops(lab: Lab, ssh_key_env: None, attack: Any):
    host, other = lab.hosts[0], lab.hosts[1]
    result = attack("burn_cpu:BurnCpu", args_for(lab, host, cpus=2))
    marker = f"cme-burncpu-{result['run_id']}"
    burners = wait_until(
        lambda: [p for p, c in host.processes().items() if c.startswith("sh -c") and marker in c],
        5,
        "two burners run",
    )
    wait_until(
        lambda: (
            len([p for p, c in host.processes().items() if c.startswith("sh -c") and marker in c])
            == 2
        ),
        5,
        "both burners run",
    )
    assert burners
    assert not other.processes_matching(marker), "only the target burns"
    usage = _cpu_seconds(host, marker)
    wait_until(lambda: _cpu_seconds(host, marker) > usage, 5, "the burners use CPU")
    wait_until(lambda: not host.processes_matching(marker), DURATION + 5, "the burners stopped")


def _cpu_seconds(host: Host, marker: str) -> float:
    total = 0.0
    for pid in host.processes_matching(marker):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / 100
    return total


def test_burn_io_writes_then_cleans_up(lab: Lab, ssh_key_env: None, attack: Any):
    host = lab.hosts[1]
    result = attack("burn_io:BurnIo", args_for(lab, host, path=str(host.directory), size_mb=2))
    target = host.directory / f"cme-burnio-{result['run_id']}"
    wait_until(target.exists, 5, "the burn file is written")
    assert host.processes_matching(f"cme-burnio-{result['run_id']}")
    wait_until(
        lambda: (
            not target.exists() and not host.processes_matching(f"cme-burnio-{result['run_id']}")
        ),
        DURATION + 8,
        "the writer stopped and its file is gone",
    )


def test_fill_disk_fills_then_removes_the_file(lab: Lab, ssh_key_env: None, attack: Any):
    host = lab.hosts[2]
    result = attack(
        "fill_disk:FillDisk",
        args_for(lab, host, path=str(host.directory), size_mb=8, keep_free_mb=0),
    )
    filled = host.directory / f"cme-filldisk-{result['run_id']}"
    assert filled.stat().st_size == 8 * 1024 * 1024, "the file is there when the attack returns"
    wait_until(lambda: not filled.exists(), DURATION + 5, "the filled file is removed")


def test_fill_disk_refuses_more_than_the_free_space(lab: Lab, ssh_key_env: None, attack: Any):
    host = lab.hosts[2]
    free_mb = shutil.disk_usage(host.directory).free // (1024 * 1024)
    with pytest.raises(AttackFailed, match="MB free; not taking") as raised:
        attack(
            "fill_disk:FillDisk",
            args_for(lab, host, path=str(host.directory), size_mb=free_mb + 1024),
        )
    assert raised.value.result["targets"][0]["exit_code"] == 4
    assert not list(host.directory.glob("cme-filldisk-*"))


@pytest.fixture
def victims(lab: Lab) -> Iterator[str]:
    """A uniquely named long-running program (a copy of sleep) on hosts 0 and 1."""
    name = f"victim{uuid.uuid4().hex[:6]}"
    program = lab.hosts[0].directory.parent / name
    shutil.copy("/bin/sleep", program)
    yield name
    program.unlink()


def _start(lab: Lab, host: Host, program: str) -> None:
    path = lab.hosts[0].directory.parent / program
    code, output = lab.shell(host, f"setsid nohup {path} 300 >/dev/null 2>&1 </dev/null &")
    assert code == 0, output
    wait_until(lambda: host.processes_matching(program), 5, f"{program} runs on {host.name}")


def test_kill_processes_kills_matches_on_the_target_only(
    lab: Lab, ssh_key_env: None, attack: Any, victims: str
):
    target, bystander = lab.hosts[0], lab.hosts[1]
    _start(lab, target, victims)
    _start(lab, bystander, victims)
    result = attack(
        "kill_processes:KillProcesses",
        args_for(lab, target, pattern=f"^{victims}$", duration=DURATION),
    )
    assert "sent SIGKILL to" in result["targets"][0]["stdout_tail"]
    wait_until(lambda: not target.processes_matching(victims), 5, "the victim is dead")
    assert bystander.processes_matching(victims), "the other host's process lives"
    # A restart within the duration is killed again; after it, the program can run again.
    _start_and_die = _restart_until(lab, target, victims)
    assert _start_and_die
    wait_until(lambda: _survives(lab, target, victims), DURATION + 5, "a restart survives")
    for host in (target, bystander):
        lab.shell(host, f"pkill -x {victims}")


def _restart_until(lab: Lab, host: Host, program: str) -> bool:
    path = lab.hosts[0].directory.parent / program
    lab.shell(host, f"setsid nohup {path} 300 >/dev/null 2>&1 </dev/null &")
    wait_until(lambda: not host.processes_matching(program), 5, "the restart is killed")
    return True


def _survives(lab: Lab, host: Host, program: str) -> bool:
    if not host.processes_matching(program):
        path = lab.hosts[0].directory.parent / program
        lab.shell(host, f"setsid nohup {path} 300 >/dev/null 2>&1 </dev/null &")
        return False
    return True


def test_kill_processes_reports_no_match(lab: Lab, ssh_key_env: None, attack: Any):
    result = attack(
        "kill_processes:KillProcesses",
        args_for(lab, lab.hosts[0], pattern="^no-such-program$", duration=0),
    )
    assert "no process matched" in result["targets"][0]["stdout_tail"]


def test_block_all_network_traffic_isolates_then_restores(lab: Lab, ssh_key_env: None, attack: Any):
    target, neighbour = lab.hosts[1], lab.hosts[2]
    assert neighbour.can_connect(target.address)
    duration = 6  # room for the checks below, all made while the block is on
    result = attack(
        "block_all_network_traffic:BlockAllNetworkTraffic",
        args_for(lab, target, duration=duration),
    )
    assert result["targets"][0]["exit_code"] == 0, "the session itself got its answer"
    assert "CME-B" in target.iptables_rules()
    assert not neighbour.can_connect(target.address), "no new connection gets in"
    assert not target.can_connect(neighbour.address), "nothing gets out"
    assert not _pings(target.address, count=1)
    wait_until(lambda: neighbour.can_connect(target.address), duration + 5, "the host is back")
    assert _pings(target.address, count=1)
    wait_until(lambda: "CME-B" not in target.iptables_rules(), 5, "the block rules are gone")


def _pings(address: str, count: int) -> bool:
    done = subprocess.run(
        ["ping", "-n", "-q", "-c", str(count), "-W", "1", address],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def _loss_percent(address: str, count: int) -> float:
    done = subprocess.run(
        ["ping", "-n", "-q", "-c", str(count), "-i", "0.005", "-W", "1", address],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"([\d.]+)% packet loss", done.stdout)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


def test_network_loss_drops_about_the_asked_share(lab: Lab, ssh_key_env: None, attack: Any):
    target = lab.hosts[0]
    attack("network_loss:NetworkLoss", args_for(lab, target, percent=40, duration=6))
    loss = _loss_percent(target.address, 300)
    # 300 pings at p = 0.4: one standard deviation is under 3 points.
    assert 25 <= loss <= 55, f"measured {loss}% loss for 40% asked"
    wait_until(lambda: "CME-L" not in target.iptables_rules(), 10, "the loss rules are gone")
    assert _loss_percent(target.address, 100) <= 2


def _has_netem() -> bool:
    scratch = f"cmenetem{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", scratch], check=True)
    try:
        added = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                scratch,
                "tc",
                "qdisc",
                "add",
                "dev",
                "lo",
                "root",
                "netem",
                "delay",
                "1ms",
            ],
            capture_output=True,
            check=False,
        )
        return added.returncode == 0
    finally:
        subprocess.run(["ip", "netns", "del", scratch], check=False)


def test_network_latency_needs_netem_and_says_so(lab: Lab, ssh_key_env: None, attack: Any):
    """Without sch_netem (this CI kernel) a clear failure; with it, a netem qdisc that goes."""
    target = lab.hosts[2]

    def qdiscs() -> str:
        return str(target.run("tc", "qdisc", "show", "dev", "eth0").stdout)

    if not _has_netem():
        with pytest.raises(AttackFailed, match="sch_netem module is not available") as raised:
            attack("network_latency:NetworkLatency", args_for(lab, target, delay_ms=100))
        assert raised.value.result["targets"][0]["exit_code"] == 4
        assert "netem" not in qdiscs(), "nothing was changed"
        return
    attack("network_latency:NetworkLatency", args_for(lab, target, delay_ms=200))
    assert "netem" in qdiscs()
    wait_until(lambda: "netem" not in qdiscs(), DURATION + 5, "the netem qdisc is removed")


def test_null_route_blackholes_a_network_then_restores(lab: Lab, ssh_key_env: None, attack: Any):
    source, dropped, kept = lab.hosts
    assert source.can_connect(dropped.address)
    attack("null_route:NullRoute", args_for(lab, source, cidr=f"{dropped.address}/32"))
    assert not source.can_connect(dropped.address)
    assert source.can_connect(kept.address), "other networks still work"
    wait_until(lambda: source.can_connect(dropped.address), DURATION + 5, "the route is back")
    assert "blackhole" not in source.run("ip", "route").stdout


def test_null_route_refuses_to_cut_the_engine_off(lab: Lab, ssh_key_env: None, attack: Any):
    source = lab.hosts[0]
    with pytest.raises(AttackFailed, match="holds the SSH client"):
        attack("null_route:NullRoute", args_for(lab, source, cidr=str(lab.network)))
    assert "blackhole" not in source.run("ip", "route").stdout


DNS_RESPONDER = """
import socket, threading
def tcp():
    server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 53)); server.listen()
    while True:
        connection, _ = server.accept(); connection.sendall(b"ok"); connection.close()
threading.Thread(target=tcp, daemon=True).start()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.bind(("0.0.0.0", 53))
while True:
    data, peer = udp.recvfrom(512); udp.sendto(data, peer)
"""

DNS_QUERY = """
import socket, sys
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.settimeout(0.5)
query = bytes.fromhex("123401000001000000000000076578616d706c6503636f6d0000010001")
try:
    udp.sendto(query, (sys.argv[1], 53)); udp.recvfrom(512)
    socket.create_connection((sys.argv[1], 53), timeout=0.5).close()
except OSError:
    sys.exit(1)
"""


@pytest.fixture
def dns_server(lab: Lab) -> Iterator[Host]:
    """A stand-in name server (UDP and TCP port 53) on host 2."""
    server = lab.hosts[2]
    process = subprocess.Popen(
        ["ip", "netns", "exec", server.namespace, "python3", "-c", DNS_RESPONDER],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _resolves(lab.hosts[0], server), 10, "the DNS stand-in answers")
        yield server
    finally:
        process.kill()
        process.wait(timeout=10)


def _resolves(client: Host, server: Host) -> bool:
    return client.run("python3", "-c", DNS_QUERY, server.address, check=False).returncode == 0


def test_fail_dns_blocks_port_53_then_restores(
    lab: Lab, ssh_key_env: None, attack: Any, dns_server: Host
):
    client = lab.hosts[0]
    attack("fail_dns:FailDns", args_for(lab, client))
    assert not _resolves(client, dns_server), "DNS over UDP and TCP fails"
    assert client.can_connect(dns_server.address, 22), "other traffic flows"
    wait_until(lambda: _resolves(client, dns_server), DURATION + 5, "DNS works again")
    # The reverter unhooks the chain first, then deletes it: wait for both.
    wait_until(lambda: "CME-D" not in client.iptables_rules(), 5, "the DNS rules are gone")


def test_an_attack_on_several_hosts_reports_each(lab: Lab, ssh_key_env: None, attack: Any):
    result = attack(
        "fill_disk:FillDisk",
        {
            "hosts": [host.address for host in lab.hosts],
            "ssh": lab.ssh(),
            "duration": 1,
            "size_mb": 1,
            "path": str(lab.hosts[0].directory.parent),
        },
    )
    assert sorted(t["host"] for t in result["targets"]) == sorted(h.address for h in lab.hosts)
    assert result["duration"] == 1
    assert result["parameters"]["size_mb"] == "1"
