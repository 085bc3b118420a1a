"""The built-in planners against a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from chalicelib.domain.errors import InvalidDate, PlanningError
from chalicelib.plugins.contract import Planner
from chalicelib.plugins.registry import load_plugins
from chalicelib.settings import builtin_folder
from tests.conftest import FixedClock

MADRID = ZoneInfo("Europe/Madrid")
ATTACK = {"ref": "api_request:ApiRequest", "args": {"endpoint": "http://x", "method": "GET"}}


def planner(ref: str, now: datetime, zone: ZoneInfo = MADRID, limit: int = 500) -> Planner:
    planners = load_plugins("planners", Planner, [builtin_folder("planners")])
    instance = planners.resolve(ref)("my plan")
    instance.clock = FixedClock(now)
    instance.timezone = zone
    instance.max_executors = limit
    return instance


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


class TestExactPlanner:
    now = at("2026-12-01T09:00:00+00:00")

    def test_keeps_the_given_offset(self) -> None:
        exact = planner("exact_planner:ExactPlanner", self.now)
        exact.plan({"args": {"date": "2026-12-01T15:30:12+05:00"}}, ATTACK)
        [proposal] = exact.proposals
        assert proposal.run_at == at("2026-12-01T10:30:12+00:00")
        assert proposal.run_at.utcoffset() == timedelta(hours=5)
        assert proposal.attack is ATTACK
        assert proposal.name == "my plan"

    def test_naive_date_is_in_the_engine_timezone(self) -> None:
        exact = planner("exact_planner:ExactPlanner", self.now)
        exact.plan({"args": {"date": "2026-12-01T15:30"}}, ATTACK)
        assert exact.proposals[0].run_at == at("2026-12-01T14:30:00+00:00")

    def test_zulu_suffix(self) -> None:
        exact = planner("exact_planner:ExactPlanner", self.now)
        exact.plan({"args": {"date": "2026-12-01T10:00:00Z"}}, ATTACK)
        assert exact.proposals[0].run_at == at("2026-12-01T10:00:00+00:00")

    @pytest.mark.parametrize("date", ["2026-12-01T09:00:00+00:00", "2017-01-25T10:12:14"])
    def test_refuses_past_dates(self, date: str) -> None:
        exact = planner("exact_planner:ExactPlanner", self.now)
        with pytest.raises(PlanningError, match="in the past"):
            exact.plan({"args": {"date": date}}, ATTACK)
        assert exact.proposals == []

    def test_refuses_what_is_not_a_date(self) -> None:
        exact = planner("exact_planner:ExactPlanner", self.now)
        with pytest.raises(InvalidDate, match="tomorrow"):
            exact.plan({"args": {"date": "tomorrow"}}, ATTACK)


class TestSimplePlanner:
    # 08:00 in Madrid (UTC+1 in December)
    early = at("2026-12-01T07:00:00+00:00")

    def test_one_instant_in_each_equal_slice_of_the_window(self) -> None:
        simple = planner("simple_planner:SimplePlanner", self.early)
        simple.plan({"args": {"min_time": "10:00", "max_time": "18:00", "times": 4}}, ATTACK)
        start = at("2026-12-01T10:00:00+01:00")
        slice_length = timedelta(hours=2)
        assert len(simple.proposals) == 4
        for index, proposal in enumerate(simple.proposals):
            low = start + slice_length * index
            assert low <= proposal.run_at <= low + slice_length
            assert proposal.name == f"my plan-{index + 1}"
            assert proposal.run_at.tzinfo == MADRID

    def test_draws_are_random_within_slices(self) -> None:
        simple = planner("simple_planner:SimplePlanner", self.early)
        args = {"min_time": "10:00", "max_time": "18:00", "times": 1}
        draws = set()
        for _ in range(5):
            simple.proposals.clear()
            simple.plan({"args": args}, ATTACK)
            draws.add(simple.proposals[0].run_at)
        assert len(draws) > 1

    def test_only_the_part_of_the_window_still_ahead_is_used(self) -> None:
        now = at("2026-12-01T13:00:00+00:00")  # 14:00 in Madrid
        simple = planner("simple_planner:SimplePlanner", now)
        simple.plan({"args": {"min_time": "10:00", "max_time": "18:00", "times": 4}}, ATTACK)
        first_slice_end = now + timedelta(hours=1)
        assert all(p.run_at > now for p in simple.proposals)
        assert now < simple.proposals[0].run_at <= first_slice_end + timedelta(seconds=1)
        assert simple.proposals[-1].run_at <= at("2026-12-01T18:00:00+01:00")

    def test_refused_when_nothing_of_the_window_is_left(self) -> None:
        now = at("2026-12-01T17:30:00+00:00")  # 18:30 in Madrid
        simple = planner("simple_planner:SimplePlanner", now)
        with pytest.raises(PlanningError, match="nothing is left"):
            simple.plan({"args": {"min_time": "10:00", "max_time": "18:00", "times": 2}}, ATTACK)

    @pytest.mark.parametrize(("low", "high"), [("18:00", "10:00"), ("10:00", "10:00")])
    def test_refused_when_max_time_is_not_after_min_time(self, low: str, high: str) -> None:
        simple = planner("simple_planner:SimplePlanner", self.early)
        with pytest.raises(PlanningError, match="must be after"):
            simple.plan({"args": {"min_time": low, "max_time": high, "times": 1}}, ATTACK)

    @pytest.mark.parametrize("times", [0, -3, 2.5, True, "3"])
    def test_refused_when_times_is_not_a_whole_number_of_at_least_one(self, times: object) -> None:
        simple = planner("simple_planner:SimplePlanner", self.early)
        with pytest.raises(PlanningError, match="times"):
            simple.plan(
                {"args": {"min_time": "10:00", "max_time": "18:00", "times": times}}, ATTACK
            )

    def test_refused_over_the_per_plan_limit(self) -> None:
        simple = planner("simple_planner:SimplePlanner", self.early, limit=10)
        with pytest.raises(PlanningError, match="over the limit of 10"):
            simple.plan({"args": {"min_time": "10:00", "max_time": "18:00", "times": 11}}, ATTACK)

    def test_window_is_today_in_the_engine_timezone(self) -> None:
        new_york = ZoneInfo("America/New_York")
        now = at("2026-12-01T12:00:00+00:00")  # 07:00 in New York
        simple = planner("simple_planner:SimplePlanner", now, zone=new_york)
        simple.plan({"args": {"min_time": "09:00", "max_time": "10:00", "times": 1}}, ATTACK)
        [proposal] = simple.proposals
        assert at("2026-12-01T14:00:00+00:00") <= proposal.run_at <= at("2026-12-01T15:00:00+00:00")

    def test_whole_number_float_is_accepted(self) -> None:
        simple = planner("simple_planner:SimplePlanner", self.early)
        simple.plan({"args": {"min_time": "10:00", "max_time": "18:00", "times": 3.0}}, ATTACK)
        assert len(simple.proposals) == 3

    def test_today_follows_the_engine_timezone_not_utc(self) -> None:
        # 23:30 UTC on Nov 30 is already Dec 1 in Madrid.
        now = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
        simple = planner("simple_planner:SimplePlanner", now)
        simple.plan({"args": {"min_time": "10:00", "max_time": "11:00", "times": 1}}, ATTACK)
        assert simple.proposals[0].run_at.astimezone(MADRID).date().isoformat() == "2026-12-01"
