"""The engine's live halt: read it, set it, lift it; no deploy, and stored with the plans.

While the halt is on, every executor that comes due is skipped (the runner's guard reads
it on every run, docs/safety.md). Lifting it replays nothing: the executors it skipped
stay skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from chalicelib.domain.errors import InvalidPayload
from chalicelib.domain.ports import Clock, Store
from chalicelib.domain.safety import Halt
from chalicelib.services.audit import AuditTrail

log = logging.getLogger(__name__)

# The longest reason a halt may carry: it is quoted on every executor the halt skips.
MAX_HALT_REASON = 500
HALT_FIELDS = ("halted", "reason")


@dataclass(frozen=True)
class HaltRequest:
    """A validated ``PUT /halt`` body."""

    halted: bool
    reason: str | None = None


def read_halt_request(payload: Any) -> HaltRequest:
    """The ``{"halted": bool, "reason": str}`` body, or InvalidPayload naming the field.

    A reason is required to halt (every executor the halt skips quotes it) and optional
    to lift it.
    """
    if not isinstance(payload, dict):
        raise InvalidPayload('halt: expected an object {"halted": true|false, "reason": "..."}')
    unknown = sorted(set(payload) - set(HALT_FIELDS))
    if unknown:
        names = ", ".join(repr(name[:40]) for name in unknown[:5])
        raise InvalidPayload(f"halt: unknown field(s) {names}; known: halted, reason")
    halted = payload.get("halted")
    if not isinstance(halted, bool):
        raise InvalidPayload("halted: must be true or false")
    reason = payload.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidPayload("reason: must be a string")
    if reason is not None:
        reason = reason.strip() or None
    if reason is not None and len(reason) > MAX_HALT_REASON:
        raise InvalidPayload(f"reason: {len(reason)} characters; the limit is {MAX_HALT_REASON}")
    if halted and reason is None:
        raise InvalidPayload(
            "reason: required to halt (it is quoted on every executor the halt skips)"
        )
    return HaltRequest(halted, reason)


@dataclass
class HaltService:
    """Reads and sets the halt on the store; records who set it and when."""

    store: Store
    clock: Clock
    # Every halt change is an event and a notification; None: none.
    audit: AuditTrail | None = None

    def get(self) -> Halt:
        return self.store.get_halt()

    def set(self, request: HaltRequest, by: str) -> Halt:
        """Halt or lift, as ``by`` (the caller's principal) asks, from now on."""
        halt = self.store.set_halt(
            Halt(halted=request.halted, reason=request.reason, since=self.clock.now(), by=by)
        )
        log.warning(
            "attacks %s by %s: %s",
            "halted" if halt.halted else "resumed",
            halt.by,
            halt.reason or "(no reason given)",
            extra={"halted": halt.halted, "by": halt.by},
        )
        if self.audit is not None:
            self.audit.halt_changed(halt)
        return halt
