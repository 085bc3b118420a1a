"""The safety guards the runner asks before and after it claims an executor.

They run in GUARD_ORDER (domain/safety.py): the kill switch, the halt, the calendar, the
plan's stop conditions (before the claim: a refusal ends the executor ``skipped`` without
ever claiming it) and the plan's minimum interval (after the claim: it records the attack,
so it must come last and only for an executor that will run). Each refusal says what did
not happen and why, starting with its guard's name; a guard that cannot decide (a store or
a probe that fails) refuses: it fails closed. ``preview`` answers every guard's verdict
for a plan without recording anything. docs/safety.md describes each one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, tzinfo
from urllib.parse import urlsplit

from chalicelib.domain.errors import ProbeFailed, clip
from chalicelib.domain.model import Executor, Plan
from chalicelib.domain.ports import Clock, Probes, Store
from chalicelib.domain.safety import Calendar, Halt, HealthCheck, MinInterval, PlanSafety, Verdict

log = logging.getLogger(__name__)

# What every refusal adds: the attack was not run.
NOT_RUN = "the attack did not run"
FAILS_CLOSED = "a guard that cannot decide refuses"
# A halt's reason is quoted whole (the API takes at most 500 characters).
MAX_QUOTED_HALT = 500


def _at(moment: datetime, zone: tzinfo) -> str:
    return moment.astimezone(zone).isoformat(timespec="seconds")


def _seconds(interval: MinInterval) -> str:
    return f"{interval.interval.total_seconds():g} s"


def _target(url: str) -> str:
    """A health check's scheme, host and port: its path or query may hold a token (the
    outbound guard's messages show the same)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "an unreadable URL"
    host = parts.hostname or ""
    shown_host = f"[{host}]" if ":" in host else host
    return clip(f"{parts.scheme}://{shown_host}:{port}", 120)


def _group(interval: MinInterval, plan: Plan) -> str:
    if interval.group == "plan":
        return f"plan {plan.id}"
    return f"group {clip(interval.group_name(plan.attack.get('args')), 120)!r}"


