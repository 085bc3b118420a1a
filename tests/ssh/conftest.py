"""A lab of real SSH hosts: network namespaces on a private bridge, each with its own sshd.

Each host is a network namespace with a veth into a bridge that only this run uses (a
random name suffix and a random 10.x.y.0/24 that no route of this machine covers), and
its own PID namespace, so a fault script sees and kills only the host's own processes.
Its sshd has a generated host key and authorizes a key generated for the run; the
private keys live in memory (the client's) or in the run's tmp directory (the hosts').
The namespaces share one filesystem, so every host works in a directory of its own.
Everything is torn down in ``finally``, which also ends any fault still running.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import os
import random
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from chalicelib.plugins.contract import Attack, AttackContext
from chalicelib.plugins.registry import PluginSet, load_plugins
from chalicelib.settings import builtin_folder
from tests.conftest import LAB_NETWORKS

SSHD = "/usr/sbin/sshd"
HOSTS = 3


def wait_until(check: Callable[[], Any], timeout: float, message: str, every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``message`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting until {message}")
        time.sleep(every)


def run(*command: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=check, capture_output=True, text=True, timeout=timeout)


@dataclass
class Host:
    """One lab host: its namespace, address, directory and sshd."""

    name: str
    namespace: str
    address: str
    directory: Path
    host_key_line: str = ""
    sshd: subprocess.Popen[bytes] | None = None

    @property
    def known_hosts_line(self) -> str:
        return f"{self.address} {self.host_key_line}"

    def run(self, *command: str, check: bool = True, timeout: float = 30) -> Any:
        """Run a command in this host's network namespace (and the lab's PID view)."""
        return run("ip", "netns", "exec", self.namespace, *command, check=check, timeout=timeout)

    def pid_namespace(self) -> str:
        assert self.sshd is not None
        child = Path(f"/proc/{self.sshd.pid}/task/{self.sshd.pid}/children").read_text().split()
        return os.readlink(f"/proc/{child[0]}/ns/pid")

    def processes(self) -> dict[int, str]:
        """The processes running on this host (in its PID namespace): pid -> command line."""
        wanted = self.pid_namespace()
        found: dict[int, str] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(entry / "ns/pid") != wanted:
                    continue
                found[int(entry.name)] = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                )
            except OSError:
                continue
        return found

    def processes_matching(self, text: str) -> list[int]:
        return [pid for pid, command in self.processes().items() if text in command]

    def iptables_rules(self) -> str:
        return str(self.run("iptables", "-w", "-S").stdout)

    def can_connect(self, address: str, port: int = 22, timeout: float = 0.5) -> bool:
        """Whether this host can open a TCP connection to ``address:port``."""
        probe = (
            "import socket,sys\n"
            "try:\n"
            f"    socket.create_connection(({address!r}, {port}), timeout={timeout}).close()\n"
            "except OSError:\n"
            "    sys.exit(1)\n"
        )
        return self.run("python3", "-c", probe, check=False).returncode == 0


@dataclass
class Lab:
    """The hosts, the client key (in memory) and how to address them from the engine."""

    hosts: list[Host]
    network: ipaddress.IPv4Network
    gateway: str
    bridge: str
    key_pem: str = field(repr=False)
    rsa_pem: str = field(repr=False)

    @property
    def pem_base64(self) -> str:
        """The 2017 form: the PEM file's text, base64-encoded."""
        return base64.b64encode(self.rsa_pem.encode()).decode()

    def shell(self, host: Host, command: str, timeout: float = 20) -> tuple[int, str]:
        """Run a shell command on ``host`` over SSH (as the lab's root); exit code, output."""
        client = paramiko.SSHClient()
        key_type, key_data = host.host_key_line.split()[:2]
        client.get_host_keys().add(
            host.address, key_type, paramiko.Ed25519Key(data=base64.b64decode(key_data))
        )
        key = paramiko.Ed25519Key.from_private_key(io.StringIO(self.key_pem))
        try:
            client.connect(
                host.address,
                username="root",
                pkey=key,
                timeout=5,
                look_for_keys=False,
                allow_agent=False,
            )
            _, stdout, stderr = client.exec_command(command, timeout=timeout)
            output = stdout.read().decode() + stderr.read().decode()
            return stdout.channel.recv_exit_status(), output
        finally:
            client.close()

    def ssh(self, **extra: Any) -> dict[str, Any]:
        """An ``ssh`` argument block with the key from an environment reference."""
        return {"user": "root", "key": {"env": "CME_SECRET_TEST_SSH_KEY"}, **extra}


def _private_openssh(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )


