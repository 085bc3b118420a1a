"""Create, read and delete plans; a plan and its schedules are stored all or nothing.

Creation is a small two-phase commit with the plan record as the commit point: the plan
is stored *uncommitted* with its executors, their schedules are created within a
deadline, and only then is the plan committed. No executor of an uncommitted plan can be
claimed, so whatever happens half way (an error, the deadline, the process killed) no
attack runs for a plan the client did not see created: an error undoes exactly what was
created; a killed creation is removed by the reaper.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol

from chalicelib.domain.errors import (
    MAX_DETAIL,
    EngineError,
    InvalidPayload,
    InvalidRequest,
    PlanExists,
    PlanningError,
    PlanNotFound,
    SchedulingError,
    clip,
)
from chalicelib.domain.model import (
    Executor,
    ExecutorStatus,
    Plan,
    ProposedExecutor,
    StatusCounts,
)
from chalicelib.domain.ports import (
    MAX_PAGE_SIZE,
    Clock,
    ExecutorQuery,
    Page,
    PlanQuery,
    Scheduler,
    Store,
)
from chalicelib.domain.recurrence import next_expansion
from chalicelib.domain.redaction import redact, redact_text
from chalicelib.domain.safety import SAFETY_SCHEMA, PlanSafety, Verdict
from chalicelib.domain.times import Deadline, ceil_to_second
from chalicelib.plugins.contract import (
    Attack,
    AttackContext,
    AttackEnvironment,
    AttackSkipped,
    Planner,
)
from chalicelib.plugins.registry import PluginSet
from chalicelib.plugins.secret_policy import ArgumentPolicy, SecretVault
from chalicelib.plugins.validation import validate, validate_planner
from chalicelib.services.audit import AuditTrail
from chalicelib.services.limits import check_plan_size, check_proposals
from chalicelib.services.paging import plan_executor_ids
from chalicelib.services.recurrence import (
    ExpansionService,
    end_date_of,
    first_expansion,
    occurrence_ids,
    recurring_class,
)

log = logging.getLogger(__name__)

PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 256},
        "dry_run": {"type": "boolean"},
        "attack": {
            "type": "object",
            "properties": {"ref": {"type": "string", "minLength": 1}, "args": {"type": "object"}},
            "required": ["ref"],
        },
        "planner": {
            "type": "object",
            "properties": {"ref": {"type": "string", "minLength": 1}, "args": {"type": "object"}},
            "required": ["ref", "args"],
        },
    },
    "required": ["name", "attack", "planner"],
}

# PlanService has a ``list`` method, which hides the builtin in its annotations.
ExecutorList = list[Executor]
ProposalList = list[ProposedExecutor]

# PUT /plans/<id>: what may change on a plan.
PLAN_UPDATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"paused": {"type": "boolean"}},
    "required": ["paused"],
    "additionalProperties": False,
}

# Idempotency keys: what a client may send (a UUID is the usual choice).
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_KEYED_PLANS = uuid.UUID("6f1c3c52-2f33-4b8e-9d63-2c7d7c8e1a55")


def fingerprint(payload: Any) -> str:
    """A digest of a request body, equal for equal JSON whatever its key order."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def keyed_plan_id(key: str) -> str:
    """The id of the plan an Idempotency-Key creates: the same key, the same plan."""
    if not IDEMPOTENCY_KEY.match(key):
        raise InvalidRequest(
            "Idempotency-Key must be 1-255 printable ASCII characters without spaces"
        )
    return uuid.uuid5(_KEYED_PLANS, key).hex


def executor_of(plan: Plan, proposal: ProposedExecutor, executor_id: str | None = None) -> Executor:
    """The executor a planner's proposal becomes in ``plan`` (a new id unless given)."""
    return Executor(
        id=executor_id or uuid.uuid4().hex,
        plan_id=plan.id,
        name=proposal.name,
        next_run_time=ceil_to_second(proposal.run_at),
        attack=proposal.attack,
        dry_run=plan.dry_run,
    )


@dataclass(frozen=True)
class PlanView:
    """A plan with the first page of its executors."""

    plan: Plan
    executors: Page[Executor]


@dataclass(frozen=True)
class PlanDraft:
    """A plan body validated and planned, not stored: its plan (uncommitted), the
    executors the planner proposed, and its attack's class."""

    plan: Plan
    executors: list[Executor]
    attack_class: type[Attack]


