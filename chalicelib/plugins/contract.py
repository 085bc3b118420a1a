"""Base classes every attack and planner extends; compatible with 2017 plugins.

An attack is built as ``Attack(args)`` and run with ``run()``; a planner is built as
``Planner(name)`` and ``plan(planner_config, attack_config)`` proposes executors with
``self._add_job(date, name, attack_config)`` (or the 2017 code form ``add_plan`` +
``_add_executor``). Planners never store or schedule anything themselves.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, ClassVar

from chalicelib.domain.model import ProposedExecutor
from chalicelib.domain.safety import TargetTags
from chalicelib.domain.times import localize, utc_now
from chalicelib.plugins.secret_policy import OutboundPolicy, SecretPolicy, SecretVault


class AttackSkipped(Exception):
    """Raised by an attack that decided not to act; the executor ends ``skipped``.

    ``result`` (what it would have targeted, for example) is stored with the reason.
    """

    def __init__(self, reason: str, result: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.result = result


class AttackFailed(Exception):
    """Raised by an attack that acted and failed; ``result`` is stored with the error."""

    def __init__(self, message: str, result: Any = None) -> None:
        super().__init__(message)
        self.result = result


class _SystemClock:
    def now(self) -> datetime:
        return utc_now()


@dataclass(frozen=True)
class AttackEnvironment:
    """Where an attack's cloud calls go: the same for every run of one engine, taken from
    its settings once (never from ``os.environ`` at run time).

    ``aws_region``: the region of EC2, SSM and Secrets Manager calls when the attack's
    arguments name none (None: the AWS chain's). ``ec2_endpoint``: another EC2 endpoint
    (local mode's moto, or ``CME_EC2_ENDPOINT``); None for the region's own.
    ``simulated_ec2``: the EC2 being attacked is local mode's moto, whose instances have
    made-up addresses, so SSH attacks must not connect to them.
    ``secret_policy``: the secret references an attack may resolve (checked again at
    resolve time). ``outbound``: the addresses an attack's own requests may not reach.
    ``target_tags``: the opt-in and exclude tags every target-picking attack applies
    (CME_OPT_IN_TAG, CME_EXCLUDE_TAG), whatever a plan's filters say.
    """

    aws_region: str | None = None
    ec2_endpoint: str | None = None
    simulated_ec2: bool = False
    secret_policy: SecretPolicy = field(default_factory=SecretPolicy)
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
    target_tags: TargetTags = field(default_factory=TargetTags)


@dataclass
class AttackContext:
    """What the engine tells an attack about the run it is part of."""

    executor_id: str = ""
    plan_id: str = ""
    dry_run: bool = False
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("attacks"))
    clock: Any = field(default_factory=_SystemClock)
    environment: AttackEnvironment = field(default_factory=AttackEnvironment)
    # The secret values this run resolved: the runner scrubs them from what it stores.
    secrets: SecretVault = field(default_factory=SecretVault)

    @contextmanager
    def active(self) -> Iterator[AttackContext]:
        """Make this the context ``active_context()`` returns while the attack runs.

        For code an attack calls that cannot be handed the context: a 2017 plugin's
        ``EC2DriverFactory()`` finds the engine's region and EC2 endpoint through it.
        """
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)


# The context of the attack running in this thread (a ContextVar, so each scheduler
# thread sees its own run's), set only by ``AttackContext.active``.
_ACTIVE: ContextVar[AttackContext | None] = ContextVar("cme_attack_context", default=None)


def active_context() -> AttackContext | None:
    """The context of the attack this thread is running, None outside of a run."""
    return _ACTIVE.get()


def _to_dict(ref: Any, schema: Any, example: Any) -> dict[str, Any]:
    return {"ref": ref, "schema": schema, "example": example}


class Attack:
    """Base class of attacks. Subclasses set ``ref``, ``schema``, ``example`` and ``run``.

    ``schema`` validates the whole ``{"ref": ..., "args": {...}}`` object (the 2017 rule);
    ``run`` reads ``self.attack_config`` (the ``args``) and may return a JSON-able result
    describing what it targeted and did. It raises ``AttackSkipped`` to refuse and any
    other exception to fail. ``self.context`` carries the executor id and dry-run flag.

    An attack that sets ``supports_dry_run = True`` is run in dry-run plans with
    ``self.context.dry_run`` set: it must select its target, touch nothing, and say what
    it would have done (``AttackSkipped(reason, result=...)``). Other attacks are never
    called in a dry run.
    """

    ref: ClassVar[str | None] = None
    schema: ClassVar[dict[str, Any] | None] = None
    example: ClassVar[dict[str, Any] | None] = None
    supports_dry_run: ClassVar[bool] = False

    def __init__(self, attack_config: dict[str, Any] | None) -> None:
        self.attack_config: dict[str, Any] = dict(attack_config or {})
        self.context = AttackContext()

    def run(self) -> Any:
        raise NotImplementedError("Attacks should implement run()")

    @classmethod
    def warm_up(cls) -> None:
        """Import what ``run`` imports lazily (its drivers), so that the first run does
        not pay for it. Local mode calls it once for every attack, in the background, at
        start; the API Lambda never does (its cold start stays free of drivers)."""

    @classmethod
    def max_duration(cls, args: dict[str, Any]) -> float | None:
        """The longest, in seconds, ``run`` may take with these (valid) ``args``; None when
        it is short and bounded by the attack itself (a few API calls).

        The engine refuses at plan time an attack that may outlive the attack function's
        timeout (or the lease), since its outcome would be lost. An attack that waits on
        something its arguments bound (a timeout, a duration) returns that bound.
        """
        return None

    @staticmethod
    def _to_dict(ref: Any, schema: Any, example: Any) -> dict[str, Any]:
        return _to_dict(ref, schema, example)

    @classmethod
    def to_dict(cls) -> dict[str, Any]:
        return _to_dict(cls.ref, cls.schema, cls.example)


@dataclass
class _ProposedPlan:
    """What ``add_plan`` returns to a 2017-style planner: something with an ``id``."""

    name: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


class Planner:
    """Base class of planners. Subclasses set ``ref``, ``schema``, ``example`` and ``plan``.

    ``schema`` validates the planner's ``args``. ``plan(planner_config, attack_config)``
    receives the whole ``{"ref", "args"}`` planner object and the attack object, and calls
    ``self._add_job(date, name, attack_config)`` once per executor. Naive dates are in
    the engine's timezone (``self.timezone``); ``self.clock.now()`` is the current instant.
    """

    ref: ClassVar[str | None] = None
    schema: ClassVar[dict[str, Any] | None] = None
    example: ClassVar[dict[str, Any] | None] = None

    def __init__(self, name: str) -> None:
        self.name = name
        self.timezone: tzinfo = UTC
        self.clock: Any = _SystemClock()
        self.max_executors: int | None = None
        self.proposals: list[ProposedExecutor] = []

    def plan(self, planner_config: dict[str, Any], attack_config: dict[str, Any]) -> None:
        raise NotImplementedError("Planners should implement plan()")

    def _add_job(self, date: datetime, name: str, attack_config: dict[str, Any]) -> None:
        """Propose one executor of ``attack_config`` at ``date``."""
        if not isinstance(date, datetime):
            raise TypeError(f"executor date must be a datetime, not {type(date).__name__}")
        self.proposals.append(
            ProposedExecutor(
                run_at=localize(date, self.timezone), name=str(name), attack=attack_config
            )
        )

    def add_plan(self, name: str) -> _ProposedPlan:
        """2017 code form: the plan is created by the engine; this only returns an id."""
        return _ProposedPlan(name=name)

    def _add_executor(
        self, date: datetime, name: str, attack_config: dict[str, Any], plan_id: str
    ) -> None:
        """2017 code form of ``_add_job``; ``plan_id`` is ignored (the engine owns plans)."""
        self._add_job(date, name, attack_config)

    @staticmethod
    def _to_dict(ref: Any, schema: Any, example: Any) -> dict[str, Any]:
        return _to_dict(ref, schema, example)

    @classmethod
    def to_dict(cls) -> dict[str, Any]:
        return _to_dict(cls.ref, cls.schema, cls.example)
