"""Shared fixtures: fake AWS credentials, moto, a wired engine, a fixed clock."""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chalicelib.local.fake_aws import FAKE_AWS

# Before anything imports boto3: nothing in the tests may reach real AWS or the
# instance metadata address.
os.environ.update(FAKE_AWS)
# Engines the tests start without --data-dir keep their state here, never in the home
# directory (local mode's default data directory is under XDG_DATA_HOME).
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="cme-test-data-")
for _variable in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
    os.environ.pop(_variable, None)

from moto import mock_aws  # noqa: E402

from chalicelib.local.serial_moto import serialize_moto  # noqa: E402

serialize_moto()

# Tests talk only to this machine and to the hosts of networks they create (the SSH lab
# registers its own). Anything else — a real AWS endpoint, the metadata address, a DNS
# lookup of a public name — fails the test at once instead of leaving the machine.
LAB_NETWORKS: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
# Every refused attempt, in order: the autouse ``nothing_tried_to_leave`` fails the test
# during which one was made, even if the code under test caught the OSError (a guard of
# ours must refuse *before* the socket; this one is the last line, not the test).
REFUSED_ATTEMPTS: list[str] = []
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _is_allowed_host(host: object) -> bool:
    if not isinstance(host, str):
        return False
    if host in ("localhost", ""):
        return True
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return address.is_loopback or any(address in network for network in LAB_NETWORKS)


def _check(address: object) -> None:
    if isinstance(address, tuple) and address and not _is_allowed_host(address[0]):
        REFUSED_ATTEMPTS.append(f"connect {address[0]!r}")
        raise OSError(f"tests may not reach {address[0]!r}: only loopback and lab networks")


def _guarded_connect(self: socket.socket, address: object) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check(address)
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


def _guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
    if host is not None and not _is_allowed_host(
        host.decode() if isinstance(host, bytes) else host
    ):
        REFUSED_ATTEMPTS.append(f"resolve {host!r}")
        raise OSError(f"tests may not resolve {host!r}: only loopback and lab networks")
    return _real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]


socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]
socket.getaddrinfo = _guarded_getaddrinfo  # type: ignore[assignment]

from chalicelib.adapters.sqlite_store import SqliteStore  # noqa: E402
from chalicelib.bootstrap import Engine, build_engine  # noqa: E402
from chalicelib.settings import Settings  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def nothing_tried_to_leave() -> Iterator[None]:
    """Fail a test during which anything tried to reach beyond loopback and the lab's
    networks (the instance-metadata address, a real AWS endpoint, a public name)."""
    REFUSED_ATTEMPTS.clear()
    yield
    tried = list(REFUSED_ATTEMPTS)
    REFUSED_ATTEMPTS.clear()
    assert tried == [], f"tried to leave the machine: {tried}"


@dataclass
class FixedClock:
    """A clock tests move by hand."""

    current: datetime

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)

    def sleep(self, seconds: float) -> None:
        """Waiting on a fixed clock moves it on by exactly that much."""
        if seconds > 0:
            self.current += timedelta(seconds=seconds)


@dataclass
class RecordingScheduler:
    """Records what the engine asked to schedule, for tests that drive the runner by hand.

    Tests of the real schedulers (APScheduler, EventBridge) use those adapters instead.
    ``lead`` and ``capacity`` stand for a scheduler's minimum lead time and the most
    schedules it can create and undo within a deadline.
    """

    scheduled: dict[str, datetime]
    lead: timedelta = timedelta(seconds=1)
    capacity: int | None = None
    deadlines: list[object] = field(default_factory=list)

    @property
    def min_lead_time(self) -> timedelta:
        return self.lead

    def max_executors_within(self, seconds: float) -> int | None:
        return self.capacity

    def start(self) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def create(self, executors: object, deadline: object = None) -> None:
        self.deadlines.append(deadline)
        for executor in executors:  # type: ignore[attr-defined]
            self.scheduled[executor.id] = executor.next_run_time

    def update(self, executor: object) -> None:
        self.scheduled[executor.id] = executor.next_run_time  # type: ignore[attr-defined]

    def delete(self, executor_ids: object, deadline: object = None) -> None:
        for executor_id in executor_ids:  # type: ignore[attr-defined]
            self.scheduled.pop(executor_id, None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def aws() -> Iterator[None]:
    """moto in-process for every AWS API boto3 and PynamoDB call."""
    with mock_aws():
        yield


@pytest.fixture
def scrubbed_logs() -> Iterator[None]:
    """The engine's log-record factory (secrets masked as each record is created), for
    one test; the one before it is put back after."""
    import logging

    from chalicelib import logfmt

    factory = logging.getLogRecordFactory()
    logfmt.install_scrubbing()
    try:
        yield
    finally:
        logging.setLogRecordFactory(factory)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))


@pytest.fixture
def settings() -> Settings:
    return Settings(plans_table="test-plans", executors_table="test-executors")


@pytest.fixture
def sqlite_store(tmp_path: Path, settings: Settings) -> Iterator[SqliteStore]:
    """Local mode's store on a file of the test's own."""
    store = SqliteStore(tmp_path / "store.sqlite3", executed_retention=settings.executed_retention)
    yield store
    store.close()


@pytest.fixture
def scheduler() -> RecordingScheduler:
    return RecordingScheduler({})


@pytest.fixture
def engine(
    aws: None,
    settings: Settings,
    clock: FixedClock,
    scheduler: RecordingScheduler,
    sqlite_store: SqliteStore,
) -> Engine:
    """An engine on local mode's SQLite store with a fixed clock and a recording scheduler.

    moto stays active (``aws``) for the attacks' targets and as the guard against real
    AWS; the DynamoDB store passes the same contract suite (tests/contract).
    """
    return build_engine(settings, sqlite_store, lambda runner: scheduler, clock)
