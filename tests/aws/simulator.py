"""A simulator of AWS's documented behaviour around the deployed engine (test code only).

moto answers every call at once, never fires a schedule, never conflicts, never throttles
and is always consistent. The deployed engine has to live with what AWS documents
instead; this module puts that behaviour around moto, in three parts:

``VirtualClock``
    One simulated timeline, shared by the engine (it is the engine's Clock) and the
    simulator. Threads it ``spawn``s are simulated Lambda invocations: their ``sleep``
    blocks until the timeline reaches the wake-up, and the timeline only moves when every
    one of them is asleep or finished (a discrete-event simulation with real threads). So
    a delivery that waits 90 s for its executor's second costs no real time, two
    deliveries due at the same instant really run at once, and the times the engine
    records (``started_at``) are exact simulated instants: ``started_at - next_run_time``
    is the engine's own lateness, not the test machine's.

``SimulatedAws``
    Every botocore call of every client (boto3's and PynamoDB's own) passes through it
    (``BaseClient._make_api_call`` is patched while it is entered). It gives calls made
    by simulated Lambdas a latency on the timeline and injects, at the botocore level:

    - DynamoDB transaction conflicts: a TransactWriteItems that touches an item another
      transaction is still writing is cancelled with reason ``TransactionConflict``, and a
      single-item write to it fails with ``TransactionConflictException`` ("Transaction
      conflict handling",
      https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/transaction-apis.html#transaction-conflict-handling);
      ``transaction_conflicts`` adds random ones at a rate.
    - Throttling: ``ProvisionedThroughputExceededException`` / ``ThrottlingException`` on
      DynamoDB calls, unprocessed items for BatchWriteItem ("Error handling with
      DynamoDB",
      https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Programming.Errors.html),
      ``ThrottlingException`` on Scheduler calls (its quotas are rates:
      https://docs.aws.amazon.com/scheduler/latest/UserGuide/scheduler-quotas.html), at two
      levels: ``sdk_throttles`` answers that rate of HTTP attempts with a throttling error
      that botocore's own retry handler sees and retries, as with AWS; ``throttles``
      raises that rate of calls to the engine itself, as when throttling outlasts the
      SDK's retries.
    - Global secondary index lag: "all reads from GSIs ... are eventually consistent"
      (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.ReadConsistency.html);
      a GSI Query sees every item written in the last ``gsi_lag_writes`` writes as it was
      before them.
    - A Lambda killed between two AWS calls: ``kill_at(k)`` raises ``LambdaDied`` (a
      BaseException no handler of the engine catches) instead of the k-th call.

    While it is entered, ``time.sleep`` in a simulated Lambda waits on the timeline too.

``SchedulerSimulator``
    Delivers the schedules the engine created in moto's Scheduler the way the Scheduler
    user guide says a one-time schedule is delivered: at a random moment of its at()
    minute ("60 second precision",
    https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html); at least
    once (a fraction twice, sometimes two at once: "your function may receive the same
    event multiple times",
    https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html); a
    failed delivery retried with exponential backoff per its RetryPolicy until
    MaximumRetryAttempts or MaximumEventAgeInSeconds, then sent to its dead-letter queue
    (https://docs.aws.amazon.com/scheduler/latest/APIReference/API_RetryPolicy.html,
    https://docs.aws.amazon.com/scheduler/latest/UserGuide/configuring-schedule-dlq.html);
    deleted after it completed, as ``ActionAfterCompletion=DELETE`` asks
    (https://docs.aws.amazon.com/scheduler/latest/UserGuide/managing-schedule-delete.html),
    so a later UpdateSchedule/DeleteSchedule gets moto's ResourceNotFoundException. A
    CreateSchedule/UpdateSchedule whose at() is already past on the timeline is refused
    with a ValidationException (AWS does not document this case; refusing is the
    strictest reading).

    With ``retries="lambda-async"`` a handler error is instead retried as Lambda's
    asynchronous invocation does (twice, one and then two minutes later), which is what a
    Lambda target really gets: Scheduler's RetryPolicy covers failures to invoke.
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import itertools
import json
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, SupportsIndex
from zoneinfo import ZoneInfo

import botocore.client
import botocore.endpoint
from botocore.exceptions import ClientError

# -- the simulated timeline -------------------------------------------------------------------


class LambdaDied(BaseException):
    """The simulated Lambda's process was killed (timeout, memory, a lost host).

    A BaseException, like the signal that ends a real process: ``except Exception`` in
    the engine does not catch it, so nothing after the kill runs.
    """


class SimulationStuck(AssertionError):
    """A simulated Lambda neither slept on the timeline nor finished in real time."""


@dataclass
class _Gate:
    open: bool = False


@dataclass(order=True)
class _Event:
    when: datetime
    sequence: int
    gate: _Gate | None = field(default=None, compare=False)
    action: Callable[[], None] | None = field(default=None, compare=False)
    cancelled: bool = field(default=False, compare=False)


class VirtualClock:
    """The Clock port on a simulated timeline; see the module docstring.

    ``sleep`` in a spawned thread (a simulated Lambda) waits on the timeline. ``sleep``
    in any other thread runs the simulation forward by that much, unless another thread
    is already running it (then it returns at once: such a thread, a pool worker of a
    simulated Lambda, cannot wait on the timeline without stopping it).
    """

    def __init__(self, start: datetime, *, stall_seconds: float = 60.0) -> None:
        if start.tzinfo is None:
            raise ValueError("the timeline needs an aware start")
        self.start = start
        self._now = start
        self._cond = threading.Condition()
        self._events: list[_Event] = []
        self._sequence = itertools.count()
        self._running = 0
        self._running_names: Counter[str] = Counter()
        self._local = threading.local()
        self._driving = threading.RLock()
        self._stall = stall_seconds
        self._threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    # -- the Clock port

    def now(self) -> datetime:
        with self._cond:
            return self._now

    def sleep(self, seconds: float) -> None:
        seconds = max(0.0, float(seconds))
        if self.in_simulated_lambda:
            with self._cond:
                gate = _Gate()
                when = self._now + timedelta(seconds=seconds)
                heapq.heappush(self._events, _Event(when, next(self._sequence), gate=gate))
                self._running -= 1
                self._cond.notify_all()
                while not gate.open:
                    self._cond.wait()
            return
        if not self._driving.acquire(blocking=False):
            return  # another thread runs the timeline; see the class docstring
        try:
            self.run_until(self.now() + timedelta(seconds=seconds))
        finally:
            self._driving.release()

    # -- the simulation

    def monotonic(self) -> float:
        """Seconds on the timeline, for Deadline and backoff seams."""
        return 1000.0 + (self.now() - self.start).total_seconds()

    @property
    def in_simulated_lambda(self) -> bool:
        return bool(getattr(self._local, "simulated", False))

    @property
    def is_idle(self) -> bool:
        """Nothing running, sleeping or due."""
        with self._cond:
            return self._running == 0 and not self._due()

    def call_at(self, when: datetime, action: Callable[[], None]) -> object:
        """Run ``action`` in the thread that runs the timeline, when it reaches ``when``
        (not before now). An action may ``spawn``. Returns a handle for ``cancel``."""
        with self._cond:
            event = _Event(max(when, self._now), next(self._sequence), action=action)
            heapq.heappush(self._events, event)
            self._cond.notify_all()
            return event

    def cancel(self, handle: object) -> None:
        """Drop an action that has not run yet."""
        if isinstance(handle, _Event):
            with self._cond:
                handle.cancelled = True

    def _due(self) -> list[_Event]:
        return [event for event in self._events if not event.cancelled]

    def spawn(self, name: str, target: Callable[[], None]) -> None:
        """Start a simulated Lambda now. Call it from an action (``call_at``)."""
        with self._cond:
            self._running += 1
            self._running_names[name] += 1

        def body() -> None:
            self._local.simulated = True
            try:
                target()
            except BaseException as error:  # recorded for the test to see
                with self._cond:
                    self.errors.append(error)
            finally:
                with self._cond:
                    self._running -= 1
                    self._running_names[name] -= 1
                    self._cond.notify_all()

        thread = threading.Thread(target=body, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def run_until(self, when: datetime) -> None:
        """Advance the timeline to ``when``, running everything due on the way."""
        with self._driving:
            while True:
                with self._cond:
                    self._await_quiet()
                    if not self._events or self._events[0].when > when:
                        self._now = max(self._now, when)
                        return
                    event = heapq.heappop(self._events)
                    if event.cancelled:
                        continue
                    self._now = max(self._now, event.when)
                    if event.gate is not None:
                        event.gate.open = True
                        self._running += 1
                        self._cond.notify_all()
                        continue
                    action = event.action
                if action is not None:
                    action()

    def run_until_idle(self, limit: datetime) -> None:
        """Run until nothing is running, sleeping or due; SimulationStuck if something
        still is at ``limit``."""
        self.run_until(limit)
        with self._cond:
            self._await_quiet()
            due = self._due()
            if due:
                what = ", ".join(
                    f"{'wake-up' if e.gate else 'action'} at {e.when.time()}" for e in sorted(due)
                )
                raise SimulationStuck(f"still due after {limit.isoformat()}: {what}"[:500])

    def join(self, timeout: float = 10.0) -> None:
        """Wait (real time) for finished simulated Lambdas' threads to end."""
        for thread in self._threads:
            thread.join(timeout)

    def _await_quiet(self) -> None:
        """With the condition held: wait until every simulated Lambda sleeps or is done."""
        limit = time.monotonic() + self._stall
        while self._running > 0:
            left = limit - time.monotonic()
            if left <= 0:
                busy = sorted(name for name, count in self._running_names.items() if count)
                raise SimulationStuck(
                    f"{self._running} simulated Lambda(s) neither slept nor finished in "
                    f"{self._stall:g} s (real): {', '.join(busy)}"
                )
            self._cond.wait(left)


