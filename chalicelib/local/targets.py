"""Where local mode's cloud attacks land: moto's EC2 on 127.0.0.1 (default) or real AWS.

By default local mode serves moto's EC2 on a free port of 127.0.0.1 and points the EC2
attacks at it (the ``ec2_endpoint`` setting, on every attack's context), while
``mock_aws`` catches every other AWS call in the process, so nothing real can be hit by
accident. ``--demo`` seeds a few tagged instances there: three web instances that carry
the engine's opt-in tag, and a database instance that carries its exclude tag, which no
attack may touch. ``--real-aws-targets`` keeps storage and the scheduler local (moto's
DynamoDB, APScheduler) but lets the attacks' calls (EC2, SSM, Secrets Manager) reach
real AWS with the credentials and region of the environment.

Libcloud talks to EC2 over HTTP, so the local EC2 is a real server rather than the
in-process mock; it shares the in-process mock's state (one moto backend per process),
so boto3 calls inside local mode see the same instances.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib.domain.safety import TargetTags

if TYPE_CHECKING:
    from moto.core.config import DefaultConfig

CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
)
REGION_VARIABLES = ("AWS_DEFAULT_REGION", "AWS_REGION")
# AWS services an attack (or a stop condition) calls; with --real-aws-targets moto lets
# them through, so a plan's alarms are read from the real CloudWatch.
ATTACK_SERVICES = ("ec2", "ssm", "secretsmanager", "sts", "sso", "sso-oidc", "cloudwatch")

DEMO_AMI = "ami-12c6146b"
# Name, zone, tags, and whether attacks may hit it: the web instances carry the engine's
# opt-in tag; the database carries its exclude tag (and no opt-in tag), so the engine
# spares it whatever a plan's filters match.
DEMO_INSTANCES = (
    ("demo-web-1", "eu-west-1a", {"Chaos": "true"}, True),
    ("demo-web-2", "eu-west-1b", {"Chaos": "true"}, True),
    ("demo-web-3", "eu-west-1c", {"Chaos": "true"}, True),
    ("demo-db-1", "eu-west-1a", {"Chaos": "false"}, False),
)


@dataclass(frozen=True)
class Targets:
    """Local mode's choice of attack targets."""

    real_aws: bool = False
    demo: bool = False


def add_arguments(command: argparse.ArgumentParser) -> None:
    """The ``--demo`` and ``--real-aws-targets`` options of ``chaos-monkey-engine``."""
    command.add_argument(
        "--demo",
        action="store_true",
        help="seed moto's EC2 with demo instances: three web ones that carry the opt-in tag "
        "(chaos-monkey-engine=target), one db that carries the exclude tag",
    )
    command.add_argument(
        "--real-aws-targets",
        action="store_true",
        help="attacks hit REAL AWS with the credentials and region of the environment; "
        "storage and scheduler stay local",
    )


def from_options(options: argparse.Namespace) -> Targets:
    """The targets the options ask for; ValueError for a combination that makes no sense."""
    targets = Targets(
        real_aws=bool(getattr(options, "real_aws_targets", False)),
        demo=bool(getattr(options, "demo", False)),
    )
    if targets.real_aws and targets.demo:
        raise ValueError("--demo seeds moto's EC2 and cannot be combined with --real-aws-targets")
    return targets


def environment(targets: Targets, fake_aws: Mapping[str, str]) -> dict[str, str]:
    """The variables local mode sets once, at process start: all of ``fake_aws`` (fake
    credentials, region, no metadata calls), except, for real targets, the credentials
    and region, which stay the environment's.

    They go in the environment, not in a setting, because boto3's credential chain and
    botocore's metadata switch read them from there, in every library that builds a
    client (PynamoDB, moto's own, a plugin's)."""
    if not targets.real_aws:
        return dict(fake_aws)
    kept = (*CREDENTIAL_VARIABLES, *REGION_VARIABLES)
    return {name: value for name, value in fake_aws.items() if name not in kept}


def check(targets: Targets) -> str | None:
    """For real targets, the region to attack (the AWS chain's); ValueError when the
    credentials or the region are missing (call after ``environment``). None otherwise."""
    if not targets.real_aws:
        return None
    from chalicelib.adapters.ec2 import EC2Error, aws_credentials, default_region

    try:
        aws_credentials()
    except EC2Error as error:
        raise ValueError(f"--real-aws-targets: {error}") from None
    region = default_region()
    if not region:
        raise ValueError("--real-aws-targets: set AWS_DEFAULT_REGION to the region to attack")
    return region


