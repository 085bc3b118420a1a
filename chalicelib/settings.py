"""Engine settings, read once from the environment (stage variables or local mode)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chalicelib.domain.model import EARLY_DELIVERY_WINDOW

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TRUE_WORDS = frozenset({"true", "yes", "on", "y", "1"})


def is_true(value: object) -> bool:
    """The API's and the settings' reading of a yes/no word, in any case."""
    return isinstance(value, str) and value.strip().lower() in TRUE_WORDS


def builtin_folder(name: str) -> Path:
    """A built-in plugin folder: top level in a checkout, under vendor/ in a Lambda zip."""
    for candidate in (PROJECT_ROOT / name, PROJECT_ROOT / "vendor" / name):
        if candidate.is_dir():
            return candidate
    return PROJECT_ROOT / name


AUTH_MODES = ("none", "iam", "api_key")
# Kept free between an attack's longest run and the end of its Lambda or lease, for the
# claim, recording the outcome and the Lambda's own start.
ATTACK_TIME_MARGIN = timedelta(seconds=30)


def _seconds(value: str | None) -> timedelta | None:
    return timedelta(seconds=float(value)) if value else None


def auth_mode(value: str) -> str:
    """A valid CME_AUTH value; ValueError naming the choices otherwise."""
    mode = value.strip().lower() or "none"
    if mode not in AUTH_MODES:
        raise ValueError(f"CME_AUTH {value!r} is not one of {', '.join(AUTH_MODES)}")
    return mode


def load_timezone(name: str) -> ZoneInfo:
    """The named IANA zone; ValueError with a one-line reason when it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r}") from None


@dataclass(frozen=True)
class Settings:
    """Everything configurable about one running engine."""

    timezone_name: str = "Europe/Madrid"
    plans_table: str = "cme-plans"
    executors_table: str = "cme-executors"
    aws_region: str = "eu-west-1"
    dynamodb_endpoint: str | None = None
    attack_folders: tuple[Path, ...] = field(default_factory=tuple)
    planner_folders: tuple[Path, ...] = field(default_factory=tuple)
    allowed_lateness: timedelta = timedelta(minutes=10)
    # An executor's lease: one still ``running`` this long after it started is ``failed``
    # ("lost") by the reaper, its attack's process having died or timed out. The default
    # is Lambda's maximum timeout, so no attack Lambda that is still alive is ever reaped;
    # keep it above the attack function's timeout.
    max_run_time: timedelta = timedelta(seconds=900)
    max_executors_per_plan: int = 500
    # A list's page size when the request names none (``limit``; at most MAX_PAGE_SIZE).
    list_limit: int = 100
    kill_switch: bool = False
    # Plan creation finishes, or undoes itself, within this (and within what is left of
    # the API Lambda's own time): below API Gateway's 29 s integration timeout, so a
    # client never sees a 504 for a plan that then goes on being created.
    plan_deadline: timedelta = timedelta(seconds=25)
    # The attack Lambda's timeout when deployed (None locally). An attack may run for
    # this less the longest wait for its second (EARLY_DELIVERY_WINDOW) and a margin;
    # without it, for the lease (max_run_time) less the margin.
    attack_function_timeout: timedelta | None = None
    # How long executed executors (and settled plans) are kept: DynamoDB TTL when
    # deployed, a periodic purge locally.
    executed_retention: timedelta = timedelta(days=90)
    # True inside a deployed Lambda: a request's deadline then also comes from the time
    # the Lambda context says is left.
    on_lambda: bool = False
    # The deployed engine (EventBridge Scheduler). ARNs may hold ``{partition}``,
    # ``{region}`` and ``{account}``, filled in from the function's own credentials, so
    # that `chalice deploy` works with the static values in .chalice/config.json.
    schedule_group: str = "chaos-monkey-engine"
    scheduler_role_arn: str = ""
    attack_function_arn: str = ""
    dead_letter_arn: str = ""
    scheduler_concurrency: int = 8
    scheduler_rate_per_second: float = 40.0
    # How the API is protected: "iam" or "api_key" on API Gateway (fixed when the app is
    # imported), "none" locally. api_token is local mode's bearer token (its --token or
    # CME_API_TOKEN); never read from a stage's environment, where SigV4 owns the
    # Authorization header.
    auth: str = "none"
    api_token: str | None = None

    @property
    def timezone(self) -> ZoneInfo:
        return load_timezone(self.timezone_name)

    @property
    def attack_time_limit(self) -> timedelta:
        """The longest an attack may be allowed to run (its arguments are checked at plan
        time): inside the attack Lambda's timeout, and inside the lease."""
        lease = self.max_run_time - ATTACK_TIME_MARGIN
        if self.attack_function_timeout is None:
            return lease
        budget = self.attack_function_timeout - EARLY_DELIVERY_WINDOW - ATTACK_TIME_MARGIN
        return min(budget, lease)

    @property
    def all_attack_folders(self) -> tuple[Path, ...]:
        return (builtin_folder("attacks"), *self.attack_folders)

    @property
    def all_planner_folders(self) -> tuple[Path, ...]:
        return (builtin_folder("planners"), *self.planner_folders)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def folders(name: str) -> tuple[Path, ...]:
            return tuple(Path(p) for p in env.get(name, "").split(os.pathsep) if p)

        return cls(
            timezone_name=env.get("CME_TIMEZONE", cls.timezone_name),
            plans_table=env.get("CME_PLANS_TABLE", cls.plans_table),
            executors_table=env.get("CME_EXECUTORS_TABLE", cls.executors_table),
            aws_region=env.get("AWS_REGION", env.get("AWS_DEFAULT_REGION", cls.aws_region)),
            dynamodb_endpoint=env.get("CME_DYNAMODB_ENDPOINT") or None,
            attack_folders=folders("CME_ATTACKS_FOLDERS"),
            planner_folders=folders("CME_PLANNERS_FOLDERS"),
            allowed_lateness=timedelta(seconds=int(env.get("CME_ALLOWED_LATENESS_SECONDS", "600"))),
            max_run_time=timedelta(seconds=int(env.get("CME_MAX_RUN_SECONDS", "900"))),
            max_executors_per_plan=int(env.get("CME_MAX_EXECUTORS_PER_PLAN", "500")),
            list_limit=int(env.get("CME_LIST_LIMIT", "100")),
            kill_switch=is_true(env.get("CME_KILL_SWITCH", "")),
            plan_deadline=timedelta(seconds=float(env.get("CME_PLAN_DEADLINE_SECONDS", "25"))),
            attack_function_timeout=_seconds(env.get("CME_ATTACK_FUNCTION_TIMEOUT_SECONDS")),
            executed_retention=timedelta(days=float(env.get("CME_RETENTION_DAYS", "90"))),
            on_lambda=bool(env.get("AWS_LAMBDA_FUNCTION_NAME")),
            schedule_group=env.get("CME_SCHEDULE_GROUP", cls.schedule_group),
            scheduler_role_arn=env.get("CME_SCHEDULER_ROLE_ARN", ""),
            attack_function_arn=env.get("CME_ATTACK_FUNCTION_ARN", ""),
            dead_letter_arn=env.get("CME_DEAD_LETTER_ARN", ""),
            scheduler_concurrency=int(env.get("CME_SCHEDULER_CONCURRENCY", "8")),
            scheduler_rate_per_second=float(env.get("CME_SCHEDULER_RATE_PER_SECOND", "40")),
            auth=auth_mode(env.get("CME_AUTH", "none")),
        )
