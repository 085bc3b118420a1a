"""The safety guards through the runner: kill switch, halt, calendar, stop conditions,
minimum interval, and the preview; each refusal asserted by the reason it records."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.adapters.probes import AwsProbes
from chalicelib.adapters.sqlite_store import SqliteStore
from chalicelib.bootstrap import Engine, build_engine
from chalicelib.domain.errors import ProbeFailed, StorageError
from chalicelib.domain.model import Executor, ExecutorStatus, Plan
from chalicelib.domain.ports import Probes, Store
from chalicelib.domain.safety import GUARD_ORDER, Halt, MinInterval
from chalicelib.plugins.secret_policy import OutboundPolicy
from chalicelib.settings import Settings
from tests.conftest import FixedClock, RecordingScheduler, free_port
from tests.races import first_steps_together

SCRIPTED = "scripted:Scripted"
NOT_RUN = "the attack did not run"
FAILS_CLOSED = "so a guard that cannot decide refuses; the attack did not run"
REGION = "eu-west-1"
# 13:00 in Madrid (UTC+1 in December), a Tuesday.
T = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


# -- an engine on either store -----------------------------------------------------------


@pytest.fixture(params=["sqlite", "dynamo"])
def store(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Iterator[Store]:
    """Local mode's SQLite store, or the deployed DynamoDB store on moto."""
    request.getfixturevalue("aws")
    if request.param == "sqlite":
        sqlite = SqliteStore(tmp_path / "guards.sqlite3")
        yield sqlite
        sqlite.close()
        return
    from chalicelib.adapters.dynamo import DynamoStore

    dynamo = DynamoStore(settings)
    dynamo.create_tables()
    yield dynamo
    dynamo.close()


EngineOn = Callable[..., Engine]


@pytest.fixture
def engine_on(settings: Settings, clock: FixedClock, scheduler: RecordingScheduler) -> EngineOn:
    """An engine on ``store`` with ``settings`` changed by ``overrides``."""

    def build(store: Store, probes: Probes | None = None, **overrides: Any) -> Engine:
        changed = dataclasses.replace(settings, **overrides)
        return build_engine(changed, store, lambda runner: scheduler, clock, probes=probes)

    return build


@pytest.fixture
def guarded(engine_on: EngineOn, store: Store) -> Engine:
    """The default engine on each store."""
    return engine_on(store)


@pytest.fixture
def on_sqlite(aws: None, engine_on: EngineOn, sqlite_store: SqliteStore) -> EngineOn:
    """Engines on SQLite only, for the guards the store takes no part in."""
    return lambda **overrides: engine_on(sqlite_store, **overrides)


def runs_of(engine: Engine) -> list[dict[str, Any]]:
    """What the scripted attack ran (emptied first)."""
    module = sys.modules[engine.attacks.resolve(SCRIPTED).__module__]
    module.RUNS.clear()
    module.GATE.set()
    runs: list[dict[str, Any]] = module.RUNS
    return runs


def add_plan(
    engine: Engine,
    *times: datetime,
    safety: dict[str, Any] | None = None,
    args: dict[str, Any] | None = None,
) -> tuple[Plan, list[Executor]]:
    """A committed plan of the scripted attack (``args``) with one executor at each time."""
    plan = Plan(
        id=uuid.uuid4().hex,
        name="guarded",
        created=T - timedelta(days=1),
        planner={"ref": "exact_planner:ExactPlanner", "args": {}},
        attack={"ref": SCRIPTED, "args": args or {"mode": "ok"}},
        safety=safety,
    )
    executors = [
        Executor(
            id=uuid.uuid4().hex,
            plan_id=plan.id,
            name=f"guarded {number}",
            next_run_time=at,
            attack=plan.attack,
        )
        for number, at in enumerate(times or (T,))
    ]
    engine.store.add_plan(plan, executors)
    engine.store.commit_plan(plan.id)
    return plan, executors


def run_at(engine: Engine, clock: FixedClock, executor: Executor) -> Executor:
    """Deliver the executor on its second; return it as stored."""
    clock.current = executor.next_run_time
    engine.runner.run(executor.id)
    stored = engine.store.get_executor(executor.id)
    assert stored is not None
    return stored


def assert_skipped(executor: Executor, reason: str) -> None:
    assert (executor.status, executor.reason) == (ExecutorStatus.SKIPPED, reason)


