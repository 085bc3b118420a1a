"""EC2 through Libcloud: the 2017 ``EC2DriverFactory`` and the instance operations attacks use.

Credentials come from the standard AWS chain (environment, shared files, container or
Lambda role) through botocore, *including the session token* that a role provides; the
2017 ``AWS_IAM_ROLE`` variable is honoured by that same chain, so nothing here calls the
instance metadata service by hand. The region is the argument, else the chain's region
(``AWS_DEFAULT_REGION``...). The endpoint is the argument, else the region's public one;
the engine passes its own (the ``ec2_endpoint`` setting: local mode's moto, or
``CME_EC2_ENDPOINT``) on each attack's context, and nothing here reads it from the
environment.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

STATE_FILTERS = frozenset({"instance-state-name", "instance-state-code"})

# Exclusion filters evaluated on the instances one describe call returned: the
# filter name and where its value lives on a Libcloud EC2 node.
EXCLUDABLE = (
    "tag:<Key>",
    "tag-key",
    "instance-id",
    "availability-zone",
    "instance-type",
    "instance-state-name",
    "private-ip-address",
    "ip-address",
    "image-id",
    "vpc-id",
    "subnet-id",
    "key-name",
)

Filters = Mapping[str, str | Sequence[str]]


class EC2Error(Exception):
    """EC2 could not be reached or did not do what was asked; the message says which."""


@dataclass(frozen=True)
class AwsCredentials:
    """Resolved AWS credentials. ``repr`` never shows the secret or the token."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


def aws_credentials() -> AwsCredentials:
    """The credentials the standard AWS chain finds; EC2Error when it finds none."""
    import boto3

    found = boto3.Session().get_credentials()
    if found is None:
        raise EC2Error(
            "no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "a profile, or run with a role)"
        )
    frozen = found.get_frozen_credentials()
    return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token or None)


def default_region() -> str | None:
    """The region the AWS chain configures (``AWS_DEFAULT_REGION``, the profile's...)."""
    import boto3

    return boto3.Session().region_name or None


class EC2DriverFactory:
    """Builds a Libcloud EC2 driver for one region (the 2017 class, same use).

    ``EC2DriverFactory(region=None).get_driver()``. Credentials: the standard AWS chain,
    session token included (``AWS_IAM_ROLE`` from 2017 needs nothing more). Region: the
    argument, else the chain's (``AWS_DEFAULT_REGION``). Endpoint: the argument, else the
    region's public endpoint. (``chaosmonkey.drivers.EC2DriverFactory``, the class 2017
    plugins import, fills both in from the running attack's context.)
    """

    def __init__(self, region: str | None = None, endpoint: str | None = None) -> None:
        self.region = region or default_region()
        if not self.region:
            raise EC2Error("no AWS region: give one in the attack or set AWS_DEFAULT_REGION")
        self.endpoint = endpoint or None
        credentials = aws_credentials()
        # The 2017 attribute names, kept for plugins that read them.
        self.aws_ak = credentials.access_key
        self.aws_sk = credentials.secret_key
        self.token = credentials.token

    def get_driver(self) -> Any:
        """A Libcloud EC2 ``NodeDriver`` for the region (and endpoint, when one is set)."""
        from libcloud.compute.providers import get_driver
        from libcloud.compute.types import Provider

        driver_class = get_driver(Provider.EC2)
        # Signature version 4 is what every AWS region (and moto) accepts; Libcloud's
        # per-region default is still version 2 for the oldest regions.
        options: dict[str, Any] = {"region": self.region, "signature_version": "4"}
        if self.token:
            options["token"] = self.token
        if self.endpoint:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise EC2Error(f"EC2 endpoint {self.endpoint!r} is not an http(s) URL")
            options.update(
                host=parts.hostname,
                port=parts.port or (443 if parts.scheme == "https" else 80),
                secure=parts.scheme == "https",
            )
        try:
            return driver_class(self.aws_ak, self.aws_sk, **options)
        except ValueError as error:  # Libcloud's "Invalid region: xx"
            raise EC2Error(f"{error}; Libcloud knows no EC2 region {self.region!r}") from None


