"""Settings: every CME_* variable read once from the environment, local mode's options
beating it, bad values refused in one line, all of it listed in --help and the docs; and
nothing in local mode writing os.environ once it has started."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib import error, request

import pytest

# Importing the app builds the Chalice app, which tags AWS_EXECUTION_ENV in os.environ
# (Chalice's user-agent mark): once, when the command starts, as here.
import app  # noqa: F401
from chalicelib.local import cli
from chalicelib.settings import (
    DATABASE_NAME,
    VARIABLES,
    Settings,
    database_file,
    default_data_dir,
)
from tests.conftest import FIXTURES, free_port

ROOT = Path(__file__).resolve().parents[2]
BY_NAME = {variable.name: variable for variable in VARIABLES}
FLAGGED = [variable for variable in VARIABLES if variable.flag is not None]

# One non-default value per variable, and the value it gives its Settings field. A new
# variable without a line here fails test_every_variable_has_an_example.
EXAMPLES: dict[str, tuple[str, Any]] = {
    "CME_TIMEZONE": ("America/New_York", "America/New_York"),
    "CME_KILL_SWITCH": ("YES", True),
    "CME_OPT_IN_TAG": ("Chaos=yes", ("Chaos", "yes")),
    "CME_EXCLUDE_TAG": ("", None),
    "CME_ATTACK_WEEKDAYS": ("Mon, friday", frozenset({0, 4})),
    "CME_ATTACK_HOURS": ("9-17", (9, 17)),
    "CME_BLACKOUT_DATES": (
        "2026-12-24,2026-12-31",
        frozenset({date(2026, 12, 24), date(2026, 12, 31)}),
    ),
    "CME_CONTROL_TABLE": ("my-control", "my-control"),
    "CME_ALLOWED_LATENESS_SECONDS": ("2.5", timedelta(seconds=2.5)),
    "CME_MAX_RUN_SECONDS": ("120", timedelta(seconds=120)),
    "CME_MAX_EXECUTORS_PER_PLAN": ("7", 7),
    "CME_LIST_LIMIT": ("25", 25),
    "CME_MAX_BODY_BYTES": ("4096", 4096),
    "CME_PLAN_DEADLINE_SECONDS": ("12", timedelta(seconds=12)),
    "CME_RETENTION_DAYS": ("0.5", timedelta(hours=12)),
    "CME_ATTACKS_FOLDERS": (f"/a{os.pathsep}/b", (Path("/a"), Path("/b"))),
    "CME_PLANNERS_FOLDERS": ("/p", (Path("/p"),)),
    "CME_EC2_ENDPOINT": ("http://127.0.0.1:4567", "http://127.0.0.1:4567"),
    "CME_SECRET_ENV_PREFIX": ("CHAOS_", "CHAOS_"),
    "CME_SECRET_SSM_PATHS": ("/a/, /b/", ("/a/", "/b/")),
    "CME_SECRET_SECRETSMANAGER_PATHS": ("", ()),
    "CME_ALLOW_LINK_LOCAL_TARGETS": ("on", True),
    "CME_PLANS_TABLE": ("my-plans", "my-plans"),
    "CME_EXECUTORS_TABLE": ("my-executors", "my-executors"),
    "CME_DYNAMODB_ENDPOINT": ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    "CME_STORE": ("moto", "moto"),
    "CME_DATA_DIR": ("/srv/cme", Path("/srv/cme")),
    "CME_DATABASE_URI": ("sqlite:////srv/cme.sqlite", Path("/srv/cme.sqlite")),
    "CME_API_TOKEN": ("s3cret", "s3cret"),
    "CME_REAP_INTERVAL_SECONDS": ("5", timedelta(seconds=5)),
    "CME_AUTH": ("IAM", "iam"),
    "CME_ATTACK_FUNCTION_TIMEOUT_SECONDS": ("300", timedelta(seconds=300)),
    "CME_SCHEDULE_GROUP": ("my-group", "my-group"),
    "CME_SCHEDULER_ROLE_ARN": ("arn:aws:iam::1:role/r", "arn:aws:iam::1:role/r"),
    "CME_ATTACK_FUNCTION_ARN": ("arn:aws:lambda:x", "arn:aws:lambda:x"),
    "CME_DEAD_LETTER_ARN": ("arn:aws:sqs:x", "arn:aws:sqs:x"),
    "CME_SCHEDULER_CONCURRENCY": ("3", 3),
    "CME_SCHEDULER_RATE_PER_SECOND": ("12.5", 12.5),
    "CME_EVENTS_TABLE": ("my-events", "my-events"),
    "CME_EVENTS_RETENTION_DAYS": ("30", timedelta(days=30)),
    "CME_NOTIFY_WEBHOOK_URL": ("https://hooks.example.com/x", "https://hooks.example.com/x"),
    "CME_NOTIFY_SNS_TOPIC_ARN": ("arn:aws:sns:eu-west-1:1:t", "arn:aws:sns:eu-west-1:1:t"),
}

# A bad value per flagged variable, and words its one-line error must hold.
BAD_VALUES: dict[str, tuple[str, str]] = {
    "CME_TIMEZONE": ("Mars/Olympus", "unknown timezone 'Mars/Olympus'"),
    "CME_KILL_SWITCH": ("maybe", "'maybe' is neither true"),
    "CME_OPT_IN_TAG": ("=target", "'=target' names no tag key"),
    "CME_EXCLUDE_TAG": ("=x", "'=x' names no tag key"),
    "CME_ATTACK_WEEKDAYS": ("mon,funday", "'funday' is not a weekday"),
    "CME_ATTACK_HOURS": ("17-9", "'17-9' is not an hour window"),
    "CME_BLACKOUT_DATES": ("2026-13-01", "'2026-13-01' is not a date YYYY-MM-DD"),
    "CME_ALLOWED_LATENESS_SECONDS": ("-1", "-1 s is not at least 0 s"),
    "CME_MAX_RUN_SECONDS": ("soon", "'soon' is not a number"),
    "CME_MAX_EXECUTORS_PER_PLAN": ("0", "0 is not at least 1"),
    "CME_LIST_LIMIT": ("501", "501 is not between 1 and 500"),
    "CME_MAX_BODY_BYTES": ("100", "100 is not between 1024 and 10485760"),
    "CME_PLAN_DEADLINE_SECONDS": ("0", "0 s is not more than 0 s"),
    "CME_RETENTION_DAYS": ("nan", "'nan' is not a finite number"),
    "CME_STORE": ("redis", "'redis' is not one of sqlite, moto"),
    "CME_DATABASE_URI": ("postgresql://db/cme", "is not a SQLite database"),
    "CME_REAP_INTERVAL_SECONDS": ("0", "0 s is not more than 0 s"),
}


def local(environ: dict[str, str], *argv: str) -> Settings:
    """What ``chaos-monkey-engine ARGV`` would run with, in this environment."""
    return cli.settings_from(cli.parser().parse_args(list(argv)), environ)


def test_every_variable_has_an_example_and_a_field() -> None:
    assert set(EXAMPLES) == set(BY_NAME)
    fields = set(Settings.__dataclass_fields__)
    assert {variable.field for variable in VARIABLES} <= fields


@pytest.mark.parametrize(
    # The data directory's default depends on the environment: tested on its own below.
    "variable",
    [variable for variable in VARIABLES if variable.name != "CME_DATA_DIR"],
    ids=lambda variable: variable.name,
)
def test_the_documented_default_is_the_default(variable: Any) -> None:
    assert variable.parse(variable.default) == getattr(Settings(), variable.field)


@pytest.mark.parametrize("variable", VARIABLES, ids=lambda variable: variable.name)
def test_each_variable_is_read_from_the_environment(variable: Any) -> None:
    text, expected = EXAMPLES[variable.name]
    # Each variable is read by the engines that use it: the deployed one, local mode, or both.
    readers = {"both": (False, True), "deployed": (False,), "local": (True,)}[variable.scope]

    for is_local in readers:
        settings = Settings.from_env({variable.name: text}, local=is_local)
        assert getattr(settings, variable.field) == expected
        assert getattr(Settings.from_env({}, local=is_local), variable.field) != expected


def test_the_deployed_engine_ignores_local_variables_and_local_mode_deployed_ones() -> None:
    everything = {name: text for name, (text, _) in EXAMPLES.items()}

    deployed = Settings.from_env(everything)
    local_mode = Settings.from_env(everything, local=True)

    # A stage's CME_API_TOKEN is never read: SigV4 owns the Authorization header there.
    assert (deployed.api_token, deployed.store) == (None, "sqlite")
    assert (local_mode.api_token, local_mode.store) == ("s3cret", "moto")
    assert (deployed.auth, deployed.attack_function_timeout) == ("iam", timedelta(seconds=300))
    # An attack function's timeout must not shorten what local mode lets attacks run.
    assert (local_mode.auth, local_mode.attack_function_timeout) == ("none", None)


@pytest.mark.parametrize("variable", FLAGGED, ids=lambda variable: variable.name)
def test_an_option_beats_its_variable(variable: Any, tmp_path: Path) -> None:
    text, expected = EXAMPLES[variable.name]
    environ = {variable.name: text}
    if variable.field in ("attack_folders", "planner_folders"):
        folders = [tmp_path / "one", tmp_path / "two"]
        for folder in folders:
            folder.mkdir()
        environ = {variable.name: str(tmp_path / "env-folder")}  # never checked: beaten
        argv = [item for folder in folders for item in (variable.flag, str(folder))]
        assert getattr(local(environ, *argv), variable.field) == tuple(folders)
        return
    if variable.field == "kill_switch":
        assert local({variable.name: "true"}, "--no-kill-switch").kill_switch is False
        assert local({variable.name: "false"}, "--kill-switch").kill_switch is True
        return
    from_env = local(environ)
    assert getattr(from_env, variable.field) == expected
    flag_text = {
        "CME_API_TOKEN": "other",
        "CME_TIMEZONE": "UTC",
        "CME_STORE": "sqlite",
        "CME_DATA_DIR": "/elsewhere",
        "CME_DATABASE_URI": "/elsewhere/cme.sqlite",
        "CME_OPT_IN_TAG": "Team",
        "CME_EXCLUDE_TAG": "Keep=yes",
        "CME_ATTACK_WEEKDAYS": "sat,sun",
        "CME_ATTACK_HOURS": "0-1",
        "CME_BLACKOUT_DATES": "2027-01-01",
    }.get(variable.name, "")
    if not flag_text:
        # Numbers: one more than the example (within every bound).
        number = float(text) + 1
        flag_text = str(int(number)) if number.is_integer() else str(number)
    beaten = local(environ, variable.flag, flag_text)
    assert getattr(beaten, variable.field) != getattr(from_env, variable.field)
    assert getattr(beaten, variable.field) == variable.parse(flag_text)


def test_the_short_forms_of_2017_still_work(tmp_path: Path) -> None:
    (tmp_path / "attacks").mkdir()
    (tmp_path / "planners").mkdir()

    settings = local(
        {},
        "-t",
        "UTC",
        "-a",
        str(tmp_path / "attacks"),
        "-l",
        str(tmp_path / "planners"),
        "-d",
        f"sqlite:///{tmp_path}/cme.sqlite",
    )

    assert settings.timezone_name == "UTC"
    assert settings.attack_folders == (tmp_path / "attacks",)
    assert settings.planner_folders == (tmp_path / "planners",)
    assert settings.database_path == tmp_path / "cme.sqlite"


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("sqlite:///relative/cme.sqlite", Path("relative/cme.sqlite")),
        ("sqlite:////absolute/cme.sqlite", Path("/absolute/cme.sqlite")),
        (
            "/opt/chaosmonkey/src/storage/cme.sqlite",
            Path("/opt/chaosmonkey/src/storage/cme.sqlite"),
        ),
        ("SQLITE:////with%20space.db", Path("/with space.db")),
    ],
)
def test_2017_database_uris_name_the_sqlite_file(uri: str, path: Path) -> None:
    assert database_file(uri) == path


@pytest.mark.parametrize(
    "uri", ["postgresql://db/cme", "mysql://u@h/cme", "sqlite://", "sqlite:///:memory:"]
)
def test_other_database_uris_are_refused(uri: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(uri))):
        database_file(uri)


def test_the_data_directory_follows_xdg_then_the_home_directory(tmp_path: Path) -> None:
    assert default_data_dir({"XDG_DATA_HOME": str(tmp_path), "HOME": "/home/u"}) == (
        tmp_path / "chaos-monkey-engine"
    )
    # The XDG rule: a relative XDG_DATA_HOME is ignored.
    assert default_data_dir({"XDG_DATA_HOME": "rel", "HOME": "/home/u"}) == Path(
        "/home/u/.local/share/chaos-monkey-engine"
    )
    settings = Settings.from_env({"HOME": "/home/u"}, local=True)
    assert settings.database_path == Path("/home/u/.local/share/chaos-monkey-engine") / (
        DATABASE_NAME
    )
    # -d names the file itself and beats the data directory.
    both = Settings.from_env({"CME_DATA_DIR": "/d", "CME_DATABASE_URI": "/f.sqlite"}, local=True)
    assert both.database_path == Path("/f.sqlite")


# --- the command: errors and help -------------------------------------------------------


@pytest.fixture
def no_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "serve", lambda *args: pytest.fail("must not start"))
    for variable in VARIABLES:
        monkeypatch.delenv(variable.name, raising=False)


@pytest.mark.parametrize(
    ("name", "given_as"),
    [(name, "variable") for name in sorted(BAD_VALUES)]
    # --kill-switch takes no value: there is no bad one to give it.
    + [(name, "option") for name in sorted(BAD_VALUES) if name != "CME_KILL_SWITCH"],
)
def test_a_bad_value_is_a_one_line_error_with_exit_code_2(
    name: str,
    given_as: str,
    no_serving: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    variable = BY_NAME[name]
    text, words = BAD_VALUES[name]
    if given_as == "option":
        argv = [f"{variable.flag}={text}"]
    else:
        monkeypatch.setenv(name, text)
        argv = []

    assert cli.main(argv) == 2

    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    label = variable.flag if given_as == "option" else name
    assert err.startswith(f"chaos-monkey-engine: error: {label}: ")
    assert words in err


def test_a_malformed_option_is_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--port", "eighty"])

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("chaos-monkey-engine: error: argument -p/--port")


def test_help_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])

    assert exited.value.code == 0
    text = capsys.readouterr().out
    for variable in VARIABLES:
        assert variable.name in text
        if variable.flag is not None and variable.scope != "deployed":
            assert variable.flag in text


def test_the_local_mode_doc_has_a_row_for_every_setting() -> None:
    doc = (ROOT / "docs" / "local-mode.md").read_text()
    rows = [line for line in doc.splitlines() if line.startswith("| `CME_")]
    by_variable = {row.split("`")[1]: row for row in rows}

    assert set(by_variable) == set(BY_NAME)
    for variable in FLAGGED:
        assert f"`{variable.flag}`" in by_variable[variable.name], variable.name


# --- nothing writes os.environ at run time ------------------------------------------------


def call(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    sent = request.Request(url, data=data, method=method)
    sent.add_header("Content-Type", "application/json")
    with request.urlopen(sent, timeout=10) as answer:
        return json.loads(answer.read().decode())


def poll(condition: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (error.URLError, ConnectionError):
            value = None
        if value:
            return value
        threading.Event().wait(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def environ_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every name written to or removed from os.environ while the fixture lasts."""
    written: list[str] = []
    environ_class = type(os.environ)
    setitem, delitem = environ_class.__setitem__, environ_class.__delitem__

    def recording_set(self: Any, key: str, value: str) -> None:
        if key != "PYTEST_CURRENT_TEST":  # pytest's own, between test phases
            written.append(key)
        setitem(self, key, value)

    def recording_del(self: Any, key: str) -> None:
        if key != "PYTEST_CURRENT_TEST":
            written.append(key)
        delitem(self, key)

    monkeypatch.setattr(environ_class, "__setitem__", recording_set)
    monkeypatch.setattr(environ_class, "__delitem__", recording_del)
    yield written


