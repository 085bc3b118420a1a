"""docs/openapi.yaml is valid, is what /api/1/openapi.json serves, names exactly the app's
routes, and real answers of the API match its response schemas."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from app import app
from chalicelib.bootstrap import Engine
from scripts.openapi_json import SOURCE, TARGET, load_source, render
from tests.api.conftest import Answer, Api
from tests.conftest import FixedClock

SPEC_URI = "urn:chaos-monkey-engine:openapi"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_source()


def normalized(path: str) -> str:
    """A path without its trailing slash: the API answers both forms alike."""
    return path.rstrip("/") or "/"


def operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (normalized(path), method.upper())
        for path, item in spec["paths"].items()
        for method in item
        if method in METHODS
    }


def test_the_document_is_valid_openapi(spec: dict[str, Any]) -> None:
    validate_spec(spec)
    assert spec["openapi"].startswith("3.")


def test_an_invalid_document_is_refused(spec: dict[str, Any]) -> None:
    """The validator is not a no-op: a response without a description is refused."""
    broken = json.loads(json.dumps(spec))
    del broken["paths"]["/api/1/attacks/"]["get"]["responses"]["200"]["description"]
    with pytest.raises(Exception, match="description"):
        validate_spec(broken)


def test_the_served_json_copy_is_generated_from_the_yaml(spec: dict[str, Any]) -> None:
    assert TARGET.read_text(encoding="utf-8") == render(spec), (
        f"{TARGET} is stale: run .venv/bin/python scripts/openapi_json.py"
    )
    assert SOURCE.name == "openapi.yaml"


def test_every_route_is_documented_and_every_documented_route_is_served(
    spec: dict[str, Any],
) -> None:
    served = {(normalized(path), method) for path, entry in app.routes.items() for method in entry}
    documented = operations(spec)
    assert served - documented == set(), "routes missing from docs/openapi.yaml"
    assert documented - served == set(), "docs/openapi.yaml names routes the app does not serve"


def test_every_operation_has_an_id_and_every_body_is_json(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            assert operation.get("operationId"), (path, method)
            for status, declared in operation["responses"].items():
                types = set(resolve(spec, declared).get("content", {}))
                if status.startswith("2") and path != "/api/1/openapi.json":
                    assert types <= {"application/hal+json", "application/json"}, (path, status)
                elif not status.startswith("2"):
                    assert types == {"application/json"}, (path, method, status)


def resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


class Conformance:
    """Checks one answer against the operation of the document that its request names."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        resource: Resource[Any] = Resource.from_contents(spec, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
        self.checked: set[tuple[str, str, str]] = set()

    def operation(self, method: str, url: str) -> tuple[str, dict[str, Any]]:
        path = normalized(url.split("?", 1)[0])
        for template, item in self.spec["paths"].items():
            pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(normalized(template)))
            if re.fullmatch(pattern, path) and method in item:
                return template, item[method]
        raise AssertionError(f"{method.upper()} {url} is not in the document")

    def check(self, method: str, url: str, answer: Answer) -> None:
        template, operation = self.operation(method, url)
        status = str(answer.status)
        assert status in operation["responses"], (
            f"{method.upper()} {url} answered {status}, undocumented: {answer.body}"
        )
        response = resolve(self.spec, operation["responses"][status])
        media_type = answer.headers["content-type"].split(";")[0].strip()
        assert media_type in response["content"], (method, url, status, media_type)
        pointer = "/".join(
            part.replace("~", "~0").replace("/", "~1")
            for part in ("paths", template, method, "responses", status)
        )
        schema_ref = f"{SPEC_URI}#/{pointer}/content/{media_type.replace('/', '~1')}/schema"
        if "$ref" in operation["responses"][status]:
            schema_ref = (
                f"{SPEC_URI}{operation['responses'][status]['$ref']}"
                f"/content/{media_type.replace('/', '~1')}/schema"
            )
        validator = jsonschema.Draft202012Validator({"$ref": schema_ref}, registry=self.registry)
        errors = [
            f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(answer.body)
        ]
        assert not errors, f"{method.upper()} {url} {status}: {errors}"
        for name in response.get("headers", {}):
            assert name.lower() in answer.headers, (method, url, status, name)
        self.checked.add((template, method, status))


