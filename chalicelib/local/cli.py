"""The ``chaos-monkey-engine`` command: the whole engine on one machine."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from chalicelib.local import targets as local_targets
from chalicelib.local.fake_aws import FAKE_AWS
from chalicelib.settings import Settings, load_timezone


class UsageError(Exception):
    """A bad option value: reported in one line, exit code 2."""


def parser() -> argparse.ArgumentParser:
    command = argparse.ArgumentParser(
        prog="chaos-monkey-engine",
        description="Chaos Monkey Engine in local mode: the API on this machine, "
        "storage in moto, executors run by an in-process scheduler.",
    )
    command.add_argument("-p", "--port", type=int, default=5000, help="API port (5000)")
    command.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    command.add_argument(
        "--token",
        default=None,
        help="require 'Authorization: Bearer TOKEN' on every request (default: $CME_API_TOKEN); "
        "needed to bind a non-loopback --host",
    )
    command.add_argument(
        "-t", "--timezone", default="Europe/Madrid", help="engine timezone (Europe/Madrid)"
    )
    command.add_argument(
        "-a",
        "--attacks-folder",
        action="append",
        default=[],
        metavar="FOLDER",
        help="another folder of attack plugins (repeatable)",
    )
    command.add_argument(
        "-l",
        "--planners-folder",
        action="append",
        default=[],
        metavar="FOLDER",
        help="another folder of planner plugins (repeatable)",
    )
    local_targets.add_arguments(command)
    return command


def settings_from(options: argparse.Namespace) -> Settings:
    try:
        load_timezone(options.timezone)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if not 0 < options.port < 65536:
        raise UsageError(f"port {options.port} is not between 1 and 65535")
    from chalicelib.api.auth import is_loopback

    token = options.token or os.environ.get("CME_API_TOKEN") or None
    if token is None and not is_loopback(options.host):
        raise UsageError(
            f"--host {options.host} is reachable from other machines; "
            "set a bearer token with --token or CME_API_TOKEN"
        )

    def folders(values: Sequence[str], kind: str) -> tuple[Path, ...]:
        paths = tuple(Path(value).expanduser() for value in values)
        for path in paths:
            if not path.is_dir():
                raise UsageError(f"{kind} folder {str(path)!r} does not exist")
        return paths

    return Settings(
        timezone_name=options.timezone,
        aws_region=FAKE_AWS["AWS_REGION"],
        attack_folders=folders(options.attacks_folder, "attacks"),
        planner_folders=folders(options.planners_folder, "planners"),
        api_token=token,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parser().parse_args(argv)
    try:
        settings = settings_from(options)
    except UsageError as error:
        print(f"chaos-monkey-engine: error: {error}", file=sys.stderr)
        return 2
    try:
        targets = local_targets.from_options(options)
        # FAKE_AWS; with --real-aws-targets, all of it but the credentials and region.
        os.environ.update(local_targets.environment(targets, FAKE_AWS))
        local_targets.check(targets)
    except ValueError as error:
        print(f"chaos-monkey-engine: error: {error}", file=sys.stderr)
        return 2
    return serve(settings, options.host, options.port, targets)


def serve(
    settings: Settings,
    host: str,
    port: int,
    targets: local_targets.Targets | None = None,
) -> int:
    """Run local mode until SIGINT or SIGTERM."""
    from moto import mock_aws

    from app import app
    from chalicelib import logfmt
    from chalicelib.adapters.local_scheduler import LocalScheduler
    from chalicelib.api.context import set_engine
    from chalicelib.bootstrap import build_local_engine
    from chalicelib.local.server import make_server

    logfmt.configure()
    targets = targets or local_targets.Targets()
    mock = mock_aws(config=local_targets.mock_config(targets))  # type: ignore[arg-type]
    mock.start()
    scheduler: LocalScheduler | None = None
    stop_targets = None
    try:
        stop_targets = local_targets.start(targets)
        engine = build_local_engine(settings)
        for problem in [*engine.attacks.errors, *engine.planners.errors]:
            print(f"warning: plugin not loaded: {problem.path}: {problem.reason}", file=sys.stderr)
        assert isinstance(engine.scheduler, LocalScheduler)
        scheduler = engine.scheduler
        scheduler.start()
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
        if scheduler is not None:
            scheduler.shutdown()
        if stop_targets is not None:
            stop_targets()
        mock.stop()


if __name__ == "__main__":
    raise SystemExit(main())