# -- kill switch ----------------------------------------------------------------------


def test_the_kill_switch_refuses_before_every_other_guard(
    on_sqlite: EngineOn, clock: FixedClock
) -> None:
    engine = on_sqlite(kill_switch=True, attack_weekdays=frozenset({0}))
    runs = runs_of(engine)
    engine.store.set_halt(Halt(True, "also halted", T, "local"))
    _, (executor,) = add_plan(engine)
    done = run_at(engine, clock, executor)
    assert_skipped(done, f"kill switch: CME_KILL_SWITCH is on for this stage; {NOT_RUN}")
    assert done.started_at is None, "refused before the claim"
    assert runs == []


# -- halt -------------------------------------------------------------------------------


def test_while_halted_a_due_executor_is_skipped_quoting_the_halt(
    guarded: Engine, clock: FixedClock
) -> None:
    runs = runs_of(guarded)
    guarded.store.set_halt(
        Halt(True, "game day paused: checkout is degraded", T - timedelta(hours=2), "local")
    )
    _, (executor,) = add_plan(guarded)
    done = run_at(guarded, clock, executor)
    assert_skipped(
        done,
        'halted: "game day paused: checkout is degraded", set by local since '
        f"2026-12-01T11:00:00+01:00; {NOT_RUN}",
    )
    assert done.started_at is None
    assert runs == []
    plan = guarded.store.get_plan(executor.plan_id)
    assert plan is not None and plan.counts.as_dict()["skipped"] == 1


def test_not_halted_the_attack_runs(guarded: Engine, clock: FixedClock) -> None:
    runs = runs_of(guarded)
    guarded.store.set_halt(Halt(False, None, T - timedelta(hours=1), "arn:aws:iam::1:user/ops"))
    _, (executor,) = add_plan(guarded)
    assert run_at(guarded, clock, executor).status is ExecutorStatus.SUCCEEDED
    assert [run["executor_id"] for run in runs] == [executor.id]


def test_lifting_the_halt_does_not_replay_what_it_skipped(
    guarded: Engine, clock: FixedClock
) -> None:
    runs = runs_of(guarded)
    _, (during, after) = add_plan(guarded, T, T + timedelta(minutes=10))
    guarded.store.set_halt(Halt(True, "freeze", T - timedelta(minutes=1), "local"))
    assert run_at(guarded, clock, during).reason == (
        f'halted: "freeze", set by local since 2026-12-01T12:59:00+01:00; {NOT_RUN}'
    )
    guarded.store.set_halt(Halt(False, None, T + timedelta(minutes=5), "local"))
    # A redelivery of the skipped executor (a retry, a restart re-arming) runs nothing.
    guarded.runner.run(during.id)
    guarded.runner.reap_lost()
    assert run_at(guarded, clock, after).status is ExecutorStatus.SUCCEEDED
    skipped = guarded.store.get_executor(during.id)
    assert skipped is not None and skipped.status is ExecutorStatus.SKIPPED
    assert [run["executor_id"] for run in runs] == [after.id]


