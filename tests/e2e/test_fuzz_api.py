"""Schemathesis fuzzes the running ``chaos-monkey-engine`` from its own /api/1/openapi.json.

Every operation gets the document's examples, schemathesis's boundary cases (coverage) and
a bounded number of generated requests, valid and invalid; every answer must be no 5xx,
a documented status, the documented media type and match its schema. The engine runs with
the kill switch on, in a data directory of its own: a plan the fuzzer manages to create
can never run an attack.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from scripts.openapi_json import load_source
from tests.api.conftest import Answer
from tests.api.test_openapi import Conformance
from tests.e2e.conftest import Engine, http, start_engine, stop_engine, wait_until_listening

pytestmark = pytest.mark.e2e

# Generated requests per operation (besides the examples and boundary cases); with the
# deadline below the whole run stays within about a minute on two CPUs.
MAX_EXAMPLES = 50
# Per request, the engine's answer included (milliseconds): a slow answer is a finding too.
DEADLINE_MS = 5000
# The methods local mode's HTTP server handles (chalicelib/local/server.py); a documented
# path answers any other of them 405 with an Allow header.
HANDLED_METHODS = frozenset({"GET", "PUT", "POST", "HEAD", "DELETE", "PATCH", "OPTIONS"})
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzzed_engine() -> Iterator[Engine]:
    engine = start_engine("--kill-switch")
    try:
        wait_until_listening(engine)
        yield engine
    finally:
        stop_engine(engine)


@pytest.fixture(scope="module")
def engine_url(fuzzed_engine: Engine) -> str:
    """The engine's base URL (a Hypothesis test shows its arguments; an Engine holds its log)."""
    return fuzzed_engine.base


@pytest.fixture
def api_schema(fuzzed_engine: Engine) -> Any:
    schema = schemathesis.openapi.from_url(fuzzed_engine.url("/api/1/openapi.json"), timeout=10)
    schema.config.update(base_url=fuzzed_engine.base, request_timeout=10)
    schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])
    schema.config.generation.update(
        modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
        database="none",
        deterministic=True,
    )
    return schema


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    """schemathesis 4.32's lazy schema names each operation's subtest by rewriting
    ``node._nodeid``, which pytest 9 no longer has (its id lives in ``node._id``)."""
    request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=DEADLINE_MS,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_breaks_the_api(case: Any) -> None:
    if case.method.upper() not in HANDLED_METHODS:
        # A method local mode's HTTP layer has no handler for (TRACE, QUERY, ...): it
        # answers 501 itself, in JSON, before any route is looked up (docs/openapi.yaml);
        # 405 with an Allow header, as for the methods it knows, would be better still.
        response = case.call(timeout=10)
        assert response.status_code in (405, 501), response.text
        headers = {name.lower(): value for name, value in response.headers.items()}
        assert headers["content-type"] == ["application/json"]
        assert set(response.json()) == {"msg"}
        return
    case.call_and_validate(checks=CHECKS, timeout=10)


# Schemathesis rarely guesses a plugin ref, so its plans stop at "invalid attack". These
# are plans with real refs and hostile values where they reach storage and every reader.
LONE_SURROGATES = st.sampled_from(["\ud800", "x\udfff", "\udbff\udc00\ud800"])
NAMES = st.one_of(st.text(min_size=1, max_size=300), LONE_SURROGATES)
OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda minutes: f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
)
DATES = st.one_of(
    st.builds(
        lambda year, offset: f"{year:04d}-06-01T12:00:00{offset}",
        st.one_of(st.integers(2027, 2199), st.integers(1, 9999)),
        st.one_of(st.just(""), st.just("Z"), OFFSETS),
    ),
    st.sampled_from(
        [
            "9999-12-31T23:59:59-23:59",
            "9999-12-31T23:59:59",
            "2199-12-31T23:59:59-23:59",
            "2027-03-28T02:30:00",  # inside the DST gap of Europe/Madrid
        ]
    ),
    st.text(max_size=40),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@dataclass(frozen=True)
class Hostile:
    """A payload too big to show: ``nested`` levels deep, or a ``long`` string of x."""

    kind: str
    size: int

    def build(self) -> Any:
        if self.kind == "long":
            return "x" * self.size
        value: Any = "bottom"
        for _ in range(self.size):
            value = {"down": value}
        return value


PAYLOADS = st.one_of(
    JSON_VALUES,
    # Python encodes JSON up to about 990 levels; the engine refuses more than 32.
    st.builds(Hostile, st.just("nested"), st.integers(1, 900)),
    st.builds(Hostile, st.just("long"), st.sampled_from([1024, 70 * 1024, 420 * 1024, 1 << 20])),
)
PLANS = st.fixed_dictionaries(
    {
        "name": NAMES,
        "dry_run": st.booleans(),
        "attack": st.fixed_dictionaries(
            {
                "ref": st.just("api_request:ApiRequest"),
                "args": st.fixed_dictionaries(
                    {"endpoint": st.just("http://127.0.0.1:9/never"), "method": st.just("GET")},
                    optional={"payload": PAYLOADS, "headers": st.dictionaries(NAMES, NAMES)},
                ),
            }
        ),
        "planner": st.fixed_dictionaries(
            {
                "ref": st.just("exact_planner:ExactPlanner"),
                "args": st.fixed_dictionaries({"date": DATES}),
            }
        ),
    }
)


def checked(
    conformance: Conformance,
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    after: Any = None,
) -> Answer:
    """One request; its answer must be documented, in its media type, and match its schema.

    ``after``: the plan created before it, named in the failure (what broke the reader).
    """
    status, headers, document = http(method.upper(), f"{base}{path}", body)
    answer = Answer(status, {name.lower(): value for name, value in headers.items()}, document)
    sent = "" if body is None else f" {json.dumps(body)[:500]}"
    cause = "" if after is None else f" after POST /api/1/plans/ {json.dumps(after)[:500]}"
    assert status < 500, f"{method.upper()} {path}{sent} -> {status} {document}{cause}"
    conformance.check(method, path, answer)
    return answer


@given(plan=PLANS)
@settings(max_examples=60, deadline=None, database=None, derandomize=True)
def test_stored_plans_with_hostile_values_never_break_a_reader(
    engine_url: str, plan: dict[str, Any]
) -> None:
    conformance = Conformance(load_source())
    args = plan["attack"]["args"]
    if isinstance(args.get("payload"), Hostile):  # built here, not in the shown example
        args = {**args, "payload": args["payload"].build()}
    body = {**plan, "attack": {**plan["attack"], "args": args}}
    created = checked(conformance, engine_url, "post", "/api/1/plans/", body)
    if created.status != 200:
        return
    plan_id = created.body["id"]
    try:
        checked(conformance, engine_url, "get", "/api/1/plans/?all=true", after=body)
        checked(conformance, engine_url, "get", f"/api/1/plans/{plan_id}", after=body)
        checked(
            conformance,
            engine_url,
            "get",
            f"/api/1/executors/?executed=any&plan_id={plan_id}",
            after=body,
        )
        checked(conformance, engine_url, "get", "/api/1/executors/", after=body)
    finally:
        # Even when a read failed: a plan left behind would break the next examples' reads
        # and make the shrunk example name an innocent plan.
        deleted = http("DELETE", f"{engine_url}/api/1/plans/{plan_id}")[0]
    assert deleted == 200, f"DELETE /api/1/plans/{plan_id} -> {deleted}"