class GuardPreview(Protocol):
    """The safety guards, asked what they would say, recording nothing."""

    def preview(self, plan: Plan, at: datetime) -> list[Verdict]: ...


@dataclass(frozen=True)
class PlanPreview:
    """What creating a plan body would do now: its draft, the targets its attack's dry
    run found (None, with ``targets_note`` saying why, when it could not tell) and every
    guard's verdict."""

    draft: PlanDraft
    targets: list[Any] | None
    targets_note: str | None
    verdicts: list[Verdict]


def dry_run_targets(
    plan: Plan, attack_class: type[Attack], environment: AttackEnvironment, clock: Clock
) -> tuple[list[Any] | None, str | None]:
    """The targets a dry run of ``plan``'s attack names, and a note when there are none.

    Only an attack that supports dry run is called, and only in dry run: it finds its
    targets and touches nothing, and it resolves no secret (the dry-run rule of the
    attack contract). Its drivers are imported here, on a preview, never at the API's
    cold start. An attack that fails to find its targets gives None and the error,
    clipped and with secrets masked.
    """
    ref = attack_class.ref or plan.attack.get("ref")
    if not attack_class.supports_dry_run:
        return None, (
            f"{ref} does not support dry run, so its targets cannot be listed without running it"
        )
    attack = attack_class(plan.attack.get("args") or {})
    vault = SecretVault()
    attack.context = AttackContext(
        plan_id=plan.id,
        dry_run=True,
        logger=logging.getLogger(f"attacks.{ref}"),
        clock=clock,
        environment=environment,
        secrets=vault,
    )
    reason: str | None = None
    try:
        with attack.context.active():
            outcome = attack.run()
    except AttackSkipped as skipped:
        outcome, reason = skipped.result, skipped.reason
    except Exception as error:  # the attack's failure is the preview's answer, not a 500
        text = str(error) or type(error).__name__
        if type(error).__name__ not in text:
            text = f"{type(error).__name__}: {text}"
        shown = clip(redact_text(vault.scrub(text)), MAX_DETAIL)
        return None, f"finding the targets failed: {shown}"
    targets = outcome.get("targets") if isinstance(outcome, dict) else None
    if not isinstance(targets, list):
        why = f": {redact_text(vault.scrub(reason))}" if reason else ""
        return None, f"the dry run of {ref} named no targets{why}"
    note = clip(redact_text(vault.scrub(reason)), MAX_DETAIL) if reason and not targets else None
    return redact(vault.scrub(targets)), note