def _public_openssh(key: Any) -> str:
    return str(
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def _free_subnet() -> ipaddress.IPv4Network:
    """A random 10.x.y.0/24 that no address or route of this machine overlaps."""
    taken = []
    for line in run("ip", "-4", "route", "show", "table", "all").stdout.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("local", "broadcast", "unreachable", "blackhole", "prohibit"):
            word = line.split()[1]
        try:
            taken.append(ipaddress.IPv4Network(word, strict=False))
        except ValueError:
            continue
    for _ in range(100):
        candidate = ipaddress.IPv4Network(
            f"10.{random.randint(64, 250)}.{random.randint(0, 255)}.0/24"
        )
        if not any(candidate.overlaps(net) for net in taken if net.prefixlen > 0):
            return candidate
    pytest.fail("no free 10.x.y.0/24 for the SSH lab")


def _sshd_config(host: Host) -> str:
    directory = host.directory
    return "\n".join(
        [
            f"ListenAddress {host.address}",
            "Port 22",
            f"HostKey {directory / 'ssh_host_ed25519_key'}",
            f"AuthorizedKeysFile {directory / 'authorized_keys'}",
            f"PidFile {directory / 'sshd.pid'}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "Subsystem sftp internal-sftp",
            "LogLevel ERROR",
            "",
        ]
    )


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the SSH lab needs root (network namespaces, iptables)"
    for tool in (SSHD, shutil.which("ip"), shutil.which("unshare"), shutil.which("iptables")):
        if not tool or not os.path.exists(tool):
            return f"the SSH lab needs {tool or 'ip/unshare/iptables'} (scripts/system-deps.sh)"
    return None


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Three SSH hosts in network namespaces on a private bridge; torn down at the end."""
    reason = _skip_reason()
    if reason and os.environ.get("CI"):
        # CI runs as root after scripts/system-deps.sh: a missing piece is a failure there.
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)
    suffix = secrets.token_hex(3)
    network = _free_subnet()
    LAB_NETWORKS.append(network)  # the only non-loopback addresses tests may reach
    addresses = list(network.hosts())
    gateway = str(addresses[0])
    bridge = f"cmeb{suffix}"
    root = tmp_path_factory.mktemp("sshlab")
    client_key = ed25519.Ed25519PrivateKey.generate()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    authorized = f"{_public_openssh(client_key)}\n{_public_openssh(rsa_key)}\n"
    hosts = [
        Host(
            name=f"host{index}",
            namespace=f"cme{suffix}h{index}",
            address=str(addresses[9 + index]),
            directory=root / f"host{index}",
        )
        for index in range(HOSTS)
    ]
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        run("ip", "link", "add", bridge, "type", "bridge")
        run("ip", "addr", "add", f"{gateway}/{network.prefixlen}", "dev", bridge)
        run("ip", "link", "set", bridge, "up")
        for index, host in enumerate(hosts):
            outside = f"cme{suffix}v{index}"
            run("ip", "netns", "add", host.namespace)
            run("ip", "link", "add", outside, "type", "veth", "peer", "name", f"{outside}p")
            run("ip", "link", "set", f"{outside}p", "netns", host.namespace)
            run("ip", "link", "set", outside, "master", bridge, "up")
            host.run("ip", "link", "set", "lo", "up")
            host.run("ip", "link", "set", f"{outside}p", "name", "eth0")
            host.run("ip", "addr", "add", f"{host.address}/{network.prefixlen}", "dev", "eth0")
            host.run("ip", "link", "set", "eth0", "up")
            host.directory.mkdir(mode=0o700)
            host_key = ed25519.Ed25519PrivateKey.generate()
            key_file = host.directory / "ssh_host_ed25519_key"
            key_file.write_bytes(_private_openssh(host_key))
            key_file.chmod(0o600)
            host.host_key_line = _public_openssh(host_key)
            (host.directory / "authorized_keys").write_text(authorized)
            config = host.directory / "sshd_config"
            config.write_text(_sshd_config(host))
            # Own PID namespace: the host's fault scripts see only its processes, and when
            # sshd (its PID 1) stops, everything still running on the host stops too.
            host.sshd = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    host.namespace,
                    "unshare",
                    "--pid",
                    "--fork",
                    "--kill-child",
                    "--mount-proc",
                    SSHD,
                    "-D",
                    "-e",
                    "-f",
                    str(config),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        for host in hosts:
            wait_until(partial(_listening, host.address), 15, f"sshd of {host.name} up")
        yield Lab(
            hosts=hosts,
            network=network,
            gateway=gateway,
            bridge=bridge,
            key_pem=_private_openssh(client_key).decode(),
            rsa_pem=rsa_pem,
        )
    finally:
        for host in hosts:
            if host.sshd is not None and host.sshd.poll() is None:
                # unshare ignores SIGTERM while it waits; SIGKILL reaches sshd through
                # --kill-child, and the end of the host's PID 1 ends all its processes.
                host.sshd.kill()
                host.sshd.wait(timeout=10)
            run("ip", "netns", "del", host.namespace, check=False)
        for index in range(HOSTS):
            run("ip", "link", "del", f"cme{suffix}v{index}", check=False)
        run("ip", "link", "del", bridge, check=False)


def _listening(address: str) -> bool:
    try:
        socket.create_connection((address, 22), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture
def ssh_key_env(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client key in the environment variable the ``lab.ssh()`` block references."""
    monkeypatch.setenv("CME_SECRET_TEST_SSH_KEY", lab.key_pem)


@pytest.fixture(scope="session")
def attacks() -> PluginSet[Attack]:
    """The built-in attack plugins, loaded the way the engine loads them."""
    plugins = load_plugins("attacks", Attack, [builtin_folder("attacks")])
    assert not plugins.errors, plugins.errors
    return plugins


@pytest.fixture
def attack(attacks: PluginSet[Attack]) -> Callable[..., Any]:
    """Run an attack by ref with ``args`` as the engine would; returns its result."""

    def run_attack(ref: str, args: dict[str, Any], dry_run: bool = False) -> Any:
        instance = attacks.resolve(ref)(args)
        instance.context = AttackContext(executor_id=secrets.token_hex(8), dry_run=dry_run)
        return instance.run()

    return run_attack