# -- botocore-level behaviour ------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One AWS call the engine (or anything but the simulator itself) made."""

    number: int
    service: str
    operation: str
    params: dict[str, Any]
    in_lambda: bool
    thread: str
    region: str
    started: datetime


DYNAMODB_WRITES = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"}
)
SINGLE_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})


def client_error(
    operation: str, code: str, message: str, status: int = 400, **extra: Any
) -> ClientError:
    """A ClientError shaped like the one botocore builds from AWS's answer."""
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
        **extra,
    }
    return ClientError(response, operation)


def transaction_cancelled(operation: str, reasons: list[str]) -> ClientError:
    """TransactionCanceledException with one reason per item ("None" for the others)."""
    cancellation = [
        {"Code": code}
        if code == "None"
        else {"Code": code, "Message": "Transaction is ongoing for the item"}
        for code in reasons
    ]
    return client_error(
        operation,
        "TransactionCanceledException",
        "Transaction cancelled, please refer cancellation reasons for specific reasons "
        f"[{', '.join(reasons)}]",
        CancellationReasons=cancellation,
    )


class SimulatedAws:
    """AWS's failure modes for every botocore client while entered; see the module
    docstring. Rates are attributes, so a test can change them between phases.
    """

    def __init__(
        self,
        clock: VirtualClock,
        *,
        seed: int = 0,
        transaction_conflicts: float = 0.0,
        throttles: float = 0.0,
        sdk_throttles: float = 0.0,
        gsi_lag_writes: int = 0,
        latency: tuple[float, float] = (0.005, 0.04),
        api_latency: dict[str, float] | None = None,
        faults_in: Callable[[Call], bool] | None = None,
    ) -> None:
        self.clock = clock
        self.transaction_conflicts = transaction_conflicts
        self.throttles = throttles
        self.sdk_throttles = sdk_throttles
        self.gsi_lag_writes = gsi_lag_writes
        self.latency = latency
        # Seconds of timeline a call from outside a simulated Lambda takes, by service
        # (the API Lambda's calls, made by the test's own thread).
        self.api_latency = dict(api_latency or {})
        self.faults_in: Callable[[Call], bool] = faults_in or (lambda call: True)
        self.calls: list[Call] = []
        self.injected: Counter[str] = Counter()
        self.deaths: list[Call] = []
        self._random = random.Random(seed)
        self._lock = threading.RLock()
        self._moto = threading.RLock()  # moto is not atomic under threads; DynamoDB is
        self._local = threading.local()
        self._kills: list[tuple[int, Callable[[Call], bool]]] = []
        self._dead: set[threading.Thread] = set()
        self._kill_counts: Counter[int] = Counter()
        self._observers: list[Callable[[Call, Any], None]] = []
        self._checks: list[Callable[[Call], None]] = []
        self._in_flight: dict[tuple[str, str], int] = {}
        self._writes = 0
        self._journal: deque[tuple[int, str, str, Any]] = deque()
        self._original: Any = None
        self._original_send: Any = None
        self._real_sleep: Callable[[float | SupportsIndex], None] = time.sleep

    # -- setup

    def __enter__(self) -> SimulatedAws:
        self._original = botocore.client.BaseClient._make_api_call
        simulated = self

        def make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            return simulated._call(client, operation, params)

        botocore.client.BaseClient._make_api_call = make_api_call
        self._original_send = botocore.endpoint.Endpoint._do_get_response

        def do_get_response(endpoint: Any, request: Any, operation: Any, context: Any) -> Any:
            return simulated._attempt(endpoint, request, operation, context)

        botocore.endpoint.Endpoint._do_get_response = do_get_response
        self._real_sleep = time.sleep

        def sleep(seconds: float | SupportsIndex) -> None:
            seconds = float(seconds)
            if self.clock.in_simulated_lambda:
                self.clock.sleep(seconds)
            else:
                self._real_sleep(seconds)

        time.sleep = sleep
        return self

    def __exit__(self, *exc: object) -> None:
        botocore.client.BaseClient._make_api_call = self._original
        botocore.endpoint.Endpoint._do_get_response = self._original_send
        time.sleep = self._real_sleep

    @contextlib.contextmanager
    def internal(self) -> Iterator[None]:
        """The simulator's own calls: straight to moto, unseen and unharmed."""
        previous = getattr(self._local, "internal", False)
        self._local.internal = True
        try:
            yield
        finally:
            self._local.internal = previous

    def kill_at(self, number: int, where: Callable[[Call], bool] | None = None) -> None:
        """Kill the Lambda instead of the ``number``-th call matching ``where`` (default:
        calls from simulated Lambdas)."""
        self._kills.append((number, where or (lambda call: call.in_lambda)))

    def observe(self, callback: Callable[[Call, Any], None]) -> None:
        """``callback(call, response)`` after every successful call."""
        self._observers.append(callback)

    def check(self, callback: Callable[[Call], None]) -> None:
        """``callback(call)`` before every call; it may raise the service's error."""
        self._checks.append(callback)

    def calls_of(self, operation: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.operation == operation]

    # -- the call

    def _call(self, client: Any, operation: str, params: dict[str, Any]) -> Any:
        if getattr(self._local, "internal", False):
            return self._original(client, operation, params)
        call = self._admit(
            str(client.meta.service_model.service_name),
            operation,
            params,
            str(client.meta.region_name),
        )
        for check in self._checks:
            check(call)
        keys = self._begin(call)
        self._local.current = call
        try:
            # The call takes time: another transaction on its items conflicts meanwhile.
            if call.in_lambda:
                with self._lock:
                    pause = self._random.uniform(*self.latency)
                self.clock.sleep(pause)
            elif self.api_latency.get(call.service):
                self.clock.sleep(self.api_latency[call.service])
            response = self._perform(client, call)
        finally:
            self._local.current = None
            with self._lock:
                for key in keys:
                    if self._in_flight.get(key) == call.number:
                        del self._in_flight[key]
        for observer in self._observers:
            observer(call, response)
        return response

    def _admit(self, service: str, operation: str, params: dict[str, Any], region: str) -> Call:
        """Record the call; LambdaDied if the Lambda is killed here (or was before)."""
        thread = threading.current_thread()
        if thread in self._dead:
            # A killed process makes no more calls (a `finally` in the engine would).
            raise LambdaDied(f"the Lambda was killed; no {service} {operation} after it")
        with self._lock:
            call = Call(
                number=len(self.calls) + 1,
                service=service,
                operation=operation,
                params=params,
                in_lambda=self.clock.in_simulated_lambda,
                thread=thread.name,
                region=region,
                started=self.clock.now(),
            )
            self.calls.append(call)
            dies = self._dies(call)
            if dies:
                self.deaths.append(call)
                self._dead.add(thread)
        if dies:
            raise LambdaDied(f"killed before call {call.number}: {service} {operation}")
        return call

    def _begin(self, call: Call) -> list[tuple[str, str]]:
        """Mark a transaction's items in flight; the conflict if one already is."""
        if call.service != "dynamodb":
            return []
        keys = self._transaction_keys(call)
        with self._lock:
            conflict = self._ongoing_conflict(call, keys)
            if conflict is None and call.operation == "TransactWriteItems":
                for key in keys:
                    self._in_flight[key] = call.number
        if conflict is not None:
            raise conflict
        return keys if call.operation == "TransactWriteItems" else []

    def _perform(self, client: Any, call: Call) -> Any:
        fault = self._fault(call)
        if isinstance(fault, Exception):
            raise fault
        if fault is not None:
            return fault  # an answer that replaces the call (unprocessed items)
        return self._original(client, call.operation, call.params)

    def _attempt(self, endpoint: Any, request: Any, operation: Any, context: Any) -> Any:
        """One HTTP attempt of a call: maybe a throttling answer that botocore's retry
        handler sees (and retries, per the client's retry configuration); else moto."""
        call: Call | None = getattr(self._local, "current", None)
        if call is None or getattr(self._local, "internal", False):
            return self._original_send(endpoint, request, operation, context)
        if self._sdk_throttled(call):
            from botocore.awsrequest import AWSResponse

            code, status = (
                ("ProvisionedThroughputExceededException", 400)
                if call.service == "dynamodb"
                else ("ThrottlingException", 429)
            )
            parsed = {
                "Error": {"Code": code, "Message": "Rate exceeded"},
                "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
            }
            return (AWSResponse(request.url, status, {}, _EmptyBody()), parsed), None
        if call.service != "dynamodb":
            return self._original_send(endpoint, request, operation, context)
        # Held for this attempt only, never across botocore's retry sleeps.
        with self._moto:
            return self._dynamodb(
                call, lambda: self._original_send(endpoint, request, operation, context)
            )

    def _sdk_throttled(self, call: Call) -> bool:
        if call.service not in ("dynamodb", "scheduler") or not self.faults_in(call):
            return False
        with self._lock:
            throttled = self._random.random() < self.sdk_throttles
            if throttled:
                self.injected["SdkThrottle"] += 1
        return throttled

    def _dies(self, call: Call) -> bool:
        for index, (number, where) in enumerate(self._kills):
            if where(call):
                self._kill_counts[index] += 1
                if self._kill_counts[index] == number:
                    return True
        return False

    def _fault(self, call: Call) -> Exception | dict[str, Any] | None:
        """A random fault for this call, or an answer that replaces it, or None."""
        if not self.faults_in(call):
            return None
        with self._lock:
            roll = self._random.random()
            pick = self._random.random()
        operation = call.operation
        if call.service == "dynamodb":
            if operation == "TransactWriteItems":
                if roll < self.transaction_conflicts:
                    items = len(call.params.get("TransactItems", []))
                    which = int(pick * items)
                    self.injected["TransactionConflict"] += 1
                    reasons = ["None"] * items
                    reasons[which] = "TransactionConflict"
                    return transaction_cancelled(operation, reasons)
                roll -= self.transaction_conflicts
            if 0 <= roll < self.throttles:
                if operation == "BatchWriteItem":
                    self.injected["UnprocessedItems"] += 1
                    return {"UnprocessedItems": call.params["RequestItems"]}
                code = (
                    "ProvisionedThroughputExceededException"
                    if pick < 0.5
                    else "ThrottlingException"
                )
                self.injected[code] += 1
                return client_error(
                    operation, code, "Throughput exceeds the current capacity of your table"
                )
        elif call.service == "scheduler" and roll < self.throttles:
            self.injected["SchedulerThrottling"] += 1
            return client_error(operation, "ThrottlingException", "Rate exceeded", status=429)
        return None

    # -- DynamoDB: transactions in flight, and the lagging index

    def _transaction_keys(self, call: Call) -> list[tuple[str, str]]:
        """The items a write touches, for the conflict model."""
        if call.operation == "TransactWriteItems":
            keys = []
            for entry in call.params.get("TransactItems", []):
                for kind in ("Put", "Update", "Delete", "ConditionCheck"):
                    if kind in entry:
                        action = entry[kind]
                        attrs = action.get("Key") or action.get("Item") or {}
                        keys.append(self._item_key(call.region, action["TableName"], attrs))
            return keys
        if call.operation in SINGLE_WRITES:
            attrs = call.params.get("Key") or call.params.get("Item") or {}
            return [self._item_key(call.region, call.params["TableName"], attrs)]
        return []

    def _ongoing_conflict(self, call: Call, keys: list[tuple[str, str]]) -> ClientError | None:
        busy = [key in self._in_flight for key in keys]
        if not any(busy):
            return None
        self.injected["OngoingTransaction"] += 1
        if call.operation == "TransactWriteItems":
            return transaction_cancelled(
                call.operation, ["TransactionConflict" if hit else "None" for hit in busy]
            )
        # A single write to an item a transaction is writing (only transactions are
        # tracked: two single writes are simply serialized).
        return client_error(
            call.operation,
            "TransactionConflictException",
            "Transaction is ongoing for the item",
        )

    def _item_key(self, region: str, table_name: str, attrs: dict[str, Any]) -> tuple[str, str]:
        try:
            table = _moto_table(region, table_name)
        except Exception:  # no such table: moto answers that; any key will do here
            return table_name, json.dumps(attrs, sort_keys=True)
        names = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
        return table_name, json.dumps([attrs.get(name) for name in names], sort_keys=True)

    def _dynamodb(self, call: Call, send: Callable[[], Any]) -> Any:
        """One attempt of a call on moto, with the GSI lag applied (the moto lock is
        held)."""
        operation, params = call.operation, call.params
        if operation in DYNAMODB_WRITES:
            self._remember(call.region, call)
            return send()
        lagging = operation in ("Query", "Scan") and "IndexName" in params
        if not lagging or self.gsi_lag_writes <= 0:
            return send()
        table = _moto_table(call.region, params["TableName"])
        oldest: dict[str, Any] = {}
        for number, table_name, key, before in self._journal:
            if table_name == table.name and number > self._writes - self.gsi_lag_writes:
                oldest.setdefault(key, before)
        current = {key: _moto_get(table, json.loads(key)) for key in oldest}
        for key, before in oldest.items():
            _moto_set(table, json.loads(key), before)
        try:
            if oldest:
                self.injected["LaggingIndexRead"] += 1
            return send()
        finally:
            for key, item in current.items():
                _moto_set(table, json.loads(key), item)

    def _remember(self, region: str, call: Call) -> None:
        """Journal each item's state before this write, for the lagging index."""
        touched: list[tuple[str, dict[str, Any]]] = []
        params = call.params
        if call.operation == "TransactWriteItems":
            for entry in params.get("TransactItems", []):
                for kind in ("Put", "Update", "Delete"):
                    if kind in entry:
                        action = entry[kind]
                        touched.append((action["TableName"], action.get("Key") or action["Item"]))
        elif call.operation == "BatchWriteItem":
            for table_name, requests in params.get("RequestItems", {}).items():
                for request in requests:
                    if "PutRequest" in request:
                        touched.append((table_name, request["PutRequest"]["Item"]))
                    else:
                        touched.append((table_name, request["DeleteRequest"]["Key"]))
        else:
            touched.append((params["TableName"], params.get("Key") or params["Item"]))
        self._writes += 1
        for table_name, attrs in touched:
            table = _moto_table(region, table_name)
            key_attrs = {
                name: attrs[name]
                for name in (table.hash_key_attr, table.range_key_attr)
                if name is not None
            }
            key = json.dumps(key_attrs, sort_keys=True)
            self._journal.append(
                (self._writes, table_name, key, copy.deepcopy(_moto_get(table, key_attrs)))
            )
        horizon = self._writes - max(self.gsi_lag_writes, 0)
        while self._journal and self._journal[0][0] <= horizon:
            self._journal.popleft()