def test_a_halt_that_cannot_be_read_refuses(
    on_sqlite: EngineOn, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = on_sqlite()
    runs = runs_of(engine)

    def unreadable() -> Halt:
        raise StorageError("could not read the halt: throttled")

    monkeypatch.setattr(engine.store, "get_halt", unreadable)
    _, (executor,) = add_plan(engine)
    assert_skipped(
        run_at(engine, clock, executor),
        "halted: the halt could not be evaluated (StorageError: storage failed: could not "
        f"read the halt: throttled); {NOT_RUN} (a guard that cannot decide refuses)",
    )
    assert runs == []


# -- calendar ---------------------------------------------------------------------------

CALENDAR = {
    "timezone_name": "Europe/Madrid",
    "attack_weekdays": frozenset({0, 1, 2, 3, 4}),
    "attack_hours": (9, 18),
    "blackout_dates": frozenset({date(2026, 12, 8)}),
}


@pytest.mark.parametrize(
    ("utc", "reason"),
    [
        # Tuesday 09:00:00 in Madrid is 08:00 UTC: the first allowed second.
        ("2026-12-01T08:00:00", None),
        ("2026-12-01T07:59:59", "calendar: 08:59 is outside the allowed hours 09:00-18:00"),
        ("2026-12-01T16:59:59", None),
        # 18:00:00 in Madrid: the end hour is not allowed.
        ("2026-12-01T17:00:00", "calendar: 18:00 is outside the allowed hours 09:00-18:00"),
        (
            "2026-12-05T11:00:00",
            "calendar: sat 2026-12-05 is not an allowed weekday (allowed: mon, tue, wed, thu, fri)",
        ),
        # 23:30 UTC on Sunday is already Monday 00:30 in Madrid: outside the hours.
        ("2026-12-06T23:30:00", "calendar: 00:30 is outside the allowed hours 09:00-18:00"),
        ("2026-12-08T11:00:00", "calendar: 2026-12-08 is a blackout date"),
        # The blackout is Madrid's day: 23:30 UTC on the 7th is 00:30 on the 8th there.
        ("2026-12-07T23:30:00", "calendar: 2026-12-08 is a blackout date"),
    ],
)
def test_the_calendar_in_the_engine_timezone(
    on_sqlite: EngineOn, clock: FixedClock, utc: str, reason: str | None
) -> None:
    engine = on_sqlite(**CALENDAR)
    runs = runs_of(engine)
    _, (executor,) = add_plan(engine, datetime.fromisoformat(utc).replace(tzinfo=UTC))
    done = run_at(engine, clock, executor)
    if reason is None:
        assert (done.status, done.reason) == (ExecutorStatus.SUCCEEDED, None)
        assert len(runs) == 1
    else:
        assert_skipped(done, f"{reason}; {NOT_RUN}")
        assert runs == []


# -- stop conditions: CloudWatch alarms (moto) -------------------------------------------


def alarm(name: str, state: str | None) -> None:
    """A CloudWatch alarm in moto, in ``state`` (None: it does not exist)."""
    if state is None:
        return
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        MetricName="5XXError",
        Namespace="AWS/ApiGateway",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1.0,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )
    # https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_SetAlarmState.html
    cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="test")


@pytest.mark.parametrize(
    ("states", "reason"),
    [
        ({"cme-checkout-5xx": "OK", "cme-latency": "INSUFFICIENT_DATA"}, None),
        (
            {"cme-checkout-5xx": "ALARM", "cme-latency": "OK"},
            "stop condition: alarm 'cme-checkout-5xx' is in ALARM",
        ),
        (
            {"cme-checkout-5xx": "ALARM", "cme-latency": "ALARM"},
            "stop condition: alarms 'cme-checkout-5xx', 'cme-latency' are in ALARM",
        ),
        (
            {"cme-checkout-5xx": "OK", "cme-latency": None},
            "stop condition: the alarms could not be evaluated (no CloudWatch alarm named "
            "'cme-latency' in eu-west-1), so a guard that cannot decide refuses",
        ),
    ],
)
def test_alarm_stop_conditions_on_moto_cloudwatch(
    on_sqlite: EngineOn, clock: FixedClock, states: dict[str, str | None], reason: str | None
) -> None:
    engine = on_sqlite()
    runs = runs_of(engine)
    for name, state in states.items():
        alarm(name, state)
    safety = {"stop_conditions": {"alarms": list(states)}}
    _, (executor,) = add_plan(engine, safety=safety)
    done = run_at(engine, clock, executor)
    if reason is None:
        assert done.status is ExecutorStatus.SUCCEEDED
        assert len(runs) == 1
    else:
        assert_skipped(done, f"{reason}; {NOT_RUN}")
        assert runs == []


def test_the_alarm_probe_reads_only_the_named_alarms_and_keeps_their_order(aws: None) -> None:
    alarm("b-alarm", "ALARM")
    alarm("a-alarm", "ALARM")
    alarm("other", "ALARM")
    probes = AwsProbes(REGION, OutboundPolicy())
    assert probes.alarms_in_alarm(["b-alarm", "a-alarm"]) == ["b-alarm", "a-alarm"]
    assert probes.alarms_in_alarm([]) == []
    with pytest.raises(ProbeFailed, match="no CloudWatch alarm named 'missing'"):
        probes.alarms_in_alarm(["a-alarm", "missing"])


def test_an_unreachable_cloudwatch_refuses(aws: None) -> None:
    probes = AwsProbes(REGION, OutboundPolicy(), endpoint_url=f"http://127.0.0.1:{free_port()}")
    # The client retries; its failure is the probe's answer, never an exception of its own.
    with pytest.raises(ProbeFailed, match="CloudWatch alarms could not be read"):
        probes.alarms_in_alarm(["a-alarm"])


