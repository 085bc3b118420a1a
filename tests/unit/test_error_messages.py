"""Error messages quote at most MAX_SHOWN characters of a caller's value."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.domain.errors import (
    MAX_SHOWN,
    EngineError,
    ExecutorNotFound,
    InvalidCursor,
    InvalidDate,
    InvalidPayload,
    InvalidTrigger,
    PlanningError,
    PlanNotFound,
    UnknownPlugin,
)
from chalicelib.plugins.validation import validate

MEGABYTE = "x" * 1_000_000
TOO_MUCH = "x" * (MAX_SHOWN + 1)


@pytest.mark.parametrize(
    "make",
    [
        lambda: InvalidDate(MEGABYTE),
        lambda: InvalidDate("2026-13-01", MEGABYTE),
        lambda: UnknownPlugin("attack", MEGABYTE, ["a:A"]),
        lambda: InvalidTrigger(MEGABYTE),
        lambda: InvalidTrigger({"nested": [MEGABYTE]}),
        lambda: InvalidCursor(MEGABYTE),
        lambda: InvalidPayload(f"name: {MEGABYTE}"),
        lambda: PlanningError(f"planner.args.times must be a whole number, not {MEGABYTE!r}"),
        lambda: PlanNotFound(MEGABYTE),
        lambda: ExecutorNotFound(MEGABYTE),
    ],
    ids=[
        "date",
        "date-detail",
        "plugin",
        "trigger",
        "trigger-dict",
        "cursor",
        "payload",
        "plan",
        "plan-id",
        "executor-id",
    ],
)
def test_a_megabyte_is_quoted_at_most_a_few_hundred_characters(make) -> None:
    error: EngineError = make()
    assert TOO_MUCH * 2 not in error.message
    assert len(error.message) < 600
    assert "more characters)" in error.message


@pytest.mark.parametrize(
    ("instance", "schema"),
    [
        ({"a": MEGABYTE}, {"properties": {"a": {"type": "integer"}}}),
        ({"a": MEGABYTE}, {"properties": {"a": {"enum": ["ok", "fail"]}}}),
        ({"a": MEGABYTE}, {"properties": {"a": {"maxLength": 10}}}),
        ({"a": [MEGABYTE]}, {"properties": {"a": {"type": "string"}}}),
        ({MEGABYTE: 1}, {"additionalProperties": False}),
        ({"a": {"b": MEGABYTE}}, {"properties": {"a": {"type": "string"}}}),
    ],
    ids=["type", "enum", "max-length", "list", "additional-property", "object"],
)
def test_schema_messages_quote_the_value_briefly(instance: object, schema: dict[str, Any]) -> None:
    with pytest.raises(InvalidPayload) as raised:
        validate(instance, schema, "attack.args")
    message = raised.value.message
    assert message.startswith("invalid payload attack.args")
    assert "x" * (MAX_SHOWN + 60) not in message
    assert len(message) < 500


def test_short_values_are_quoted_whole() -> None:
    assert InvalidDate("tomorrow").message == "Invalid date format 'tomorrow': expected ISO 8601"
    with pytest.raises(InvalidPayload, match=r"attack.args.a: 'x' is not of type 'integer'$"):
        validate({"a": "x"}, {"properties": {"a": {"type": "integer"}}}, "attack.args")
