"""Drive local mode with the 2017 engine's workload and print a Markdown table of results.

Usage: .venv/bin/python bench/local_scale.py [--pending N] [--due N] [--stores default,moto]
                                            [--quick] [--no-store-flag] [-- ENGINE ARGS...]

For each store it starts ``chaos-monkey-engine`` on a free port of 127.0.0.1 (the default
store with ``--data-dir`` in a temporary directory, moto with ``--store moto``; with
``--no-store-flag`` neither option is passed, for engines that do not have them), then:

1. creates plans of ``--plan-size`` (1,000) executors with ``simple_planner:SimplePlanner``
   in a window that starts at least an hour from now and ends today (in Europe/Madrid, or
   in a timezone where it is morning when less than 3 h of today remain there) until at
   least ``--pending`` executors are pending, timing each create;
2. creates ``--due`` (50) plans of one ``exact_planner:ExactPlanner`` executor 5-10 s
   ahead, attacking (``api_request:ApiRequest``) an HTTP server this script runs on
   127.0.0.1, waits until they have run, and measures lateness: when the request reached
   the server minus the executor's ``next_run_time`` (the API's ``started_at`` has whole
   seconds only, so it cannot show milliseconds);
3. times ``GET plans/``, ``GET plans/<id>`` of the largest plan and ``GET executors/``
   (median of 20, with the answer's size);
4. reads the engine's CPU time over an idle period and its resident memory from /proc;
5. stops the engine with SIGTERM, starts it again on the same data and checks that the
   plans are still listed.

Nothing leaves 127.0.0.1. Progress goes to stderr, the table to stdout; the exit status is
1 when a measure could not be taken (its cell says why).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import requests

COMMAND = Path(sys.executable).parent / "chaos-monkey-engine"
DEFAULT_TIMEZONE = "Europe/Madrid"
# Zones from UTC+14 to UTC-11: at any instant it is morning in one of them.
MORNING_CANDIDATES = (
    "Pacific/Kiritimati",
    "Pacific/Auckland",
    "Australia/Sydney",
    "Asia/Tokyo",
    "Asia/Shanghai",
    "Asia/Bangkok",
    "Asia/Kolkata",
    "Asia/Dubai",
    "Europe/Moscow",
    "Europe/Madrid",
    "Europe/London",
    "Atlantic/Azores",
    "America/Sao_Paulo",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "Pacific/Pago_Pago",
)
MIN_LEFT_OF_TODAY = timedelta(hours=3)
WINDOW_LEAD = timedelta(hours=1)
DUE_DEADLINE_SECONDS = 30.0
READY_DEADLINE_SECONDS = 90.0
STOP_DEADLINE_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 300.0
LIMIT = re.compile(r"limit (?:of|is) (\d+)")

# The table's rows, in the order of the 2017 engine's figures they are compared with.
ROWS = (
    "due executors ran (5-10 s ahead)",
    "lateness p50 / p99 (at the target)",
    "GET plans/ (median)",
    "GET plans/<id> of the largest plan (median)",
    "GET executors/ (median)",
    "create a plan (median / max)",
    "idle CPU (engine process)",
    "RSS (engine process)",
    "restart: plans kept",
)

T = TypeVar("T")


def log(message: str) -> None:
    print(f"[local_scale {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def poll(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """``condition()`` once it is not None or False; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


# -- the attack target ---------------------------------------------------------------------


class Target:
    """An HTTP server on 127.0.0.1 that notes when each ``/hit/<n>`` request arrived."""

    def __init__(self) -> None:
        self.arrivals: dict[str, datetime] = {}
        arrivals = self.arrivals

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = datetime.now(UTC)
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                arrivals.setdefault(self.path.rsplit("/", 1)[-1], arrived)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, key: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hit/{key}"

    @contextmanager
    def running(self) -> Iterator[Target]:
        self.thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


# -- the engine ----------------------------------------------------------------------------