def mock_config(targets: Targets) -> DefaultConfig:
    """moto's configuration: mock every AWS service, except, for real targets, the ones
    attacks call."""
    from moto.core.config import default_user_config

    core = copy.deepcopy(default_user_config.get("core", {}))
    # moto would otherwise write its own fake credentials into os.environ while it runs
    # (replacing the real ones of real targets): the process's are set once, at start.
    core["mock_credentials"] = False
    if targets.real_aws:
        core["passthrough"] = {"urls": [], "services": list(ATTACK_SERVICES)}
    return {"core": core}


@dataclass(frozen=True)
class RunningTargets:
    """What local mode's targets are once started: where EC2 attacks go, and how to stop."""

    ec2_endpoint: str | None
    simulated_ec2: bool
    stop: Callable[[], None]


def start(targets: Targets, region: str, target_tags: TargetTags | None = None) -> RunningTargets:
    """Start what ``targets`` needs (moto's EC2 server, demo instances in ``region``,
    tagged with the engine's ``target_tags``)."""
    if targets.real_aws:
        print(
            f"WARNING: attacks target REAL AWS (region {region}) with the environment's "
            "credentials",
            file=sys.stderr,
            flush=True,
        )
        return RunningTargets(ec2_endpoint=None, simulated_ec2=False, stop=lambda: None)
    server = LocalEC2()
    server.start()
    line = f"EC2 targets: moto at {server.endpoint} (nothing real can be attacked)"
    if targets.demo:
        seeded = seed_demo(server.endpoint, region, target_tags or TargetTags())
        line += f"; demo instances: {', '.join(seeded)}"
    print(line, flush=True)
    # moto's instances have made-up addresses: SSH attacks must not connect to them.
    return RunningTargets(ec2_endpoint=server.endpoint, simulated_ec2=True, stop=server.stop)


def demo_tags(attackable: bool, target_tags: TargetTags) -> dict[str, str]:
    """The engine's tag a demo instance carries: the opt-in tag on one attacks may hit,
    the exclude tag on one they may not (a tag that takes any value gets "true")."""
    tag = target_tags.opt_in if attackable else target_tags.exclude
    if tag is None:
        return {}
    key, value = tag
    return {key: "true" if value is None else value}


def seed_demo(endpoint: str, region: str, target_tags: TargetTags | None = None) -> list[str]:
    """Launch the demo instances (tagged ``Chaos`` and with the engine's opt-in or
    exclude tag, named ``demo-*``); their ids."""
    import boto3

    client = boto3.client("ec2", endpoint_url=endpoint, region_name=region)
    engine_tags = target_tags or TargetTags()
    launched: list[str] = []
    for name, zone, own_tags, attackable in DEMO_INSTANCES:
        tags = {**own_tags, **demo_tags(attackable, engine_tags)}
        answer = client.run_instances(
            ImageId=DEMO_AMI,
            MinCount=1,
            MaxCount=1,
            InstanceType="t3.micro",
            Placement={"AvailabilityZone": zone.replace("eu-west-1", region, 1)},
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": key, "Value": value}
                        for key, value in {**tags, "Name": name}.items()
                    ],
                }
            ],
        )
        launched.extend(instance["InstanceId"] for instance in answer["Instances"])
    return launched


# moto answers EC2 in the botocore model's namespace, without the trailing slash real
# EC2 sends (and Libcloud looks for), and answers RebootInstances without the
# <return>true</return> real EC2 sends. The local EC2 server answers like real EC2 so
# that the attacks' code stays the code that runs against AWS.
_MOTO_NAMESPACE = b'xmlns="http://ec2.amazonaws.com/doc/2016-11-15"'
_EC2_NAMESPACE = b'xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"'
_EMPTY_REBOOT = re.compile(
    rb"(<RebootInstancesResponse[^>]*>(?:(?!<return>).)*?)(</RebootInstancesResponse>)", re.S
)


def like_real_ec2(body: bytes) -> bytes:
    """A moto EC2 answer as real EC2 would word it (other answers unchanged)."""
    if _MOTO_NAMESPACE not in body:
        return body
    body = body.replace(_MOTO_NAMESPACE, _EC2_NAMESPACE)
    return _EMPTY_REBOOT.sub(rb"\1<return>true</return>\2", body)


def _ec2_fidelity(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """WSGI middleware applying ``like_real_ec2`` to every answer."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        answer = app(environ, capture)
        try:
            body = b"".join(answer)
        finally:
            close = getattr(answer, "close", None)
            if close is not None:
                close()
        body = like_real_ec2(body)
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    return application


class LocalEC2:
    """moto's EC2 served on a free port of 127.0.0.1, answering like real EC2."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        application = _ec2_fidelity(DomainDispatcherApplication(create_backend_app))
        self._server = make_server("127.0.0.1", 0, application, threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="local-ec2", daemon=True
        )

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()
