"""What a plan may make an attack reach: the secrets the operator allowed, and no
link-local or instance-metadata address.

Pure (standard library only), so that the API checks a plan at creation time with the
same rules the attack function applies again when it resolves a secret or opens a
connection (defence in depth):

- ``SecretPolicy``: a secret reference (``{"env": NAME}``, ``{"ssm": path}``,
  ``{"secretsmanager": id, "key"?}``) may name only an environment variable under the
  configured prefix and SSM parameters / Secrets Manager secrets under configured paths;
- ``OutboundPolicy``: an attack's own requests never go to a link-local address or an
  instance-metadata address (EC2, ECS, EKS; IPv4 and IPv6) unless the operator allows it;
- ``SecretVault``: the values one run resolved, so the runner can scrub them from what it
  stores (a resolved value is only ever the attack's own authentication).
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from chalicelib.domain.errors import InvalidPayload

REDACTED = "<redacted>"
REFERENCE_KINDS = ("env", "ssm", "secretsmanager")
# Instance-metadata and container-credential endpoints: EC2 IMDS (IPv4, IPv6 on Nitro),
# ECS task metadata/credentials, EKS Pod Identity (IPv4, IPv6).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text)
    for text in (
        "169.254.169.254",
        "fd00:ec2::254",
        "169.254.170.2",
        "169.254.170.23",
        "fd00:ec2::23",
    )
)
LINK_LOCAL_NETWORKS = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))


def is_secret_reference(value: object) -> bool:
    """Whether ``value`` has the shape of a secret reference (one kind key, plus ``key``
    for Secrets Manager), wherever it appears in an attack's arguments."""
    if not isinstance(value, dict):
        return False
    kinds = [kind for kind in REFERENCE_KINDS if kind in value]
    if len(kinds) != 1:
        return False
    allowed = {kinds[0], "key"} if kinds[0] == "secretsmanager" else {kinds[0]}
    return set(value) <= allowed