@dataclass
class SafetyGuards:
    """Every guard of one engine: its stage-wide settings, and the store and probes the
    live ones read."""

    store: Store
    probes: Probes
    clock: Clock
    timezone: tzinfo
    calendar: Calendar
    kill_switch: bool = False

    # -- the runner's questions --------------------------------------------------------

    def before_claim(self, executor: Executor, plan: Plan, now: datetime) -> Verdict | None:
        """The first refusal, in GUARD_ORDER, of the guards that record nothing; None
        when all of them let the attack run."""
        for check in (self._kill_switch, self._halt, self._calendar, self._stop_conditions):
            verdict = self._decide(check, plan, now, executor)
            if not verdict.passed:
                return verdict
        return None

    def after_claim(self, executor: Executor, plan: Plan, now: datetime) -> Verdict | None:
        """The minimum interval, checked and recorded in one conditional write: None when
        this attack is now the group's last, a refusal when another one is too recent."""
        verdict = self._decide(self._record_interval, plan, now, executor)
        return None if verdict.passed else verdict

    def preview(self, plan: Plan, at: datetime | None = None) -> list[Verdict]:
        """Every guard's verdict for an attack of ``plan`` at ``at`` (default now), in
        GUARD_ORDER, passes included; nothing is recorded (the minimum interval is read)."""
        moment = at or self.clock.now()
        checks = (
            self._kill_switch,
            self._halt,
            self._calendar,
            self._stop_conditions,
            self._read_interval,
        )
        return [self._decide(check, plan, moment, None) for check in checks]

    # -- one guard at a time -----------------------------------------------------------

    def _decide(
        self,
        check: Callable[[Plan, datetime], Verdict],
        plan: Plan,
        now: datetime,
        executor: Executor | None,
    ) -> Verdict:
        """Run one guard; one that raises refuses (fail closed), naming what failed."""
        try:
            return check(plan, now)
        except Exception as error:
            guard, prefix = _UNDECIDED[check.__name__]
            fields = {"plan_id": plan.id, "guard": guard}
            if executor is not None:
                fields["executor_id"] = executor.id
            log.exception("a guard could not decide; it refuses", extra=fields)
            detail = clip(str(error) or type(error).__name__)
            return Verdict(
                guard,
                False,
                f"{prefix} could not be evaluated ({type(error).__name__}: {detail}); "
                f"{NOT_RUN} ({FAILS_CLOSED})",
            )

    def _kill_switch(self, plan: Plan, now: datetime) -> Verdict:
        if self.kill_switch:
            return Verdict(
                "kill_switch",
                False,
                f"kill switch: CME_KILL_SWITCH is on for this stage; {NOT_RUN}",
            )
        return Verdict("kill_switch", True, "kill switch: CME_KILL_SWITCH is off")

    def _halt(self, plan: Plan, now: datetime) -> Verdict:
        halt = self.store.get_halt()
        if halt.halted:
            return Verdict("halt", False, f"halted: {self._halt_text(halt)}; {NOT_RUN}")
        if halt.since is None:
            return Verdict("halt", True, "not halted: the halt has never been set")
        return Verdict(
            "halt",
            True,
            f"not halted: lifted by {halt.by or 'an unknown principal'} "
            f"at {_at(halt.since, self.timezone)}",
        )

    def _halt_text(self, halt: Halt) -> str:
        said = f'"{clip(halt.reason, MAX_QUOTED_HALT)}"' if halt.reason else "(no reason given)"
        by = halt.by or "an unknown principal"
        since = _at(halt.since, self.timezone) if halt.since else "an unknown time"
        return f"{said}, set by {by} since {since}"

    def _calendar(self, plan: Plan, now: datetime) -> Verdict:
        local = now.astimezone(self.timezone)
        refusal = self.calendar.refusal(local)
        if refusal is not None:
            return Verdict("calendar", False, f"{refusal}; {NOT_RUN}")
        if self.calendar.always:
            return Verdict("calendar", True, "calendar: attacks may run at any time")
        return Verdict(
            "calendar",
            True,
            f"calendar: {local.isoformat(timespec='seconds')} is inside {self.calendar.describe()}",
        )

    def _stop_conditions(self, plan: Plan, now: datetime) -> Verdict:
        safety = PlanSafety.from_dict(plan.safety)
        if not safety.alarms and not safety.health_checks:
            return Verdict("stop_conditions", True, "stop condition: the plan names none")
        refusal = self._alarm_refusal(safety.alarms) or self._health_refusal(safety.health_checks)
        if refusal is not None:
            return Verdict("stop_conditions", False, f"stop condition: {refusal}; {NOT_RUN}")
        passed = []
        if safety.alarms:
            passed.append(f"no alarm in ALARM ({', '.join(safety.alarms)})")
        if safety.health_checks:
            passed.append(f"{len(safety.health_checks)} health check(s) answered 2xx")
        return Verdict("stop_conditions", True, f"stop condition: {'; '.join(passed)}")

    def _alarm_refusal(self, names: tuple[str, ...]) -> str | None:
        if not names:
            return None
        try:
            firing = self.probes.alarms_in_alarm(names)
        except ProbeFailed as failed:
            return f"the alarms could not be evaluated ({failed.reason}), so {FAILS_CLOSED}"
        if firing:
            quoted = ", ".join(repr(name) for name in firing)
            return (
                f"alarm {quoted} is in ALARM"
                if len(firing) == 1
                else (f"alarms {quoted} are in ALARM")
            )
        return None

    def _health_refusal(self, checks: tuple[HealthCheck, ...]) -> str | None:
        """The first of the checks, in order, that refuses. They are sent together: the
        wait before the claim is the slowest check's timeout, not the sum of them all
        (that time comes out of the attack Lambda's, before the attack starts)."""
        if not checks:
            return None
        with ThreadPoolExecutor(len(checks), thread_name_prefix="health-check") as pool:
            answers = list(pool.map(self._ask, checks))
        for number, (check, answer) in enumerate(zip(checks, answers, strict=True), start=1):
            refusal = self._check_refusal(number, check, answer)
            if refusal is not None:
                return refusal
        return None

    def _ask(self, check: HealthCheck) -> int | ProbeFailed:
        try:
            return self.probes.health_status(check.url, check.timeout)
        except ProbeFailed as failed:
            return failed

    def _check_refusal(
        self, number: int, check: HealthCheck, status: int | ProbeFailed
    ) -> str | None:
        name = f"health check {number} ({_target(check.url)})"
        if isinstance(status, ProbeFailed):
            return f"{name} could not be evaluated ({status.reason}), so {FAILS_CLOSED}"
        if 200 <= status < 300:
            return None
        if 300 <= status < 400:
            return f"{name} answered {status}, not 2xx (redirects are not followed)"
        return f"{name} answered {status}, not 2xx"

    def _record_interval(self, plan: Plan, now: datetime) -> Verdict:
        interval = PlanSafety.from_dict(plan.safety).min_interval
        if interval is None:
            return Verdict("min_interval", True, "min interval: the plan sets none")
        key = interval.key(plan.id, plan.attack.get("args"))
        last = self.store.record_attack(key, now, interval.interval)
        if last is not None:
            return self._interval_refusal(interval, plan, last)
        return Verdict(
            "min_interval",
            True,
            f"min interval: recorded this attack on {_group(interval, plan)} "
            f"(one per {_seconds(interval)})",
        )

    def _read_interval(self, plan: Plan, now: datetime) -> Verdict:
        interval = PlanSafety.from_dict(plan.safety).min_interval
        if interval is None:
            return Verdict("min_interval", True, "min interval: the plan sets none")
        last = self.store.last_attack(interval.key(plan.id, plan.attack.get("args")))
        if last is not None and last > now - interval.interval:
            return self._interval_refusal(interval, plan, last)
        since = f"last at {_at(last, self.timezone)}" if last else "none recorded yet"
        return Verdict(
            "min_interval",
            True,
            f"min interval: no attack on {_group(interval, plan)} within "
            f"{_seconds(interval)} ({since})",
        )

    def _interval_refusal(self, interval: MinInterval, plan: Plan, last: datetime) -> Verdict:
        return Verdict(
            "min_interval",
            False,
            f"min interval: the last attack on {_group(interval, plan)} was at "
            f"{_at(last, self.timezone)}, less than {_seconds(interval)} before; {NOT_RUN}",
        )


# For a guard that raised: its name and the start of its refusal.
_UNDECIDED = {
    "_kill_switch": ("kill_switch", "kill switch: the kill switch"),
    "_halt": ("halt", "halted: the halt"),
    "_calendar": ("calendar", "calendar: the calendar"),
    "_stop_conditions": ("stop_conditions", "stop condition: the stop conditions"),
    "_record_interval": ("min_interval", "min interval: the interval"),
    "_read_interval": ("min_interval", "min interval: the interval"),
}
