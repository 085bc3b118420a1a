"""FrequencyPlanner: Netflix-style attack days drawn from a seed, checked over simulated
years with a fixed clock (mean gap within 10 % of the configured one, minimum gap never
violated) and day by day against the pure ``attack_days``."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from statistics import fmean
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from chalicelib.domain.errors import InvalidPayload, PlanningError
from chalicelib.domain.recurrence import Frequency, attack_days, days_to_expand, upcoming
from chalicelib.plugins.contract import Planner
from chalicelib.plugins.registry import load_plugins
from chalicelib.plugins.validation import validate_planner
from chalicelib.settings import builtin_folder
from tests.conftest import FixedClock

MADRID = ZoneInfo("Europe/Madrid")
ATTACK = {"ref": "api_request:ApiRequest", "args": {"endpoint": "http://x", "method": "GET"}}
REF = "frequency_planner:FrequencyPlanner"
# Twenty fixed seeds: about 1,000 gaps per configuration over a year, enough for the
# observed mean to sit well inside 10 % (the standard error is about 2 % for mean 5), and
# the result is fixed by the seeds, so the test cannot flicker.
SEEDS = range(20)
YEAR_START, YEAR_END = date(2027, 1, 1), date(2027, 12, 31)


def args(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"mean_days": 5, "min_gap_days": 2, "min_time": "10:00"}
    base["max_time"] = "16:00"
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def planner_class() -> Any:
    return load_plugins("planners", Planner, [builtin_folder("planners")]).resolve(REF)


def planner(now: datetime) -> Any:
    instance = planner_class()("netflix")
    instance.clock = FixedClock(now)
    instance.timezone = MADRID
    instance.max_executors = 500
    return instance


def working_index(weekdays: frozenset[int]) -> dict[date, int]:
    """Each working day of the simulated year, numbered from 0."""
    numbered: dict[date, int] = {}
    day, index = YEAR_START, 0
    while day <= YEAR_END:
        if day.weekday() in weekdays:
            numbered[day] = index
            index += 1
        day += timedelta(days=1)
    return numbered


class TestDistribution:
    @pytest.mark.parametrize(
        ("mean", "min_gap"),
        [(5, 2), (2, 0), (3.5, 1), (10, 4), (4, 4)],
    )
    def test_a_simulated_year_keeps_the_mean_and_never_breaks_the_minimum_gap(
        self, mean: float, min_gap: int
    ) -> None:
        weekdays = frozenset(range(5))
        numbered = working_index(weekdays)
        gaps: list[int] = []
        for seed in SEEDS:
            days = attack_days(YEAR_START, YEAR_END, seed, mean_days=mean, min_gap_days=min_gap)
            assert all(day.weekday() < 5 for day in days)
            indexes = [numbered[day] for day in days]
            seed_gaps = [b - a for a, b in pairwise(indexes)]
            assert min(seed_gaps) >= max(1, min_gap), (seed, seed_gaps)
            gaps.extend(seed_gaps)
        observed = fmean(gaps)
        assert len(gaps) >= 20 * (260 // mean - 3)
        assert abs(observed - mean) <= 0.1 * mean, observed
        if mean > max(1, min_gap):  # random gaps: not all the same
            assert len(set(gaps)) > 3

    def test_a_mean_equal_to_the_minimum_gap_is_a_fixed_rhythm(self) -> None:
        days = attack_days(YEAR_START, date(2027, 2, 28), 3, mean_days=3, min_gap_days=3)
        numbered = working_index(frozenset(range(5)))
        indexes = [numbered[day] for day in days]
        assert indexes == list(range(0, indexes[-1] + 1, 3))

    def test_the_same_seed_gives_the_same_days_and_a_longer_span_only_adds_days(self) -> None:
        year = attack_days(YEAR_START, YEAR_END, 42, mean_days=5, min_gap_days=2)
        assert year == attack_days(YEAR_START, YEAR_END, 42, mean_days=5, min_gap_days=2)
        half = attack_days(YEAR_START, date(2027, 6, 30), 42, mean_days=5, min_gap_days=2)
        assert year[: len(half)] == half
        assert year[len(half)] > date(2027, 6, 30)
        assert year != attack_days(YEAR_START, YEAR_END, 43, mean_days=5, min_gap_days=2)

    def test_weekdays_and_end_date_bound_the_days(self) -> None:
        days = attack_days(
            YEAR_START,
            YEAR_END,
            1,
            mean_days=2,
            min_gap_days=1,
            weekdays=frozenset({5, 6}),
            end_date=date(2027, 3, 31),
        )
        assert days
        assert all(day.weekday() in {5, 6} and day <= date(2027, 3, 31) for day in days)


class TestPlanner:
    # Monday Jan 4, 2027, 08:00 in Madrid
    monday = datetime(2027, 1, 4, 7, 0, tzinfo=UTC)

    def test_creation_records_the_seed_and_the_start_date(self) -> None:
        frequency = planner(self.monday)
        config = {"ref": REF, "args": args()}
        frequency.plan(config, ATTACK)
        stored = frequency.recurrence_args
        assert stored == {**args(), "seed": stored["seed"], "start_date": "2027-01-04"}
        assert config == {"ref": REF, "args": args()}

    def test_a_year_expanded_day_by_day_is_the_pure_schedule(self) -> None:
        """Creation on a fixed clock, then the daily job every day of the year: the days
        attacked are exactly ``attack_days``, each once, at one instant of the window."""
        cls = planner_class()
        clock = FixedClock(self.monday)
        frequency = planner(self.monday)
        frequency.clock = clock
        frequency.plan({"ref": REF, "args": args(seed=2027)}, ATTACK)
        stored = frequency.recurrence_args
        attacked = {p.run_at.astimezone(MADRID).date(): p.run_at for p in frequency.proposals}
        created = last = date(2027, 1, 4)
        while clock.current < datetime(2027, 12, 31, 12, tzinfo=UTC):
            clock.advance(days=1)
            today = clock.now().astimezone(MADRID).date()
            for day in days_to_expand(last, today, created, date(2027, 12, 31)):
                for _, moment in upcoming(cls.expand(stored, day, MADRID), clock.now()):
                    assert day not in attacked
                    attacked[day] = moment
                last = day
        expected = attack_days(created, YEAR_END, 2027, mean_days=5, min_gap_days=2)
        assert sorted(attacked) == expected
        for day, moment in attacked.items():
            assert moment.astimezone(MADRID).date() == day
            assert time(10) <= moment.astimezone(MADRID).time() < time(16)

    def test_today_is_proposed_only_when_it_is_an_attack_day_with_time_left(self) -> None:
        seeds: dict[str, int | None] = {"attack": None, "quiet": None}
        for seed in range(50):
            today = attack_days(date(2027, 1, 4), date(2027, 1, 4), seed, mean_days=5)
            seeds["attack" if today else "quiet"] = seed
        assert None not in seeds.values()
        attacking = planner(self.monday)
        attacking.plan({"ref": REF, "args": args(seed=seeds["attack"])}, ATTACK)
        [proposal] = attacking.proposals
        assert proposal.name == "netflix-2027-01-04-1"
        quiet = planner(self.monday)
        quiet.plan({"ref": REF, "args": args(seed=seeds["quiet"])}, ATTACK)
        assert quiet.proposals == []
        late = planner(datetime(2027, 1, 4, 16, 0, tzinfo=UTC))  # 17:00: window over
        late.plan({"ref": REF, "args": args(seed=seeds["attack"])}, ATTACK)
        assert late.proposals == []

    def test_the_weekend_is_never_attacked_by_default(self) -> None:
        cls = planner_class()
        stored = {**args(mean_days=1, min_gap_days=0), "seed": 1, "start_date": "2027-01-01"}
        days = [date(2027, 1, 1) + timedelta(days=n) for n in range(28)]
        attacked = [day for day in days if cls.expand(stored, day, MADRID)]
        assert attacked == [day for day in days if day.weekday() < 5]  # mean 1: every day

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"min_gap_days": 6}, "min_gap_days 6 must not be more than mean_days 5"),
            ({"mean_days": 0.5}, "mean_days must be a number of at least 1"),
            ({"mean_days": float("inf")}, "mean_days must be at most 10000, not inf"),
            ({"mean_days": float("nan")}, "mean_days must be a number of at least 1, not nan"),
            ({"max_time": "09:00"}, "max_time '09:00' must be after"),
            ({"end_date": "2027-01-01"}, "end_date '2027-01-01' is in the past"),
            ({"start_date": "2027-13-01"}, "start_date '2027-13-01' is not a date"),
        ],
    )
    def test_refusals_name_the_field(self, changes: dict[str, Any], message: str) -> None:
        frequency = planner(self.monday)
        with pytest.raises(PlanningError, match=message):
            frequency.plan({"ref": REF, "args": args(**changes)}, ATTACK)
        assert frequency.proposals == []

    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"mean_days": 0}, "planner.args.mean_days"),
            ({"min_gap_days": 1.5}, "planner.args.min_gap_days"),
            ({"weekdays": ["fri", "fri"]}, "planner.args.weekdays"),
            ({"times": 2}, "planner.args"),
        ],
    )
    def test_the_schema_names_the_field(self, changes: dict[str, Any], field: str) -> None:
        with pytest.raises(InvalidPayload) as caught:
            validate_planner({"ref": REF, "args": args(**changes)}, planner_class().schema)
        assert caught.value.message.startswith(f"invalid payload {field}:")

    def test_the_example_is_valid(self) -> None:
        cls = planner_class()
        validate_planner(cls.example, cls.schema)
        assert Frequency.from_args(cls.example["args"]).probability == pytest.approx(1 / 4)