class _EmptyBody:
    """The raw body of a simulated error answer (botocore reads it, finds nothing)."""

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b""


def _moto_table(region: str, name: str) -> Any:
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    return dynamodb_backends[DEFAULT_ACCOUNT_ID][region].get_table(name)


def _moto_keys(table: Any, key_attrs: dict[str, Any]) -> tuple[Any, Any]:
    from moto.dynamodb.models.dynamo_type import DynamoType

    hash_key = DynamoType(key_attrs[table.hash_key_attr])
    range_key = DynamoType(key_attrs[table.range_key_attr]) if table.range_key_attr else None
    return hash_key, range_key


def _moto_get(table: Any, key_attrs: dict[str, Any]) -> Any:
    hash_key, range_key = _moto_keys(table, key_attrs)
    return table.get_item(hash_key, range_key)


def _moto_set(table: Any, key_attrs: dict[str, Any], item: Any) -> None:
    hash_key, range_key = _moto_keys(table, key_attrs)
    if range_key is None:
        if item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item
    elif item is None:
        table.items[hash_key].pop(range_key, None)
    else:
        table.items[hash_key][range_key] = item


# -- EventBridge Scheduler ----------------------------------------------------------------------


@dataclass
class Delivery:
    """One invocation of the target by the simulated Scheduler."""

    schedule: str
    event: dict[str, Any]
    fired_at: datetime
    attempt: int
    duplicate: bool
    outcome: str = "running"  # ok | error | died
    detail: str | None = None
    response: Any = None
    finished_at: datetime | None = None


