"""The outbound guard: no request of an attack (ApiRequest, a Libcloud driver, a redirect
either follows) goes to a link-local or instance-metadata address unless allowed.

No test here sends anything to those addresses: host names resolve through a stubbed
resolver (the ``system_resolver`` seam), and tests/conftest.py fails any test that would
connect anywhere but loopback.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from chalicelib.adapters import http
from chalicelib.adapters.cloud_nodes import node_driver
from chalicelib.adapters.http import OutboundRefused, check_url, guard_session, send_json
from chalicelib.bootstrap import Engine
from chalicelib.plugins.secret_policy import OutboundPolicy
from tests.conftest import FixedClock
from tests.security.conftest import Api, RecordingServer

REFUSED = [
    ("169.254.169.254", "an instance-metadata address"),
    ("fd00:ec2::254", "an instance-metadata address"),
    ("169.254.170.2", "an instance-metadata address"),
    ("169.254.170.23", "an instance-metadata address"),
    ("fd00:ec2::23", "an instance-metadata address"),
    ("::ffff:169.254.169.254", "an instance-metadata address"),
    ("169.254.1.1", "a link-local address"),
    ("fe80::1", "a link-local address"),
    ("fe80::1%eth0", "a link-local address"),
]
ALLOWED = ["127.0.0.1", "::1", "10.0.0.5", "192.168.1.1", "93.184.216.34", "2001:db8::1"]


def stub_resolver(table: dict[str, list[str]]) -> Any:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]

    return resolve


@pytest.mark.parametrize(("address", "what"), REFUSED)
def test_link_local_and_metadata_addresses_are_refused(address: str, what: str) -> None:
    refusal = OutboundPolicy().refusal(address)

    assert refusal is not None
    assert what in refusal
    assert "CME_ALLOW_LINK_LOCAL_TARGETS is off" in refusal
    assert OutboundPolicy(allow_link_local=True).refusal(address) is None


@pytest.mark.parametrize("address", ALLOWED)
def test_other_addresses_pass(address: str) -> None:
    assert OutboundPolicy().refusal(address) is None


def test_every_address_a_name_resolves_to_is_checked() -> None:
    resolve = stub_resolver(
        {
            "metadata.test": ["169.254.169.254"],
            "mixed.test": ["127.0.0.1", "fe80::1"],
            "fine.test": ["127.0.0.1", "::1"],
            "empty.test": [],
        }
    )
    policy = OutboundPolicy()

    with pytest.raises(
        OutboundRefused,
        match=r"not sent to http://metadata.test:80: 169.254.169.254 is an instance-metadata",
    ):
        check_url("http://metadata.test/latest/meta-data/?token=t0k3n", policy, resolve)
    with pytest.raises(OutboundRefused, match=r"https://mixed.test:443: fe80::1 is a link-local"):
        check_url("https://mixed.test/", policy, resolve)
    with pytest.raises(OutboundRefused, match="could not be checked"):
        check_url("http://unknown.test/", policy, resolve)
    with pytest.raises(OutboundRefused, match="resolves to no address"):
        check_url("http://empty.test/", policy, resolve)
    check_url("http://fine.test:8080/", policy, resolve)
    check_url("http://metadata.test/", OutboundPolicy(allow_link_local=True), resolve)


def test_the_refusal_never_quotes_the_path_or_query() -> None:
    resolve = stub_resolver({"metadata.test": ["169.254.169.254"]})

    with pytest.raises(OutboundRefused) as refused:
        check_url("http://user:pw@metadata.test/x?token=t0k3n", OutboundPolicy(), resolve)

    assert "t0k3n" not in str(refused.value)
    assert "pw" not in str(refused.value)


def test_send_json_refuses_before_sending(recording_server: RecordingServer) -> None:
    resolve = stub_resolver({"metadata.test": ["169.254.169.254"], "127.0.0.1": ["127.0.0.1"]})

    with pytest.raises(OutboundRefused, match="instance-metadata"):
        send_json("GET", "http://metadata.test/", {}, None, 5, resolve=resolve)
    answer = send_json("GET", f"{recording_server.url}/ok", {}, None, 5, resolve=resolve)

    assert answer.status_code == 200
    assert [request.path for request in recording_server.requests] == ["/ok"]


def test_each_redirect_hop_is_checked_again(recording_server: RecordingServer) -> None:
    recording_server.answer = lambda request: (302, {"Location": "http://metadata.test/"}, b"")
    resolve = stub_resolver({"metadata.test": ["169.254.169.254"], "127.0.0.1": ["127.0.0.1"]})
    session = guard_session(requests.Session(), OutboundPolicy(), resolve)

    with pytest.raises(OutboundRefused, match=r"not sent to http://metadata\.test:80"):
        session.get(f"{recording_server.url}/start", timeout=5)

    assert len(recording_server.requests) == 1


def test_a_libcloud_driver_is_guarded_on_every_request_and_redirect(
    recording_server: RecordingServer,
) -> None:
    recording_server.answer = lambda request: (302, {"Location": "http://metadata.test/"}, b"")
    resolve = stub_resolver({"metadata.test": ["169.254.169.254"], "127.0.0.1": ["127.0.0.1"]})
    options = {"host": "127.0.0.1", "port": recording_server.port, "secure": False}
    driver = node_driver("ec2", "AKIDEXAMPLE", "not-a-secret", options, resolve=resolve)

    with pytest.raises(OutboundRefused, match=r"not sent to http://metadata\.test:80"):
        driver.list_nodes()
    assert len(recording_server.requests) == 1

    with pytest.raises(OutboundRefused, match="instance-metadata"):
        node_driver("ec2", "k", "s", {"host": "metadata.test"}, resolve=resolve)


def test_api_request_to_a_literal_metadata_address_is_refused_at_plan_time(
    api: Api, engine: Engine
) -> None:
    for endpoint in ("http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/"):
        answer = api.plan(
            {"ref": "api_request:ApiRequest", "args": {"endpoint": endpoint, "method": "GET"}}
        )
        assert answer.status == 400
        assert answer.body["msg"].startswith("invalid payload attack.args.endpoint: not allowed: ")
        assert "instance-metadata address" in answer.body["msg"]


def test_node_driver_url_with_a_literal_link_local_address_is_refused_at_plan_time(
    api: Api,
) -> None:
    args = {
        "provider": "openstack",
        "name_pattern": "*",
        "driver_args": {"ex_force_base_url": "http://169.254.10.10:5000/v3"},
    }

    answer = api.plan({"ref": "stop_node:StopNode", "args": args})
    bare_host = {**args, "driver_args": {"host": "fe80::abcd"}}
    second = api.plan({"ref": "stop_node:StopNode", "args": bare_host})

    assert (answer.status, second.status) == (400, 400)
    assert (
        "attack.args.driver_args.ex_force_base_url: not allowed: 169.254.10.10 is a link-local"
        in (answer.body["msg"])
    )
    assert (
        "attack.args.driver_args.host: not allowed: fe80::abcd is a link-local"
        in (second.body["msg"])
    )


def test_api_request_to_a_name_of_the_metadata_address_ends_failed(
    api: Api, engine: Engine, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        http, "system_resolver", stub_resolver({"metadata.test": ["169.254.169.254"]})
    )
    attack = {
        "ref": "api_request:ApiRequest",
        "args": {"endpoint": "http://metadata.test/", "method": "GET"},
    }
    plan = api.plan(attack)
    assert plan.status == 200
    executor = api.call("get", f"/api/1/plans/{plan.body['id']}").body["_embedded"]["executors"][0]
    clock.current = clock.current.replace(hour=10)

    engine.runner.run(executor["id"])

    stored = api.call("get", f"/api/1/executors/{executor['id']}").body
    assert stored["status"] == "failed"
    assert stored["error"] == (
        "not sent to http://metadata.test:80: 169.254.169.254 is an instance-metadata address "
        "(CME_ALLOW_LINK_LOCAL_TARGETS is off)"
    )


def test_the_setting_allows_link_local_targets(
    sqlite_store: Any, clock: FixedClock, aws: None
) -> None:
    from chalicelib.bootstrap import build_engine
    from chalicelib.settings import Settings
    from tests.conftest import RecordingScheduler

    scheduler = RecordingScheduler({})
    settings = Settings.from_env({"CME_ALLOW_LINK_LOCAL_TARGETS": "true"})
    engine = build_engine(settings, sqlite_store, lambda runner: scheduler, clock)
    payload = {
        "name": "imds",
        "attack": {
            "ref": "api_request:ApiRequest",
            "args": {"endpoint": "http://169.254.169.254/", "method": "GET"},
        },
        "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": "2026-12-01T10:00Z"}},
    }

    engine.plans.create(payload)

    assert engine.runner.environment.outbound.allow_link_local


def test_a_refused_node_driver_fails_the_node_attack(
    api: Api, engine: Engine, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        http, "system_resolver", stub_resolver({"metadata.test": ["fd00:ec2::254"]})
    )
    monkeypatch.setenv("CME_SECRET_K", "k")
    args = {
        "provider": "ec2",
        "name_pattern": "*",
        "key": {"env": "CME_SECRET_K"},
        "secret": {"env": "CME_SECRET_K"},
        "driver_args": {"host": "metadata.test", "secure": False},
    }
    plan = api.plan({"ref": "terminate_node:TerminateNode", "args": args})
    assert plan.status == 200, plan.text
    executor = api.call("get", f"/api/1/plans/{plan.body['id']}").body["_embedded"]["executors"][0]
    clock.current = clock.current.replace(hour=10)

    engine.runner.run(executor["id"])

    stored = api.call("get", f"/api/1/executors/{executor['id']}").body
    assert stored["status"] == "failed"
    assert (
        "not sent to https://metadata.test:443: fd00:ec2::254 is an instance-metadata"
        in (stored["error"])
    )
