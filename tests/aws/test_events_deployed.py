"""The audit trail and SNS notifications on the deployed path, on moto.

The API is driven as API Gateway's Lambda proxy events with ``CME_AUTH=iam`` identities
(the actor is the IAM principal's ARN), the attack and reaper Lambdas are invoked as their
EventBridge rules would, and the engine is wired as a deployed one: DynamoDB for plans,
executors and events (``build_audit(local=False)``: the events table and the SNS topic the
settings name), EventBridge Scheduler, and an SNS topic that an SQS queue subscribes to,
where the notifications are read back.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
from chalice.test import Client

from chalicelib.adapters.dynamo import DynamoStore
from chalicelib.adapters.dynamo_events import DynamoEventLog
from chalicelib.adapters.eventbridge import EventBridgeScheduler
from chalicelib.api.context import set_engine
from chalicelib.bootstrap import Engine, build_audit, build_engine
from chalicelib.domain.model import Executor, ExecutorStatus
from chalicelib.domain.ports import ExecutorQuery
from chalicelib.settings import Settings
from tests.api.test_halt_deployed import LambdaContext, proxy_event
from tests.aws import conftest as aws_fixtures
from tests.aws.conftest import ACCOUNT, GROUP, REGION, TARGET, Sleeps, Target
from tests.conftest import FixedClock

ALICE = "arn:aws:sts::123456789012:assumed-role/oncall/alice"
BOB = "arn:aws:iam::123456789012:user/bob"
REASON = "game day: payments team"


class TickingClock(FixedClock):
    """A fixed clock that moves on a millisecond each time it is read: what happens in
    order is recorded in order (events of one instant are ordered by their random ids)."""

    def now(self) -> datetime:
        self.current += timedelta(milliseconds=1)
        return self.current


@pytest.fixture
def clock() -> TickingClock:
    return TickingClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))


@dataclass
class Topic:
    """The notifications' SNS topic and the SQS queue subscribed to it."""

    arn: str
    queue_url: str
    sqs: Any
    sns: Any

    def drain(self) -> list[dict[str, Any]]:
        """Every message now in the queue (SNS's envelope opened), removed from it.

        moto delivers a publish to its SQS subscribers before the publish returns, and the
        Lambdas flush their notifications before they return: what a Lambda sent is here.
        """
        found: list[dict[str, Any]] = []
        while True:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60
            )
            items = answer.get("Messages") or []
            if not items:
                return found
            for item in items:
                # Without raw delivery SQS receives SNS's JSON envelope, the message in
                # "Message": https://docs.aws.amazon.com/sns/latest/dg/sns-sqs-as-subscriber.html
                envelope = json.loads(item["Body"])
                message = json.loads(envelope["Message"])
                assert envelope["MessageAttributes"]["kind"]["Value"] == message["kind"]
                found.append(message)
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=item["ReceiptHandle"]
                )


@pytest.fixture
def topic(aws: None) -> Topic:
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    arn = sns.create_topic(Name="cme-test-notifications")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="cme-test-notified")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn)
    return Topic(arn, queue_url, sqs, sns)


@pytest.fixture
def deployed(
    aws: None, topic: Topic, clock: FixedClock, chalice_app: Any, sleeps: Sleeps
) -> Iterator[Engine]:
    """The app's engine as a deployed stage wires it (CME_AUTH=iam, on Lambda), on a
    fixed clock: the store, events table and topic its settings name."""
    settings = Settings(
        plans_table="cme-test-plans",
        executors_table="cme-test-executors",
        control_table="cme-test-control",
        events_table="cme-test-events",
        schedule_group=GROUP,
        allowed_lateness=timedelta(minutes=2),
        auth="iam",
        on_lambda=True,
        aws_region=REGION,
        notify_sns_topic_arn=topic.arn,
    )
    store = DynamoStore(settings)
    store.create_tables()
    DynamoEventLog(settings).create_table()  # deployed, CloudFormation creates it
    client = boto3.client("scheduler", region_name=REGION)
    client.create_schedule_group(Name=GROUP)

    def scheduler(runner: object) -> EventBridgeScheduler:
        return EventBridgeScheduler(
            client_factory=lambda: client,
            target_factory=lambda: TARGET,
            group=GROUP,
            allowed_lateness=settings.allowed_lateness,
            rate_per_second=0,
            plan_deadline=settings.plan_deadline,
            now=clock.now,
            sleep=sleeps,
        )

    audit = build_audit(settings, local=False, clock=clock)
    engine = build_engine(settings, store, scheduler, clock, audit=audit)
    set_engine(chalice_app, engine)
    try:
        yield engine
    finally:
        audit.close()


chalice_app = aws_fixtures.chalice_app
sleeps = aws_fixtures.sleeps
http_target = aws_fixtures.http_target


