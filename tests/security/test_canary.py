"""A canary secret never leaves through any attack, response, stored record or log.

The canary (``canary-<uuid>``) is in the engine's environment (``CME_SECRET_CANARY``), in
moto's SSM and in moto's Secrets Manager, all under the allowed prefixes. Every built-in
attack that takes secret references is planned through the API with references to it
(each kind, dry run and real run) and run by the real runner on the SQLite store, against
targets that fail: an SSH port on 127.0.0.1 with nothing listening, and a Libcloud driver
pointed at a loopback HTTP server that answers every request with an error quoting the
credentials it was sent (an endpoint that tries to get them echoed back), or at a closed
port. Then the canary must be in none of: every API answer of the run (POST, GET plans,
plan, executors, executor), the stored executor, any log record (DEBUG, every logger:
botocore, urllib3, paramiko, ...), and any request the loopback server received —
except as the attack's own authentication (``OWN_AUTHENTICATION``).

A new attack whose schema takes secret references fails
``test_every_attack_that_takes_secrets_is_covered`` until it has a case here or an
entry, with its reason, in ``WITHOUT_SECRETS``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from chalice.test import Client
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from moto import mock_aws

from app import app
from chalicelib.adapters.secrets import SECRET_REFERENCE_SCHEMA
from chalicelib.adapters.sqlite_store import SqliteStore
from chalicelib.api.context import set_engine
from chalicelib.bootstrap import Engine, build_engine
from chalicelib.plugins.contract import Attack
from chalicelib.plugins.registry import load_plugins
from chalicelib.settings import Settings, builtin_folder
from tests.conftest import FixedClock, RecordingScheduler, free_port
from tests.security.conftest import Api, Received, RecordingServer
from tests.ssh.conftest import (
    Lab,
    lab,  # noqa: F401 (makes the SSH lab fixture available here)
)

CATALOGUE = {
    entry["ref"]: entry
    for entry in load_plugins("attacks", Attack, [builtin_folder("attacks")]).catalogue()
}
KINDS = ("env", "ssm", "secretsmanager")
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

# Where a resolved secret may legitimately go: the attack's own authentication.
OWN_AUTHENTICATION = {
    # Libcloud's EC2 driver signs each request with SigV4: the key (the access key id)
    # is in the Authorization header's Credential, a session token in its own header;
    # the secret itself only keys the signature and is never sent.
    "node": frozenset({"authorization", "x-amz-security-token"}),
    # SSH attacks: the key and its passphrase unlock the private key in memory, which
    # signs the SSH handshake; no HTTP server ever sees them.
    "ssh": frozenset(),
}

# Built-in attacks that take no secret reference, and why.
WITHOUT_SECRETS = {
    "api_request:ApiRequest": "its headers and payload are plain values, stored and shown as "
    "given; its schema takes no secret reference (and plan creation refuses one anywhere "
    "in its arguments unless it is under the allowed prefixes)",
    "reboot_ec2_instance:RebootEC2Instance": "uses the engine's own AWS credentials (its role)",
    "stop_ec2_instance:StopEC2Instance": "uses the engine's own AWS credentials (its role)",
    "terminate_ec2_instance:TerminateEC2Instance": "uses the engine's own AWS credentials",
    "terminate_ec2_instance:TerminateEC2InstanceNotExcluded": "the engine's own AWS credentials",
    "terminate_ec2_instance_not_excluded:TerminateEC2InstanceNotExcluded": "the engine's own "
    "AWS credentials (the 2017 module name of the same attack)",
}
NODE_ATTACKS = ("terminate_node:TerminateNode", "stop_node:StopNode", "reboot_node:RebootNode")


def takes_secrets(schema: Any) -> bool:
    """Whether a schema accepts a secret reference anywhere."""
    if isinstance(schema, dict):
        if schema.get("oneOf") == SECRET_REFERENCE_SCHEMA["oneOf"]:
            return True
        return any(takes_secrets(value) for value in schema.values())
    if isinstance(schema, list):
        return any(takes_secrets(value) for value in schema)
    return False


@dataclass(frozen=True)
class Canary:
    value: str
    key_pem: str  # an SSH key encrypted with the canary as its passphrase

    def reference(self, kind: str, what: str = "value") -> dict[str, str]:
        suffix = "" if what == "value" else "_KEY"
        if kind == "env":
            return {"env": f"CME_SECRET_CANARY{suffix}"}
        if kind == "ssm":
            return {"ssm": f"/chaos-monkey-engine/canary{suffix.lower().replace('_', '-')}"}
        return {"secretsmanager": "chaos-monkey-engine/canary", "key": what}

    @property
    def key_lines(self) -> list[str]:
        return [line for line in self.key_pem.splitlines() if "-----" not in line]


@dataclass
class Rig:
    """One engine for the module (building one loads every plugin: too slow per test)."""

    engine: Engine
    api: Api
    clock: FixedClock
    canary: Canary


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    value = f"canary-{uuid.uuid4()}"
    pem = (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.BestAvailableEncryption(value.encode()),
        )
        .decode()
    )
    store_file = tmp_path_factory.mktemp("canary") / "store.sqlite3"
    clock = FixedClock(START)
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        patch.setenv("CME_SECRET_CANARY", value)
        patch.setenv("CME_SECRET_CANARY_KEY", pem)
        ssm = boto3.client("ssm", region_name="eu-west-1")
        ssm.put_parameter(Name="/chaos-monkey-engine/canary", Value=value, Type="SecureString")
        ssm.put_parameter(Name="/chaos-monkey-engine/canary-key", Value=pem, Type="SecureString")
        boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
            Name="chaos-monkey-engine/canary",
            SecretString=json.dumps({"value": value, "pem": pem}),
        )
        settings = Settings()
        store = SqliteStore(store_file, executed_retention=settings.executed_retention)
        engine = build_engine(settings, store, lambda runner: RecordingScheduler({}), clock)
        set_engine(app, engine)
        try:
            with Client(app) as client:
                yield Rig(engine, Api(client), clock, Canary(value=value, key_pem=pem))
        finally:
            set_engine(app, None)  # type: ignore[arg-type]
            store.close()


# --- the cases: an attack's arguments referencing the canary ------------------------------

Case = Callable[[dict[str, Any], Canary, str, RecordingServer], dict[str, Any]]


def ssh_unreachable(
    example: dict[str, Any], canary: Canary, kind: str, server: Any
) -> dict[str, Any]:
    """The canary-encrypted key and its passphrase, to an SSH port nothing listens on."""
    own = {k: v for k, v in example.items() if k not in ("filters", "address", "region", "ssh")}
    ssh = {
        "user": "root",
        "key": canary.reference(kind, "pem"),
        "passphrase": canary.reference(kind),
        "connect_timeout": 5,
    }
    return {**own, "hosts": [f"127.0.0.1:{free_port()}"], "ssh": ssh}


def ssh_not_a_key(
    example: dict[str, Any], canary: Canary, kind: str, server: Any
) -> dict[str, Any]:
    """The canary itself as the key: the parser's error must not quote it."""
    args = ssh_unreachable(example, canary, kind, server)
    args["ssh"] = {"user": "root", "key": canary.reference(kind)}
    return args