class Recorder:
    """The API client, checking every answer against the document."""

    def __init__(self, api: Api, conformance: Conformance) -> None:
        self.api = api
        self.conformance = conformance

    def call(self, method: str, url: str, body: Any = None, **kwargs: Any) -> Answer:
        answer = self.api.call(method, url, body, **kwargs)
        self.conformance.check(method, url, answer)
        return answer


@pytest.fixture
def client(api: Api, spec: dict[str, Any]) -> Iterator[Recorder]:
    yield Recorder(api, Conformance(spec))


def plan(date: str = "2026-12-01T12:00:00+01:00", name: str = "conformance") -> dict[str, Any]:
    return {
        "name": name,
        "attack": {"ref": "scripted:Scripted", "args": {"mode": "ok", "token": "hidden"}},
        "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": date}},
    }


def test_real_answers_match_the_document(
    client: Recorder, engine: Engine, clock: FixedClock, tmp_path: Path
) -> None:
    call = client.call
    for path in ("/api/1/attacks/", "/api/1/attacks", "/api/1/planners/", "/api/1/planners"):
        assert call("get", path).status == 200

    created = call("post", "/api/1/plans/", plan(), headers={"Idempotency-Key": "k-1"})
    assert created.status == 200
    plan_id = created.body["id"]
    assert call("post", "/api/1/plans", plan(name="two")).status == 200
    reused = call("post", "/api/1/plans/", plan(name="other"), headers={"Idempotency-Key": "k-1"})
    assert reused.status == 409
    assert call("post", "/api/1/plans/", raw=b"{").status == 400
    assert call("post", "/api/1/plans/", {"name": "x"}).status == 400
    assert call("post", "/api/1/plans/", plan(date="2000-01-01T00:00:00Z")).status == 400
    bad_key = call("post", "/api/1/plans/", plan(), headers={"Idempotency-Key": "a b"})
    assert bad_key.status == 400

    assert call("get", "/api/1/plans/").status == 200
    first_page = call("get", "/api/1/plans/?all=true&limit=1")
    assert "next" in first_page.body["_links"]
    assert call("get", first_page.body["_links"]["next"]["href"]).status == 200
    assert call("get", "/api/1/plans?status=executed").status == 200
    for query in ("limit=0", "limit=501", "cursor=nonsense", "status=maybe"):
        assert call("get", f"/api/1/plans/?{query}").status == 400

    document = call("get", f"/api/1/plans/{plan_id}")
    assert document.status == 200
    assert document.body["attack"]["args"]["token"] == "<redacted>"
    assert call("get", f"/api/1/plans/{plan_id}?limit=0").status == 400
    assert call("get", "/api/1/plans/nope").status == 404
    executor_id = document.body["_embedded"]["executors"][0]["id"]

    for query in ("", "?executed=any", f"?plan_id={plan_id}&status=scheduled&limit=1"):
        assert call("get", f"/api/1/executors/{query}").status == 200
    after = "after=2026-12-01T00:00:00Z&before=2027-01-01"
    assert call("get", f"/api/1/executors?{after}").status == 200
    for query in ("status=sleeping", "after=someday", "limit=x"):
        assert call("get", f"/api/1/executors/?{query}").status == 400

    assert call("get", f"/api/1/executors/{executor_id}").status == 200
    assert call("get", "/api/1/executors/nope").status == 404
    later = {"type": "date", "args": {"date": "2026-12-01T13:00:00+01:00"}}
    assert call("put", f"/api/1/executors/{executor_id}", later).status == 200
    assert call("put", f"/api/1/executors/{executor_id}", {"type": "cron"}).status == 400
    assert call("put", f"/api/1/executors/{executor_id}", raw=b"[").status == 400
    assert call("put", "/api/1/executors/nope", later).status == 404

    clock.current = engine.executors.get(executor_id).next_run_time
    engine.runner.run(executor_id)
    executed = call("get", f"/api/1/executors/{executor_id}")
    assert executed.body["status"] == "succeeded"
    assert executed.body["started_at"] is not None
    much_later = {"type": "date", "args": {"date": "2027-01-01T13:00:00+01:00"}}
    assert call("put", f"/api/1/executors/{executor_id}", much_later).status == 409
    assert call("get", "/api/1/executors/?executed=true").status == 200

    second = call("get", f"/api/1/plans/{call('get', '/api/1/plans/').body['plans'][0]['id']}")
    second_executor = second.body["_embedded"]["executors"][0]["id"]
    assert call("delete", f"/api/1/executors/{second_executor}").status == 200
    assert call("delete", f"/api/1/executors/{second_executor}").status == 404
    assert call("delete", f"/api/1/plans/{plan_id}").status == 200
    assert call("delete", f"/api/1/plans/{plan_id}").status == 404

    paused_id = call("post", "/api/1/plans/", plan("2027-06-01T12:00:00+02:00", "p")).body["id"]
    assert call("put", f"/api/1/plans/{paused_id}", {"paused": True}).status == 200
    assert call("put", f"/api/1/plans/{paused_id}", {"paused": "yes"}).status == 400
    assert call("put", "/api/1/plans/nope", {"paused": True}).status == 404
    assert call("put", f"/api/1/plans/{paused_id}", {"paused": False}).status == 200

    assert call("get", "/api/1/halt").status == 200
    halt = {"halted": True, "reason": "conformance"}
    assert call("put", "/api/1/halt/", halt).status == 200
    assert call("put", "/api/1/halt", {"halted": "yes"}).status == 400
    assert call("put", "/api/1/halt", {"halted": False}).status == 200

    safe = {
        **plan("2027-06-01T12:00:00+02:00", "safe"),
        "safety": {"min_interval": {"seconds": 60}},
    }
    previewed = call("post", "/api/1/plans/preview", safe)
    assert previewed.status == 200
    assert previewed.body["targets"] is None  # scripted:Scripted has no dry run
    leashed = {
        **plan("2027-06-01T12:00:00+02:00"),
        "attack": {"ref": "scripted:Leashed", "args": {"mode": "ok"}},
    }
    assert call("post", "/api/1/plans/preview/", leashed).status == 200
    assert call("post", "/api/1/plans/preview", {"name": "x"}).status == 400
    created_safe = call("post", "/api/1/plans/", safe)
    assert call("get", f"/api/1/plans/{created_safe.body['id']}").body["safety"] == safe["safety"]

    # The audit trail (tests/events has its own tests); the test engine is built without.
    from chalicelib.adapters.sqlite_events import SqliteEventLog
    from chalicelib.services.audit import AuditTrail

    events = SqliteEventLog(tmp_path / "events.sqlite3")
    engine.audit = AuditTrail(events, None, clock)
    engine.audit.plan_deleted(plan_id, "local")
    assert call("get", "/api/1/events/").body["_embedded"]["events"]
    assert call("get", "/api/1/events?kind=nope").status == 400
    events.close()

    served = call("get", "/api/1/openapi.json")
    assert served.status == 200
    assert served.body == load_source()

    # Each operation was checked at least once, success and error.
    checked_operations = {(path, method) for path, method, _ in client.conformance.checked}
    documented = {
        (path, method)
        for path, item in client.conformance.spec["paths"].items()
        for method in item
        if method in METHODS
    }
    assert checked_operations == documented


def test_an_answer_that_breaks_its_schema_is_caught(spec: dict[str, Any]) -> None:
    conformance = Conformance(spec)
    executor = {"id": "e", "plan_id": "p", "status": "exploded"}
    with pytest.raises(AssertionError, match=r"required property|is not one of"):
        conformance.check(
            "get",
            "/api/1/executors/e",
            Answer(200, {"content-type": "application/hal+json"}, executor),
        )
    with pytest.raises(AssertionError, match="undocumented"):
        conformance.check(
            "get", "/api/1/attacks/", Answer(500, {"content-type": "application/json"}, {})
        )
    with pytest.raises(AssertionError):
        conformance.check(
            "get", "/api/1/plans/p", Answer(404, {"content-type": "text/html"}, "<html>")
        )


def test_the_route_serves_the_committed_json() -> None:
    text = (Path(__file__).parents[2] / "chalicelib" / "api" / "openapi.json").read_text()
    assert json.loads(text)["paths"].keys() == load_source()["paths"].keys()
