"""EC2 targets for attack tests: moto's server on 127.0.0.1 and Libcloud pointed at it.

moto answers EC2 in the namespace ``http://ec2.amazonaws.com/doc/2016-11-15`` where
real EC2 (and Libcloud) use the same URI with a trailing slash; Libcloud then finds no
elements at all. moto also answers RebootInstances without the ``<return>true</return>``
real EC2 sends, which Libcloud reads as "not rebooted". The tolerance for both lives
here, in the tests, and nowhere in the attack code: ``tolerant_libcloud`` rewrites a
body before Libcloud parses it. (Local mode makes moto's answers look like EC2's on the
server side instead: chalicelib/local/targets.py.)
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer

from chalicelib.plugins.contract import AttackEnvironment
from chalicelib.settings import Settings

REGION = "eu-west-1"
AMI = "ami-12c6146b"
# The engine's default opt-in and exclude tags (CME_OPT_IN_TAG, CME_EXCLUDE_TAG).
OPT_IN = {"chaos-monkey-engine": "target"}
EXCLUDE = {"chaos-monkey-engine-exclude": "true"}
EMPTY_REBOOT = re.compile(
    r"(<RebootInstancesResponse[^>]*>(?:(?!<return>).)*?)(</RebootInstancesResponse>)"
)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's server on a free port of 127.0.0.1; its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def tolerant_libcloud(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let Libcloud's EC2 parser read moto's namespace (test-only, see module docstring)."""
    from libcloud.compute.drivers import ec2

    libcloud_namespace = f'xmlns="{ec2.NAMESPACE}"'
    moto_namespace = f'xmlns="{ec2.NAMESPACE.rstrip("/")}"'
    original = ec2.EC2Response.parse_body

    def parse_body(self: Any) -> Any:
        if isinstance(self.body, bytes):
            self.body = self.body.decode("utf-8")
        if isinstance(self.body, str):
            self.body = self.body.replace(moto_namespace, libcloud_namespace)
            self.body = EMPTY_REBOOT.sub(r"\1<return>true</return>\2", self.body)
        return original(self)

    monkeypatch.setattr(ec2.EC2Response, "parse_body", parse_body)


@dataclass
class Fleet:
    """moto's EC2 as a test sees it: seed instances, read their state.

    Instances carry the engine's opt-in tag (``OPT_IN``) unless launched with
    ``opt_in=False``: attacks may hit no other."""

    endpoint: str

    @property
    def client(self) -> Any:
        return boto3.client("ec2", endpoint_url=self.endpoint, region_name=REGION)

    def launch(
        self,
        count: int = 1,
        tags: dict[str, str] | None = None,
        zone: str | None = None,
        *,
        opt_in: bool = True,
    ) -> list[str]:
        options: dict[str, Any] = {}
        if zone:
            options["Placement"] = {"AvailabilityZone": zone}
        tags = {**(OPT_IN if opt_in else {}), **(tags or {})}
        if tags:
            options["TagSpecifications"] = [
                {
                    "ResourceType": "instance",
                    "Tags": [{"Key": key, "Value": value} for key, value in tags.items()],
                }
            ]
        answer = self.client.run_instances(
            ImageId=AMI, MinCount=count, MaxCount=count, InstanceType="t3.micro", **options
        )
        return [instance["InstanceId"] for instance in answer["Instances"]]

    @property
    def environment(self) -> AttackEnvironment:
        """What an attack's context says when the engine's EC2 is this one."""
        return AttackEnvironment(aws_region=REGION, ec2_endpoint=self.endpoint)

    def states(self) -> dict[str, str]:
        """Instance id -> state name, for every instance."""
        found = {}
        for reservation in self.client.describe_instances()["Reservations"]:
            for instance in reservation["Instances"]:
                found[instance["InstanceId"]] = instance["State"]["Name"]
        return found

    def instance(self, instance_id: str) -> dict[str, Any]:
        answer = self.client.describe_instances(InstanceIds=[instance_id])
        return dict(answer["Reservations"][0]["Instances"][0])

    def stop(self, instance_id: str) -> None:
        self.client.stop_instances(InstanceIds=[instance_id])


@pytest.fixture
def fleet(moto_server: str, tolerant_libcloud: None) -> Iterator[Fleet]:
    """An empty moto EC2 that the product's EC2 driver talks to (the attack context's
    ``ec2_endpoint``, as the engine's settings set it)."""
    requests.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
    yield Fleet(moto_server)


@pytest.fixture
def settings(moto_server: str) -> Settings:
    """The engine's settings here: its EC2 attacks call moto's EC2 server."""
    return Settings(
        plans_table="test-plans",
        executors_table="test-executors",
        aws_region=REGION,
        ec2_endpoint=moto_server,
    )


@pytest.fixture
def suite_tag() -> dict[str, str]:
    """A tag unique to one test, so a filter selects only that test's instances."""
    return {"Suite": uuid.uuid4().hex}