def node_echoing_endpoint(
    example: dict[str, Any], canary: Canary, kind: str, server: RecordingServer
) -> dict[str, Any]:
    """EC2 through Libcloud, key, secret and a confidential driver argument (``token``)
    all the canary, at a loopback endpoint that quotes the credentials in its error."""
    return {
        "provider": "ec2",
        "name_pattern": "*",
        "key": canary.reference(kind),
        "secret": canary.reference(kind),
        "driver_args": {
            "host": "127.0.0.1",
            "port": server.port,
            "secure": False,
            "region": "eu-west-1",
            "token": canary.reference(kind),
        },
    }


def node_closed_port(
    example: dict[str, Any], canary: Canary, kind: str, server: RecordingServer
) -> dict[str, Any]:
    args = node_echoing_endpoint(example, canary, kind, server)
    args["driver_args"] = {**args["driver_args"], "port": free_port()}
    return args


SSH_ATTACKS = sorted(
    ref for ref in CATALOGUE if ref not in WITHOUT_SECRETS and ref not in NODE_ATTACKS
)
CASES: dict[str, dict[str, Case]] = {
    **{ref: {"unreachable": ssh_unreachable, "not-a-key": ssh_not_a_key} for ref in SSH_ATTACKS},
    **{
        ref: {"echoing-endpoint": node_echoing_endpoint, "closed-port": node_closed_port}
        for ref in NODE_ATTACKS
    },
}
FAMILY = {ref: "node" if ref in NODE_ATTACKS else "ssh" for ref in CASES}


