"""The Scheduler port on an in-process APScheduler: local mode's EventBridge Scheduler."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta, tzinfo

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from chalicelib.domain.model import Executor

log = logging.getLogger(__name__)

# The id of the reaper's job, which is no executor's.
REAPER_JOB = "cme-reaper"


class LocalScheduler:
    """One date job per executor, calling ``run_executor(executor_id)`` at its time.

    Jobs run however late they fire (no misfire grace): the runner itself decides
    whether a late delivery is ``missed``, exactly as the attack Lambda does. Given
    ``reap``, it also calls it every ``reap_every`` once started, as the reaper Lambda's
    schedule does in AWS.
    """

    def __init__(
        self,
        run_executor: Callable[[str], object],
        timezone: tzinfo,
        reap: Callable[[], object] | None = None,
        reap_every: timedelta = timedelta(seconds=60),
    ) -> None:
        self._run_executor = run_executor
        self._reap = reap
        self._reap_every = reap_every
        self._scheduler = BackgroundScheduler(
            timezone=timezone,
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
        )

    def start(self) -> None:
        if not self._scheduler.running:
            if self._reap is not None:
                self._scheduler.add_job(
                    self._run_reaper,
                    trigger="interval",
                    seconds=self._reap_every.total_seconds(),
                    id=REAPER_JOB,
                    name="reap lost executors",
                    replace_existing=True,
                )
            self._scheduler.start()

    def shutdown(self) -> None:
        """Stop firing and wait for runs in progress to record their outcome.

        Waiting matters: local mode stops moto after this, and a run still going would
        then send its storage calls to the real AWS endpoints.
        """
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    def create(self, executors: Sequence[Executor]) -> None:
        for executor in executors:
            self._scheduler.add_job(
                self._run,
                trigger="date",
                run_date=executor.next_run_time,
                args=[executor.id],
                id=executor.id,
                name=executor.name,
                replace_existing=True,
            )

    def update(self, executor: Executor) -> None:
        try:
            self._scheduler.reschedule_job(
                executor.id, trigger="date", run_date=executor.next_run_time
            )
        except JobLookupError:
            self.create([executor])

    def delete(self, executor_ids: Sequence[str]) -> None:
        for executor_id in executor_ids:
            with contextlib.suppress(JobLookupError):
                self._scheduler.remove_job(executor_id)

    def scheduled_ids(self) -> list[str]:
        return [job.id for job in self._scheduler.get_jobs() if job.id != REAPER_JOB]

    def _run(self, executor_id: str) -> None:
        try:
            self._run_executor(executor_id)
        except Exception:  # the scheduler thread must survive any failure
            log.exception("executor run failed", extra={"executor_id": executor_id})

    def _run_reaper(self) -> None:
        if self._reap is None:
            return
        try:
            self._reap()
        except Exception:  # the scheduler thread must survive any failure
            log.exception("reaping lost executors failed")
