"""Notifications: a loopback webhook, failing webhooks, moto's SNS, the outbound guard."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from chalicelib.adapters.notify import (
    BackgroundNotifier,
    FanOutNotifier,
    SnsNotifier,
    WebhookNotifier,
    shown_url,
)
from chalicelib.plugins.secret_policy import OutboundPolicy
from tests.conftest import free_port
from tests.events.servers import Hook, webhook_server

MESSAGE = {
    "event_id": "e1",
    "kind": "executor.finished",
    "time": "2026-12-01T10:00:00+01:00",
    "plan_id": "p1",
    "executor_id": "x1",
    "status": "failed",
    "target": {"instance": "i-0abc"},
    "error": "boom",
    "reason": None,
}
SECRET = "s3cr3t-hook-token"


@pytest.fixture
def hook() -> Iterator[Hook]:
    with webhook_server() as server:
        yield server


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="chalicelib.adapters.notify")
    return caplog


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every warning's message and fields, as one text."""
    return "\n".join(
        f"{record.getMessage()} {record.__dict__}"
        for record in caplog.records
        if record.levelno >= logging.WARNING
    )


def secret_url(hook: Hook) -> str:
    base = hook.url.replace("http://", f"http://user:{SECRET}@")
    return f"{base}/hooks/{SECRET}?token={SECRET}"


def test_the_webhook_receives_the_message_as_json(hook: Hook, warnings: Any) -> None:
    WebhookNotifier(f"{hook.url}/chaos", OutboundPolicy()).send(MESSAGE)

    received = hook.next()
    assert received.method == "POST"
    assert received.path == "/chaos"
    assert received.headers["content-type"] == "application/json"
    assert received.body == MESSAGE
    assert logged(warnings) == ""


@pytest.mark.parametrize("status", [500, 404])
def test_an_error_status_is_logged_without_the_urls_secrets(
    hook: Hook, warnings: Any, status: int
) -> None:
    hook.status = status

    WebhookNotifier(secret_url(hook), OutboundPolicy()).send(MESSAGE)

    assert hook.next().body == MESSAGE
    text = logged(warnings)
    assert f"notification failed: the webhook answered HTTP {status}" in text
    assert SECRET not in text
    assert "127.0.0.1" in text and "<redacted>" in text


def test_a_closed_port_is_logged_not_raised(warnings: Any) -> None:
    url = f"http://user:{SECRET}@127.0.0.1:{free_port()}/hooks/{SECRET}?token={SECRET}"

    WebhookNotifier(url, OutboundPolicy()).send(MESSAGE)

    text = logged(warnings)
    assert "notification failed: ConnectionError" in text
    assert SECRET not in text


def test_a_slow_webhook_times_out_and_is_logged(hook: Hook, warnings: Any) -> None:
    hook.hold = True
    started = time.monotonic()

    WebhookNotifier(secret_url(hook), OutboundPolicy(), timeout=0.3).send(MESSAGE)

    assert time.monotonic() - started < 5
    text = logged(warnings)
    assert "notification failed: ReadTimeout" in text
    assert SECRET not in text


def test_a_redirect_is_not_followed(hook: Hook, warnings: Any) -> None:
    hook.status = 302
    hook.location = f"{hook.url}/elsewhere"

    WebhookNotifier(f"{hook.url}/first", OutboundPolicy()).send(MESSAGE)

    assert hook.next().path == "/first"
    assert "the webhook answered HTTP 302" in logged(warnings)
    assert [r.path for r in hook.all()] == []


@pytest.mark.parametrize(
    ("url", "addresses", "reason"),
    [
        (
            "http://hooks.example.test/x",
            ["169.254.169.254"],
            "not sent to http://hooks.example.test:80: 169.254.169.254 is an "
            "instance-metadata address (CME_ALLOW_LINK_LOCAL_TARGETS is off)",
        ),
        (
            "http://169.254.7.7:8080/x",
            ["169.254.7.7"],
            "not sent to http://169.254.7.7:8080: 169.254.7.7 is a link-local address "
            "(CME_ALLOW_LINK_LOCAL_TARGETS is off)",
        ),
    ],
)
def test_a_link_local_webhook_is_refused(
    warnings: Any, url: str, addresses: list[str], reason: str
) -> None:
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return addresses

    WebhookNotifier(url, OutboundPolicy(), resolve=resolve).send(MESSAGE)

    assert asked  # the guard looked the host up, and refused what it found
    assert f"notification not sent: {reason}" in logged(warnings)


def test_shown_url_masks_userinfo_path_and_query() -> None:
    assert shown_url(f"https://u:{SECRET}@h.example:8443/x/{SECRET}?k={SECRET}") == (
        "https://u:<redacted>@h.example:8443/<redacted>"
    )
    assert shown_url("https://h.example") == "https://h.example"


def test_fan_out_goes_on_past_a_notifier_that_raises(hook: Hook, warnings: Any) -> None:
    class Broken:
        def send(self, message: dict[str, Any]) -> None:
            raise RuntimeError("broken notifier")

    FanOutNotifier([Broken(), WebhookNotifier(hook.url, OutboundPolicy())]).send(MESSAGE)

    assert hook.next().body == MESSAGE
    assert "a notifier raised" in logged(warnings)


def test_background_sends_in_order_without_making_the_caller_wait(hook: Hook) -> None:
    hook.hold = True
    notifier = BackgroundNotifier(WebhookNotifier(hook.url, OutboundPolicy(), timeout=10))
    try:
        started = time.monotonic()
        for number in range(3):
            notifier.send({**MESSAGE, "event_id": f"e{number}"})
        assert time.monotonic() - started < 1  # the webhook holds every request
        assert hook.next().body["event_id"] == "e0"
        assert notifier.flush(0.1) is False  # still held
        hook.release.set()
        assert notifier.flush(10) is True
        assert [r.body["event_id"] for r in hook.all()] == ["e1", "e2"]
    finally:
        hook.release.set()
        notifier.close()


# -- SNS on moto ---------------------------------------------------------------------------


def receive(sqs: Any, queue_url: str, timeout: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
        if answer.get("Messages"):
            return list(answer["Messages"])
        threading.Event().wait(0.05)
    raise AssertionError("no message reached the queue")


def test_sns_publishes_the_message_to_the_topic(aws: None, warnings: Any) -> None:
    region = "eu-west-1"
    sns = boto3.client("sns", region_name=region)
    sqs = boto3.client("sqs", region_name=region)
    topic = sns.create_topic(Name="cme-notifications")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="cme-notified")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    SnsNotifier(topic, region).send(MESSAGE)

    [delivered] = receive(sqs, queue_url)
    # Without raw delivery SQS receives SNS's JSON envelope, the message in "Message":
    # https://docs.aws.amazon.com/sns/latest/dg/sns-sqs-as-subscriber.html
    envelope = json.loads(delivered["Body"])
    assert envelope["TopicArn"] == topic
    assert json.loads(envelope["Message"]) == MESSAGE
    assert envelope["MessageAttributes"]["kind"]["Value"] == "executor.finished"
    assert logged(warnings) == ""


def test_an_sns_failure_is_logged_not_raised(aws: None, warnings: Any) -> None:
    missing = "arn:aws:sns:eu-west-1:123456789012:no-such-topic"

    SnsNotifier(missing, "eu-west-1").send(MESSAGE)

    text = logged(warnings)
    assert "notification failed: NotFoundException" in text
    assert missing in text
