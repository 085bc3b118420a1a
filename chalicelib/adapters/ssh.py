"""Runs a script on a host over SSH with paramiko and reports its exit code and output tail.

The private key lives in memory only: it is parsed from text (never a file), never
logged and never part of a result or an error message. Host keys are checked strictly
when known host keys are given; otherwise any host key is accepted and its fingerprint
is recorded in the outcome, so a run can be audited afterwards.

Errors::

    SshError               connecting, authenticating or uploading failed
     +-- SshKeyError       the private key could not be read (message never holds it)
     +-- HostKeyMismatch   strict host key checking refused the host's key
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import select
import shlex
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import paramiko

log = logging.getLogger(__name__)

TAIL_BYTES = 4_000
_READ_CHUNK = 32_768
OUTPUT_GRACE_SECONDS = 2.0
_ENV_NAME_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")


class SshError(Exception):
    """Connecting, authenticating or uploading to a host failed."""


class SshKeyError(SshError):
    """The private key could not be read. The message names where it came from, not it."""


class HostKeyMismatch(SshError):
    """The host presented a key that is not among the known host keys of the plan."""

    def __init__(self, host: str, fingerprint: str) -> None:
        super().__init__(
            f"host key of {host} ({fingerprint}) is not among the known host keys; not connecting"
        )
        self.host = host
        self.fingerprint = fingerprint


@dataclass(frozen=True)
class SshTarget:
    """One host to run on: an address, a port and a name for the result (e.g. instance id)."""

    host: str
    port: int = 22
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or (self.host if self.port == 22 else f"{self.host}:{self.port}")


@dataclass
class ScriptOutcome:
    """What happened on one host. JSON-able through ``as_result``; never holds a secret."""

    target: SshTarget
    exit_code: int | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    host_key_fingerprint: str = ""
    host_key_checked: bool = False
    timed_out: bool = False
    error: str = ""
    elapsed_ms: int = 0

    @property
    def is_success(self) -> bool:
        return not self.error and not self.timed_out and self.exit_code == 0

    def as_result(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "host": self.target.host,
            "port": self.target.port,
            "exit_code": self.exit_code,
            "stdout_tail": self.stdout_tail,
            "stderr_tail": self.stderr_tail,
            "host_key_fingerprint": self.host_key_fingerprint,
            "host_key_checked": self.host_key_checked,
            "elapsed_ms": self.elapsed_ms,
        }
        if self.target.name:
            result["name"] = self.target.name
        if self.timed_out:
            result["timed_out"] = True
        if self.error:
            result["error"] = self.error
        return result


def _key_classes() -> tuple[type[paramiko.PKey], ...]:
    return (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


def load_private_key(text: str, source: str, passphrase: str | None = None) -> paramiko.PKey:
    """Parse a private key held in memory (PEM / OpenSSH text, or that text base64-encoded).

    ``source`` names where the key came from (``inline pem``, ``SSM parameter /x``) and
    is the only thing an error says about it.
    """
    candidates = [text]
    if "-----BEGIN" not in text:
        try:
            candidates = [base64.b64decode("".join(text.split()), validate=True).decode("utf-8")]
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise SshKeyError(
                f"the SSH key from {source} is neither PEM text nor base64-encoded PEM"
            ) from None
    for key_text in candidates:
        for key_class in _key_classes():
            try:
                return key_class.from_private_key(io.StringIO(key_text), password=passphrase)
            except paramiko.PasswordRequiredException:
                raise SshKeyError(
                    f"the SSH key from {source} is encrypted and no passphrase was given"
                ) from None
            except (paramiko.SSHException, ValueError, TypeError, IndexError):
                continue
    raise SshKeyError(f"the SSH key from {source} is not a supported private key")


@dataclass(frozen=True)
class KnownHosts:
    """Known host keys from a plan: OpenSSH ``known_hosts`` lines.

    A line ``host[,host...] keytype base64`` trusts that key for those hosts
    (``[host]:port`` for a non-standard port, as OpenSSH writes it); a line
    ``keytype base64`` without host names trusts that key for any target (for fleets
    whose addresses change, such as EC2 instances baked from one image).
    """

    by_host: Mapping[str, frozenset[str]] = field(default_factory=dict)
    anywhere: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, lines: Iterable[str]) -> KnownHosts:
        by_host: dict[str, set[str]] = {}
        anywhere: set[str] = set()
        for number, raw in enumerate(lines, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) >= 2 and _looks_like_key(parts[0], parts[1]):
                anywhere.add(_key_text(parts[0], parts[1]))
                continue
            if len(parts) >= 3 and _looks_like_key(parts[1], parts[2]):
                for host in parts[0].split(","):
                    by_host.setdefault(host, set()).add(_key_text(parts[1], parts[2]))
                continue
            raise ValueError(f"known_hosts line {number} is not 'host keytype base64'")
        return cls(
            by_host={host: frozenset(keys) for host, keys in by_host.items()},
            anywhere=frozenset(anywhere),
        )

    @property
    def is_empty(self) -> bool:
        return not self.by_host and not self.anywhere

    def trusts(self, target: SshTarget, key: paramiko.PKey) -> bool:
        presented = _key_text(key.get_name(), key.get_base64())
        if presented in self.anywhere:
            return True
        names = [target.host] if target.port == 22 else []
        names.append(f"[{target.host}]:{target.port}")
        return any(presented in self.by_host.get(name, ()) for name in names)


def _looks_like_key(key_type: str, data: str) -> bool:
    if not (key_type.startswith(("ssh-", "ecdsa-", "sk-"))):
        return False
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _key_text(key_type: str, data: str) -> str:
    return f"{key_type} {data}"


class _RecordingPolicy(paramiko.MissingHostKeyPolicy):
    """Decides on the host key and remembers its fingerprint for the outcome.

    With known host keys it rejects any other key (strict); without, it accepts the key
    (documented: the fingerprint in the result is how a run is audited).
    """

    def __init__(self, target: SshTarget, known: KnownHosts) -> None:
        self.target = target
        self.known = known
        self.fingerprint = ""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: Any) -> None:
        self.fingerprint = str(key.fingerprint)
        if self.known.is_empty:
            return
        if not self.known.trusts(self.target, key):
            raise HostKeyMismatch(self.target.label, self.fingerprint)


def remote_command(
    remote_path: str,
    env: Mapping[str, str] | None = None,
    sudo: bool = False,
    interpreter: str | None = None,
) -> str:
    """The command line that runs an uploaded script; every value is shell-quoted."""
    words: list[str] = []
    if sudo:
        words += ["sudo", "-n"]
    if env:
        words.append("env")
        for name, value in env.items():
            if not name or name[0] not in _ENV_NAME_FIRST or not name.replace("_", "").isalnum():
                raise ValueError(f"invalid environment variable name {name!r}")
            words.append(f"{name}={value}")
    if interpreter:
        words.append(interpreter)
    words.append(remote_path)
    return " ".join(shlex.quote(word) for word in words)


@dataclass
class SshRunner:
    """Uploads a script to each host over SFTP and runs it, one connection per host."""

    user: str
    key: paramiko.PKey = field(repr=False)
    known_hosts: KnownHosts = field(default_factory=KnownHosts)
    connect_timeout: float = 10.0

    def run_script(
        self,
        target: SshTarget,
        script: bytes,
        remote_path: str,
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        sudo: bool = False,
        interpreter: str | None = None,
        remove_after: bool = True,
    ) -> ScriptOutcome:
        """Upload ``script`` to ``remote_path`` (mode 0700), run it, return its outcome.

        ``interpreter`` (e.g. ``/bin/sh``) runs the script through it, which also works
        where the upload directory is mounted ``noexec``. Never raises for a problem on
        the host: connection, authentication and host key errors are the outcome's
        ``error``; a run longer than ``timeout`` seconds is abandoned (the channel is
        closed, so sshd hangs the script up) and ``timed_out``.
        """
        outcome = ScriptOutcome(target=target, host_key_checked=not self.known_hosts.is_empty)
        started = time.monotonic()
        policy = _RecordingPolicy(target, self.known_hosts)
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(policy)
        try:
            client.connect(
                target.host,
                port=target.port,
                username=self.user,
                pkey=self.key,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                look_for_keys=False,
                allow_agent=False,
            )
            outcome.host_key_fingerprint = policy.fingerprint
            self._upload(client, script, remote_path)
            command = remote_command(remote_path, env, sudo, interpreter)
            self._execute(client, command, timeout, outcome)
            if remove_after and not outcome.timed_out:
                self._remove(client, remote_path)
        except HostKeyMismatch as refused:
            outcome.host_key_fingerprint = refused.fingerprint
            outcome.error = str(refused)
        except paramiko.AuthenticationException:
            outcome.error = f"authentication as {self.user!r} on {target.label} failed"
        except (paramiko.SSHException, OSError, EOFError) as error:
            outcome.host_key_fingerprint = outcome.host_key_fingerprint or policy.fingerprint
            outcome.error = f"{type(error).__name__}: {error}" if str(error) else repr(error)
        finally:
            client.close()
            outcome.elapsed_ms = int((time.monotonic() - started) * 1000)
        log.info(
            "script run over SSH",
            extra={
                "target": target.label,
                "exit_code": outcome.exit_code,
                "timed_out": outcome.timed_out,
                "error": outcome.error,
            },
        )
        return outcome

    @staticmethod
    def _upload(client: paramiko.SSHClient, script: bytes, remote_path: str) -> None:
        # Make it private before filling it: nobody else may read or swap the script.
        with client.open_sftp() as sftp, sftp.open(remote_path, "wb") as handle:
            handle.chmod(0o700)
            handle.write(script)

    @staticmethod
    def _remove(client: paramiko.SSHClient, remote_path: str) -> None:
        try:
            with client.open_sftp() as sftp:
                sftp.remove(remote_path)
        except (OSError, paramiko.SSHException):
            log.warning("uploaded script not removed", extra={"path": remote_path})

    @staticmethod
    def _execute(
        client: paramiko.SSHClient, command: str, timeout: float, outcome: ScriptOutcome
    ) -> None:
        transport = client.get_transport()
        if transport is None:
            raise SshError("the SSH connection closed before the script ran")
        channel = transport.open_session(timeout=timeout)
        stdout: deque[bytes] = deque()
        stderr: deque[bytes] = deque()
        deadline = time.monotonic() + timeout
        try:
            channel.settimeout(0.2)
            # bandit B601: remote_command() shlex-quotes every word it is given.
            channel.exec_command(command)  # nosec B601
            exited_at: float | None = None
            while True:
                drained = _drain(channel, stdout, stderr)
                if exited_at is None and channel.exit_status_ready():
                    exited_at = time.monotonic()
                if exited_at is not None and not drained and _output_done(channel, exited_at):
                    outcome.exit_code = channel.recv_exit_status()
                    break
                if time.monotonic() > deadline:
                    outcome.timed_out = True
                    break
                if not drained:
                    _wait(channel)
        finally:
            channel.close()
        outcome.stdout_tail = _tail_text(stdout)
        outcome.stderr_tail = _tail_text(stderr)


def _output_done(channel: paramiko.Channel, exited_at: float) -> bool:
    """After the exit status: is all output in, or has the grace for it run out?

    sshd sends the exit status when the process is reaped, which can be before the last of
    its stdout and stderr has crossed the wire; the end of output is the channel's EOF or
    close. A script that leaves a child holding its output open never sends EOF, so the
    wait for it is bounded by ``OUTPUT_GRACE_SECONDS``.
    """
    if channel.eof_received or channel.closed:
        return not (channel.recv_ready() or channel.recv_stderr_ready())
    return time.monotonic() - exited_at > OUTPUT_GRACE_SECONDS


def _wait(channel: paramiko.Channel) -> None:
    """Block until the channel has something to read, or a short time passed."""
    select.select([channel], [], [], 0.2)


def _drain(channel: paramiko.Channel, stdout: deque[bytes], stderr: deque[bytes]) -> bool:
    moved = False
    while channel.recv_ready():
        _keep_tail(stdout, channel.recv(_READ_CHUNK))
        moved = True
    while channel.recv_stderr_ready():
        _keep_tail(stderr, channel.recv_stderr(_READ_CHUNK))
        moved = True
    return moved


def _keep_tail(buffer: deque[bytes], chunk: bytes) -> None:
    if not chunk:
        return
    buffer.append(chunk)
    while sum(len(part) for part in buffer) - len(buffer[0]) >= TAIL_BYTES:
        buffer.popleft()


def _tail_text(buffer: deque[bytes]) -> str:
    return b"".join(buffer)[-TAIL_BYTES:].decode("utf-8", errors="replace")
