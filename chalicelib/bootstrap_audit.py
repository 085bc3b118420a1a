"""Picks the audit trail's adapters (event log, notifiers) from settings: part of bootstrap.

A module of its own only while bootstrap.py changes under other hands; it belongs in
bootstrap.py, the one place that picks concrete adapters (services may not import them).
"""

from __future__ import annotations

from pathlib import Path

from chalicelib.adapters.clock import SystemClock
from chalicelib.domain.ports import Clock, EventLog, Notifier
from chalicelib.services.audit import AuditTrail
from chalicelib.settings import Settings


def build_notifier(settings: Settings) -> Notifier | None:
    """The webhook and/or SNS topic the settings name, sent from a background thread;
    None when they name neither."""
    from chalicelib.adapters.notify import (
        BackgroundNotifier,
        FanOutNotifier,
        SnsNotifier,
        WebhookNotifier,
    )

    notifiers: list[Notifier] = []
    if settings.notify_webhook_url:
        notifiers.append(
            WebhookNotifier(settings.notify_webhook_url, settings.argument_policy.outbound)
        )
    if settings.notify_sns_topic_arn:
        notifiers.append(SnsNotifier(settings.notify_sns_topic_arn, settings.aws_region))
    if not notifiers:
        return None
    return BackgroundNotifier(notifiers[0] if len(notifiers) == 1 else FanOutNotifier(notifiers))


def build_event_log(settings: Settings, local: bool, data_dir: Path | None = None) -> EventLog:
    """Local mode on SQLite: ``events.sqlite3`` in ``data_dir`` (default: beside the
    store's file). Otherwise DynamoDB (``settings.events_table``), whose table local mode
    (--store moto) creates; deployed, CloudFormation does."""
    if local and settings.store == "sqlite":
        from chalicelib.adapters.sqlite_events import EVENTS_FILE, SqliteEventLog

        directory = data_dir if data_dir is not None else settings.database_path.parent
        return SqliteEventLog(directory / EVENTS_FILE, retention=settings.events_retention)
    from chalicelib.adapters.dynamo_events import DynamoEventLog

    dynamo = DynamoEventLog(settings)
    if local:
        dynamo.create_table()
    return dynamo


def build_audit(
    settings: Settings,
    local: bool,
    data_dir: Path | None = None,
    clock: Clock | None = None,
) -> AuditTrail:
    """The audit trail of one engine (see build_event_log and build_notifier)."""
    return AuditTrail(
        build_event_log(settings, local, data_dir),
        build_notifier(settings),
        clock or SystemClock(),
        zone=settings.timezone,
    )