def api(
    app: Any,
    method: str,
    resource: str,
    arn: str,
    *,
    body: Any = None,
    query: dict[str, str] | None = None,
    **path: str,
) -> tuple[int, Any]:
    """The API Lambda's answer to a proxy event for ``resource`` (``{name}`` filled from
    ``path``), signed by the IAM principal ``arn``."""
    event = proxy_event(method, resource, body, {"userArn": arn, "caller": "AROA:session"})
    filled = resource.format(**path)
    event["path"] = filled
    event["requestContext"]["path"] = f"/api{filled}"
    event["pathParameters"] = path or None
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = (
        {key: [value] for key, value in query.items()} if query else None
    )
    answer = app(event, LambdaContext())
    text = answer.get("body") or ""
    return answer["statusCode"], json.loads(text) if text else None


def events(app: Any, limit: int = 3, **filters: str) -> list[dict[str, Any]]:
    """Every event GET /api/1/events gives, page by page through ``_links.next``."""
    found: list[dict[str, Any]] = []
    query: dict[str, str] | None = {**filters, "limit": str(limit)}
    pages = 0
    while query is not None:
        status, page = api(app, "GET", "/api/1/events", BOB, query=query)
        assert status == 200, page
        assert len(page["_embedded"]["events"]) <= limit
        found.extend(page["_embedded"]["events"])
        following = page["_links"].get("next")
        # The next page is the href's own query (its cursor, filters and limit).
        query = None if following is None else dict(parse_qsl(urlsplit(following["href"]).query))
        pages += 1
        assert pages < 50, "the pages never end"
    return found


def plan_body(endpoint: str, date: str) -> dict[str, Any]:
    return {
        "name": f"hit at {date}",
        "attack": {
            "ref": "api_request:ApiRequest",
            "args": {"endpoint": endpoint, "method": "GET"},
        },
        "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": date}},
    }


def create(app: Any, engine: Engine, body: dict[str, Any]) -> tuple[str, Executor]:
    """Alice creates a plan; its one executor."""
    status, created = api(app, "POST", "/api/1/plans", ALICE, body=body)
    assert status == 200, created
    [executor] = engine.executors.list(ExecutorQuery(executed=None, plan_id=created["id"])).items
    return str(created["id"]), executor


def invoke(app: Any, function: str, event: Any) -> Any:
    with Client(app) as client:
        return client.lambda_.invoke(function, event).payload


def reaper_event(app: Any) -> Any:
    with Client(app) as client:
        return client.events.generate_cw_event(
            source="aws.events",
            detail_type="Scheduled Event",
            detail={},
            resources=[f"arn:aws:events:{REGION}:{ACCOUNT}:rule/chaos-monkey-engine-reaper"],
            region=REGION,
        )


