"""Paged, filtered lists; a plan's first page of executors; Idempotency-Key on POST."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from chalicelib.bootstrap import Engine
from chalicelib.domain.ports import MAX_PAGE_SIZE
from tests.api.conftest import Api
from tests.conftest import FixedClock


def plan(times: int, name: str = "paged") -> dict[str, Any]:
    return {
        "name": name,
        "attack": {"ref": "scripted:Scripted", "args": {"mode": "ok"}},
        "planner": {
            "ref": "simple_planner:SimplePlanner",
            "args": {"min_time": "11:00", "max_time": "17:00", "times": times},
        },
    }


def create(api: Api, payload: dict[str, Any], **headers: str) -> str:
    answer = api.post("/api/1/plans/", payload, headers=headers)
    assert answer.status == 200, answer.body
    return str(answer.body["id"])


def walk(api: Api, path: str, key: str) -> list[dict[str, Any]]:
    """Every item of a list, following next links; checks each page's self link."""
    seen: list[dict[str, Any]] = []
    for _ in range(100):
        answer = api.get(path)
        assert answer.status == 200, answer.body
        body = answer.body
        items = body["_embedded"]["executors"] if key == "executors" else body[key]
        seen.extend(items)
        following = body["_links"].get("next")
        if following is None:
            return seen
        path = following["href"]
    raise AssertionError("more than 100 pages")


def test_executors_page_through_in_order_each_seen_once_while_others_are_added(
    api: Api,
) -> None:
    create(api, plan(25))
    first = api.get("/api/1/executors/?limit=10")
    assert len(first.body["_embedded"]["executors"]) == 10
    next_href = first.body["_links"]["next"]["href"]
    assert parse_qs(urlsplit(next_href).query)["limit"] == ["10"]
    create(api, plan(7, name="added meanwhile"))
    rest = walk(api, next_href, "executors")
    ids = [item["id"] for item in first.body["_embedded"]["executors"] + rest]
    assert len(ids) == len(set(ids)), "no executor on two pages"
    times = [item["next_run_time"] for item in first.body["_embedded"]["executors"] + rest]
    assert times == sorted(times)
    every = walk(api, "/api/1/executors/?limit=500", "executors")
    assert set(ids) <= {item["id"] for item in every}
    assert len(every) == 32


def test_without_new_parameters_the_2017_shape_and_default_page(api: Api) -> None:
    create(api, plan(3))
    answer = api.get("/api/1/executors/")
    assert set(answer.body) == {"_embedded", "_links"}
    assert answer.body["_links"] == {"self": {"href": "/api/1/executors/"}}
    assert len(answer.body["_embedded"]["executors"]) == 3


@pytest.mark.parametrize("limit", ["0", "-1", "abc", str(MAX_PAGE_SIZE + 1), "1.5"])
def test_a_bad_limit_is_a_400(api: Api, limit: str) -> None:
    for path in ("/api/1/executors/", "/api/1/plans/"):
        answer = api.get(f"{path}?limit={limit}")
        assert answer.status == 400
        assert answer.body == {"msg": f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}"}


def test_a_forged_cursor_is_a_400(api: Api) -> None:
    create(api, plan(3))
    for path in ("/api/1/executors/?cursor=garbage", "/api/1/plans/?cursor=garbage"):
        answer = api.get(path)
        assert answer.status == 400
        assert answer.body["msg"].startswith("invalid cursor")


def test_a_cursor_of_another_query_is_a_400(api: Api) -> None:
    create(api, plan(3))
    page = api.get("/api/1/executors/?limit=1")
    cursor = parse_qs(urlsplit(page.body["_links"]["next"]["href"]).query)["cursor"][0]
    answer = api.get(f"/api/1/executors/?executed=true&cursor={cursor}")
    assert answer.status == 400