@dataclass
class PlanService:
    store: Store
    scheduler: Scheduler
    attacks: PluginSet[Attack]
    planners: PluginSet[Planner]
    clock: Clock
    timezone: tzinfo
    max_executors: int
    list_limit: int
    deadline: timedelta = timedelta(seconds=25)
    attack_time_limit: timedelta = timedelta(seconds=870)
    # The secrets a plan may reference and the addresses it may name (operator settings).
    argument_policy: ArgumentPolicy = field(default_factory=ArgumentPolicy)
    # Expands a resumed recurring plan at once (None: the expansion job will).
    expansion: ExpansionService | None = None
    # Every plan created, paused, resumed or deleted is an event; None: none.
    audit: AuditTrail | None = None

    @property
    def executor_limit(self) -> int:
        """The most executors one plan may have: the setting, or fewer if the scheduler
        could not create and undo more within the deadline."""
        within = self.scheduler.max_executors_within(self.deadline.total_seconds())
        return self.max_executors if within is None else max(1, min(self.max_executors, within))

    def create(
        self,
        payload: Any,
        idempotency_key: str | None = None,
        deadline: Deadline | None = None,
        actor: str = "local",
    ) -> Plan:
        """Validate, plan, store and schedule; on any failure nothing is left behind.

        With ``idempotency_key``, a repeated request answers with the plan the first one
        created (PlanExists while that one is still being created, or when the key was
        used for another body). ``deadline`` bounds the whole creation, undo included.
        """
        deadline = deadline or Deadline(self.deadline.total_seconds())
        digest = fingerprint(payload) if idempotency_key is not None else None
        plan_id = keyed_plan_id(idempotency_key) if idempotency_key is not None else None
        if plan_id is not None:
            existing = self.store.get_plan(plan_id)
            if existing is not None:
                return self._replay(existing, digest)

        draft = self.draft(payload, plan_id, digest)
        plan, executors = draft.plan, draft.executors
        try:
            self.store.add_plan(plan, executors)
        except PlanExists:
            # The same key, sent again while the first request was storing it.
            existing = self.store.get_plan(plan.id)
            if existing is None:
                raise
            return self._replay(existing, digest)
        try:
            self.scheduler.create(executors, deadline)
            self.store.commit_plan(plan.id)
        except Exception as error:
            # Exactly the schedules that exist: those the scheduler says it created, or
            # all of them when it was the commit that failed.
            created = (
                list(error.created)
                if isinstance(error, SchedulingError)
                else [executor.id for executor in executors]
            )
            self._undo(plan, created, deadline)
            if isinstance(error, EngineError):
                raise
            raise SchedulingError(str(error)) from error
        plan.committed = True
        # The draft's counts are empty (the store counts what it holds): the plan's own
        # executors, so that the returned plan and its plan.created event say how many.
        plan.counts = StatusCounts(dict(Counter(executor.status for executor in executors)))
        log.info(
            "plan created",
            extra={
                "plan_id": plan.id,
                "executors": len(executors),
                "attack": draft.attack_class.ref,
            },
        )
        if self.audit is not None:
            self.audit.plan_created(plan, actor)
        return plan

    def draft(
        self, payload: Any, plan_id: str | None = None, digest: str | None = None
    ) -> PlanDraft:
        """Validate and plan a plan body, storing and scheduling nothing.

        What ``create`` stores and ``preview`` shows: the same checks, so a body that
        previews is a body that can be created (until time or the store moves on).
        """
        validate(payload, PLAN_SCHEMA, "plan")
        planner_class = self.planners.resolve(payload["planner"]["ref"])
        attack_class = self.attacks.resolve(payload["attack"]["ref"])
        attack_config = {"args": {}, **payload["attack"]}
        validate_planner(payload["planner"], planner_class.schema)
        self._check_attack(attack_class, attack_config)
        safety = self._check_safety(payload.get("safety"), attack_config["args"])
        check_plan_size(payload["planner"], attack_config)

        proposals, recurrence_args = self._propose(
            planner_class, payload["name"], payload["planner"], attack_config
        )
        created = self.clock.now()
        # A recurring plan stores the args its planner completed (the seed, a start
        # date), so that every later day expands the same way; the idempotency
        # fingerprint stays the request's.
        planner_config = (
            payload["planner"]
            if recurrence_args is None
            else {**payload["planner"], "args": recurrence_args}
        )
        recurring = recurring_class(planner_class) if recurrence_args is not None else None
        plan = Plan(
            id=plan_id or uuid.uuid4().hex,
            name=payload["name"],
            created=created,
            planner=planner_config,
            attack=attack_config,
            dry_run=bool(payload.get("dry_run", False)),
            committed=False,
            fingerprint=digest,
            safety=safety,
            next_expansion=(
                None
                if recurring is None or recurrence_args is None
                else first_expansion(created, recurrence_args, self.timezone)
            ),
        )
        # Today's executors of a recurring plan get the ids its expansion gives that day.
        ids = (
            {}
            if recurring is None or recurrence_args is None
            else occurrence_ids(
                recurring,
                plan.id,
                recurrence_args,
                created.astimezone(self.timezone).date(),
                self.timezone,
            )
        )
        executors = [
            executor_of(plan, proposal, ids.get(ceil_to_second(proposal.run_at)))
            for proposal in proposals
        ]
        return PlanDraft(plan, executors, attack_class)

    def preview(
        self, payload: Any, guards: GuardPreview, environment: AttackEnvironment
    ) -> PlanPreview:
        """What creating ``payload`` would do now, doing none of it: the executors the
        planner would create, the targets a dry run of the attack finds, and each
        guard's verdict. Nothing is stored or scheduled; the attack only looks (its dry
        run), and ``guards`` only read.
        """
        draft = self.draft(payload)
        now = self.clock.now()
        targets, note = dry_run_targets(draft.plan, draft.attack_class, environment, self.clock)
        verdicts = guards.preview(draft.plan, now)
        log.info(
            "plan previewed",
            extra={"executors": len(draft.executors), "attack": draft.attack_class.ref},
        )
        return PlanPreview(draft, targets, note, verdicts)

    def _check_safety(self, safety: Any, attack_args: Any) -> dict[str, Any] | None:
        """A plan's ``safety`` object as it may be stored: its schema, a ``tag:KEY``
        interval group the attack's filters give a value, and health-check URLs the
        outbound policy allows (no link-local or instance-metadata address, as for an
        attack's own URLs). None when the body has none."""
        if safety is None:
            return None
        validate(safety, SAFETY_SCHEMA, "safety")
        interval = PlanSafety.from_dict(safety).min_interval
        if interval is not None:
            try:
                interval.group_name(attack_args if isinstance(attack_args, dict) else None)
            except ValueError as error:
                raise InvalidPayload(f"safety.min_interval.group: {error}") from None
        checks = (safety.get("stop_conditions") or {}).get("health_checks") or ()
        for index, check in enumerate(checks):
            refusal = self.argument_policy.outbound.literal_refusal(check["url"])
            if refusal is not None:
                raise InvalidPayload(
                    f"safety.stop_conditions.health_checks.{index}.url: not allowed: {refusal}"
                )
        return dict(safety)

    def _replay(self, existing: Plan, digest: str | None) -> Plan:
        if existing.fingerprint != digest:
            raise PlanExists(
                existing.id, "was created with this Idempotency-Key for another request body"
            )
        if not existing.committed:
            raise PlanExists(
                existing.id,
                "is still being created with this Idempotency-Key; retry in a few seconds",
            )
        log.info("plan creation replayed for its Idempotency-Key", extra={"plan_id": existing.id})
        return existing

    def _check_attack(self, attack_class: type[Attack], config: dict[str, Any]) -> None:
        """An attack config as a plan may hold it: its schema, the operator's argument
        policy (secret references, outbound addresses) and its longest run."""
        validate(config, attack_class.schema, "attack")
        self.argument_policy.check(config, "attack")
        self._check_duration(attack_class, config, "attack")

    def _check_duration(
        self, attack_class: type[Attack], config: dict[str, Any], where: str
    ) -> None:
        """Refuse an attack that may run longer than its Lambda (or its lease) allows."""
        longest = attack_class.max_duration(config.get("args") or {})
        limit = self.attack_time_limit.total_seconds()
        if longest is not None and longest > limit:
            raise PlanningError(
                f"{where}.args: {attack_class.ref} may run for {longest:g} s with these "
                f"arguments; the limit is {limit:g} s (the attack function's timeout less "
                "the wait for the executor's second and a margin)"
            )

    def _propose(
        self,
        planner_class: type[Planner],
        name: str,
        planner_config: dict[str, Any],
        attack_config: dict[str, Any],
    ) -> tuple[list[ProposedExecutor], dict[str, Any] | None]:
        """The planner's proposals, checked, and the args a recurring planner wants
        stored with the plan (``recurrence_args``; None for a one-shot planner)."""
        limit = self.executor_limit
        planner = planner_class(name)
        planner.timezone = self.timezone
        planner.clock = self.clock
        planner.max_executors = limit
        if hasattr(planner, "lead_time"):
            # Today's occurrences closer than this are left out rather than refused.
            planner.lead_time = self.scheduler.min_lead_time
        try:
            planner.plan(planner_config, attack_config)
        except InvalidRequest:
            raise
        except Exception as error:  # a planner choking on its input is the input's fault
            raise PlanningError(f"{type(error).__name__}: {error}") from error
        proposals = planner.proposals
        recurrence_args = getattr(planner, "recurrence_args", None)
        if not isinstance(recurrence_args, dict) or recurring_class(planner_class) is None:
            recurrence_args = None
        # A recurring plan created after today's window has nothing today: its later
        # days come from the daily expansion.
        if not proposals and recurrence_args is None:
            raise PlanningError("the planner proposed no executors")
        check_proposals(proposals)
        if len(proposals) > limit:
            raise PlanningError(
                f"the planner proposed {len(proposals)} executors; the limit is {limit} per "
                "plan (CME_MAX_EXECUTORS_PER_PLAN, and what the scheduler can create and "
                "undo within the plan deadline)"
            )
        now = self.clock.now()
        lead = self.scheduler.min_lead_time
        for proposal in proposals:
            if proposal.run_at <= now:
                raise PlanningError(f"executor date {proposal.run_at.isoformat()} is in the past")
            if proposal.run_at - now < lead:
                raise PlanningError(
                    f"executor date {proposal.run_at.isoformat()} is less than the minimum "
                    f"lead time ({int(lead.total_seconds())} s) ahead; this scheduler cannot "
                    "deliver it on time"
                )
            if proposal.attack is not attack_config:
                self._check_attack(
                    self.attacks.resolve(proposal.attack.get("ref")), proposal.attack
                )
        return proposals, recurrence_args

    def _undo(self, plan: Plan, created: list[str], deadline: Deadline) -> None:
        log.warning(
            "plan creation failed; undoing it",
            extra={"plan_id": plan.id, "schedules": len(created)},
        )
        try:
            self.scheduler.delete(created, deadline)
        finally:
            # If this fails too the plan stays uncommitted: never run, and reaped.
            self.store.delete_plan(plan)

    def get(self, plan_id: str, limit: int | None = None) -> PlanView:
        plan = self.store.get_plan(plan_id)
        if plan is None or not plan.committed:
            raise PlanNotFound(plan_id)
        executors = self.store.list_executors(
            ExecutorQuery(executed=None, plan_id=plan_id), self.page_size(limit), None
        )
        return PlanView(plan, executors)

    def list(
        self, query: PlanQuery, limit: int | None = None, cursor: str | None = None
    ) -> Page[Plan]:
        return self.store.list_plans(query, self.page_size(limit), cursor)

    def delete(self, plan_id: str, actor: str = "local") -> None:
        plan = self.store.get_plan(plan_id)
        if plan is None or not plan.committed:
            raise PlanNotFound(plan_id)
        ids = plan_executor_ids(self.store, plan_id)
        # The store first: it refuses (ExecutorRunning) while an attack runs, and a claim
        # after it finds nothing, so a schedule that fires meanwhile runs nothing.
        self.store.delete_plan(plan)
        self.scheduler.delete(ids)
        log.info("plan deleted", extra={"plan_id": plan_id, "executors": len(ids)})
        if self.audit is not None:
            self.audit.plan_deleted(plan_id, actor, name=plan.name)

    def update(self, plan_id: str, payload: Any, actor: str = "local") -> PlanView:
        """Pause (``{"paused": true}``) or resume (``{"paused": false}``) a plan; returns
        it as ``get`` does. Asking for the state a plan is in changes nothing.

        Pausing stops the plan's expansion and deletes its scheduled executors and their
        schedules (a running one finishes; executed ones stay). Resuming plans again
        from now: a recurring plan expands today's remaining window and tomorrow at
        once; a one-shot plan's planner runs again and its proposals still ahead of now
        + the scheduler's lead time are added (with new ids).
        """
        validate(payload, PLAN_UPDATE_SCHEMA, "plan")
        plan = self.store.get_plan(plan_id)
        if plan is None or not plan.committed:
            raise PlanNotFound(plan_id)
        if payload["paused"] and not plan.paused:
            self._pause(plan)
        elif not payload["paused"] and plan.paused:
            self._resume(plan)
        else:
            return self.get(plan_id)
        view = self.get(plan_id)
        if self.audit is not None:
            if view.plan.paused:
                self.audit.plan_paused(view.plan, actor)
            else:
                self.audit.plan_resumed(view.plan, actor)
        return view

    def _pause(self, plan: Plan) -> None:
        # The flag first: an expansion that runs meanwhile is refused at its commit
        # (set_expansion) and removes what it added.
        self.store.set_paused(plan.id, True, plan.last_expanded, None)
        pending = self._scheduled_executors(plan.id)
        # The store first, conditional on each one's status as a claim is: one claimed
        # meanwhile is running and is left to finish.
        removed = [executor.id for executor in pending if self.store.delete_executor(executor)]
        self.scheduler.delete(removed)
        log.info("plan paused", extra={"plan_id": plan.id, "executors": len(removed)})

    def _scheduled_executors(self, plan_id: str) -> ExecutorList:
        query = ExecutorQuery(
            executed=False, plan_id=plan_id, statuses=frozenset({ExecutorStatus.SCHEDULED})
        )
        found: ExecutorList = []
        cursor: str | None = None
        while True:
            page = self.store.list_executors(query, MAX_PAGE_SIZE, cursor)
            found.extend(page.items)
            if page.cursor is None or not page.items:
                return found
            cursor = page.cursor

    def _resume(self, plan: Plan) -> None:
        try:
            planner_class: type[Planner] | None = self.planners.resolve(plan.planner.get("ref"))
        except EngineError as error:
            log.warning(
                "resumed plan's planner is not loaded; nothing planned: %s",
                error.message,
                extra={"plan_id": plan.id},
            )
            planner_class = None
        today = self.clock.now().astimezone(self.timezone).date()
        recurring = None if planner_class is None else recurring_class(planner_class)
        if recurring is not None:
            # Yesterday counts as expanded: today's window (what is left of it) and
            # tomorrow are expanded again; occurrence ids make it add only what is gone.
            yesterday = today - timedelta(days=1)
            end = end_date_of(plan.planner.get("args") or {})
            following = next_expansion(yesterday, today, yesterday, self.timezone, end)
            self.store.set_paused(plan.id, False, yesterday, following)
            log.info("plan resumed", extra={"plan_id": plan.id})
            if self.expansion is not None:
                try:
                    self.expansion.expand_plan(plan.id)
                except Exception:
                    # The plan is due: the expansion job's next run does it.
                    log.exception("resumed plan not expanded yet", extra={"plan_id": plan.id})
            return
        self.store.set_paused(plan.id, False, plan.last_expanded, None)
        executors = [] if planner_class is None else self._replan(planner_class, plan)
        added_ids = set(self.store.add_executors(plan.id, executors)) if executors else set()
        added = [executor for executor in executors if executor.id in added_ids]
        try:
            self.scheduler.create(added, Deadline(self.deadline.total_seconds()))
        except Exception as error:
            created = (
                list(error.created)
                if isinstance(error, SchedulingError)
                else [executor.id for executor in added]
            )
            for executor in added:
                self.store.delete_executor(executor)
            self.scheduler.delete(created)
            self.store.set_paused(plan.id, True, plan.last_expanded, None)
            if isinstance(error, EngineError):
                raise
            raise SchedulingError(str(error)) from error
        log.info("plan resumed", extra={"plan_id": plan.id, "executors": len(added)})

    def _replan(self, planner_class: type[Planner], plan: Plan) -> ExecutorList:
        """A one-shot plan's planner run again now: the executors it proposes that are
        still ahead of now + the lead time (none when it can no longer plan)."""
        try:
            proposals, _ = self._propose(planner_class, plan.name, plan.planner, plan.attack)
        except EngineError as error:
            log.info(
                "resumed plan has nothing left to plan: %s",
                error.message,
                extra={"plan_id": plan.id},
            )
            # A proposal too close or past makes _propose refuse them all: keep the rest.
            proposals = self._proposals_ahead(planner_class, plan)
        return [executor_of(plan, proposal) for proposal in proposals]

    def _proposals_ahead(self, planner_class: type[Planner], plan: Plan) -> ProposalList:
        planner = planner_class(plan.name)
        planner.timezone = self.timezone
        planner.clock = self.clock
        planner.max_executors = self.executor_limit
        if hasattr(planner, "lead_time"):
            planner.lead_time = self.scheduler.min_lead_time
        try:
            planner.plan(plan.planner, plan.attack)
            cutoff = (self.clock.now() + self.scheduler.min_lead_time).astimezone(UTC)
            ahead = [p for p in planner.proposals if p.run_at.astimezone(UTC) > cutoff]
            check_proposals(ahead)
            for proposal in ahead:
                if proposal.attack is not plan.attack:
                    self._check_attack(
                        self.attacks.resolve(proposal.attack.get("ref")), proposal.attack
                    )
        except Exception as error:
            log.info("resumed plan cannot be planned again: %s", error, extra={"plan_id": plan.id})
            return []
        return ahead[: self.executor_limit]

    def page_size(self, limit: int | None) -> int:
        """The page size a request asked for, or the default; within 1..MAX_PAGE_SIZE."""
        if limit is None:
            return self.list_limit
        return max(1, min(limit, MAX_PAGE_SIZE))
