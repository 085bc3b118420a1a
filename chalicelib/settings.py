"""Engine settings, read once from the environment (stage variables or local mode).

Every ``CME_*`` variable is described once, in ``VARIABLES``: its Settings field, how its
text is read, its default, what it means and, for the common ones, local mode's flag.
``Settings.from_env`` reads them, the ``chaos-monkey-engine`` command builds its options
and ``--help`` from them, and docs/local-mode.md lists them (a test keeps it so).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chalicelib.domain.model import EARLY_DELIVERY_WINDOW
from chalicelib.domain.ports import MAX_PAGE_SIZE
from chalicelib.domain.safety import WEEKDAYS, Calendar, TargetTags, parse_tag
from chalicelib.plugins.contract import AttackEnvironment
from chalicelib.plugins.secret_policy import ArgumentPolicy, OutboundPolicy, SecretPolicy

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TRUE_WORDS = frozenset({"true", "yes", "on", "y", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "n", "0", ""})


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
# The longest the guards may take before the claim (docs/safety.md): the plan's health
# checks (sent together, at most 10 s) and its CloudWatch alarms (2 attempts of at most
# 3 s to connect and 5 s to read), plus the halt and plan reads.
GUARD_TIME_BUDGET = timedelta(seconds=30)


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
    # The halt and the minimum-interval records (deployed; --store moto).
    control_table: str = "cme-control"
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
    # The largest request body the API reads (413 above); API Gateway and the local
    # server refuse anything over 10 MB before it.
    max_body_bytes: int = 256 * 1024
    kill_switch: bool = False
    # The engine's own target rules (docs/safety.md): a target must carry the opt-in tag
    # and must not carry the exclude tag ((key, value); value None: any value).
    opt_in_tag: tuple[str, str | None] | None = ("chaos-monkey-engine", "target")
    exclude_tag: tuple[str, str | None] | None = ("chaos-monkey-engine-exclude", None)
    # The calendar, in the engine's timezone: weekdays (0 Monday), hours [first, end)
    # and blackout dates. An executor due outside it is skipped.
    attack_weekdays: frozenset[int] = frozenset(range(7))
    attack_hours: tuple[int, int] = (0, 24)
    blackout_dates: frozenset[date] = frozenset()
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
    # Where an attack's EC2 calls go (None: the region's endpoint); local mode sets it to
    # its moto EC2 and marks that EC2 ``simulated`` (its addresses are not real hosts).
    ec2_endpoint: str | None = None
    simulated_ec2: bool = False
    # The secrets a plan may reference (defaults: what the deployed IAM policies grant)
    # and whether attacks may send requests to link-local / instance-metadata addresses.
    secret_env_prefix: str = "CME_SECRET_"  # noqa: S105 (a variable-name prefix, no secret)
    secret_ssm_paths: tuple[str, ...] = ("/chaos-monkey-engine/",)
    secret_secretsmanager_paths: tuple[str, ...] = ("chaos-monkey-engine/",)
    allow_link_local_targets: bool = False
    # Local mode: its store ("sqlite" or "moto", DynamoDB on moto through the deployed
    # code), the data directory of the SQLite file, or that file itself (-d).
    store: str = "sqlite"
    data_dir: Path | None = None
    database_file: Path | None = None
    # Local mode runs the reaper this often (deployed, the reaper Lambda's schedule does).
    reap_interval: timedelta = timedelta(seconds=60)
    # The audit trail (docs/events.md): its DynamoDB table (deployed; --store moto), how
    # long events are kept (TTL when deployed, a periodic purge of events.sqlite3 locally)
    # and where executor and halt notifications go. The webhook URL may hold a token: it
    # is left out of the repr and masked in every log line.
    events_table: str = "cme-events"
    events_retention: timedelta = timedelta(days=365)
    notify_webhook_url: str | None = field(default=None, repr=False)
    notify_sns_topic_arn: str | None = None

    @property
    def timezone(self) -> ZoneInfo:
        return load_timezone(self.timezone_name)

    @property
    def calendar(self) -> Calendar:
        return Calendar(self.attack_weekdays, self.attack_hours, self.blackout_dates)

    @property
    def target_tags(self) -> TargetTags:
        return TargetTags(opt_in=self.opt_in_tag, exclude=self.exclude_tag)

    @property
    def attack_time_limit(self) -> timedelta:
        """The longest an attack may be allowed to run (its arguments are checked at plan
        time): inside the attack Lambda's timeout, and inside the lease."""
        lease = self.max_run_time - ATTACK_TIME_MARGIN
        if self.attack_function_timeout is None:
            return lease
        budget = (
            self.attack_function_timeout
            - EARLY_DELIVERY_WINDOW
            - GUARD_TIME_BUDGET
            - ATTACK_TIME_MARGIN
        )
        return min(budget, lease)

    @property
    def all_attack_folders(self) -> tuple[Path, ...]:
        return (builtin_folder("attacks"), *self.attack_folders)

    @property
    def all_planner_folders(self) -> tuple[Path, ...]:
        return (builtin_folder("planners"), *self.planner_folders)

    @property
    def database_path(self) -> Path:
        """Local mode's SQLite file: ``database_file``, else ``DATABASE_NAME`` in the data
        directory (``from_env(local=True)`` always sets one)."""
        if self.database_file is not None:
            return self.database_file
        if self.data_dir is None:
            raise ValueError("no data directory and no database file for the SQLite store")
        return self.data_dir / DATABASE_NAME

    @property
    def attack_environment(self) -> AttackEnvironment:
        """What every attack's context says about where its cloud calls go."""
        return AttackEnvironment(
            aws_region=self.aws_region or None,
            ec2_endpoint=self.ec2_endpoint,
            simulated_ec2=self.simulated_ec2,
            secret_policy=self.argument_policy.secrets,
            outbound=self.argument_policy.outbound,
            target_tags=self.target_tags,
        )

    @property
    def argument_policy(self) -> ArgumentPolicy:
        """What a plan's attack may reference and reach (checked at plan and run time)."""
        return ArgumentPolicy(
            secrets=SecretPolicy(
                env_prefix=self.secret_env_prefix,
                ssm_paths=self.secret_ssm_paths,
                secretsmanager_paths=self.secret_secretsmanager_paths,
            ),
            outbound=OutboundPolicy(allow_link_local=self.allow_link_local_targets),
        )

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        local: bool = False,
        flags: Mapping[str, str] | None = None,
    ) -> Settings:
        """The settings the environment gives, read once.

        ``local``: for local mode, which also reads its own variables (store, data
        directory, token, reaper interval) and leaves the deployed-only ones (AWS
        resources, ``CME_AUTH``, the attack function's timeout) at their defaults.
        ``flags``: local mode's options by variable name; they beat the environment.
        A bad value is a ValueError in one line naming the variable (or flag) and value.
        """
        env = os.environ if environ is None else environ
        given = dict(flags or {})
        values: dict[str, Any] = {}
        for variable in VARIABLES:
            if variable.scope == ("deployed" if local else "local"):
                continue
            if variable.name in given:
                label, text = variable.flag or variable.name, given[variable.name]
            elif variable.name in env:
                label, text = variable.name, env[variable.name]
            else:
                continue
            try:
                values[variable.field] = variable.parse(text)
            except ValueError as error:
                raise ValueError(f"{label}: {error}") from None
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        values["aws_region"] = region or cls.aws_region
        if local and values.get("data_dir") is None:
            values["data_dir"] = default_data_dir(env)
        else:
            values["on_lambda"] = bool(env.get("AWS_LAMBDA_FUNCTION_NAME"))
        return cls(**values)


