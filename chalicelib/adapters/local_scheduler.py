"""The Scheduler port on an in-process APScheduler: local mode's EventBridge Scheduler."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, tzinfo

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from chalicelib.domain.model import Executor, ExecutorStatus
from chalicelib.domain.ports import ExecutorQuery, Store
from chalicelib.domain.times import Deadline

log = logging.getLogger(__name__)

# The ids of the housekeeping jobs, which are no executor's.
REAPER_JOB = "cme-reaper"
PURGE_JOB = "cme-purge"
EXPANDER_JOB = "cme-expander"
HOUSEKEEPING_JOBS = frozenset({REAPER_JOB, PURGE_JOB, EXPANDER_JOB})
# Executors read per page when re-arming at start.
REARM_PAGE = 500
# Local mode keeps the second-level lead times the 2017 engine had: APScheduler fires a
# job within milliseconds of its time, unlike EventBridge Scheduler's minute.
LOCAL_MIN_LEAD_TIME = timedelta(seconds=1)

RunExecutor = Callable[[str, datetime], object]


class LocalScheduler:
    """One date job per executor, calling ``run_executor(executor_id, run_at)`` at its time.

    Jobs run however late they fire (no misfire grace): the runner itself decides
    whether a late delivery is ``missed``, exactly as the attack Lambda does. The jobs
    live in memory; the store is the truth. So ``start`` re-arms every executor the store
    still has ``scheduled`` (one whose time passed while the engine was down is delivered
    at once, and the runner runs it or ends it ``missed``), and a restart loses nothing.

    Given ``reap``, it also calls it at start and every ``reap_every``, as the reaper
    Lambda's schedule does in AWS (an executor left ``running`` by a crash is ended by
    it once its lease is over); given ``purge``, likewise every ``purge_every`` (the
    retention that DynamoDB's TTL applies when deployed); given ``expand``, the daily
    expansion of recurring plans at start (catching up after a downtime) and every
    ``expand_every``, as the expander Lambda's schedule does in AWS.

    Creating a job whose id exists replaces it (``replace_existing``): creating a
    schedule that already exists is success, as the expansion needs when two runs
    schedule the same occurrence.
    """

    def __init__(
        self,
        run_executor: RunExecutor,
        timezone: tzinfo,
        *,
        store: Store | None = None,
        reap: Callable[[], object] | None = None,
        reap_every: timedelta = timedelta(seconds=60),
        purge: Callable[[], object] | None = None,
        purge_every: timedelta = timedelta(hours=1),
        expand: Callable[[], object] | None = None,
        expand_every: timedelta = timedelta(minutes=10),
    ) -> None:
        self._run_executor = run_executor
        self._store = store
        self._reap = reap
        self._reap_every = reap_every
        self._purge = purge
        self._purge_every = purge_every
        self._expand = expand
        self._expand_every = expand_every
        self._scheduler = BackgroundScheduler(
            timezone=timezone,
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
        )

    @property
    def min_lead_time(self) -> timedelta:
        return LOCAL_MIN_LEAD_TIME

    def max_executors_within(self, seconds: float) -> int | None:
        # Adding or removing a job is a dictionary and list operation: no bound.
        return None

    def start(self) -> None:
        """Re-arm the store's scheduled executors, add the housekeeping jobs, start firing."""
        if self._scheduler.running:
            return
        armed, overdue = self._rearm()
        if armed:
            log.info(
                "re-armed %d scheduled executors (%d came due while the engine was down)",
                armed,
                overdue,
            )
        now = datetime.now(self._scheduler.timezone)
        for job_id, call, every, name in (
            (REAPER_JOB, self._reap, self._reap_every, "reap lost executors"),
            (PURGE_JOB, self._purge, self._purge_every, "purge expired executors and plans"),
            (EXPANDER_JOB, self._expand, self._expand_every, "expand recurring plans"),
        ):
            if call is not None:
                self._scheduler.add_job(
                    self._housekeeping,
                    trigger="interval",
                    seconds=every.total_seconds(),
                    args=[call, name],
                    id=job_id,
                    name=name,
                    next_run_time=now,
                    replace_existing=True,
                )
        self._scheduler.start()

    def shutdown(self) -> None:
        """Stop firing and wait for runs in progress to record their outcome.

        Waiting matters: local mode closes the store (and stops moto) after this, and a
        run still going would then have nowhere to record its outcome.
        """
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    def create(self, executors: Sequence[Executor], deadline: Deadline | None = None) -> None:
        # Adding a job cannot fail half way or take long: the deadline is not needed.
        for executor in executors:
            if not self._scheduler.running:
                # Before start, APScheduler queues jobs without replacing one of the same
                # id (replace_existing applies only once started): replace it here, so
                # that creating an existing schedule is success, never a second delivery.
                with contextlib.suppress(JobLookupError):
                    self._scheduler.remove_job(executor.id)
            self._scheduler.add_job(
                self._run,
                trigger="date",
                run_date=executor.next_run_time,
                args=[executor.id, executor.next_run_time],
                id=executor.id,
                name=executor.name,
                replace_existing=True,
            )

    def update(self, executor: Executor) -> None:
        # A full replacement, so that the delivery carries the new time (run_at).
        self.create([executor])

    def delete(self, executor_ids: Sequence[str], deadline: Deadline | None = None) -> None:
        for executor_id in executor_ids:
            with contextlib.suppress(JobLookupError):
                self._scheduler.remove_job(executor_id)

    def scheduled_ids(self) -> list[str]:
        return [job.id for job in self._scheduler.get_jobs() if job.id not in HOUSEKEEPING_JOBS]

    def _rearm(self) -> tuple[int, int]:
        """Schedule every executor the store has ``scheduled``; (how many, how many late)."""
        if self._store is None:
            return 0, 0
        query = ExecutorQuery(executed=False, statuses=frozenset({ExecutorStatus.SCHEDULED}))
        now = datetime.now(self._scheduler.timezone)
        armed = overdue = 0
        cursor: str | None = None
        while True:
            page = self._store.list_executors(query, REARM_PAGE, cursor)
            self.create(page.items)
            armed += len(page.items)
            overdue += sum(1 for executor in page.items if executor.next_run_time <= now)
            if page.cursor is None or not page.items:
                return armed, overdue
            cursor = page.cursor

    def _run(self, executor_id: str, run_at: datetime) -> None:
        try:
            self._run_executor(executor_id, run_at)
        except Exception:  # the scheduler thread must survive any failure
            log.exception("executor run failed", extra={"executor_id": executor_id})

    @staticmethod
    def _housekeeping(call: Callable[[], object], name: str) -> None:
        try:
            call()
        except Exception:  # the scheduler thread must survive any failure
            log.exception("%s failed", name)