def test_executors_filter_by_plan_status_and_time(
    api: Api, engine: Engine, clock: FixedClock
) -> None:
    first = create(api, plan(4, name="first"))
    second = create(api, plan(3, name="second"))
    mine = walk(api, f"/api/1/executors/?plan_id={first}", "executors")
    assert {item["plan_id"] for item in mine} == {first}
    assert len(mine) == 4

    executors = engine.plans.get(second).executors.items
    clock.current = executors[0].next_run_time
    engine.runner.run(executors[0].id)
    succeeded = walk(api, "/api/1/executors/?status=succeeded", "executors")
    assert [item["id"] for item in succeeded] == [executors[0].id]
    both = walk(api, "/api/1/executors/?status=succeeded,scheduled", "executors")
    assert len(both) == 7
    bad = api.get("/api/1/executors/?status=exploded")
    assert bad.status == 400 and "exploded" in bad.body["msg"]

    middle = executors[1].next_run_time
    after = (middle - timedelta(seconds=0)).isoformat()
    before = (executors[2].next_run_time).isoformat()
    ranged = walk(
        api,
        f"/api/1/executors/?plan_id={second}&after={after}&before={before}".replace("+", "%2B"),
        "executors",
    )
    assert [item["id"] for item in ranged] == [executors[1].id]
    assert api.get("/api/1/executors/?after=yesterday").status == 400


def test_plans_page_and_filter_by_status(api: Api, engine: Engine, clock: FixedClock) -> None:
    ids = []
    for n in range(5):
        ids.append(create(api, plan(1, name=f"plan {n}")))
        clock.advance(seconds=1)
    listed = walk(api, "/api/1/plans/?limit=2", "plans")
    assert [item["id"] for item in listed] == list(reversed(ids)), "newest first"
    done = engine.plans.get(ids[0]).executors.items[0]
    clock.current = done.next_run_time
    engine.runner.run(done.id)
    executed = walk(api, "/api/1/plans/?status=executed", "plans")
    assert [item["id"] for item in executed] == [ids[0]]
    pending = walk(api, "/api/1/plans/?status=pending", "plans")
    assert ids[0] not in {item["id"] for item in pending}
    assert api.get("/api/1/plans/?status=nope").status == 400
    assert all(item["next_execution"] for item in pending)


def test_a_plans_detail_embeds_its_first_page_and_links_the_rest(api: Api) -> None:
    plan_id = create(api, plan(12))
    detail = api.get(f"/api/1/plans/{plan_id}?limit=5").body
    assert len(detail["_embedded"]["executors"]) == 5
    assert detail["executors_count"] == 12
    assert detail["status_counts"]["scheduled"] == 12
    links = detail["_links"]
    assert links["executors"]["href"] == f"/api/1/executors/?executed=any&plan_id={plan_id}"
    rest = walk(api, links["next_executors"]["href"], "executors")
    ids = [item["id"] for item in detail["_embedded"]["executors"] + rest]
    assert len(ids) == 12 == len(set(ids))
    everything = walk(api, links["executors"]["href"], "executors")
    assert [item["id"] for item in everything] == ids


def test_a_retried_post_with_an_idempotency_key_creates_nothing_twice(api: Api) -> None:
    first = create(api, plan(3), **{"Idempotency-Key": "retry-1"})
    second = create(api, plan(3), **{"Idempotency-Key": "retry-1"})
    assert first == second
    assert len(walk(api, "/api/1/executors/", "executors")) == 3
    reused = api.post("/api/1/plans/", plan(4), headers={"Idempotency-Key": "retry-1"})
    assert reused.status == 409
    assert "another request body" in reused.body["msg"]


def test_next_execution_is_the_soonest_pending_time(api: Api) -> None:
    plan_id = create(api, plan(4))
    detail = api.get(f"/api/1/plans/{plan_id}").body
    times = sorted(
        datetime.fromisoformat(item["next_run_time"]) for item in detail["_embedded"]["executors"]
    )
    assert datetime.fromisoformat(detail["next_execution"]) == times[0]