# -- stop conditions: HTTP health checks (a loopback server) -----------------------------


class Health:
    """A loopback endpoint: /ok 200, /down 503, /moved 302 to /ok, /slow waits for the test."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.release = threading.Event()
        self.together = threading.Barrier(2, timeout=10)
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                health.paths.append(self.path)
                if self.path == "/slow":
                    health.release.wait(timeout=30)
                if self.path.startswith("/together"):
                    # Answers only once both checks have arrived: sent one after the
                    # other, the first one would time out waiting here.
                    with contextlib.suppress(threading.BrokenBarrierError):
                        health.together.wait()
                status = {"/ok": 200, "/down": 503, "/moved": 302, "/slow": 200}.get(
                    self.path.split("?")[0], 200 if self.path.startswith("/together") else 404
                )
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", "/ok")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.release.set()
        self.together.abort()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def health() -> Iterator[Health]:
    server = Health()
    yield server
    server.close()


def check_url(health: Health, case: str) -> str:
    if case == "closed port":
        return f"http://127.0.0.1:{free_port()}/ok"
    if case == "link-local":
        return "http://169.254.169.254/latest/meta-data/"
    return health.url(case)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("/ok", None),
        ("/down", "stop condition: health check 1 ({target}) answered 503, not 2xx"),
        (
            "/moved",
            "stop condition: health check 1 ({target}) answered 302, not 2xx "
            "(redirects are not followed)",
        ),
        (
            "/slow",
            "stop condition: health check 1 ({target}) could not be evaluated (no answer "
            "within 0.3 s), " + "so a guard that cannot decide refuses",
        ),
        (
            "closed port",
            "stop condition: health check 1 ({target}) could not be evaluated (no connection "
            "(ConnectionError)), so a guard that cannot decide refuses",
        ),
        (
            "link-local",
            "stop condition: health check 1 ({target}) could not be evaluated (not sent to "
            "{target}: 169.254.169.254 is an instance-metadata address "
            "(CME_ALLOW_LINK_LOCAL_TARGETS is off)), so a guard that cannot decide refuses",
        ),
    ],
)
def test_health_check_stop_conditions(
    on_sqlite: EngineOn, clock: FixedClock, health: Health, case: str, reason: str | None
) -> None:
    engine = on_sqlite()
    runs = runs_of(engine)
    url = check_url(health, case)
    safety = {"stop_conditions": {"health_checks": [{"url": url, "timeout": 0.3}]}}
    _, (executor,) = add_plan(engine, safety=safety)
    done = run_at(engine, clock, executor)
    if reason is None:
        assert done.status is ExecutorStatus.SUCCEEDED
        assert len(runs) == 1
    else:
        target = url.split("/")[2]
        target = f"http://{target}" if ":" in target else f"http://{target}:80"
        assert_skipped(done, f"{reason.format(target=target)}; {NOT_RUN}")
        assert runs == []
    if case == "/moved":
        assert health.paths == ["/moved"], "the redirect was not followed"
    if case == "link-local":
        assert health.paths == []


def test_health_checks_are_sent_together_and_the_first_refusal_in_order_is_recorded(
    on_sqlite: EngineOn, clock: FixedClock, health: Health
) -> None:
    engine = on_sqlite()
    runs = runs_of(engine)
    both = [{"url": health.url("/together/1"), "timeout": 3}, {"url": health.url("/together/2")}]
    _, (passes,) = add_plan(engine, safety={"stop_conditions": {"health_checks": both}})
    assert run_at(engine, clock, passes).status is ExecutorStatus.SUCCEEDED
    assert sorted(health.paths) == ["/together/1", "/together/2"]
    assert len(runs) == 1

    checks = [
        {"url": health.url("/ok")},
        {"url": health.url("/down")},
        {"url": health.url("/moved")},
    ]
    _, (refused,) = add_plan(
        engine, T + timedelta(minutes=1), safety={"stop_conditions": {"health_checks": checks}}
    )
    assert_skipped(
        run_at(engine, clock, refused),
        f"stop condition: health check 2 (http://127.0.0.1:{health.port}) answered 503, "
        f"not 2xx; {NOT_RUN}",
    )
    assert len(runs) == 1


def test_a_name_that_resolves_to_a_link_local_address_is_not_sent(
    on_sqlite: EngineOn, clock: FixedClock, health: Health
) -> None:
    """The outbound guard checks the addresses a name resolves to, when it is resolved."""
    probes = AwsProbes(
        REGION,
        OutboundPolicy(),
        resolve=lambda host, port: ["169.254.10.1"] if host == "health.test" else ["127.0.0.1"],
    )
    engine = on_sqlite(probes=probes)
    runs = runs_of(engine)
    safety = {
        "stop_conditions": {
            "health_checks": [{"url": health.url("/ok")}, {"url": "http://health.test/ok"}]
        }
    }
    _, (executor,) = add_plan(engine, safety=safety)
    assert_skipped(
        run_at(engine, clock, executor),
        "stop condition: health check 2 (http://health.test:80) could not be evaluated (not "
        "sent to http://health.test:80: 169.254.10.1 is a link-local address "
        f"(CME_ALLOW_LINK_LOCAL_TARGETS is off)), {FAILS_CLOSED}",
    )
    assert health.paths == ["/ok"], "the first check was asked, the second never sent"
    assert runs == []


def test_a_health_check_url_shows_no_path_query_or_password(
    on_sqlite: EngineOn, clock: FixedClock, health: Health
) -> None:
    engine = on_sqlite()
    runs_of(engine)
    url = f"http://user:hunter2@127.0.0.1:{health.port}/down?token=s3cret"
    _, (executor,) = add_plan(engine, safety={"stop_conditions": {"health_checks": [{"url": url}]}})
    done = run_at(engine, clock, executor)
    assert done.reason is not None
    for secret in ("hunter2", "s3cret", "token", "user"):
        assert secret not in done.reason
    assert done.reason.startswith(
        f"stop condition: health check 1 (http://127.0.0.1:{health.port})"
    )


# -- minimum interval --------------------------------------------------------------------


def run_together(engine: Engine, clock: FixedClock, executors: list[Executor]) -> None:
    """Deliver every executor at once, one thread each, released together by a barrier.

    Their interval records go through a gate (tests/races.py) that holds each after its
    first step on the store until every one has taken its first step: a store that checks
    in one step and records in another then lets every executor attack, on every run, so
    only the store's conditional write can make these tests pass.
    """
    clock.current = executors[0].next_run_time
    start = threading.Barrier(len(executors), timeout=20)
    record = engine.store.record_attack
    failures: list[BaseException] = []

    def deliver(executor_id: str) -> None:
        try:
            start.wait()
            engine.runner.run(executor_id)
        except BaseException as error:  # reported by the test, not lost in the thread
            failures.append(error)

    with first_steps_together(engine.store, len(executors)) as gate:

        def record_gated(group: str, at: datetime, interval: timedelta) -> datetime | None:
            return gate.call(record, group, at, interval)

        engine.store.record_attack = record_gated  # type: ignore[method-assign,assignment]
        threads = [threading.Thread(target=deliver, args=[e.id]) for e in executors]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert failures == []
    assert not any(thread.is_alive() for thread in threads)


def outcomes(engine: Engine, executors: list[Executor]) -> list[Executor]:
    found = [engine.store.get_executor(e.id) for e in executors]
    assert all(e is not None for e in found)
    return sorted((e for e in found if e is not None), key=lambda e: e.status.value, reverse=True)


@pytest.mark.parametrize("due", [2, 6])
def test_executors_of_one_plan_due_together_attack_once(
    guarded: Engine, clock: FixedClock, due: int
) -> None:
    runs = runs_of(guarded)
    plan, executors = add_plan(guarded, *[T] * due, safety={"min_interval": {"seconds": 3600}})
    run_together(guarded, clock, executors)
    succeeded, *skipped = outcomes(guarded, executors)
    assert succeeded.status is ExecutorStatus.SUCCEEDED
    for refused in skipped:
        assert_skipped(
            refused,
            f"min interval: the last attack on plan {plan.id} was at "
            f"2026-12-01T13:00:00+01:00, less than 3600 s before; {NOT_RUN}",
        )
        assert refused.started_at == T, "refused after its claim"
    assert [run["executor_id"] for run in runs] == [succeeded.id]
    stored = guarded.store.get_plan(plan.id)
    assert stored is not None
    assert stored.counts.as_dict()["succeeded"] == 1
    assert stored.counts.as_dict()["skipped"] == due - 1


def test_two_plans_sharing_a_group_due_together_attack_once(
    guarded: Engine, clock: FixedClock
) -> None:
    runs = runs_of(guarded)
    safety = {"min_interval": {"seconds": 600, "group": "tag:App=web"}}
    _, (first,) = add_plan(guarded, T, safety=safety)
    _, (second,) = add_plan(guarded, T, safety=safety)
    run_together(guarded, clock, [first, second])
    succeeded, skipped = outcomes(guarded, [first, second])
    assert succeeded.status is ExecutorStatus.SUCCEEDED
    assert_skipped(
        skipped,
        "min interval: the last attack on group 'tag:App=web' was at "
        f"2026-12-01T13:00:00+01:00, less than 600 s before; {NOT_RUN}",
    )
    assert [run["executor_id"] for run in runs] == [succeeded.id]


def test_a_tag_group_is_the_value_the_attack_filters_give_that_tag(
    guarded: Engine, clock: FixedClock
) -> None:
    """``tag:App``: plans attacking App=web share one clock whatever their other
    filters; a plan attacking App=db has its own."""
    runs = runs_of(guarded)
    safety = {"min_interval": {"seconds": 600, "group": "tag:App"}}
    web = {"mode": "ok", "filters": {"tag:App": "web"}}
    web_running = {"mode": "ok", "filters": {"tag:App": ["web"], "instance-state-name": "x"}}
    database = {"mode": "ok", "filters": {"tag:App": "db"}}
    _, (first,) = add_plan(guarded, T, safety=safety, args=web)
    _, (second,) = add_plan(guarded, T, safety=safety, args=web_running)
    _, (other,) = add_plan(guarded, T, safety=safety, args=database)

    assert run_at(guarded, clock, first).status is ExecutorStatus.SUCCEEDED
    assert_skipped(
        run_at(guarded, clock, second),
        "min interval: the last attack on group 'tag:App=web' was at "
        f"2026-12-01T13:00:00+01:00, less than 600 s before; {NOT_RUN}",
    )
    assert run_at(guarded, clock, other).status is ExecutorStatus.SUCCEEDED
    assert [run["executor_id"] for run in runs] == [first.id, other.id]
    assert guarded.store.last_attack("group:tag:App=db") is not None


def test_once_the_interval_has_passed_the_next_attack_runs(
    guarded: Engine, clock: FixedClock
) -> None:
    runs = runs_of(guarded)
    hour = timedelta(hours=1)
    plan, (first, too_soon, on_time) = add_plan(
        guarded,
        T,
        T + hour - timedelta(seconds=1),
        T + hour,
        safety={"min_interval": {"seconds": 3600}},
    )
    assert run_at(guarded, clock, first).status is ExecutorStatus.SUCCEEDED
    assert_skipped(
        run_at(guarded, clock, too_soon),
        f"min interval: the last attack on plan {plan.id} was at 2026-12-01T13:00:00+01:00, "
        f"less than 3600 s before; {NOT_RUN}",
    )
    assert run_at(guarded, clock, on_time).status is ExecutorStatus.SUCCEEDED
    assert [run["executor_id"] for run in runs] == [first.id, on_time.id]


def test_other_plans_keep_their_own_interval(guarded: Engine, clock: FixedClock) -> None:
    runs = runs_of(guarded)
    safety = {"min_interval": {"seconds": 3600}}
    _, (first,) = add_plan(guarded, T, safety=safety)
    _, (second,) = add_plan(guarded, T, safety=safety)
    assert run_at(guarded, clock, first).status is ExecutorStatus.SUCCEEDED
    assert run_at(guarded, clock, second).status is ExecutorStatus.SUCCEEDED
    assert len(runs) == 2


def test_an_interval_that_cannot_be_recorded_ends_the_claimed_executor_skipped(
    on_sqlite: EngineOn, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = on_sqlite()
    runs = runs_of(engine)

    def broken(group: str, at: datetime, interval: timedelta) -> datetime | None:
        raise StorageError("could not write the control record")

    monkeypatch.setattr(engine.store, "record_attack", broken)
    _, (executor,) = add_plan(engine, safety={"min_interval": {"seconds": 60}})
    done = run_at(engine, clock, executor)
    assert_skipped(
        done,
        "min interval: the interval could not be evaluated (StorageError: storage failed: "
        f"could not write the control record); {NOT_RUN} (a guard that cannot decide refuses)",
    )
    assert done.started_at == T
    assert runs == []


# -- preview -----------------------------------------------------------------------------


def verdicts(engine: Engine, plan: Plan, at: datetime) -> list[tuple[str, str, str]]:
    return [
        (v["guard"], v["verdict"], v["reason"])
        for v in (verdict.as_dict() for verdict in engine.guards.preview(plan, at))
    ]


def test_preview_answers_every_guard_in_order_and_records_nothing(
    guarded: Engine, clock: FixedClock
) -> None:
    runs = runs_of(guarded)
    alarm("cme-ok", "OK")
    plan, (executor,) = add_plan(
        guarded,
        safety={"stop_conditions": {"alarms": ["cme-ok"]}, "min_interval": {"seconds": 3600}},
    )
    expected = [
        ("kill_switch", "pass", "kill switch: CME_KILL_SWITCH is off"),
        ("halt", "pass", "not halted: the halt has never been set"),
        ("calendar", "pass", "calendar: attacks may run at any time"),
        ("stop_conditions", "pass", "stop condition: no alarm in ALARM (cme-ok)"),
        (
            "min_interval",
            "pass",
            f"min interval: no attack on plan {plan.id} within 3600 s (none recorded yet)",
        ),
    ]
    assert verdicts(guarded, plan, T) == expected
    assert verdicts(guarded, plan, T) == expected, "the first preview recorded nothing"
    assert [guard for guard, _, _ in expected] == list(GUARD_ORDER)
    assert guarded.store.last_attack(f"plan:{plan.id}") is None

    assert run_at(guarded, clock, executor).status is ExecutorStatus.SUCCEEDED
    assert len(runs) == 1
    assert verdicts(guarded, plan, T + timedelta(minutes=30))[-1] == (
        "min_interval",
        "refuse",
        f"min interval: the last attack on plan {plan.id} was at 2026-12-01T13:00:00+01:00, "
        f"less than 3600 s before; {NOT_RUN}",
    )


def test_preview_shows_each_refusal_and_the_passes_beside_it(
    on_sqlite: EngineOn, clock: FixedClock
) -> None:
    engine = on_sqlite(kill_switch=True, **CALENDAR)
    alarm("cme-firing", "ALARM")
    engine.store.set_halt(Halt(True, "incident 42", T, "local"))
    plan, _ = add_plan(engine, safety={"stop_conditions": {"alarms": ["cme-firing"]}})
    saturday = datetime(2026, 12, 5, 11, 0, tzinfo=UTC)
    assert verdicts(engine, plan, saturday) == [
        ("kill_switch", "refuse", f"kill switch: CME_KILL_SWITCH is on for this stage; {NOT_RUN}"),
        (
            "halt",
            "refuse",
            f'halted: "incident 42", set by local since 2026-12-01T13:00:00+01:00; {NOT_RUN}',
        ),
        (
            "calendar",
            "refuse",
            "calendar: sat 2026-12-05 is not an allowed weekday (allowed: mon, tue, wed, thu, "
            f"fri); {NOT_RUN}",
        ),
        (
            "stop_conditions",
            "refuse",
            f"stop condition: alarm 'cme-firing' is in ALARM; {NOT_RUN}",
        ),
        ("min_interval", "pass", "min interval: the plan sets none"),
    ]
    tuesday = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert verdicts(engine, plan, tuesday)[2] == (
        "calendar",
        "pass",
        "calendar: 2026-12-01T11:00:00+01:00 is inside weekdays mon, tue, wed, thu, fri, "
        "hours 09:00-18:00, 1 blackout date(s)",
    )


def test_a_tag_group_names_its_values_sorted_and_refuses_a_missing_filter() -> None:
    interval = MinInterval(timedelta(seconds=60), "tag:App")
    both = {"filters": {"tag:App": ["web", "api"]}}
    assert interval.key("p", both) == "group:tag:App=api,web"
    assert MinInterval(timedelta(seconds=60), "tag:App=web").key("p", both) == "group:tag:App=web"
    assert MinInterval(timedelta(seconds=60)).key("p", both) == "plan:p"
    with pytest.raises(ValueError, match="its filters have none"):
        interval.key("p", {"filters": {"tag:Team": "x"}})