# -- reading values --------------------------------------------------------------------

DATA_DIR_NAME = "chaos-monkey-engine"
DATABASE_NAME = "engine.sqlite3"
STORES = ("sqlite", "moto")


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/chaos-monkey-engine``, else ``~/.local/share/chaos-monkey-engine``
    (the XDG base directory rule: a relative XDG_DATA_HOME is ignored)."""
    xdg = environ.get("XDG_DATA_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / DATA_DIR_NAME
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "share" / DATA_DIR_NAME


def database_file(uri: str) -> Path:
    """The SQLite file of a 2017 ``--database-uri``: ``sqlite:///relative/path``,
    ``sqlite:////absolute/path`` (SQLAlchemy's forms) or a plain path (the 2017 Docker
    image's default). ValueError for any other database."""
    text = uri.strip()
    if "://" not in text:
        if not text:
            raise ValueError("an empty database URI names no file")
        return Path(text).expanduser()
    scheme, _, rest = text.partition("://")
    if scheme.lower() != "sqlite":
        raise ValueError(f"{uri!r} is not a SQLite database (local mode stores in SQLite)")
    if not rest.startswith("/") or rest in ("/", "/:memory:"):
        raise ValueError(
            f"{uri!r} names no file; give sqlite:///relative/path or sqlite:////absolute/path"
        )
    return Path(unquote(rest[1:].split("?", 1)[0])).expanduser()


