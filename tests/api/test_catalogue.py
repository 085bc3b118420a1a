"""Every listed attack and planner: its example plans, and bad arguments are refused by field."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.plugins.contract import Attack, Planner
from chalicelib.plugins.registry import load_plugins
from chalicelib.settings import builtin_folder
from tests.api.conftest import Api

ATTACK_REFS = load_plugins("attacks", Attack, [builtin_folder("attacks")]).refs
PLANNER_REFS = load_plugins("planners", Planner, [builtin_folder("planners")]).refs
AT = {"ref": "exact_planner:ExactPlanner", "args": {"date": "2026-12-01T12:00:00+01:00"}}


def catalogue(api: Api, kind: str) -> dict[str, dict[str, Any]]:
    return {entry["ref"]: entry for entry in api.get(f"/api/1/{kind}/").body[kind]}


def test_every_builtin_attack_is_listed(api: Api) -> None:
    listed = catalogue(api, "attacks")
    assert set(ATTACK_REFS) <= set(listed)
    assert len(ATTACK_REFS) >= 19


@pytest.mark.parametrize("ref", ATTACK_REFS)
def test_each_attack_example_plans(api: Api, ref: str) -> None:
    example = catalogue(api, "attacks")[ref]["example"]
    attacks = load_plugins("attacks", Attack, [builtin_folder("attacks")])
    assert attacks.resolve(example["ref"]) is attacks.resolve(ref)
    answer = api.post(
        "/api/1/plans/", {"name": ref, "dry_run": True, "attack": example, "planner": AT}
    )
    assert answer.status == 200, answer.body


@pytest.mark.parametrize("ref", ATTACK_REFS)
def test_each_attack_refuses_bad_args_naming_the_field(api: Api, ref: str) -> None:
    example = catalogue(api, "attacks")[ref]["example"]
    args = dict(example["args"])
    # Break the first argument: give it a value of a type no schema accepts for it.
    field = next(iter(args))
    args[field] = {"certainly": ["not", "valid"]} if not isinstance(args[field], dict) else 42
    answer = api.post(
        "/api/1/plans/",
        {"name": ref, "attack": {"ref": ref, "args": args}, "planner": AT},
    )
    assert answer.status == 400, (field, answer.body)
    assert answer.body["msg"].startswith("invalid payload attack.args")
    assert field in answer.body["msg"]


@pytest.mark.parametrize("ref", PLANNER_REFS)
def test_each_planner_example_validates(api: Api, ref: str) -> None:
    example = catalogue(api, "planners")[ref]["example"]
    attack = {
        "ref": "api_request:ApiRequest",
        "args": {"endpoint": "http://127.0.0.1:1/", "method": "GET"},
    }
    answer = api.post("/api/1/plans/", {"name": ref, "attack": attack, "planner": example})
    # The examples' dates and windows may be past or over today; only the schema is at stake.
    assert answer.status in (200, 400), answer.body
    assert not answer.body.get("msg", "").startswith("invalid payload"), answer.body
