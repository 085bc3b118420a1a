"""One AWS call at a time through in-process moto, which is not safe for concurrent use.

moto's DynamoDB copies the table before a transaction and restores that copy when the
transaction is cancelled, so a cancelled TransactWriteItems in one thread can undo a
write another thread made meanwhile. Real DynamoDB isolates them. Local mode's
``--store moto`` and the tests call moto from many threads (HTTP requests, scheduler
jobs), so every call moto answers in-process goes through one lock.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_LOCK = threading.RLock()
_MARK = "_cme_serialized"


def serialize_moto() -> None:
    """Make moto's in-process request handler take one lock per call; idempotent."""
    from moto.core.botocore_stubber import BotocoreStubber

    call = BotocoreStubber.__call__
    if getattr(call, _MARK, False):
        return

    @functools.wraps(call)
    def serialized(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return call(self, *args, **kwargs)

    setattr(serialized, _MARK, True)
    BotocoreStubber.__call__ = serialized  # type: ignore[method-assign]