def test_local_mode_writes_nothing_to_os_environ_while_it_runs_an_attack(
    tmp_path: Path, environ_writes: list[str]
) -> None:
    # What `chaos-monkey-engine` does once, at process start, is done by now (the fake
    # AWS credentials are conftest's; the app was imported with this module). Everything
    # from serve() on is checked.
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/1"
    settings = Settings.from_env(
        {
            "CME_DATA_DIR": str(tmp_path / "data"),
            "CME_ATTACKS_FOLDERS": str(FIXTURES / "test_attacks"),
            "CME_TIMEZONE": "UTC",
        },
        local=True,
    )
    before = dict(os.environ)
    seen: dict[str, Any] = {}

    def client() -> None:
        try:
            poll(lambda: call("GET", f"{base}/attacks/"), "the engine to listen")
            at = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
            created = call(
                "POST",
                f"{base}/plans/",
                {
                    "name": "one run",
                    "attack": {"ref": "scripted:Scripted", "args": {"mode": "ok"}},
                    "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": at}},
                },
            )
            plan = call("GET", f"{base}/plans/{created['id']}")
            executor_id = plan["_embedded"]["executors"][0]["id"]
            seen["executor"] = poll(
                lambda: (e := call("GET", f"{base}/executors/{executor_id}"))["executed"] and e,
                "the attack to run",
            )
            seen["during"] = dict(os.environ)
        except BaseException as failure:
            seen["failure"] = failure
        finally:
            signal.raise_signal(signal.SIGTERM)  # local mode's own way to stop

    def ignore(signum: int, frame: Any) -> None:
        """Stands in for SIGTERM's default (ending pytest) should serve not get that far."""

    thread = threading.Thread(target=client)
    previous = signal.signal(signal.SIGTERM, ignore)
    try:
        thread.start()
        try:
            assert cli.serve(settings, "127.0.0.1", port) == 0
        finally:
            thread.join(timeout=90)
        assert signal.getsignal(signal.SIGTERM) is ignore  # serve put the handlers back
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert "failure" not in seen, seen.get("failure")
    assert seen["executor"]["status"] == "succeeded", seen["executor"]
    assert environ_writes == []
    assert seen["during"] == before
    assert dict(os.environ) == before
