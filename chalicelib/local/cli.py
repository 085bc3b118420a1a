"""The ``chaos-monkey-engine`` command: the whole engine on one machine.

Its settings are the engine's ``CME_*`` variables (``chalicelib.settings.VARIABLES``),
read once at start; the common ones are options too, and an option beats its variable.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import textwrap
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from chalicelib.local import targets as local_targets
from chalicelib.local.fake_aws import FAKE_AWS
from chalicelib.settings import VARIABLES, Settings, Variable

PROG = "chaos-monkey-engine"
# Options with a short form (the 2017 command's letters; -l because 2017's -p was taken).
SHORT_FORMS = {
    "--timezone": "-t",
    "--attacks-folder": "-a",
    "--planners-folder": "-l",
    "--database-uri": "-d",
}
REPEATABLE = frozenset({"--attacks-folder", "--planners-folder"})


class UsageError(Exception):
    """A bad option value: reported in one line, exit code 2."""


class _OneLineErrors(argparse.ArgumentParser):
    """argparse, with its errors in one line (no usage block) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _destination(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _help(variable: Variable) -> str:
    default = f"; default {variable.default}" if variable.default else ""
    return f"{variable.meaning} (${variable.name}{default})".replace("%", "%%")


def _environment_only() -> str:
    lines = ["environment variables without an option (all in docs/local-mode.md):"]
    for variable in VARIABLES:
        if variable.flag is None:
            where = " [deployed engine only]" if variable.scope == "deployed" else ""
            default = f"; default {variable.default}" if variable.default else ""
            lines.append(
                textwrap.fill(
                    f"{variable.name}: {variable.meaning}{default}{where}",
                    width=88,
                    initial_indent="  ",
                    subsequent_indent="      ",
                )
            )
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    command = _OneLineErrors(
        prog=PROG,
        description=textwrap.fill(
            "Chaos Monkey Engine in local mode: the API on this machine, plans and "
            "executors in a durable SQLite store (or moto's DynamoDB with --store moto), "
            "executors run by an in-process scheduler. Every option below that names a "
            "$CME_* variable can be set by it instead; the option wins.",
            width=88,
        ),
        epilog=_environment_only(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("-p", "--port", type=int, default=5000, help="API port (5000)")
    command.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    for variable in VARIABLES:
        if variable.flag is None or variable.scope == "deployed":
            continue
        names = [SHORT_FORMS[variable.flag]] if variable.flag in SHORT_FORMS else []
        names.append(variable.flag)
        options: dict[str, Any] = {"default": None, "help": _help(variable)}
        if variable.field == "kill_switch":
            options["action"] = argparse.BooleanOptionalAction
        elif variable.flag in REPEATABLE:
            options.update(action="append", metavar=variable.metavar)
        else:
            options["metavar"] = variable.metavar
        command.add_argument(*names, dest=_destination(variable.flag), **options)
    local_targets.add_arguments(command)
    return command


def _flag_values(options: argparse.Namespace) -> dict[str, str]:
    """The options given, as their variables' text, by variable name."""
    given: dict[str, str] = {}
    for variable in VARIABLES:
        if variable.flag is None or variable.flag in REPEATABLE:
            continue
        value = getattr(options, _destination(variable.flag), None)
        if value is None:
            continue
        given[variable.name] = ("true" if value else "false") if isinstance(value, bool) else value
    return given


def settings_from(
    options: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Settings:
    """Local mode's settings: the environment's ``CME_*`` variables, beaten by the options.

    UsageError (one line) for a bad value or a combination that cannot work.
    """
    env = os.environ if environ is None else environ
    try:
        settings = Settings.from_env(env, local=True, flags=_flag_values(options))
    except ValueError as error:
        raise UsageError(str(error)) from None
    if not 0 < options.port < 65536:
        raise UsageError(f"port {options.port} is not between 1 and 65535")

    def folders(
        kind: str, values: Sequence[str] | None, configured: tuple[Path, ...]
    ) -> tuple[Path, ...]:
        # The options, when given, replace the variable's list (options beat variables).
        paths = configured if values is None else tuple(Path(v).expanduser() for v in values)
        for path in paths:
            if not path.is_dir():
                raise UsageError(f"{kind} folder {str(path)!r} does not exist")
        return paths

    settings = dataclasses.replace(
        settings,
        attack_folders=folders("attacks", options.attacks_folder, settings.attack_folders),
        planner_folders=folders("planners", options.planners_folder, settings.planner_folders),
    )
    from chalicelib.api.auth import is_loopback

    if settings.api_token is None and not is_loopback(options.host):
        raise UsageError(
            f"--host {options.host} is reachable from other machines; "
            "set a bearer token with --token or CME_API_TOKEN"
        )
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    options = parser().parse_args(argv)
    try:
        targets = local_targets.from_options(options)
    except ValueError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    # The one write to os.environ, at process start and before anything builds an AWS
    # client: boto3's credential chain and botocore's metadata switch read only the
    # environment (FAKE_AWS; with --real-aws-targets, all of it but the credentials and
    # region). Every other setting travels as a value from here on.
    os.environ.update(local_targets.environment(targets, FAKE_AWS))
    try:
        settings = settings_from(options)
        real_region = local_targets.check(targets)
    except (UsageError, ValueError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    if real_region is not None:
        # Real targets are in the region the AWS chain names (a profile's, perhaps).
        settings = dataclasses.replace(settings, aws_region=real_region)
    return serve(settings, options.host, options.port, targets)


def start_moto(targets: local_targets.Targets) -> Any:
    """moto for every AWS call of the process (started), one in-process call at a time:
    the HTTP server's and the scheduler's threads share its DynamoDB (--store moto)."""
    from moto import mock_aws

    from chalicelib.local.serial_moto import serialize_moto

    mock = mock_aws(config=local_targets.mock_config(targets))
    mock.start()
    serialize_moto()
    return mock


def serve(
    settings: Settings,
    host: str,
    port: int,
    targets: local_targets.Targets | None = None,
) -> int:
    """Run local mode until SIGINT or SIGTERM; nothing in it writes ``os.environ``."""
    from app import app
    from chalicelib import logfmt
    from chalicelib.api.context import set_engine
    from chalicelib.bootstrap import Engine, build_local_engine
    from chalicelib.local.server import make_server

    logfmt.configure()
    targets = targets or local_targets.Targets()
    if settings.store == "sqlite":
        try:
            settings.database_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as error:
            print(
                f"{PROG}: error: cannot create the data directory "
                f"{str(settings.database_path.parent)!r}: {error.strerror}",
                file=sys.stderr,
            )
            return 1
    mock = start_moto(targets)
    engine: Engine | None = None
    running: local_targets.RunningTargets | None = None
    handlers = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        running = local_targets.start(targets, settings.aws_region, settings.target_tags)
        if running.ec2_endpoint is not None:
            settings = dataclasses.replace(
                settings, ec2_endpoint=running.ec2_endpoint, simulated_ec2=running.simulated_ec2
            )
        engine = build_local_engine(settings)
        for problem in [*engine.attacks.errors, *engine.planners.errors]:
            print(f"warning: plugin not loaded: {problem.path}: {problem.reason}", file=sys.stderr)
        print(_state_line(settings), flush=True)
        # The first attack of each kind would otherwise import its driver when it is due.
        threading.Thread(target=engine.attacks.warm_up, name="warm-up", daemon=True).start()
        engine.scheduler.start()
        set_engine(app, engine)
        try:
            server = make_server(app, host, port)
        except OSError as error:
            print(
                f"chaos-monkey-engine: error: cannot listen on {host}:{port}: {error.strerror}",
                file=sys.stderr,
            )
            return 1

        def stop(signum: int, frame: FrameType | None) -> None:
            # shutdown() waits for serve_forever to return, so call it from another thread.
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        print(
            f"Chaos Monkey Engine (local mode, timezone {settings.timezone_name}) "
            f"listening on http://{host}:{port}",
            flush=True,
        )
        server.server.serve_forever()
        server.server.server_close()
        print("Chaos Monkey Engine stopped", file=sys.stderr, flush=True)
        return 0
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)
        # Runs in progress record their outcome before the store closes and moto stops.
        if engine is not None:
            engine.scheduler.shutdown()
            engine.store.close()
            if engine.audit is not None:
                engine.audit.close()  # sends the notifications still queued, then closes
        if running is not None:
            running.stop()
        mock.stop()


def _state_line(settings: Settings) -> str:
    if settings.store == "moto":
        return (
            f"State: moto's DynamoDB in memory (tables {settings.plans_table}, "
            f"{settings.executors_table}, {settings.control_table}, {settings.events_table}); "
            "it is lost when the engine stops"
        )
    return (
        f"State: {settings.database_path} and the audit trail beside it "
        "(SQLite; kept across restarts)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