def test_api_changes_runs_and_reaps_are_events_and_runs_and_halts_are_notified(
    chalice_app: Any, deployed: Engine, topic: Topic, clock: FixedClock, http_target: Target
) -> None:
    app, engine = chalice_app, deployed

    # Plan 1: due at 09:30Z; run by the attack Lambda.
    plan1, executor1 = create(app, engine, plan_body(http_target.url, "2026-12-01T09:30Z"))
    # Plan 2: due at 11:00Z, moved by bob to 10:00Z; its attack Lambda dies after its
    # claim and the reaper ends it.
    plan2, executor2 = create(app, engine, plan_body(http_target.url, "2026-12-01T11:00Z"))
    status, moved = api(
        app,
        "PUT",
        "/api/1/executors/{executor_id}",
        BOB,
        body={"type": "date", "args": {"date": "2026-12-01T10:00Z"}},
        executor_id=executor2.id,
    )
    assert status == 200, moved
    # Plan 3: due at 12:00Z, its executor deleted by bob.
    plan3, executor3 = create(app, engine, plan_body(http_target.url, "2026-12-01T12:00Z"))
    status, _ = api(app, "DELETE", "/api/1/executors/{executor_id}", BOB, executor_id=executor3.id)
    assert status == 200
    assert topic.drain() == []  # API changes to plans and executors are not notified

    clock.current = executor1.next_run_time
    answer = invoke(app, "attack", {"executor_id": executor1.id, "run_at": "2026-12-01T09:30:00Z"})
    assert answer == {"executor_id": executor1.id, "status": "succeeded"}
    assert http_target.hits == ["/attack"]
    started, ended = topic.drain()
    assert (started["kind"], started["status"], started["actor"]) == (
        "executor.started",
        "running",
        "engine",
    )
    assert (started["plan_id"], started["executor_id"]) == (plan1, executor1.id)
    assert (ended["kind"], ended["status"], ended["error"]) == (
        "executor.finished",
        "succeeded",
        None,
    )
    assert (ended["executor_id"], ended["target"]) == (executor1.id, http_target.url)

    # The attack Lambda of plan 2 claims its executor and dies (the claim is the runner's
    # own, with its started event); 16 minutes later the reaper ends it.
    moved2 = engine.executors.get(executor2.id)
    clock.current = moved2.next_run_time
    assert engine.runner._move(moved2, ExecutorStatus.RUNNING, {"started_at": clock.now()})
    clock.advance(minutes=16)
    assert invoke(app, "reaper", reaper_event(app)) == {"reaped": 1}
    started, ended = topic.drain()
    assert (started["kind"], started["executor_id"]) == ("executor.started", executor2.id)
    assert (ended["kind"], ended["status"], ended["executor_id"]) == (
        "executor.finished",
        "failed",
        executor2.id,
    )
    assert ended["error"].startswith("lost: still running 960 s after it started")

    # The halt, set by alice and lifted by bob: the API Lambda sends each message before
    # it answers (a frozen Lambda runs no background thread).
    status, _ = api(app, "PUT", "/api/1/halt", ALICE, body={"halted": True, "reason": REASON})
    assert status == 200
    [halted] = topic.drain()
    status, _ = api(app, "PUT", "/api/1/halt", BOB, body={"halted": False})
    assert status == 200
    [lifted] = topic.drain()
    assert (halted["kind"], halted["halted"], halted["reason"], halted["actor"]) == (
        "halt.changed",
        True,
        REASON,
        ALICE,
    )
    assert (lifted["halted"], lifted["reason"], lifted["actor"]) == (False, None, BOB)

    status, _ = api(app, "DELETE", "/api/1/plans/{plan_id}", ALICE, plan_id=plan1)
    assert status == 200

    trail = events(app)
    assert [
        (event["kind"], event["actor"], event["plan_id"], event["executor_id"]) for event in trail
    ] == [
        ("plan.deleted", ALICE, plan1, None),
        ("halt.changed", BOB, None, None),
        ("halt.changed", ALICE, None, None),
        ("executor.finished", "engine", plan2, executor2.id),
        ("executor.started", "engine", plan2, executor2.id),
        ("executor.finished", "engine", plan1, executor1.id),
        ("executor.started", "engine", plan1, executor1.id),
        ("executor.deleted", BOB, plan3, executor3.id),
        ("plan.created", ALICE, plan3, None),
        ("executor.moved", BOB, plan2, executor2.id),
        ("plan.created", ALICE, plan2, None),
        ("plan.created", ALICE, plan1, None),
    ]
    changes = [event["changes"] for event in trail]
    assert changes[0] == {"name": "hit at 2026-12-01T09:30Z"}
    assert changes[3]["status"] == "failed"
    assert changes[3]["error"].startswith("lost: ")
    assert changes[5]["status"] == "succeeded"
    assert changes[5]["target"] == http_target.url
    assert changes[5]["finished_at"] == "2026-12-01T10:30:00+01:00"
    assert changes[7] == {"status": "scheduled", "next_run_time": "2026-12-01T13:00:00+01:00"}
    assert changes[9] == {"from": "2026-12-01T12:00:00+01:00", "to": "2026-12-01T11:00:00+01:00"}
    assert changes[11]["executors_count"] == 1
    # A deleted plan's events, and one kind.
    assert [event["kind"] for event in events(app, plan_id=plan1)] == [
        "plan.deleted",
        "executor.finished",
        "executor.started",
        "plan.created",
    ]
    assert [event["actor"] for event in events(app, limit=1, kind="halt.changed")] == [BOB, ALICE]


def test_a_failing_topic_is_logged_and_changes_no_outcome(  # noqa: PLR0917 - pytest passes fixtures by name
    chalice_app: Any,
    deployed: Engine,
    topic: Topic,
    clock: FixedClock,
    http_target: Target,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="chalicelib.adapters.notify")
    app, engine = chalice_app, deployed
    plan, executor = create(app, engine, plan_body(http_target.url, "2026-12-01T09:30Z"))
    topic.sns.delete_topic(TopicArn=topic.arn)

    clock.current = executor.next_run_time
    answer = invoke(app, "attack", {"executor_id": executor.id})

    assert answer == {"executor_id": executor.id, "status": "succeeded"}
    assert http_target.hits == ["/attack"]
    assert engine.executors.get(executor.id).status is ExecutorStatus.SUCCEEDED
    failures = [
        record.getMessage()
        for record in caplog.records
        if record.getMessage().startswith("notification failed: NotFoundException")
    ]
    assert len(failures) == 2, caplog.text  # the start and the end, each logged once
    assert [event["kind"] for event in events(app, plan_id=plan)] == [
        "executor.finished",
        "executor.started",
        "plan.created",
    ]
    assert topic.drain() == []
