"""A plan body's ``safety`` object: stored and shown as sent, or refused naming the field,
with nothing stored or scheduled."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.bootstrap import Engine
from tests.api.conftest import Api
from tests.conftest import RecordingScheduler

SAFETY = {
    "stop_conditions": {
        "alarms": ["web-5xx", "checkout-latency"],
        "health_checks": [{"url": "https://status.example.com/health", "timeout": 2}],
    },
    "min_interval": {"seconds": 3600, "group": "tag:App=web"},
}


def plan(safety: Any = None, *, with_safety: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "with stop conditions",
        "attack": {"ref": "scripted:Scripted", "args": {"mode": "ok"}},
        "planner": {
            "ref": "exact_planner:ExactPlanner",
            "args": {"date": "2026-12-01T12:00:00+01:00"},
        },
    }
    if with_safety:
        body["safety"] = safety
    return body


def test_safety_is_stored_and_shown_as_sent(api: Api, engine: Engine) -> None:
    created = api.post("/api/1/plans/", plan(SAFETY))
    assert created.status == 200, created.body
    document = api.get(created.body["_links"]["self"]["href"]).body
    assert document["safety"] == SAFETY
    assert engine.store.get_plan(created.body["id"]).safety == SAFETY  # type: ignore[union-attr]
    [listed] = api.get("/api/1/plans/").body["plans"]
    assert listed["safety"] == SAFETY


@pytest.mark.parametrize("body", [plan(with_safety=False), plan(None)])
def test_a_plan_without_safety_shows_null(api: Api, body: dict[str, Any]) -> None:
    created = api.post("/api/1/plans/", body)
    assert created.status == 200, created.body
    assert api.get(created.body["_links"]["self"]["href"]).body["safety"] is None


def test_the_minimum_interval_alone_is_enough(api: Api) -> None:
    safety = {"min_interval": {"seconds": 600}}
    created = api.post("/api/1/plans", plan(safety))
    assert api.get(created.body["_links"]["self"]["href"]).body["safety"] == safety


@pytest.mark.parametrize(
    ("safety", "message"),
    [
        ("on", "invalid payload safety: 'on' is not of type 'object'"),
        ({"stop": {}}, "invalid payload safety: Additional properties are not allowed"),
        (
            {"stop_conditions": {"alarms": "web-5xx"}},
            "invalid payload safety.stop_conditions.alarms: 'web-5xx' is not of type 'array'",
        ),
        (
            {"stop_conditions": {"alarms": [""]}},
            "invalid payload safety.stop_conditions.alarms.0: '' should be non-empty",
        ),
        (
            {"stop_conditions": {"alarms": [f"alarm-{n}" for n in range(21)]}},
            "invalid payload safety.stop_conditions.alarms: ",
        ),
        (
            {"stop_conditions": {"health_checks": [{"url": "ftp://example.com/"}]}},
            "invalid payload safety.stop_conditions.health_checks.0.url: 'ftp://example.com/' "
            "does not match '^https?://'",
        ),
        (
            {"stop_conditions": {"health_checks": [{"url": "https://a.example", "timeout": 11}]}},
            "invalid payload safety.stop_conditions.health_checks.0.timeout: 11 is greater "
            "than the maximum of 10.0",
        ),
        (
            {"min_interval": {"seconds": 0}},
            "invalid payload safety.min_interval.seconds: 0 is less than or equal to the "
            "minimum of 0",
        ),
        (
            {"min_interval": {"group": "plan"}},
            "invalid payload safety.min_interval: 'seconds' is a required property",
        ),
        (
            {"min_interval": {"seconds": 60, "group": "tag:App"}},
            "invalid payload safety.min_interval.group: group 'tag:App' names the value of "
            "the attack's tag:App filter, and its filters have none",
        ),
        (
            {"stop_conditions": {"health_checks": [{"url": "http://169.254.169.254/latest"}]}},
            "invalid payload safety.stop_conditions.health_checks.0.url: not allowed: "
            "169.254.169.254 is an instance-metadata address (CME_ALLOW_LINK_LOCAL_TARGETS "
            "is off)",
        ),
        (
            {"stop_conditions": {"health_checks": [{"url": "http://[fe80::1]:8080/health"}]}},
            "invalid payload safety.stop_conditions.health_checks.0.url: not allowed: "
            "fe80::1 is a link-local address (CME_ALLOW_LINK_LOCAL_TARGETS is off)",
        ),
    ],
)
def test_a_bad_safety_object_is_refused_and_nothing_is_stored_or_scheduled(
    api: Api, scheduler: RecordingScheduler, safety: Any, message: str
) -> None:
    answer = api.post("/api/1/plans/", plan(safety))
    assert answer.status == 400
    assert answer.body["msg"].startswith(message), answer.body
    assert api.get("/api/1/plans/?all=true").body["plans"] == []
    assert scheduler.scheduled == {}


def test_the_idempotency_fingerprint_covers_safety(api: Api) -> None:
    key = {"Idempotency-Key": "safety-1"}
    first = api.post("/api/1/plans/", plan(SAFETY), headers=key)
    assert first.status == 200, first.body
    assert api.post("/api/1/plans/", plan(SAFETY), headers=key).body["id"] == first.body["id"]
    other = {**SAFETY, "min_interval": {"seconds": 60}}
    refused = api.post("/api/1/plans/", plan(other), headers=key)
    assert refused.status == 409
    assert "another request body" in refused.body["msg"]