@dataclass
class Engine:
    """One ``chaos-monkey-engine`` process and how to start it again the same way."""

    args: list[str]
    log_path: Path
    settings: dict[str, str] = field(default_factory=dict)  # CME_* variables
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/1/"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith(("CME_", "AWS_"))
        }
        environment.update(self.settings)
        environment["PYTHONUNBUFFERED"] = "1"
        with self.log_path.open("ab") as output:
            self.process = subprocess.Popen(
                [str(COMMAND), "--port", str(self.port), *self.args],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=environment,
            )
        log(f"started chaos-monkey-engine (pid {self.pid}): {' '.join(self.args)}")
        session = requests.Session()

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"chaos-monkey-engine exited with {self.process.returncode}:\n{self.tail()}"
                )
            try:
                return session.get(self.base + "attacks/", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        poll(ready, READY_DEADLINE_SECONDS, "the engine to answer")

    def stop(self) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise RuntimeError(
                f"the engine ignored SIGTERM for {STOP_DEADLINE_SECONDS:.0f} s"
            ) from None
        finally:
            self.process = None

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Api:
    """The engine's v1 API over one keep-alive session."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        return self.session.request(
            method, self.base + path, json=body, timeout=REQUEST_TIMEOUT_SECONDS
        )

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.call(method, path, body)
        if answer.status_code != 200:
            raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
        return answer.json()


# -- the workload --------------------------------------------------------------------------


def engine_timezone(now: datetime) -> str:
    """Europe/Madrid unless less than 3 h of its today remain; then a zone in its morning."""
    for name in (DEFAULT_TIMEZONE, *MORNING_CANDIDATES):
        local = now.astimezone(ZoneInfo(name))
        midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time())
        left = midnight.replace(tzinfo=local.tzinfo) - local
        if left >= MIN_LEFT_OF_TODAY and (name == DEFAULT_TIMEZONE or 6 <= local.hour < 12):
            return name
    raise RuntimeError("no candidate timezone has 3 h of today left")  # cannot happen


def simple_window(timezone: str, now: datetime) -> tuple[str, str]:
    """``min_time``/``max_time`` from an hour ahead (next whole minute) to 23:59, today."""
    start = (now + WINDOW_LEAD).astimezone(ZoneInfo(timezone))
    start = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return f"{start:%H:%M}", "23:59"


def attack(endpoint: str) -> dict[str, Any]:
    return {
        "ref": "api_request:ApiRequest",
        "args": {"endpoint": endpoint, "method": "POST", "payload": {"bench": True}},
    }


def median_ms(samples: Sequence[float]) -> float:
    return statistics.median(samples) * 1000


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Options:
    pending: int
    plan_size: int
    due: int
    idle_seconds: float
    samples: int
    timezone: str


class Run:
    """The workload against one store; each measure fills its row or says why it could not."""

    def __init__(self, engine: Engine, target: Target, options: Options, durable: bool):
        self.engine = engine
        self.api = Api(engine.base)
        self.target = target
        self.options = options
        self.durable = durable
        self.cells: dict[str, str] = {}
        self.failed = False
        self.plan_ids: list[str] = []
        self.largest_plan: str | None = None

    def measure(self, rows: Sequence[str], step: Callable[[], Sequence[str]]) -> None:
        try:
            values = step()
        except Exception as error:  # one failed measure must not hide the others
            self.failed = True
            message = f"error: {type(error).__name__}: {error}".replace("|", "/")
            message = " ".join(message.split())[:160]
            log(f"{rows[0]}: {message}")
            values = [message] * len(rows)
        for row, value in zip(rows, values, strict=True):
            self.cells[row] = value

    def run(self) -> dict[str, str]:
        self.measure([ROWS[5]], self.create_large_plans)
        self.measure(ROWS[0:2], self.run_due_executors)
        self.measure([ROWS[2]], self.get_plans)
        self.measure([ROWS[3]], self.get_largest_plan)
        self.measure([ROWS[4]], self.get_executors)
        self.measure(ROWS[6:8], self.idle)
        self.measure([ROWS[8]], self.restart)
        return self.cells

    # 1. plans of --plan-size executors until --pending are pending
    def create_large_plans(self) -> list[str]:
        size = min(self.options.plan_size, self.options.pending)
        now = datetime.now(UTC)
        min_time, max_time = simple_window(self.options.timezone, now)
        log(f"creating plans of {size} executors ({min_time}-{max_time} {self.options.timezone})")
        pending, note = 0, ""
        durations: list[float] = []  # of the full-size plans only
        while pending < self.options.pending:
            # The last plan takes what is left, so that exactly --pending are pending.
            times = min(size, self.options.pending - pending)
            started = time.perf_counter()
            answer = self.api.call("POST", "plans/", self.large_plan(min_time, max_time, times))
            elapsed = time.perf_counter() - started
            limit = LIMIT.search(answer.text) if answer.status_code == 400 else None
            if limit and not durations and int(limit.group(1)) < size:
                # The engine refuses plans this big (CME_MAX_EXECUTORS_PER_PLAN): measure
                # the biggest it takes, and say so.
                size = int(limit.group(1))
                note = f"; the engine's limit is {size} per plan"
                log(f"plans of {self.options.plan_size} refused, using {size}")
                continue
            if answer.status_code != 200:
                raise RuntimeError(f"POST plans/: {answer.status_code} {answer.text[:300]}")
            if times == size:
                durations.append(elapsed)
            else:
                note += f", untimed 1 x {times:,}"
            self.plan_ids.append(answer.json()["id"])
            pending += times
            log(f"plan {len(self.plan_ids)}: {times} executors, {elapsed:.2f} s, {pending} pending")
        self.largest_plan = self.plan_ids[0]
        return [
            f"{statistics.median(durations):.2f} s / {max(durations):.2f} s "
            f"({len(durations)} x {size:,} executors{note}; {pending:,} executors pending)"
        ]

    def large_plan(self, min_time: str, max_time: str, times: int) -> dict[str, Any]:
        return {
            "name": f"bench-large-{len(self.plan_ids) + 1}",
            "attack": attack(self.target.url("never")),
            "planner": {
                "ref": "simple_planner:SimplePlanner",
                "args": {"min_time": min_time, "max_time": max_time, "times": times},
            },
        }

    # 2. --due plans of one executor each, 5-10 s ahead, against the target
    def run_due_executors(self) -> list[str]:
        due = self.options.due
        log(f"creating {due} plans of one executor due in 5-10 s")
        expected: dict[str, str] = {}  # target key -> executor id
        last_created = time.monotonic()
        for index in range(due):
            key = f"due-{index}-{random.getrandbits(32):08x}"
            at = (datetime.now(UTC) + timedelta(seconds=random.uniform(5, 10))).replace(
                microsecond=0
            )
            plan = self.api.ok(
                "POST",
                "plans/",
                {
                    "name": f"bench-due-{index}",
                    "attack": attack(self.target.url(key)),
                    "planner": {
                        "ref": "exact_planner:ExactPlanner",
                        "args": {"date": at.isoformat()},
                    },
                },
            )
            last_created = time.monotonic()
            self.plan_ids.append(plan["id"])
            detail = self.api.ok("GET", f"plans/{plan['id']}")
            (executor,) = detail["_embedded"]["executors"]
            expected[key] = executor["id"]
        # Watch the target (in this process) while the executors are due, so that polling
        # the engine does not slow it down; then read the executors once they are done.
        deadline = last_created + DUE_DEADLINE_SECONDS
        try:
            poll(
                lambda: set(expected) <= set(self.target.arrivals),
                max(deadline - time.monotonic(), 0.1),
                f"{due} attacks to reach the target",
            )
        except TimeoutError as error:
            log(str(error))
        executors: dict[str, dict[str, Any]] = {}

        def read(final: bool) -> bool:
            for key, executor_id in expected.items():
                if key not in executors:
                    item = self.api.ok("GET", f"executors/{executor_id}")
                    if item["executed"] or final:
                        executors[key] = item
            return len(executors) == len(expected)

        try:
            poll(lambda: read(False), max(deadline - time.monotonic(), 5.0), "executors to end")
        except TimeoutError as error:
            log(str(error))
            read(True)
        ran = [key for key, item in executors.items() if item["status"] == "succeeded"]
        others = Counter(
            item["status"] for item in executors.values() if item["status"] != "succeeded"
        )
        lateness = [
            (
                self.target.arrivals[key] - parse_time(executors[key]["next_run_time"])
            ).total_seconds()
            * 1000
            for key in ran
            if key in self.target.arrivals
        ]
        outcome = f"{len(ran)}/{due}"
        if others:
            outcome += (
                " (" + ", ".join(f"{n} {status}" for status, n in sorted(others.items())) + ")"
            )
        if not lateness:
            return [outcome, "n/a (nothing ran)"]
        return [
            outcome,
            f"{percentile(lateness, 0.5):.0f} ms / {percentile(lateness, 0.99):.0f} ms "
            f"(min {min(lateness):.0f}, max {max(lateness):.0f}; "
            f"{sum(1 for value in lateness if value > 100)} over 100 ms)",
        ]

    # 3. reads
    def timed_get(self, path: str) -> tuple[float, requests.Response]:
        samples, answer = [], None
        for _ in range(self.options.samples):
            started = time.perf_counter()
            answer = self.api.call("GET", path)
            samples.append(time.perf_counter() - started)
            if answer.status_code != 200:
                raise RuntimeError(f"GET {path}: {answer.status_code} {answer.text[:300]}")
        assert answer is not None
        return median_ms(samples), answer

    def get_plans(self) -> list[str]:
        took, answer = self.timed_get("plans/")
        count = len(answer.json()["plans"])
        return [f"{took:.0f} ms ({count} listed, {len(answer.content) / 1024:.0f} KB)"]

    def get_largest_plan(self) -> list[str]:
        if self.largest_plan is None:
            raise RuntimeError("no large plan was created")
        took, answer = self.timed_get(f"plans/{self.largest_plan}")
        plan = answer.json()
        embedded = len(plan.get("_embedded", {}).get("executors", []))
        return [
            f"{took:.0f} ms ({plan['executors_count']:,} executors, {embedded:,} embedded, "
            f"{len(answer.content) / 1024:.0f} KB)"
        ]

    def get_executors(self) -> list[str]:
        took, answer = self.timed_get("executors/")
        listed = len(answer.json()["_embedded"]["executors"])
        return [f"{took:.0f} ms ({listed:,} listed, {len(answer.content) / 1024:.0f} KB)"]

    # 4. the engine at rest
    def idle(self) -> list[str]:
        pid = self.engine.pid
        seconds = self.options.idle_seconds
        before, started = cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)  # the measurement window itself, not a wait for something
        used, elapsed = cpu_seconds(pid) - before, time.monotonic() - started
        return [
            f"{used / elapsed * 100:.1f}% of a core (over {elapsed:.0f} s)",
            f"{resident_mb(pid):.0f} MB",
        ]

    # 5. stop and start on the same data
    def restart(self) -> list[str]:
        before = {plan["id"] for plan in self.api.ok("GET", "plans/?all=true")["plans"]}
        code = self.engine.stop()
        log(f"engine stopped with exit status {code}; starting it again")
        self.engine.start()
        self.api = Api(self.engine.base)
        after = {plan["id"] for plan in self.api.ok("GET", "plans/?all=true")["plans"]}
        kept = len(before & after)
        if kept == len(before) and before:
            verdict = "kept"
        else:
            verdict = "LOST" if self.durable else "not kept (in-memory store)"
        return [f"{verdict}: {kept} of {len(before)} plans listed after the restart"]


# -- the command ---------------------------------------------------------------------------


def engine_args(store: str, data_dir: Path, options: argparse.Namespace, zone: str) -> list[str]:
    args = []
    if zone != DEFAULT_TIMEZONE:
        args += ["--timezone", zone]
    if not options.no_store_flag:
        args += ["--store", "moto"] if store == "moto" else ["--data-dir", str(data_dir)]
    return [*args, *options.engine_args]


def run_store(
    store: str, options: argparse.Namespace, target: Target, workload: Options, scratch: Path
) -> tuple[dict[str, str], bool]:
    data_dir = scratch / f"data-{store}"
    data_dir.mkdir()
    engine = Engine(
        engine_args(store, data_dir, options, workload.timezone),
        scratch / f"engine-{store}.log",
        # Plans as big as the 2017 engine's (the default limit is 500): a variable, not
        # --max-executors-per-plan, so that engines without that option start too.
        {"CME_MAX_EXECUTORS_PER_PLAN": str(workload.plan_size)},
    )
    # Plans survive a restart only in durable storage: the default store with --data-dir.
    durable = store == "default" and not options.no_store_flag
    log(f"store {store}: engine log in {engine.log_path}")
    try:
        engine.start()
        run = Run(engine, target, workload, durable)
        cells = run.run()
        failed = run.failed
    except Exception as error:
        log(f"store {store}: {type(error).__name__}: {error}\n{engine.tail()}")
        cells = {row: f"error: {type(error).__name__}".replace("|", "/") for row in ROWS}
        failed = True
    finally:
        engine.stop()
    if failed:
        log(f"store {store}: last lines of the engine log:\n{engine.tail()}")
    return cells, failed


def table(columns: dict[str, dict[str, str]]) -> str:
    lines = [
        "| measure | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for row in ROWS:
        lines.append(
            f"| {row} | " + " | ".join(cells.get(row, "") for cells in columns.values()) + " |"
        )
    return "\n".join(lines)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    own, extra = list(argv), []
    if "--" in own:
        at = own.index("--")
        own, extra = own[:at], own[at + 1 :]
    command = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    command.add_argument("--pending", type=int, default=10_300, help="executors to leave pending")
    command.add_argument("--plan-size", type=int, default=1_000, help="executors per large plan")
    command.add_argument("--due", type=int, default=50, help="plans of one executor due soon")
    command.add_argument("--idle-seconds", type=float, default=10.0)
    command.add_argument("--samples", type=int, default=20, help="requests per timed GET")
    command.add_argument(
        "--stores", default="default,moto", help="comma-separated: default, moto (both)"
    )
    command.add_argument(
        "--quick", action="store_true", help="tiny sizes for CI: --pending 200 --due 5, 3 s idle"
    )
    command.add_argument(
        "--no-store-flag",
        action="store_true",
        help="pass neither --store nor --data-dir (engines without those options)",
    )
    command.add_argument(
        "--timezone", default=None, help="engine timezone (default: chosen, see above)"
    )
    options = command.parse_args(own)
    options.engine_args = extra
    if options.quick:
        options.pending, options.due, options.idle_seconds = 200, 5, 3.0
    options.store_list = [store.strip() for store in options.stores.split(",") if store.strip()]
    unknown = set(options.store_list) - {"default", "moto"}
    if unknown or not options.store_list:
        command.error(f"--stores takes default and/or moto, not {options.stores!r}")
    if min(options.pending, options.plan_size, options.due, options.samples) < 1:
        command.error("--pending, --plan-size, --due and --samples must be at least 1")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    zone = options.timezone or engine_timezone(datetime.now(UTC))
    workload = Options(
        options.pending, options.plan_size, options.due, options.idle_seconds, options.samples, zone
    )
    columns: dict[str, dict[str, str]] = {}
    failed = False
    with (
        tempfile.TemporaryDirectory(prefix="local-scale-") as scratch,
        Target().running() as target,
    ):
        for store in options.store_list:
            cells, store_failed = run_store(store, options, target, workload, Path(scratch))
            label = f"{store}{' (no --store flag)' if options.no_store_flag else ''}"
            columns[label] = cells
            failed = failed or store_failed
    print(
        f"local mode, {options.pending:,} executors pending, {options.due} due, "
        f"timezone {zone}, GETs timed {options.samples} times, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}\n"
    )
    print(table(columns))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