def test_every_attack_that_takes_secrets_is_covered() -> None:
    for ref, entry in CATALOGUE.items():
        if takes_secrets(entry["schema"]):
            assert ref in CASES, f"{ref} takes secrets: give it a canary case"
            assert (
                "ssh" in entry["schema"]["properties"]["args"]["properties"] or ref in NODE_ATTACKS
            )
        else:
            assert ref in WITHOUT_SECRETS, f"{ref}: list it in WITHOUT_SECRETS with a reason"
    assert set(CASES) | set(WITHOUT_SECRETS) == set(CATALOGUE)
    assert not set(CASES) & set(WITHOUT_SECRETS)


def echo_credentials(request: Received) -> tuple[int, dict[str, str], bytes]:
    """An EC2-shaped error quoting what the caller authenticated with."""
    headers = {name.lower(): value for name, value in request.headers.items()}
    quoted = f"{headers.get('authorization')} token {headers.get('x-amz-security-token')}"
    body = (
        "<Response><Errors><Error><Code>InternalError</Code>"
        f"<Message>rejected credentials {quoted}</Message></Error></Errors>"
        "<RequestID>1</RequestID></Response>"
    )
    return 400, {"Content-Type": "text/xml"}, body.encode()


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    for name in ("botocore", "boto3", "urllib3", "paramiko", "libcloud", "chalicelib", "attacks"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


def leaks(canary: Canary, text: str) -> list[str]:
    return [piece for piece in (canary.value, *canary.key_lines) if piece in text]


CASE_IDS = [(ref, case) for ref in sorted(CASES) for case in CASES[ref]]


@pytest.mark.parametrize("dry_run", [False, True], ids=["real", "dry"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("ref", "case"), CASE_IDS, ids=[f"{r}-{c}" for r, c in CASE_IDS])
def test_the_canary_never_leaves(  # noqa: PLR0917 (fixtures and parameters)
    rig: Rig,
    recording_server: RecordingServer,
    all_logs: pytest.LogCaptureFixture,
    ref: str,
    case: str,
    kind: str,
    dry_run: bool,
) -> None:
    api, engine, canary = rig.api, rig.engine, rig.canary
    api.seen.clear()
    rig.clock.current = START
    recording_server.answer = echo_credentials
    example = CATALOGUE[ref]["example"]["args"]
    args = CASES[ref][case](example, canary, kind, recording_server)

    created = api.plan({"ref": ref, "args": args}, dry_run=dry_run)
    assert created.status == 200, created.text
    plan_id = created.body["id"]
    executor_id = api.call("get", f"/api/1/plans/{plan_id}").body["_embedded"]["executors"][0]["id"]
    rig.clock.current = START.replace(hour=10)
    engine.runner.run(executor_id)

    executor = api.call("get", f"/api/1/executors/{executor_id}").body
    assert executor["status"] == ("skipped" if dry_run else "failed"), executor
    api.call("get", f"/api/1/plans/{plan_id}")
    api.call("get", "/api/1/plans/?all=true")
    api.call("get", "/api/1/executors/?executed=true")
    api.call("get", "/api/1/executors/")

    stored = engine.store.get_executor(executor_id)
    assert stored is not None
    logged = all_logs.text + "".join(repr(record.__dict__) for record in all_logs.records)
    assert logged, "the run logs something; the check below must see it"
    assert leaks(canary, "\n".join(api.seen)) == [], "an API answer holds the canary"
    assert leaks(canary, json.dumps(asdict(stored), default=str)) == [], "stored"
    assert leaks(canary, logged) == [], "a log record holds the canary"

    own = OWN_AUTHENTICATION[FAMILY[ref]]
    for request in recording_server.requests:
        elsewhere = [
            request.method,
            request.path,
            request.body.decode(errors="replace"),
            *(
                f"{name}: {value}"
                for name, value in request.headers.items()
                if name.lower() not in own
            ),
        ]
        assert leaks(canary, "\n".join(elsewhere)) == [], "sent outside its authentication"
    if dry_run:
        # A dry run resolves no secret and contacts nothing with one.
        assert recording_server.requests == []
        outcome = [executor.get("error"), executor.get("reason"), executor.get("result")]
        assert "<redacted>" not in json.dumps(outcome), "nothing was resolved to scrub"
    elif case == "echoing-endpoint":
        # The endpoint did see the canary as the driver's own authentication, and quoted
        # it back: what the executor shows was scrubbed, not absent by luck.
        assert recording_server.requests
        assert any(
            canary.value in request.headers.get("Authorization", "")
            for request in recording_server.requests
        )
        assert "<redacted>" in executor["error"]


def test_the_canary_never_leaves_a_successful_ssh_run(
    rig: Rig,
    request: pytest.FixtureRequest,
    all_logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real SSH run (the lab's sshd) whose key only the canary, as passphrase, unlocks."""
    ssh_lab: Lab = request.getfixturevalue("lab")
    api, canary = rig.api, rig.canary
    api.seen.clear()
    rig.clock.current = START
    key = serialization.load_ssh_private_key(ssh_lab.key_pem.encode(), password=None)
    locked = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(canary.value.encode()),
    ).decode()
    monkeypatch.setenv("CME_SECRET_LAB_KEY", locked)
    host = ssh_lab.hosts[0]
    ssh = {
        "user": "root",
        "key": {"env": "CME_SECRET_LAB_KEY"},
        "passphrase": canary.reference("secretsmanager"),
        "known_hosts": [host.known_hosts_line],
    }
    args = {"hosts": [host.address], "script": "#!/bin/sh\necho ran as $(id -un)\n", "ssh": ssh}

    created = api.plan({"ref": "run_script:RunScript", "args": args})
    assert created.status == 200, created.text
    plan = api.call("get", f"/api/1/plans/{created.body['id']}").body
    executor_id = plan["_embedded"]["executors"][0]["id"]
    rig.clock.current = START.replace(hour=10)
    rig.engine.runner.run(executor_id)

    executor = api.call("get", f"/api/1/executors/{executor_id}").body
    assert executor["status"] == "succeeded", executor
    assert "ran as root" in json.dumps(executor["result"])
    api.call("get", "/api/1/plans/?all=true")
    api.call("get", "/api/1/executors/?executed=true")
    stored = rig.engine.store.get_executor(executor_id)
    assert stored is not None
    logged = all_logs.text + "".join(repr(record.__dict__) for record in all_logs.records)
    locked_lines = [line for line in locked.splitlines() if "-----" not in line]
    for shown in ("\n".join(api.seen), json.dumps(asdict(stored), default=str), logged):
        assert leaks(canary, shown) == []
        assert not [line for line in locked_lines if line in shown]
