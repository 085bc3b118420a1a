"""The one place that picks concrete adapters and wires the services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from chalicelib.adapters.clock import SystemClock
from chalicelib.adapters.probes import AwsProbes
from chalicelib.domain.ports import Clock, EventLog, Notifier, Probes, Scheduler, Store
from chalicelib.plugins.contract import Attack, Planner
from chalicelib.plugins.registry import PluginSet, load_plugins
from chalicelib.services.audit import AuditTrail
from chalicelib.services.execution import ExecutorRunner
from chalicelib.services.executors import ExecutorService
from chalicelib.services.guards import SafetyGuards
from chalicelib.services.plans import PlanService
from chalicelib.services.recurrence import ExpansionService
from chalicelib.services.safety import HaltService
from chalicelib.settings import Settings

SchedulerFactory = Callable[[ExecutorRunner], Scheduler]
# How often local mode runs the daily expansion (deployed: the expander's rate(1 hour)).
# A day is due from 00:00 of the day before, so any interval under a day is on time.
LOCAL_EXPAND_EVERY = timedelta(minutes=10)


@dataclass
class Engine:
    """The wired services of one running engine."""

    settings: Settings
    attacks: PluginSet[Attack]
    planners: PluginSet[Planner]
    plans: PlanService
    executors: ExecutorService
    runner: ExecutorRunner
    store: Store
    scheduler: Scheduler
    # The live halt (GET/PUT /api/1/halt).
    halt: HaltService
    # The safety guards the runner asks (and a plan preview shows).
    guards: SafetyGuards
    # The daily expansion of recurring plans (the expander Lambda, a local job).
    expansion: ExpansionService
    # The audit trail (GET /api/1/events/) and notifications; None: none kept.
    audit: AuditTrail | None = None


def build_engine(
    settings: Settings,
    store: Store,
    scheduler_factory: SchedulerFactory,
    clock: Clock | None = None,
    probes: Probes | None = None,
    *,
    audit: AuditTrail | None = None,
) -> Engine:
    """Wire the services on a store and a scheduler.

    The scheduler is built from the runner because local mode's scheduler calls it
    in-process; the EventBridge scheduler ignores it (it invokes the attack Lambda).
    ``probes`` (stop conditions) default to CloudWatch in the engine's region and HTTP
    through the outbound guard; in local mode CloudWatch is moto's. ``audit``: where
    every change and outcome is recorded and notified (None: nowhere).
    """
    clock = clock or SystemClock()
    zone = settings.timezone
    if probes is None:
        probes = AwsProbes(settings.aws_region or None, settings.argument_policy.outbound)
    guards = SafetyGuards(
        store=store,
        probes=probes,
        clock=clock,
        timezone=zone,
        calendar=settings.calendar,
        kill_switch=settings.kill_switch,
    )
    attacks = load_plugins("attacks", Attack, settings.all_attack_folders)
    planners = load_plugins("planners", Planner, settings.all_planner_folders)
    runner = ExecutorRunner(
        store=store,
        attacks=attacks,
        clock=clock,
        allowed_lateness=settings.allowed_lateness,
        guards=guards,
        max_run_time=settings.max_run_time,
        environment=settings.attack_environment,
        audit=audit,
    )
    scheduler = scheduler_factory(runner)
    runner.scheduler = scheduler
    expansion = ExpansionService(
        store=store,
        scheduler=scheduler,
        planners=planners,
        clock=clock,
        timezone=zone,
        deadline=settings.plan_deadline,
    )
    plans = PlanService(
        store=store,
        scheduler=scheduler,
        attacks=attacks,
        planners=planners,
        clock=clock,
        timezone=zone,
        max_executors=settings.max_executors_per_plan,
        list_limit=settings.list_limit,
        deadline=settings.plan_deadline,
        attack_time_limit=settings.attack_time_limit,
        argument_policy=settings.argument_policy,
        expansion=expansion,
        audit=audit,
    )
    executors = ExecutorService(
        store=store,
        scheduler=scheduler,
        clock=clock,
        timezone=zone,
        list_limit=settings.list_limit,
        audit=audit,
    )
    return Engine(
        settings,
        attacks,
        planners,
        plans,
        executors,
        runner,
        store,
        scheduler,
        halt=HaltService(store, clock, audit),
        guards=guards,
        expansion=expansion,
        audit=audit,
    )


def build_local_engine(
    settings: Settings,
    clock: Clock | None = None,
    reap_every: timedelta | None = None,
    expand_every: timedelta | None = None,
) -> Engine:
    """Local mode: the store ``settings.store`` names, and APScheduler.

    ``sqlite``: the durable SQLite file ``settings.database_path`` (its folder must exist).
    ``moto``: the deployed DynamoDB code on moto's DynamoDB (started by the caller), in
    memory. Once started, the scheduler re-arms the store's scheduled executors, reaps
    lost ones every ``reap_every`` (default ``settings.reap_interval``) and, on SQLite,
    purges what is past its retention (DynamoDB's TTL does that when deployed). It
    also runs the daily expansion of recurring plans at start (catching up after a
    downtime) and every ``expand_every`` (default LOCAL_EXPAND_EVERY), as the expander
    Lambda does when deployed. Events go to ``events.sqlite3`` beside the store's file
    (DynamoDB's events table with --store moto), purged with the store. The caller shuts
    the scheduler down, then closes the store and the audit trail.
    """
    from chalicelib.adapters.local_scheduler import LocalScheduler

    clock = clock or SystemClock()
    store: Store
    purge: Callable[[], object] | None = None
    audit = build_audit(settings, local=True, clock=clock)
    if settings.store == "moto":
        from chalicelib.adapters.dynamo import DynamoStore

        dynamo = DynamoStore(settings)
        dynamo.create_tables()
        store = dynamo
    elif settings.store == "sqlite":
        from chalicelib.adapters.sqlite_store import SqliteStore

        sqlite = SqliteStore(
            settings.database_path, executed_retention=settings.executed_retention, clock=clock
        )
        store = sqlite

        def purge() -> object:
            audit.events.purge_expired(clock.now())
            return sqlite.purge_expired(clock.now())

    else:
        audit.close()
        raise ValueError(f"unknown local store {settings.store!r}")

    # The scheduler is built before the expansion service (which needs it): its job
    # reaches the service through this cell, filled once the engine is wired.
    expansions: list[ExpansionService] = []

    def expand() -> object:
        return expansions[0].expand_due() if expansions else 0

    def local_scheduler(runner: ExecutorRunner) -> Scheduler:
        return LocalScheduler(
            runner.run,
            settings.timezone,
            store=store,
            reap=runner.reap_lost,
            reap_every=reap_every or settings.reap_interval,
            purge=purge,
            expand=expand,
            expand_every=expand_every or LOCAL_EXPAND_EVERY,
        )

    try:
        engine = build_engine(settings, store, local_scheduler, clock, audit=audit)
    except BaseException:
        store.close()
        audit.close()
        raise
    expansions.append(engine.expansion)
    return engine


def build_aws_engine(settings: Settings) -> Engine:
    """The deployed engine: DynamoDB storage and EventBridge Scheduler."""
    import boto3
    from botocore.config import Config

    from chalicelib.adapters.dynamo import DynamoStore
    from chalicelib.adapters.eventbridge import EventBridgeScheduler, ScheduleTarget, fill_arn

    def scheduler_client() -> object:
        # Retries are the adapter's (paced, jittered); botocore's would multiply them.
        config = Config(
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=max(10, settings.scheduler_concurrency),
            connect_timeout=5,
            read_timeout=10,
        )
        return boto3.client("scheduler", region_name=settings.aws_region, config=config)

    def schedule_target() -> ScheduleTarget:
        arns = (settings.attack_function_arn, settings.scheduler_role_arn, settings.dead_letter_arn)
        if any("{" in arn for arn in arns):
            # `chalice deploy` cannot know the account; ask STS once (no permission needed).
            identity = boto3.client("sts", region_name=settings.aws_region).get_caller_identity()
            partition = str(identity["Arn"]).split(":")[1]
            account = str(identity["Account"])
            return ScheduleTarget(
                *(fill_arn(arn, partition, settings.aws_region, account) for arn in arns)
            )
        return ScheduleTarget(*arns)

    def eventbridge(runner: ExecutorRunner) -> Scheduler:
        return EventBridgeScheduler(
            client_factory=scheduler_client,
            target_factory=schedule_target,
            group=settings.schedule_group,
            allowed_lateness=settings.allowed_lateness,
            concurrency=settings.scheduler_concurrency,
            rate_per_second=settings.scheduler_rate_per_second,
            plan_deadline=settings.plan_deadline,
        )

    return build_engine(
        settings, DynamoStore(settings), eventbridge, audit=build_audit(settings, local=False)
    )


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
    store's file), a file of its own so that its writes never queue behind the store's.
    Otherwise DynamoDB (``settings.events_table``), whose table local mode (--store moto)
    creates; deployed, CloudFormation does."""
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
