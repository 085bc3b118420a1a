"""Recurring schedules: the pure day expansion (chalicelib/domain/recurrence.py) and the
RecurringPlanner, against fixed clocks, across days, timezones and Madrid's two DST
changes of 2026 (March 29: 02:00 -> 03:00; October 25: 03:00 -> 02:00)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from chalicelib.domain.errors import InvalidPayload, PlanningError
from chalicelib.domain.recurrence import (
    Recurrence,
    Window,
    days_to_expand,
    draw_instants,
    next_expansion,
    occurrence_key,
    occurrence_name,
    upcoming,
)
from chalicelib.plugins.contract import Planner
from chalicelib.plugins.registry import load_plugins
from chalicelib.plugins.validation import validate_planner
from chalicelib.settings import builtin_folder
from tests.conftest import FixedClock

MADRID = ZoneInfo("Europe/Madrid")
NEW_YORK = ZoneInfo("America/New_York")
ATTACK = {"ref": "api_request:ApiRequest", "args": {"endpoint": "http://x", "method": "GET"}}
REF = "recurring_planner:RecurringPlanner"
SPRING_FORWARD = date(2026, 3, 29)  # Madrid: 02:00 CET -> 03:00 CEST
FALL_BACK = date(2026, 10, 25)  # Madrid: 03:00 CEST -> 02:00 CET
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]


def args(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "weekdays": WEEKDAYS,
        "min_time": "10:00",
        "max_time": "16:00",
        "times": 3,
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def planner_class() -> Any:
    """The loaded RecurringPlanner class (its ``expand`` is not on the base class)."""
    return load_plugins("planners", Planner, [builtin_folder("planners")]).resolve(REF)


def planner(now: datetime, zone: ZoneInfo = MADRID, limit: int = 500) -> Any:
    instance = planner_class()("daily")
    instance.clock = FixedClock(now)
    instance.timezone = zone
    instance.max_executors = limit
    return instance


def utc(moment: datetime) -> datetime:
    """Aware datetimes of one zone compare by wall time: compare instants in UTC."""
    return moment.astimezone(UTC)


def wall(moment: datetime, zone: ZoneInfo) -> time:
    return moment.astimezone(zone).time()


class TestDayExpansion:
    def test_instants_are_in_the_window_in_the_zone_sorted_and_one_per_slice(self) -> None:
        recurrence = Recurrence.from_args(args(times=4, min_time="10:00", max_time="18:00"))
        day = date(2026, 12, 1)  # a Tuesday
        instants = recurrence.occurrences_on(day, MADRID, seed=7)
        assert len(instants) == 4
        assert instants == sorted(instants, key=utc)
        for index, moment in enumerate(instants):
            assert moment.tzinfo is MADRID
            assert moment.microsecond == 0
            low = datetime(2026, 12, 1, 10 + 2 * index, tzinfo=MADRID)
            assert low <= moment < low + timedelta(hours=2)

    @pytest.mark.parametrize("zone", [MADRID, UTC, NEW_YORK], ids=str)
    def test_the_window_is_wall_time_of_the_engine_timezone(self, zone: Any) -> None:
        recurrence = Recurrence.from_args(args(times=5, min_time="09:00", max_time="10:00"))
        for moment in recurrence.occurrences_on(date(2026, 7, 15), zone, seed=3):
            assert time(9, 0) <= wall(moment, zone) < time(10, 0)
            assert moment.astimezone(zone).date() == date(2026, 7, 15)

    def test_the_same_day_expanded_twice_gives_the_same_instants(self) -> None:
        recurrence = Recurrence.from_args(args(times=6))
        day = date(2026, 12, 3)
        first = recurrence.occurrences_on(day, MADRID, seed=123)
        again = Recurrence.from_args(args(times=6)).occurrences_on(day, MADRID, seed=123)
        assert first == again
        assert [m.isoformat() for m in first] == [m.isoformat() for m in again]

    def test_other_days_and_other_seeds_draw_other_instants(self) -> None:
        recurrence = Recurrence.from_args(args(times=1))
        monday, tuesday = date(2026, 11, 30), date(2026, 12, 1)
        [on_monday] = recurrence.occurrences_on(monday, MADRID, seed=1)
        [on_tuesday] = recurrence.occurrences_on(tuesday, MADRID, seed=1)
        assert wall(on_monday, MADRID) != wall(on_tuesday, MADRID)
        seeds = {wall(recurrence.occurrences_on(monday, MADRID, s)[0], MADRID) for s in range(5)}
        assert len(seeds) == 5

    def test_days_outside_the_weekdays_or_the_dates_have_none(self) -> None:
        recurrence = Recurrence.from_args(
            args(weekdays=["mon", "wed"], start_date="2026-12-02", end_date="2026-12-14")
        )
        days = [date(2026, 11, 30) + timedelta(days=n) for n in range(21)]
        active = [day for day in days if recurrence.occurrences_on(day, MADRID, seed=5)]
        assert active == [
            date(2026, 12, 2),
            date(2026, 12, 7),
            date(2026, 12, 9),
            date(2026, 12, 14),
        ]

    def test_more_times_than_a_minute_has_seconds_stay_distinct(self) -> None:
        recurrence = Recurrence.from_args(args(times=60, min_time="10:00", max_time="10:01"))
        instants = recurrence.occurrences_on(date(2026, 12, 1), MADRID, seed=9)
        assert len(set(instants)) == 60
        assert instants[0] == datetime(2026, 12, 1, 10, 0, tzinfo=MADRID)


class TestDaylightSaving:
    """Europe/Madrid's two changes of 2026, and New York's first one."""

    def test_spring_forward_never_draws_a_time_the_clocks_skip(self) -> None:
        recurrence = Recurrence.from_args(
            args(weekdays=["sun"], min_time="01:00", max_time="04:00", times=30)
        )
        for seed in range(20):
            instants = recurrence.occurrences_on(SPRING_FORWARD, MADRID, seed)
            assert len(set(instants)) == 30
            assert instants == sorted(instants, key=utc)
            for moment in instants:
                local = moment.astimezone(MADRID)
                assert not time(2, 0) <= local.time() < time(3, 0), local
                # A real instant: its wall time comes back unchanged through UTC.
                assert local.astimezone(UTC).astimezone(MADRID) == local
            # Three wall hours, two real ones: the window is two hours long that day.
            assert instants[-1].astimezone(UTC) - instants[0].astimezone(UTC) < timedelta(hours=2)

    def test_a_window_start_in_the_gap_moves_to_the_first_instant_after_it(self) -> None:
        recurrence = Recurrence.from_args(
            args(weekdays=["sun"], min_time="02:30", max_time="03:30", times=40)
        )
        instants = recurrence.occurrences_on(SPRING_FORWARD, MADRID, seed=4)
        first_valid = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST
        assert len(set(instants)) == 40
        assert all(first_valid <= m < first_valid + timedelta(minutes=30) for m in instants)

    def test_a_window_the_gap_swallows_is_packed_after_it_and_never_raises(self) -> None:
        recurrence = Recurrence.from_args(
            args(weekdays=["sun"], min_time="02:00", max_time="03:00", times=3)
        )
        instants = recurrence.occurrences_on(SPRING_FORWARD, MADRID, seed=4)
        assert [m.isoformat() for m in instants] == [
            "2026-03-29T03:00:00+02:00",
            "2026-03-29T03:00:01+02:00",
            "2026-03-29T03:00:02+02:00",
        ]

    def test_fall_back_takes_each_repeated_wall_time_once_at_its_first_occurrence(self) -> None:
        recurrence = Recurrence.from_args(
            args(weekdays=["sun"], min_time="02:00", max_time="03:00", times=50)
        )
        for seed in range(10):
            instants = recurrence.occurrences_on(FALL_BACK, MADRID, seed)
            walls = [wall(moment, MADRID) for moment in instants]
            assert len(set(walls)) == 50  # never two executors for one wall time
            for moment in instants:
                assert moment.fold == 0
                assert moment.utcoffset() == timedelta(hours=2)  # CEST: the first pass
                assert datetime(2026, 10, 25, 0, tzinfo=UTC) <= moment.astimezone(UTC)
                assert moment.astimezone(UTC) < datetime(2026, 10, 25, 1, tzinfo=UTC)

    def test_fall_back_window_around_the_change_is_sorted_and_distinct(self) -> None:
        recurrence = Recurrence.from_args(
            args(weekdays=["sun"], min_time="01:00", max_time="04:00", times=30)
        )
        instants = recurrence.occurrences_on(FALL_BACK, MADRID, seed=11)
        assert instants == sorted(instants, key=utc)
        assert len({m.astimezone(UTC) for m in instants}) == 30
        assert len({wall(m, MADRID) for m in instants}) == 30

    def test_new_york_spring_forward(self) -> None:
        recurrence = Recurrence.from_args(
            args(weekdays=["sun"], min_time="01:30", max_time="03:30", times=20)
        )
        for moment in recurrence.occurrences_on(date(2026, 3, 8), NEW_YORK, seed=2):
            local = moment.astimezone(NEW_YORK)
            assert not time(2, 0) <= local.time() < time(3, 0)
            assert local.astimezone(UTC).astimezone(NEW_YORK) == local

    def test_the_days_around_the_changes_are_ordinary(self) -> None:
        window = Window(time(2, 0), time(3, 0))
        for day in (SPRING_FORWARD - timedelta(days=1), FALL_BACK + timedelta(days=1)):
            instants = draw_instants(window, day, MADRID, 1, 10)
            assert all(time(2, 0) <= wall(m, MADRID) < time(3, 0) for m in instants)


class TestExpansionDays:
    created = date(2026, 12, 1)

    def test_after_creation_tomorrow_is_due(self) -> None:
        assert days_to_expand(None, self.created, self.created) == [date(2026, 12, 2)]

    def test_a_second_run_on_the_same_day_expands_nothing(self) -> None:
        assert days_to_expand(date(2026, 12, 2), date(2026, 12, 1), self.created) == []

    def test_catch_up_after_three_days_down_expands_today_and_tomorrow_once(self) -> None:
        # Last expanded Dec 2 (on Dec 1); the engine was down Dec 2, 3 and 4.
        today = date(2026, 12, 5)
        days = days_to_expand(date(2026, 12, 2), today, self.created)
        assert days == [date(2026, 12, 5), date(2026, 12, 6)]
        assert all(day >= today for day in days)
        # Run again once they are recorded: nothing more.
        assert days_to_expand(days[-1], today, self.created) == []

    def test_end_date_is_respected(self) -> None:
        end = date(2026, 12, 3)
        assert days_to_expand(date(2026, 12, 2), date(2026, 12, 2), self.created, end) == [end]
        assert days_to_expand(end, date(2026, 12, 3), self.created, end) == []
        assert days_to_expand(None, date(2026, 12, 9), self.created, end) == []

    def test_next_expansion_is_midnight_of_the_day_before(self) -> None:
        due = next_expansion(date(2026, 12, 2), date(2026, 12, 1), self.created, MADRID)
        assert due == datetime(2026, 12, 2, 0, 0, tzinfo=MADRID)
        overdue = next_expansion(None, date(2026, 12, 1), self.created, MADRID)
        assert overdue == datetime(2026, 12, 1, 0, 0, tzinfo=MADRID)

    def test_next_expansion_after_a_downtime_and_after_the_end(self) -> None:
        late = next_expansion(date(2026, 12, 2), date(2026, 12, 5), self.created, MADRID)
        assert late == datetime(2026, 12, 4, 0, 0, tzinfo=MADRID)
        end = date(2026, 12, 3)
        assert next_expansion(end, date(2026, 12, 3), self.created, MADRID, end) is None
        assert next_expansion(date(2026, 12, 2), date(2026, 12, 9), self.created, UTC, end) is None

    def test_occurrence_keys_are_stable_and_distinct(self) -> None:
        key = occurrence_key("plan1", date(2026, 12, 1), 0)
        assert key == occurrence_key("plan1", date(2026, 12, 1), 0)
        assert len(key) == 32
        others = {
            occurrence_key("plan1", date(2026, 12, 1), 1),
            occurrence_key("plan1", date(2026, 12, 2), 0),
            occurrence_key("plan2", date(2026, 12, 1), 0),
        }
        assert key not in others
        assert len(others) == 3
        assert occurrence_name("daily", date(2026, 12, 1), 0) == "daily-2026-12-01-1"


class TestArguments:
    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"min_time": "16:00", "max_time": "10:00"}, "max_time '10:00' must be after"),
            ({"times": 0}, "times must be at least 1"),
            ({"times": 61, "max_time": "10:01"}, "times 61 is more than the 60 seconds"),
            ({"start_date": "2026-02-30"}, "start_date '2026-02-30' is not a date"),
            ({"start_date": "2026-12-09", "end_date": "2026-12-01"}, "end_date '2026-12-01'"),
            ({"end_date": "2300-01-01"}, "end_date '2300-01-01' must be from 2000"),
            ({"weekdays": ["mon", "mon"]}, "weekdays names a day twice"),
            ({"weekdays": []}, "weekdays must be a non-empty list"),
        ],
    )
    def test_refusals_name_the_field(self, changes: dict[str, Any], message: str) -> None:
        with pytest.raises(PlanningError, match=message) as caught:
            Recurrence.from_args(args(**changes))
        assert caught.value.message.startswith("cannot plan: planner.args.")

    @pytest.mark.parametrize(
        ("changes", "field"),
        [
            ({"weekdays": ["monday"]}, "planner.args.weekdays.0"),
            ({"weekdays": []}, "planner.args.weekdays"),
            ({"min_time": "9:00"}, "planner.args.min_time"),
            ({"times": "3"}, "planner.args.times"),
            ({"start_date": "01/12/2026"}, "planner.args.start_date"),
            ({"seed": -1}, "planner.args.seed"),
            ({"weekday": ["mon"]}, "planner.args"),
        ],
    )
    def test_the_schema_names_the_field(self, changes: dict[str, Any], field: str) -> None:
        with pytest.raises(InvalidPayload) as caught:
            validate_planner({"ref": REF, "args": args(**changes)}, planner_class().schema)
        assert caught.value.message.startswith(f"invalid payload {field}:")

    def test_the_example_is_valid(self) -> None:
        cls = planner_class()
        assert cls.example is not None
        validate_planner(cls.example, cls.schema)
        Recurrence.from_args(cls.example["args"])


class TestRecurringPlanner:
    # 12:00 in Madrid on Tuesday Dec 1, 2026 (UTC+1)
    noon = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)

    def test_creation_plans_what_is_left_of_today_after_the_lead_time(self) -> None:
        recurring = planner(self.noon)
        recurring.plan({"ref": REF, "args": args(times=6, seed=77)}, ATTACK)
        today = planner_class().expand(recurring.recurrence_args, date(2026, 12, 1), MADRID)
        cutoff = self.noon + recurring.lead_time
        expected = [(i, m) for i, m in enumerate(today) if m > cutoff]
        assert 0 < len(expected) < 6
        assert [p.run_at for p in recurring.proposals] == [m for _, m in expected]
        assert [p.name for p in recurring.proposals] == [
            f"daily-2026-12-01-{i + 1}" for i, _ in expected
        ]
        assert all(p.attack is ATTACK for p in recurring.proposals)

    def test_a_given_seed_is_kept_and_a_missing_one_is_drawn_and_recorded(self) -> None:
        given = planner(self.noon)
        given.plan({"ref": REF, "args": args(seed=5)}, ATTACK)
        assert given.recurrence_args == args(seed=5)
        drawn = planner(self.noon)
        config = {"ref": REF, "args": args()}
        drawn.plan(config, ATTACK)
        assert config == {"ref": REF, "args": args()}  # the request is left as it was
        seed = drawn.recurrence_args["seed"]
        assert isinstance(seed, int)
        assert 0 <= seed < 2**53
        assert drawn.recurrence_args == {**args(), "seed": seed}

    def test_creation_after_todays_window_proposes_nothing(self) -> None:
        evening = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)  # 18:00 in Madrid
        recurring = planner(evening)
        recurring.plan({"ref": REF, "args": args()}, ATTACK)
        assert recurring.proposals == []
        assert recurring.recurrence_args is not None

    def test_creation_on_a_day_not_in_weekdays_proposes_nothing(self) -> None:
        recurring = planner(self.noon)
        recurring.plan({"ref": REF, "args": args(weekdays=["sat", "sun"])}, ATTACK)
        assert recurring.proposals == []

    def test_an_engine_lead_time_is_honoured(self) -> None:
        recurring = planner(datetime(2026, 12, 1, 8, 59, tzinfo=UTC))  # 09:59 in Madrid
        recurring.lead_time = timedelta(hours=3)
        recurring.plan({"ref": REF, "args": args(times=6, seed=1)}, ATTACK)
        assert all(
            p.run_at > datetime(2026, 12, 1, 12, 59, tzinfo=MADRID) for p in recurring.proposals
        )

    def test_today_is_the_engine_timezones_today(self) -> None:
        # 03:00 UTC on Dec 2 is 22:00 on Dec 1 in New York.
        recurring = planner(datetime(2026, 12, 2, 3, 0, tzinfo=UTC), zone=NEW_YORK)
        recurring.plan(
            {"ref": REF, "args": args(min_time="22:30", max_time="23:30", times=2)}, ATTACK
        )
        assert [p.name for p in recurring.proposals] == ["daily-2026-12-01-1", "daily-2026-12-01-2"]
        for proposal in recurring.proposals:
            assert time(22, 30) <= wall(proposal.run_at, NEW_YORK) < time(23, 30)

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"end_date": "2026-11-30"}, "end_date '2026-11-30' is in the past"),
            ({"weekdays": ["mon"], "end_date": "2026-12-06"}, "weekdays: no day from 2026-12-01"),
            ({"times": 11}, "times 11 is over the limit of 10 per plan"),
            ({"seed": 2**53}, "seed must be a whole number"),
        ],
    )
    def test_refused_at_creation(self, changes: dict[str, Any], message: str) -> None:
        recurring = planner(self.noon, limit=10)
        with pytest.raises(PlanningError, match=message):
            recurring.plan({"ref": REF, "args": args(**changes)}, ATTACK)
        assert recurring.proposals == []

    def test_three_simulated_days_each_expanded_once_even_when_run_twice(self) -> None:
        """The engine's daily job, simulated: creation, then every day at 00:30 the job
        runs twice; the executors of each day are those of ``expand``, named once."""
        cls: Any = planner_class()
        clock = FixedClock(self.noon)
        recurring = planner(self.noon)
        recurring.clock = clock
        recurring.plan({"ref": REF, "args": args(times=3)}, ATTACK)
        stored = recurring.recurrence_args
        created = date(2026, 12, 1)
        executors = {
            occurrence_key("p", created, int(p.name.rsplit("-", 1)[1]) - 1): p.run_at
            for p in recurring.proposals
        }
        last: date | None = None
        for _ in range(3):
            clock.current = datetime.combine(
                clock.current.astimezone(MADRID).date() + timedelta(days=1), time(0, 30), MADRID
            )
            for _ in range(2):  # the job runs twice: the second run adds nothing
                today = clock.now().astimezone(MADRID).date()
                for day in days_to_expand(last, today, created):
                    instants = cls.expand(stored, day, MADRID)
                    for index, moment in upcoming(instants, clock.now() + timedelta(minutes=3)):
                        executors.setdefault(occurrence_key("p", day, index), moment)
                    last = day
        by_day: dict[date, list[datetime]] = {}
        for moment in executors.values():
            by_day.setdefault(moment.astimezone(MADRID).date(), []).append(moment)
        # Dec 1 (creation: what was left of it), Dec 2 to 4; Dec 5 (tomorrow on Dec 4)
        # was expanded too, but it is a Saturday, not one of the weekdays.
        assert last == date(2026, 12, 5)
        assert cls.expand(stored, date(2026, 12, 5), MADRID) == []
        assert sorted(by_day) == [date(2026, 12, d) for d in range(1, 5)]
        for day in (date(2026, 12, 2), date(2026, 12, 3), date(2026, 12, 4)):
            assert sorted(by_day[day], key=utc) == cls.expand(stored, day, MADRID)
        assert len(executors) == len(by_day[created]) + 3 * 3


class TestAcrossTheChanges:
    def test_upcoming_compares_instants_not_wall_times_in_the_repeated_hour(self) -> None:
        first_pass = datetime(2026, 10, 25, 2, 50, tzinfo=MADRID)  # 00:50 UTC, CEST
        now = datetime(2026, 10, 25, 2, 10, fold=1, tzinfo=MADRID)  # 01:10 UTC, CET
        later = datetime(2026, 10, 25, 2, 20, fold=1, tzinfo=MADRID)  # 01:20 UTC
        assert upcoming([first_pass, later], now) == [(1, later)]

    @pytest.mark.parametrize("day", [SPRING_FORWARD, FALL_BACK])
    def test_creation_on_the_night_of_a_change(self, day: date) -> None:
        # Created at 00:30 local time on the night of the change; window 01:00-04:00.
        now = datetime.combine(day, time(0, 30), MADRID)
        recurring = planner(now)
        recurring.plan(
            {
                "ref": REF,
                "args": args(weekdays=["sun"], min_time="01:00", max_time="04:00", times=12),
            },
            ATTACK,
        )
        runs = [proposal.run_at for proposal in recurring.proposals]
        assert len(runs) == 12
        assert runs == sorted(runs, key=utc)
        assert len({wall(run, MADRID) for run in runs}) == 12
        for run in runs:
            local = run.astimezone(MADRID)
            assert local.astimezone(UTC).astimezone(MADRID) == local
            assert time(1, 0) <= local.time() < time(4, 0)
            if day == SPRING_FORWARD:
                assert not time(2, 0) <= local.time() < time(3, 0)
            else:
                assert local.fold == 0

    def test_a_week_of_expansions_over_the_spring_change_in_new_york(self) -> None:
        """Daily job at 23:00 local in New York, every day of the week of March 8, 2026
        (02:00 -> 03:00): each day once, all in the window, none in the gap."""
        cls: Any = planner_class()
        stored = {**args(weekdays=[*WEEKDAYS, "sat", "sun"], times=2), "seed": 8}
        stored.update(min_time="01:30", max_time="03:30")
        created, last = date(2026, 3, 5), None
        seen: dict[str, datetime] = {}
        for offset in range(7):
            today = created + timedelta(days=offset)
            now = datetime.combine(today, time(23, 0), NEW_YORK)
            for day in days_to_expand(last, today, created):
                for index, moment in upcoming(cls.expand(stored, day, NEW_YORK), now):
                    assert occurrence_key("ny", day, index) not in seen
                    seen[occurrence_key("ny", day, index)] = moment
                last = day
        days = sorted({m.astimezone(NEW_YORK).date() for m in seen.values()})
        assert days == [date(2026, 3, d) for d in range(6, 13)]
        for moment in seen.values():
            local = moment.astimezone(NEW_YORK)
            assert time(1, 30) <= local.time() < time(3, 30)
            if local.date() == date(2026, 3, 8):
                assert not time(2, 0) <= local.time() < time(3, 0)
        on_the_change = [m for m in seen.values() if m.astimezone(NEW_YORK).day == 8]
        assert len(on_the_change) == 2