def find_references(value: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every secret reference in ``value`` with its dotted path (``attack.args.ssh.key``)."""
    if is_secret_reference(value):
        yield path, value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from find_references(item, f"{path}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from find_references(item, f"{path}.{index}")


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    # ".." is no path step in SSM or IAM, but a name that holds it reads as an escape.
    return ".." not in name.split("/") and any(name.startswith(prefix) for prefix in prefixes)


def _resource_name(identifier: str, marker: str) -> str:
    """The name inside an ARN (``arn:aws:ssm:...:parameter/x`` -> ``/x``), else itself."""
    if identifier.startswith("arn:") and marker in identifier:
        name = identifier.split(marker, 1)[1]
        return f"/{name}" if marker == ":parameter/" else name
    return identifier


@dataclass(frozen=True)
class SecretPolicy:
    """Which secret references a plan may hold (the operator's settings).

    The defaults match the IAM policies the engine is deployed with
    (.chalice/policy-attack-*.json): ``parameter/chaos-monkey-engine/*`` and
    ``secret:chaos-monkey-engine/*``.
    """

    env_prefix: str = "CME_SECRET_"
    ssm_paths: tuple[str, ...] = ("/chaos-monkey-engine/",)
    secretsmanager_paths: tuple[str, ...] = ("chaos-monkey-engine/",)

    def refusal(self, reference: dict[str, Any]) -> str | None:
        """Why ``reference`` is not allowed, or None when it is."""
        if "env" in reference:
            name = str(reference["env"])
            if self.env_prefix and name.startswith(self.env_prefix):
                return None
            return (
                f"environment variable {name} is not under the allowed prefix "
                f"{self.env_prefix} (CME_SECRET_ENV_PREFIX)"
            )
        if "ssm" in reference:
            kind, identifier, marker = "SSM parameter", reference["ssm"], ":parameter/"
            paths, setting = self.ssm_paths, "CME_SECRET_SSM_PATHS"
        elif "secretsmanager" in reference:
            kind, identifier, marker = (
                "Secrets Manager secret",
                reference["secretsmanager"],
                ":secret:",
            )
            paths, setting = self.secretsmanager_paths, "CME_SECRET_SECRETSMANAGER_PATHS"
        else:
            return "a secret reference needs one of env, ssm, secretsmanager"
        if _under(_resource_name(str(identifier), marker), paths):
            return None
        return (
            f"{kind} {identifier} is not under the allowed paths "
            f"{', '.join(paths) or '(none)'} ({setting})"
        )


@dataclass(frozen=True)
class OutboundPolicy:
    """Where an attack's own requests (ApiRequest, a Libcloud driver) may not go."""

    allow_link_local: bool = False

    def refusal(self, address: str) -> str | None:
        """Why a connection to the IP ``address`` is refused, or None when it is allowed."""
        if self.allow_link_local:
            return None
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address!r} is not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip in METADATA_ADDRESSES:
            what = "an instance-metadata address"
        elif any(ip in network for network in LINK_LOCAL_NETWORKS):
            what = "a link-local address"
        else:
            return None
        return f"{ip} is {what} (CME_ALLOW_LINK_LOCAL_TARGETS is off)"

    def literal_refusal(self, url: str) -> str | None:
        """Why a URL whose host is a literal IP address is refused; None for any other URL
        (a host name is checked when it is resolved, at run time)."""
        try:
            host = urlsplit(url).hostname
        except ValueError:
            return None
        if not host:
            return None
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return None
        return self.refusal(host)


def names_a_host(option: str) -> bool:
    """Whether an argument's name says it holds a host or a URL (``host``, ``auth_url``)."""
    name = option.lower()
    return name in ("host", "url", "endpoint") or name.endswith(("_host", "_url", "_endpoint"))


def as_url(target: str) -> str:
    """A URL for a host argument (``10.0.0.1``, ``fe80::1``, ``h:8080``) or a URL as is."""
    if "://" in target:
        return target
    bare_ipv6 = target.count(":") > 1 and not target.startswith("[")
    return f"https://[{target}]" if bare_ipv6 else f"https://{target}"


def _targets(value: Any, path: str, name: str = "") -> Iterator[tuple[str, str]]:
    """URLs anywhere, and hosts under host-like names, as URLs with their paths."""
    if isinstance(value, str):
        if value[:8].lower().startswith(("http://", "https://")):
            yield path, value
        elif names_a_host(name):
            yield path, as_url(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _targets(item, f"{path}.{key}", str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _targets(item, f"{path}.{index}", name)


@dataclass(frozen=True)
class ArgumentPolicy:
    """Both policies, as plan creation applies them to an attack's configuration."""

    secrets: SecretPolicy = field(default_factory=SecretPolicy)
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)

    def check(self, attack_config: dict[str, Any], where: str = "attack") -> None:
        """InvalidPayload naming the field of the first secret reference outside the
        secret policy, or of the first URL whose literal address the outbound policy
        refuses (``invalid payload attack.args.ssh.key: ...``)."""
        args = attack_config.get("args")
        for path, reference in find_references(args, f"{where}.args"):
            refusal = self.secrets.refusal(reference)
            if refusal is not None:
                raise InvalidPayload(f"{path}: {refusal}")
        for path, url in _targets(args, f"{where}.args"):
            refusal = self.outbound.literal_refusal(url)
            if refusal is not None:
                raise InvalidPayload(f"{path}: not allowed: {refusal}")


class SecretVault:
    """The secret values one attack run resolved; ``scrub`` removes them from anything.

    Thread-safe: an SSH attack resolves once but runs hosts in threads.
    """

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def record(self, value: str) -> str:
        """Remember ``value`` (returned unchanged) so that it is scrubbed later."""
        if value:
            with self._lock:
                self._values.add(value)
        return value

    def __bool__(self) -> bool:
        return bool(self._values)

    def scrub(self, value: Any) -> Any:
        """``value`` with every recorded secret (and each of its lines, for multi-line
        keys) replaced by ``<redacted>``, in strings, dict keys and values, lists."""
        with self._lock:
            secrets = sorted(self._pieces(), key=len, reverse=True)
        if not secrets:
            return value
        return _scrub(value, secrets)

    def _pieces(self) -> set[str]:
        pieces = set(self._values)
        for secret in self._values:
            # A PEM key quoted by a parser shows up a line at a time.
            pieces.update(line.strip() for line in secret.splitlines() if len(line.strip()) >= 8)
        return pieces


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {_scrub(key, secrets): _scrub(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(item, secrets) for item in value]
    return value
