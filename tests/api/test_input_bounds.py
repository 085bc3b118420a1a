"""Bounded input (issue 9, deliverable 3): every bound refused with a JSON 4xx naming the
field, before anything is stored; a value just inside each bound is accepted."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from chalicelib.bootstrap import Engine
from chalicelib.services.limits import MAX_CONFIGS_BYTES, MAX_DEPTH, MAX_STRING
from chalicelib.settings import Settings
from tests.api.conftest import Answer, Api
from tests.conftest import FIXTURES

BODY_LIMIT = Settings().max_body_bytes
# Body levels above the attack's args: the body, "attack", "args".
ARGS_DEPTH = 3


def plan(date: str = "2026-12-01T12:00:00+01:00", **args: Any) -> dict[str, Any]:
    return {
        "name": "bounded",
        "attack": {"ref": "scripted:Scripted", "args": {"mode": "ok", **args}},
        "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": date}},
    }


def refused(answer: Answer, status: int, *words: str) -> str:
    """The answer is a JSON error with ``status`` whose message holds ``words``."""
    assert answer.status == status, answer.body
    assert answer.headers["content-type"] == "application/json"
    text = str(answer.body["msg"])
    for word in words:
        assert word in text, text
    return text


def nothing_stored(api: Api) -> None:
    listed = api.get("/api/1/plans/?all=true")
    assert listed.status == 200
    assert listed.body["plans"] == []


def nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def padding(total: int, piece: int = 60_000) -> list[str]:
    """Strings (each under the string bound) adding up to about ``total`` characters."""
    return ["x" * piece] * (total // piece) + ["x" * (total % piece)]


class TestBodySize:
    def test_a_body_just_under_the_limit_is_accepted(self, api: Api) -> None:
        payload = plan(pad=padding(BODY_LIMIT - 1000))
        raw = json.dumps(payload).encode()
        assert BODY_LIMIT - 1000 < len(raw) <= BODY_LIMIT
        assert api.post("/api/1/plans/", raw=raw).status == 200

    def test_a_body_over_the_limit_is_413(self, api: Api) -> None:
        raw = json.dumps(plan(pad=padding(BODY_LIMIT))).encode()
        assert len(raw) > BODY_LIMIT
        refused(api.post("/api/1/plans/", raw=raw), 413, "body", str(BODY_LIMIT))
        nothing_stored(api)

    def test_the_limit_is_a_setting(self, api: Api, engine: Engine) -> None:
        engine.settings = replace(engine.settings, max_body_bytes=2048)
        raw = json.dumps(plan(pad=padding(2048, 1000))).encode()
        refused(api.post("/api/1/plans/", raw=raw), 413, "2048")


class TestDepth:
    def test_the_deepest_allowed_body_is_accepted(self, api: Api) -> None:
        answer = api.post("/api/1/plans/", plan(deep=nested(MAX_DEPTH - ARGS_DEPTH)))
        assert answer.status == 200, answer.body

    def test_one_level_more_is_refused_naming_the_path(self, api: Api) -> None:
        answer = api.post("/api/1/plans/", plan(deep=nested(MAX_DEPTH - ARGS_DEPTH + 1)))
        refused(answer, 400, "attack.args.deep[0]", f"more than {MAX_DEPTH} levels")
        nothing_stored(api)

    def test_ten_thousand_levels_are_a_400_not_a_500(self, api: Api) -> None:
        raw = json.dumps(plan(deep="HOLE")).replace('"HOLE"', "[" * 10_000 + "]" * 10_000)
        answer = api.post("/api/1/plans/", raw=raw.encode())
        refused(answer, 400, f"more than {MAX_DEPTH} levels")
        nothing_stored(api)

    def test_a_deep_trigger_is_refused_too(self, api: Api) -> None:
        raw = '{"type": "date", "args": {"date": ' + "[" * 5000 + "]" * 5000 + "}}"
        answer = api.put("/api/1/executors/nope", raw=raw.encode())
        refused(answer, 400, "levels")


class TestStrings:
    def test_the_longest_allowed_string_is_accepted(self, api: Api) -> None:
        assert api.post("/api/1/plans/", plan(token="x" * MAX_STRING)).status == 200

    def test_a_longer_string_is_refused_naming_the_field(self, api: Api) -> None:
        answer = api.post("/api/1/plans/", plan(token="x" * (MAX_STRING + 1)))
        text = refused(answer, 400, "attack.args.token", str(MAX_STRING))
        assert len(text) < 300  # the value itself is not echoed
        nothing_stored(api)

    @pytest.mark.parametrize(
        ("raw", "field"),
        [
            ('"name": "bad \\ud800 name"', "name"),
            (
                '"name": "ok", "attack": {"ref": "scripted:Scripted", "args": {"mode": "ok", '
                '"\\udfff": 1}}',
                "(the key)",
            ),
        ],
    )
    def test_a_lone_surrogate_is_refused_naming_the_field(
        self, api: Api, raw: str, field: str
    ) -> None:
        # Later keys win: the bad value replaces the good one.
        body = json.dumps(plan())[:-1] + ", " + raw + "}"
        answer = api.post("/api/1/plans/", raw=body.encode())
        refused(answer, 400, field, "invalid Unicode")
        nothing_stored(api)

    def test_a_paired_surrogate_is_a_character(self, api: Api) -> None:
        body = json.dumps(plan()).replace('"bounded"', '"bounded \\ud83d\\udca5"')
        answer = api.post("/api/1/plans/", raw=body.encode())
        assert answer.status == 200, answer.body
        assert api.get(f"/api/1/plans/{answer.body['id']}").body["name"] == "bounded \U0001f4a5"


class TestDates:
    @pytest.mark.parametrize(
        "date",
        [
            "9999-12-31T10:00:00",
            "9999-12-31T23:00:00-05:00",  # the offset pushes it past datetime's range
            "2200-01-01T00:00:00Z",
        ],
    )
    def test_dates_out_of_range_are_refused(self, api: Api, date: str) -> None:
        refused(api.post("/api/1/plans/", plan(date=date)), 400, date, "2000 to 2199")
        nothing_stored(api)
        assert api.get("/api/1/executors/").status == 200

    def test_the_last_allowed_date_is_accepted_and_lists_keep_working(self, api: Api) -> None:
        created = api.post("/api/1/plans/", plan(date="2199-12-31T23:59:59Z"))
        assert created.status == 200, created.body
        assert api.get("/api/1/plans/").status == 200
        assert api.get(f"/api/1/plans/{created.body['id']}").status == 200
        assert api.get("/api/1/executors/").status == 200

    def test_a_reschedule_out_of_range_is_refused(self, api: Api) -> None:
        created = api.post("/api/1/plans/", plan())
        executor = api.get(f"/api/1/plans/{created.body['id']}").body["_embedded"]["executors"][0]
        answer = api.put(
            f"/api/1/executors/{executor['id']}",
            {"type": "date", "args": {"date": "9999-12-31T23:00:00-05:00"}},
        )
        refused(answer, 400, "2000 to 2199")

    def test_a_local_time_in_the_dst_gap_is_refused(self, api: Api) -> None:
        answer = api.post("/api/1/plans/", plan(date="2027-03-28T02:30:00"))
        refused(answer, 400, "2027-03-28T02:30", "does not exist in Europe/Madrid")
        nothing_stored(api)

    def test_the_minute_before_the_gap_is_accepted(self, api: Api) -> None:
        created = api.post("/api/1/plans/", plan(date="2027-03-28T01:59:00"))
        assert created.status == 200, created.body
        shown = api.get(f"/api/1/plans/{created.body['id']}").body
        assert shown["_embedded"]["executors"][0]["next_run_time"] == "2027-03-28T01:59:00+01:00"

    def test_an_ambiguous_local_time_is_its_first_occurrence(self, api: Api) -> None:
        created = api.post("/api/1/plans/", plan(date="2027-10-31T02:30:00"))
        assert created.status == 200, created.body
        shown = api.get(f"/api/1/plans/{created.body['id']}").body
        # Summer time (+02:00) comes first; the repeated 02:30 is +01:00.
        assert shown["_embedded"]["executors"][0]["next_run_time"] == "2027-10-31T02:30:00+02:00"


class TestItemSize:
    """A plan's configs must fit in one DynamoDB item (400 KB); a body limit raised above
    that must not let a plan reach the store only to fail there with a 5xx."""

    @pytest.fixture
    def settings(self) -> Settings:
        return Settings(
            plans_table="test-plans",
            executors_table="test-executors",
            attack_folders=(FIXTURES / "test_attacks",),
            max_body_bytes=10 * 1024 * 1024,
        )

    def test_configs_just_under_the_item_limit_are_accepted(self, api: Api) -> None:
        answer = api.post("/api/1/plans/", plan(pad=padding(MAX_CONFIGS_BYTES - 2000)))
        assert answer.status == 200, answer.body

    def test_a_one_megabyte_argument_is_a_400_naming_the_field(self, api: Api) -> None:
        answer = api.post("/api/1/plans/", plan(pad=padding(1024 * 1024)))
        text = refused(answer, 400, "invalid payload attack: ", str(MAX_CONFIGS_BYTES))
        assert "table" not in text
        nothing_stored(api)

    def test_a_one_megabyte_body_is_413_with_the_default_limit(
        self, api: Api, engine: Engine
    ) -> None:
        engine.settings = replace(engine.settings, max_body_bytes=BODY_LIMIT)
        refused(api.post("/api/1/plans/", plan(pad=padding(1024 * 1024))), 413, "body")