# Each reader turns a variable's text into its value, or raises ValueError with a
# sentence that quotes the text.


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("an empty value is not allowed")
    return value.strip()


def _optional_text(value: str) -> str | None:
    return value.strip() or None


def _any_text(value: str) -> str:
    return value.strip()


def _boolean(value: str) -> bool:
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    # A kill switch set to a word we cannot read must not be read as "off".
    raise ValueError(
        f"{value!r} is neither true ({'/'.join(sorted(TRUE_WORDS))}) "
        f"nor false ({'/'.join(sorted(FALSE_WORDS - {''}))})"
    )


def _number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _integer(low: int, high: int | None = None) -> Callable[[str], int]:
    def read(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a whole number") from None
        if number < low or (high is not None and number > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"{number} is not {bound}")
        return number

    return read


def _seconds(minimum: float, inclusive: bool = True) -> Callable[[str], timedelta]:
    def read(value: str) -> timedelta:
        number = _number(value)
        if number < minimum or (not inclusive and number == minimum):
            bound = "at least" if inclusive else "more than"
            raise ValueError(f"{number:g} s is not {bound} {minimum:g} s")
        return timedelta(seconds=number)

    return read


def _optional_seconds(value: str) -> timedelta | None:
    return _seconds(0, inclusive=False)(value) if value.strip() else None


def _days(value: str) -> timedelta:
    number = _number(value)
    if number <= 0:
        raise ValueError(f"{number:g} days is not more than 0")
    return timedelta(days=number)


def _positive(value: str) -> float:
    number = _number(value)
    if number <= 0:
        raise ValueError(f"{number:g} is not more than 0")
    return number


def _timezone(value: str) -> str:
    load_timezone(value.strip())  # ValueError: unknown timezone 'Mars/Olympus'
    return value.strip()


def _folders(value: str) -> tuple[Path, ...]:
    return tuple(Path(part).expanduser() for part in value.split(os.pathsep) if part)


def _prefixes(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _directory(value: str) -> Path | None:
    return Path(value.strip()).expanduser() if value.strip() else None


def _store(value: str) -> str:
    name = value.strip().lower()
    if name not in STORES:
        raise ValueError(f"{value!r} is not one of {', '.join(STORES)}")
    return name


def _auth(value: str) -> str:
    try:
        return auth_mode(value)
    except ValueError:
        raise ValueError(f"{value!r} is not one of {', '.join(AUTH_MODES)}") from None


def _webhook_url(value: str) -> str | None:
    text = value.strip()
    if not text:
        return None
    parts = urlsplit(text)
    # The URL is not quoted back: its path or query may be a token.
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("the webhook URL must start with http:// or https://")
    try:
        host, _ = parts.hostname, parts.port
    except ValueError:
        raise ValueError("the webhook URL's port is not a number") from None
    if not host:
        raise ValueError("the webhook URL names no host")
    return text


def _sns_topic_arn(value: str) -> str | None:
    text = value.strip()
    if text and not (text.startswith("arn:") and text.split(":")[2:3] == ["sns"]):
        raise ValueError(f"{text!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)")
    return text or None


def _weekdays(value: str) -> frozenset[int]:
    days: set[int] = set()
    for word in (part.strip().lower() for part in value.split(",")):
        if not word:
            continue
        if word[:3] not in WEEKDAYS:
            raise ValueError(f"{word!r} is not a weekday ({', '.join(WEEKDAYS)})")
        days.add(WEEKDAYS.index(word[:3]))
    if not days:
        raise ValueError("no weekday given (to stop every attack, use CME_KILL_SWITCH)")
    return frozenset(days)


def _hours(value: str) -> tuple[int, int]:
    first, sep, end = value.strip().partition("-")
    try:
        window = (int(first), int(end)) if sep else (-1, -1)
    except ValueError:
        window = (-1, -1)
    if not 0 <= window[0] < window[1] <= 24:
        raise ValueError(f"{value!r} is not an hour window FIRST-END with 0 <= FIRST < END <= 24")
    return window


def _dates(value: str) -> frozenset[date]:
    days: set[date] = set()
    for word in (part.strip() for part in value.split(",")):
        if not word:
            continue
        try:
            days.add(date.fromisoformat(word))
        except ValueError:
            raise ValueError(f"{word!r} is not a date YYYY-MM-DD") from None
    return frozenset(days)


def _tag(value: str) -> tuple[str, str | None] | None:
    return parse_tag(value)


def _database(value: str) -> Path | None:
    return database_file(value) if value.strip() else None


@dataclass(frozen=True)
class Variable:
    """One ``CME_*`` environment variable: the Settings field it sets and how.

    ``scope``: "both" (deployed and local mode), "deployed" (local mode ignores it) or
    "local" (only local mode reads it). ``flag``: local mode's option for it, if any.
    """

    name: str
    field: str
    parse: Callable[[str], Any]
    default: str
    meaning: str
    flag: str | None = None
    metavar: str = "VALUE"
    scope: str = "both"


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "CME_TIMEZONE",
        "timezone_name",
        _timezone,
        "Europe/Madrid",
        "timezone of dates given without an offset, and of dates in answers",
        flag="--timezone",
        metavar="TIMEZONE",
    ),
    Variable(
        "CME_KILL_SWITCH",
        "kill_switch",
        _boolean,
        "false",
        "true: no attack runs; every executor that comes due ends skipped",
        flag="--kill-switch",
    ),
    Variable(
        "CME_OPT_IN_TAG",
        "opt_in_tag",
        _tag,
        "chaos-monkey-engine=target",
        "KEY=VALUE (or KEY, any value): only targets carrying this tag are attacked; "
        "empty: no opt-in required",
        flag="--opt-in-tag",
        metavar="TAG",
    ),
    Variable(
        "CME_EXCLUDE_TAG",
        "exclude_tag",
        _tag,
        "chaos-monkey-engine-exclude",
        "KEY (any value) or KEY=VALUE: targets carrying this tag are never attacked; empty: none",
        flag="--exclude-tag",
        metavar="TAG",
    ),
    Variable(
        "CME_ATTACK_WEEKDAYS",
        "attack_weekdays",
        _weekdays,
        "mon,tue,wed,thu,fri,sat,sun",
        "comma-separated weekdays (engine timezone) on which attacks may run",
        flag="--attack-weekdays",
        metavar="DAYS",
    ),
    Variable(
        "CME_ATTACK_HOURS",
        "attack_hours",
        _hours,
        "0-24",
        "FIRST-END: attacks may run from FIRST:00 up to END:00 (engine timezone)",
        flag="--attack-hours",
        metavar="FIRST-END",
    ),
    Variable(
        "CME_BLACKOUT_DATES",
        "blackout_dates",
        _dates,
        "",
        "comma-separated dates YYYY-MM-DD (engine timezone) on which no attack runs",
        flag="--blackout-dates",
        metavar="DATES",
    ),
    Variable(
        "CME_ALLOWED_LATENESS_SECONDS",
        "allowed_lateness",
        _seconds(0),
        "600",
        "an executor delivered later than this after its time ends missed instead of running",
        flag="--allowed-lateness",
        metavar="SECONDS",
    ),
    Variable(
        "CME_MAX_RUN_SECONDS",
        "max_run_time",
        _seconds(0, inclusive=False),
        "900",
        "an executor's lease: still running this long after it started, the reaper ends "
        "it failed (lost)",
        flag="--max-run-seconds",
        metavar="SECONDS",
    ),
    Variable(
        "CME_MAX_EXECUTORS_PER_PLAN",
        "max_executors_per_plan",
        _integer(1),
        "500",
        "the most executors one plan may have",
        flag="--max-executors-per-plan",
        metavar="N",
    ),
    Variable(
        "CME_LIST_LIMIT",
        "list_limit",
        _integer(1, MAX_PAGE_SIZE),
        "100",
        f"a list's page size when the request gives no limit (1 to {MAX_PAGE_SIZE})",
        flag="--list-limit",
        metavar="N",
    ),
    Variable(
        "CME_MAX_BODY_BYTES",
        "max_body_bytes",
        _integer(1024, 10 * 1024 * 1024),
        "262144",
        "the largest request body the API accepts (1024 to 10485760); a larger one is answered 413",
        flag="--max-body-bytes",
        metavar="BYTES",
    ),
    Variable(
        "CME_PLAN_DEADLINE_SECONDS",
        "plan_deadline",
        _seconds(0, inclusive=False),
        "25",
        "plan creation finishes, or undoes itself, within this",
        flag="--plan-deadline",
        metavar="SECONDS",
    ),
    Variable(
        "CME_RETENTION_DAYS",
        "executed_retention",
        _days,
        "90",
        "executed executors and settled plans are deleted this long after they ended",
        flag="--retention-days",
        metavar="DAYS",
    ),
    Variable(
        "CME_ATTACKS_FOLDERS",
        "attack_folders",
        _folders,
        "",
        f"more folders of attack plugins, separated by {os.pathsep!r} (flag: repeatable)",
        flag="--attacks-folder",
        metavar="FOLDER",
    ),
    Variable(
        "CME_PLANNERS_FOLDERS",
        "planner_folders",
        _folders,
        "",
        f"more folders of planner plugins, separated by {os.pathsep!r} (flag: repeatable)",
        flag="--planners-folder",
        metavar="FOLDER",
    ),
    Variable(
        "CME_EC2_ENDPOINT",
        "ec2_endpoint",
        _optional_text,
        "",
        "the EC2 endpoint the EC2 attacks call instead of the region's (local mode "
        "serves moto's and uses it unless --real-aws-targets)",
    ),
    Variable(
        "CME_SECRET_ENV_PREFIX",
        "secret_env_prefix",
        _text,
        "CME_SECRET_",
        'a plan\'s {"env": NAME} secret references must name a variable with this prefix',
    ),
    Variable(
        "CME_SECRET_SSM_PATHS",
        "secret_ssm_paths",
        _prefixes,
        "/chaos-monkey-engine/",
        'comma-separated prefixes a plan\'s {"ssm": path} references must start with '
        "(empty: none allowed)",
    ),
    Variable(
        "CME_SECRET_SECRETSMANAGER_PATHS",
        "secret_secretsmanager_paths",
        _prefixes,
        "chaos-monkey-engine/",
        'comma-separated prefixes a plan\'s {"secretsmanager": id} references must '
        "start with (empty: none allowed)",
    ),
    Variable(
        "CME_ALLOW_LINK_LOCAL_TARGETS",
        "allow_link_local_targets",
        _boolean,
        "false",
        "true: ApiRequest and Libcloud drivers may reach link-local and instance-metadata "
        "addresses (169.254.0.0/16, fe80::/10, 169.254.169.254, fd00:ec2::254, ...)",
    ),
    Variable(
        "CME_PLANS_TABLE",
        "plans_table",
        _text,
        "cme-plans",
        "DynamoDB table of plans (deployed; local mode's --store moto)",
    ),
    Variable(
        "CME_EXECUTORS_TABLE",
        "executors_table",
        _text,
        "cme-executors",
        "DynamoDB table of executors (deployed; local mode's --store moto)",
    ),
    Variable(
        "CME_CONTROL_TABLE",
        "control_table",
        _text,
        "cme-control",
        "DynamoDB table of the halt and the minimum-interval records (deployed; local "
        "mode's --store moto)",
    ),
    Variable(
        "CME_DYNAMODB_ENDPOINT",
        "dynamodb_endpoint",
        _optional_text,
        "",
        "another DynamoDB endpoint (deployed engine and tests)",
        scope="deployed",
    ),
    Variable(
        "CME_STORE",
        "store",
        _store,
        "sqlite",
        "local mode's store: sqlite (durable, in the data directory) or moto (DynamoDB "
        "on moto, in memory, through the deployed storage code)",
        flag="--store",
        metavar="{sqlite,moto}",
        scope="local",
    ),
    Variable(
        "CME_DATA_DIR",
        "data_dir",
        _directory,
        "$XDG_DATA_HOME/chaos-monkey-engine, else ~/.local/share/chaos-monkey-engine",
        f"local mode's data directory (created if missing); the SQLite file is "
        f"{DATABASE_NAME} in it",
        flag="--data-dir",
        metavar="DIR",
        scope="local",
    ),
    Variable(
        "CME_DATABASE_URI",
        "database_file",
        _database,
        "",
        "the SQLite file itself, the 2017 way: sqlite:///relative/path, "
        "sqlite:////absolute/path or a path; beats the data directory",
        flag="--database-uri",
        metavar="URI",
        scope="local",
    ),
    Variable(
        "CME_API_TOKEN",
        "api_token",
        _optional_text,
        "",
        "require 'Authorization: Bearer TOKEN' on every request; needed to bind a "
        "non-loopback --host",
        flag="--token",
        metavar="TOKEN",
        scope="local",
    ),
    Variable(
        "CME_REAP_INTERVAL_SECONDS",
        "reap_interval",
        _seconds(0, inclusive=False),
        "60",
        "how often local mode ends lost and never-delivered executors (deployed: every 5 minutes)",
        flag="--reap-interval",
        metavar="SECONDS",
        scope="local",
    ),
    Variable(
        "CME_AUTH",
        "auth",
        _auth,
        "none",
        "API protection on API Gateway: iam, api_key or none; read when the app is packaged",
        scope="deployed",
    ),
    Variable(
        "CME_ATTACK_FUNCTION_TIMEOUT_SECONDS",
        "attack_function_timeout",
        _optional_seconds,
        "",
        "the attack Lambda's timeout; attacks that may outlive it are refused at plan time",
        scope="deployed",
    ),
    Variable(
        "CME_SCHEDULE_GROUP",
        "schedule_group",
        _text,
        "chaos-monkey-engine",
        "EventBridge Scheduler group",
        scope="deployed",
    ),
    Variable(
        "CME_SCHEDULER_ROLE_ARN",
        "scheduler_role_arn",
        _any_text,
        "",
        "role EventBridge Scheduler assumes to invoke the attack function",
        scope="deployed",
    ),
    Variable(
        "CME_ATTACK_FUNCTION_ARN",
        "attack_function_arn",
        _any_text,
        "",
        "the attack function schedules invoke",
        scope="deployed",
    ),
    Variable(
        "CME_DEAD_LETTER_ARN",
        "dead_letter_arn",
        _any_text,
        "",
        "SQS queue of deliveries the scheduler gave up on",
        scope="deployed",
    ),
    Variable(
        "CME_SCHEDULER_CONCURRENCY",
        "scheduler_concurrency",
        _integer(1),
        "8",
        "schedules created in parallel for one plan",
        scope="deployed",
    ),
    Variable(
        "CME_SCHEDULER_RATE_PER_SECOND",
        "scheduler_rate_per_second",
        _positive,
        "40",
        "pace of EventBridge Scheduler calls",
        scope="deployed",
    ),
    Variable(
        "CME_EVENTS_TABLE",
        "events_table",
        _text,
        "cme-events",
        "DynamoDB table of the audit trail's events (deployed; local mode's --store moto)",
    ),
    Variable(
        "CME_EVENTS_RETENTION_DAYS",
        "events_retention",
        _days,
        "365",
        "events of the audit trail are deleted this long after they happened",
    ),
    Variable(
        "CME_NOTIFY_WEBHOOK_URL",
        "notify_webhook_url",
        _webhook_url,
        "",
        "POST a JSON message here when an executor starts and ends and when the halt "
        "changes (empty: none); the outbound guard applies",
    ),
    Variable(
        "CME_NOTIFY_SNS_TOPIC_ARN",
        "notify_sns_topic_arn",
        _sns_topic_arn,
        "",
        "publish the same messages to this SNS topic (empty: none)",
    ),
)
