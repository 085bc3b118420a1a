"""Finds the SSH addresses of EC2 instances selected by filters, for script attacks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Ec2Host:
    """A running instance as an SSH target: its id, Name tag, chosen address and tags
    (which the engine's opt-in and exclude guards read)."""

    instance_id: str
    name: str
    address: str | None
    zone: str
    tags: dict[str, str] = field(default_factory=dict)


def with_running_state(filters: dict[str, Any]) -> dict[str, Any]:
    """The filters, plus ``instance-state-name: running`` when no state filter is given.

    A copy: the plan's stored config is never changed.
    """
    if "instance-state-name" in filters or "instance-state-code" in filters:
        return dict(filters)
    return {**filters, "instance-state-name": "running"}


def _as_ec2_filters(filters: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "Name": name,
            "Values": [str(v) for v in value] if isinstance(value, list) else [str(value)],
        }
        for name, value in filters.items()
    ]


class SimulatedInstances(Exception):
    """The EC2 being attacked is local mode's moto: its addresses are not real hosts."""


def find_hosts(
    filters: dict[str, Any],
    address: str = "private",
    region: str | None = None,
    *,
    endpoint: str | None = None,
    simulated: bool = False,
) -> list[Ec2Host]:
    """Running instances matching ``filters`` with their ``private`` or ``public`` address.

    One paginated describe call (to ``endpoint`` when given, else the region's; the region
    is the AWS chain's when None); ``address`` is None for an instance without that kind
    of address (the caller reports it rather than connecting nowhere). ``simulated``: the
    EC2 is local mode's moto, whose instances are made up and so are their addresses,
    which may be real machines on the user's network: SimulatedInstances, and no
    connection is made.
    """
    if simulated:
        raise SimulatedInstances(
            "local mode's EC2 instances are moto's and their addresses are not real hosts, "
            "so no SSH connection is made; give static 'hosts' or start local mode with "
            "--real-aws-targets"
        )
    import boto3

    client = boto3.client("ec2", region_name=region, endpoint_url=endpoint)
    paginator = client.get_paginator("describe_instances")
    found: list[Ec2Host] = []
    for page in paginator.paginate(Filters=_as_ec2_filters(with_running_state(filters))):
        for reservation in page.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                tags = {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}
                chosen = (
                    instance.get("PublicIpAddress")
                    if address == "public"
                    else instance.get("PrivateIpAddress")
                )
                found.append(
                    Ec2Host(
                        instance_id=instance["InstanceId"],
                        name=tags.get("Name", ""),
                        address=chosen,
                        zone=instance.get("Placement", {}).get("AvailabilityZone", ""),
                        tags=tags,
                    )
                )
    return found