@dataclass(frozen=True)
class Instance:
    """An EC2 instance as the attacks report it."""

    id: str
    name: str | None
    private_ip: str | None
    public_ip: str | None
    zone: str | None
    state: str
    instance_type: str | None
    tags: dict[str, str]
    node: Any = field(repr=False, compare=False)

    def describe(self) -> dict[str, Any]:
        """What an executor's result says about the instance."""
        return {
            "id": self.id,
            "name": self.name,
            "private_ip": self.private_ip,
            "zone": self.zone,
            "state": self.state,
            "instance_type": self.instance_type,
        }

    def attribute(self, name: str) -> list[str]:
        """The values an EC2 filter called ``name`` compares against (``[]`` if none)."""
        if name.startswith("tag:"):
            value = self.tags.get(name[4:])
            return [] if value is None else [value]
        extra = self.node.extra or {}
        by_name: dict[str, Any] = {
            "tag-key": list(self.tags),
            "instance-id": self.id,
            "availability-zone": self.zone,
            "instance-type": self.instance_type,
            "instance-state-name": self.state,
            "private-ip-address": self.private_ip,
            "ip-address": self.public_ip,
            "image-id": extra.get("image_id"),
            "vpc-id": extra.get("vpc_id"),
            "subnet-id": extra.get("subnet_id"),
            "key-name": extra.get("key_name"),
        }
        if name not in by_name:
            raise EC2Error(f"filter {name!r} cannot be used to exclude instances")
        value = by_name[name]
        if value is None:
            return []
        return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def is_excludable(name: str) -> bool:
    return name.startswith("tag:") or name in EXCLUDABLE


def _values(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else [str(item) for item in value]


def _matches(instance: Instance, name: str, wanted: str | Sequence[str]) -> bool:
    """EC2 filter semantics for one filter: any wanted value (``*``/``?`` wildcards) matches.

    An ``availability-zone`` value that names a region (``eu-west-1``, the 2017 docs'
    example) matches every zone of that region: a broader exclusion only spares more.
    """
    actual = instance.attribute(name)
    for pattern in _values(wanted):
        for value in actual:
            if fnmatch.fnmatchcase(value, pattern):
                return True
            region = value.rstrip("abcdefghijklmnopqrstuvwxyz")
            if name == "availability-zone" and region == pattern:
                return True
    return False


def is_excluded(instance: Instance, excluded: Filters) -> bool:
    """True when the instance matches *any* of the ``excluded`` filters."""
    return any(_matches(instance, name, wanted) for name, wanted in excluded.items())


def with_running_default(filters: Filters) -> dict[str, str | list[str]]:
    """A copy of ``filters`` that asks for running instances when it names no state."""
    copied: dict[str, str | list[str]] = {
        name: value if isinstance(value, str) else list(value) for name, value in filters.items()
    }
    if not STATE_FILTERS.intersection(copied):
        copied["instance-state-name"] = "running"
    return copied


def _instance(node: Any) -> Instance:
    extra = node.extra or {}
    tags = {str(key): str(value) for key, value in (extra.get("tags") or {}).items()}
    return Instance(
        id=str(node.id),
        name=tags.get("Name"),
        private_ip=(node.private_ips or [None])[0],
        public_ip=(node.public_ips or [None])[0],
        zone=extra.get("availability"),
        state=str(extra.get("status") or node.state),
        instance_type=extra.get("instance_type"),
        tags=tags,
        node=node,
    )


class EC2Instances:
    """The instances of one region, found by EC2 filters and acted on through Libcloud."""

    def __init__(
        self, region: str | None = None, driver: Any = None, endpoint: str | None = None
    ) -> None:
        if driver is None:
            driver = EC2DriverFactory(region, endpoint).get_driver()
        self.driver = driver
        self.region = region or getattr(self.driver, "region_name", None)

    def find(self, filters: Filters) -> list[Instance]:
        """The instances matching ``filters`` (EC2 semantics), with one describe call."""
        ec2_filters = {name: _values(value) for name, value in filters.items()}
        try:
            nodes = self.driver.list_nodes(ex_filters=ec2_filters)
        except _driver_errors() as error:
            raise EC2Error(f"describing instances in {self.region} failed: {error}") from None
        return [_instance(node) for node in nodes]

    def terminate(self, instance: Instance) -> None:
        self._act("terminate", self.driver.destroy_node, instance)

    def stop(self, instance: Instance) -> None:
        self._act("stop", self.driver.stop_node, instance)

    def reboot(self, instance: Instance) -> None:
        self._act("reboot", self.driver.reboot_node, instance)

    def _act(self, action: str, call: Any, instance: Instance) -> None:
        try:
            done = call(instance.node)
        except _driver_errors() as error:
            raise EC2Error(f"{action} {instance.id} failed: {error}") from None
        if not done:
            raise EC2Error(f"EC2 did not confirm the {action} of {instance.id}")


def _driver_errors() -> tuple[type[Exception], ...]:
    """What a Libcloud call raises when the provider refuses or cannot be reached."""
    from libcloud.common.exceptions import BaseHTTPError
    from libcloud.common.types import LibcloudError

    return (LibcloudError, BaseHTTPError, OSError)