@dataclass
class _Planned:
    name: str
    definition: dict[str, Any]
    fires_at: datetime
    duplicate: str | None  # None, "later" or "concurrent"
    handle: object = None
    cancelled: bool = False
    fired: bool = False
    completed: bool = False

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.definition["Target"].get("Input") or "{}")
        return parsed


def _signature(definition: dict[str, Any]) -> str:
    keep = {
        key: definition.get(key)
        for key in ("ScheduleExpression", "ScheduleExpressionTimezone", "Target", "State")
    }
    return json.dumps(keep, sort_keys=True, default=str)


def at_instant(expression: str, zone_name: str | None) -> datetime:
    """The instant an ``at(yyyy-mm-ddThh:mm:ss)`` expression names in its timezone."""
    if not (expression.startswith("at(") and expression.endswith(")")):
        raise ValueError(f"not a one-time schedule: {expression!r}")
    wall = datetime.fromisoformat(expression[3:-1])
    return wall.replace(tzinfo=ZoneInfo(zone_name or "UTC")).astimezone(UTC)


class SchedulerSimulator:
    """Delivers the engine's one-time schedules from moto as Scheduler would; see the
    module docstring. ``handler(event)`` is the attack Lambda.

    ``fire_offset`` picks the moment in the at() minute (default: uniform, seeded);
    tests pin it to probe the edges of the minute.
    """

    def __init__(
        self,
        clock: VirtualClock,
        aws: SimulatedAws,
        handler: Callable[[dict[str, Any]], Any],
        *,
        group: str,
        region: str,
        seed: int = 0,
        duplicates: float = 0.0,
        concurrent_duplicates: float = 0.5,
        retries: str = "retry-policy",
        retry_base: float = 1.0,
        fire_offset: Callable[[random.Random], float] | None = None,
    ) -> None:
        if retries not in ("retry-policy", "lambda-async"):
            raise ValueError(f"unknown retry model {retries!r}")
        self.clock = clock
        self.aws = aws
        self.handler = handler
        self.group = group
        self.region = region
        self.duplicates = duplicates
        self.concurrent_duplicates = concurrent_duplicates
        self.retries = retries
        self.retry_base = retry_base
        self.fire_offset = fire_offset or (lambda rng: rng.uniform(0.0, 59.999))
        self.deliveries: list[Delivery] = []
        self.dead_letters: list[dict[str, Any]] = []
        self.refused: list[Call] = []
        self.planned: dict[str, _Planned] = {}
        self._random = random.Random(seed)
        self._lock = threading.RLock()
        self._client: Any = None
        aws.check(self._refuse_past)
        aws.observe(self._observed)

    # -- what the engine does to its schedules

    def _scheduler(self) -> Any:
        if self._client is None:
            import boto3

            with self.aws.internal():
                self._client = boto3.client("scheduler", region_name=self.region)
        return self._client

    def _refuse_past(self, call: Call) -> None:
        if call.service != "scheduler" or call.operation not in (
            "CreateSchedule",
            "UpdateSchedule",
        ):
            return
        fires = at_instant(
            call.params["ScheduleExpression"], call.params.get("ScheduleExpressionTimezone")
        )
        if fires < self.clock.now():
            with self._lock:
                self.refused.append(call)
            raise client_error(
                call.operation,
                "ValidationException",
                f"The schedule expression {call.params['ScheduleExpression']} is in the past",
            )

    def _observed(self, call: Call, response: Any) -> None:
        if call.service != "scheduler" or call.params.get("GroupName") != self.group:
            return
        if call.operation in ("CreateSchedule", "UpdateSchedule"):
            self._load(call.params["Name"])
        elif call.operation == "DeleteSchedule":
            with self._lock:
                planned = self.planned.get(call.params["Name"])
                if planned is not None and not planned.fired:
                    planned.cancelled = True
                    self.clock.cancel(planned.handle)

    def refresh(self) -> None:
        """Read every schedule of the group from moto (those created before the
        simulator was watching)."""
        with self.aws.internal():
            pages = self._scheduler().get_paginator("list_schedules").paginate(GroupName=self.group)
            names = [item["Name"] for page in pages for item in page["Schedules"]]
        for name in names:
            self._load(name)

    def _load(self, name: str) -> None:
        with self.aws.internal():
            try:
                definition = self._scheduler().get_schedule(Name=name, GroupName=self.group)
            except ClientError:
                return
        with self._lock:
            known = self.planned.get(name)
            if known is not None and not known.cancelled and not known.completed:
                if _signature(known.definition) == _signature(definition):
                    return  # a retried call (same ClientToken), nothing new
                if not known.fired:
                    known.cancelled = True
                    self.clock.cancel(known.handle)
            start = at_instant(
                definition["ScheduleExpression"], definition.get("ScheduleExpressionTimezone")
            )
            fires = start + timedelta(seconds=self.fire_offset(self._random))
            roll = self._random.random()
            duplicate = None
            if roll < self.duplicates:
                concurrent = self._random.random() < self.concurrent_duplicates
                duplicate = "concurrent" if concurrent else "later"
            planned = _Planned(name, definition, fires, duplicate)
            self.planned[name] = planned
            planned.handle = self.clock.call_at(fires, lambda: self._fire(planned))

    # -- deliveries

    def _fire(self, planned: _Planned) -> None:
        # What fires is what moto holds now (a schedule deleted or changed by any means
        # since it was read does not fire as it was).
        with self.aws.internal():
            try:
                stored = self._scheduler().get_schedule(Name=planned.name, GroupName=self.group)
            except ClientError:
                stored = None
        with self._lock:
            if planned.cancelled or stored is None:
                return
            if _signature(stored) != _signature(planned.definition):
                return
            planned.fired = True
        self._start(planned, attempt=1, duplicate=False)
        if planned.duplicate == "concurrent":
            self._start(planned, attempt=1, duplicate=True)
        elif planned.duplicate == "later":
            with self._lock:
                later = self.clock.now() + timedelta(seconds=self._random.uniform(0.0, 60.0))
            self.clock.call_at(later, lambda: self._start(planned, attempt=1, duplicate=True))
        if self.retries == "lambda-async":
            # Scheduler's invocation is Lambda accepting the event: it is complete now.
            self._complete(planned)

    def _start(self, planned: _Planned, attempt: int, duplicate: bool) -> None:
        delivery = Delivery(planned.name, planned.event, self.clock.now(), attempt, duplicate)
        with self._lock:
            self.deliveries.append(delivery)
        name = f"delivery:{planned.name}:{attempt}{':copy' if duplicate else ''}"
        self.clock.spawn(name, lambda: self._run(planned, delivery))

    def _run(self, planned: _Planned, delivery: Delivery) -> None:
        try:
            delivery.response = self.handler(dict(delivery.event))
            delivery.outcome = "ok"
        except LambdaDied as died:
            delivery.outcome, delivery.detail = "died", str(died)
        except Exception as error:
            delivery.outcome, delivery.detail = "error", f"{type(error).__name__}: {error}"
        delivery.finished_at = self.clock.now()
        if delivery.duplicate:
            return  # a copy of an invocation: its original carries the retries
        if delivery.outcome == "ok":
            if self.retries == "retry-policy":
                self._complete(planned)
            return
        self._retry(planned, delivery)

    def _retry(self, planned: _Planned, failed: Delivery) -> None:
        attempt = failed.attempt
        if self.retries == "lambda-async":
            # "two more times, with a one-minute wait between the first two attempts,
            # and two minutes between the second and third"
            if attempt >= 3:
                with self._lock:
                    self.dead_letters.append({"schedule": planned.name, "dropped": True})
                return
            wait = 60.0 * attempt
        else:
            policy = planned.definition["Target"].get("RetryPolicy") or {}
            most = int(policy.get("MaximumRetryAttempts", 185))
            age = float(policy.get("MaximumEventAgeInSeconds", 86400))
            with self._lock:
                jitter = self._random.uniform(0.5, 1.0)
            wait = min(60.0, self.retry_base * 2 ** (attempt - 1)) * jitter
            elapsed = (self.clock.now() - planned.fires_at).total_seconds() + wait
            if attempt > most or elapsed > age:
                condition = "MaximumRetryAttempts" if attempt > most else "MaximumEventAgeInSeconds"
                self._dead_letter(planned, failed, condition)
                self._complete(planned)
                return
        when = self.clock.now() + timedelta(seconds=wait)
        self.clock.call_at(when, lambda: self._start(planned, attempt + 1, duplicate=False))

    def _dead_letter(self, planned: _Planned, failed: Delivery, condition: str) -> None:
        """Send the dead-letter event to the schedule's queue, shaped after the Scheduler
        user guide's "Retrieve the dead-letter event"."""
        target = planned.definition["Target"]
        queue_arn = (target.get("DeadLetterConfig") or {}).get("Arn")
        message = {
            "schedule": planned.name,
            "input": target.get("Input"),
            "attributes": {
                "ERROR_CODE": failed.outcome,
                "ERROR_MESSAGE": failed.detail or "",
                "EXHAUSTED_RETRY_CONDITION": condition,
                "RETRY_ATTEMPTS": str(failed.attempt - 1),
                "SCHEDULE_ARN": planned.definition.get("Arn", ""),
                "TARGET_ARN": target.get("Arn", ""),
            },
        }
        with self._lock:
            self.dead_letters.append(message)
        if not queue_arn:
            return
        import boto3

        with self.aws.internal():
            sqs = boto3.client("sqs", region_name=self.region)
            try:
                url = sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[-1])["QueueUrl"]
            except ClientError:
                return  # no queue: the event is lost, as in AWS
            sqs.send_message(
                QueueUrl=url,
                MessageBody=target.get("Input") or "{}",
                MessageAttributes={
                    name: {"DataType": "String", "StringValue": value or "-"}
                    for name, value in message["attributes"].items()
                },
            )

    def _complete(self, planned: _Planned) -> None:
        """ActionAfterCompletion=DELETE: the schedule goes once its invocation is done,
        unless the engine changed it meanwhile (then it is a new one)."""
        with self._lock:
            planned.completed = True
            current = self.planned.get(planned.name)
            if current is not planned:
                return
        with self.aws.internal():
            client = self._scheduler()
            try:
                stored = client.get_schedule(Name=planned.name, GroupName=self.group)
                if _signature(stored) == _signature(planned.definition):
                    client.delete_schedule(Name=planned.name, GroupName=self.group)
            except ClientError:
                pass  # already gone

    # -- what a test reads

    def deliveries_of(self, executor_id: str) -> list[Delivery]:
        with self._lock:
            return [d for d in self.deliveries if d.event.get("executor_id") == executor_id]

    def every(
        self, interval: timedelta, until: datetime, name: str, target: Callable[[], Any]
    ) -> list[Any]:
        """Run ``target`` as a simulated Lambda every ``interval`` until ``until`` (a
        rate() schedule, such as the reaper's), starting one interval from now. Returns
        the list its results (or errors) are appended to."""
        results: list[Any] = []

        def run() -> None:
            try:
                results.append(target())
            except Exception as error:
                results.append(error)

        def tick() -> None:
            self.clock.spawn(name, run)
            upcoming = self.clock.now() + interval
            if upcoming <= until:
                self.clock.call_at(upcoming, tick)

        self.clock.call_at(self.clock.now() + interval, tick)
        return results
