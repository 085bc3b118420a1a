"""Bounds on what a caller may send and a plan may store, checked before anything is stored.

A value past these bounds used to be accepted and then break reads for every client (a
plan nested hundreds of levels deep, a string with a lone surrogate) or fail in the
database with a 5xx (an item over DynamoDB's 400 KB). Each check raises InvalidPayload
naming the field path, so the caller learns what to change.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from chalicelib.domain.errors import InvalidDate, InvalidPayload, PlanningError
from chalicelib.domain.model import ProposedExecutor
from chalicelib.domain.times import check_range

# Levels of arrays and objects a request body may nest (the 2017 plugins' configs use 3).
MAX_DEPTH = 32
# Characters in any one string (or object key) of a request body.
MAX_STRING = 64 * 1024
# DynamoDB refuses an item over 400 KB, names and values counted in UTF-8
# (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html#limits-items).
# A plan item holds the planner and the attack configs and a few short fields; an
# executor item holds its attack config. The margin covers those fields and key names.
MAX_ITEM_BYTES = 400 * 1024
ITEM_MARGIN_BYTES = 8 * 1024
MAX_CONFIGS_BYTES = MAX_ITEM_BYTES - ITEM_MARGIN_BYTES


def check_json(value: Any) -> None:
    """InvalidPayload for a parsed JSON document nested deeper than ``MAX_DEPTH``, with a
    string longer than ``MAX_STRING`` or a string that is not valid Unicode (a lone
    UTF-16 surrogate, which JSON's ``\\ud800`` escape can carry but UTF-8 cannot store).

    Iterative, so a deep document cannot exhaust the stack here.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            _check_string(item, path or "body")
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise InvalidPayload(f"{path or 'body'}: nested more than {MAX_DEPTH} levels deep")
            if isinstance(item, dict):
                for key, child in item.items():
                    child_path = f"{path}.{_shown_key(key)}" if path else _shown_key(key)
                    _check_string(key, f"{child_path} (the key)")
                    stack.append((child, child_path, depth + 1))
            else:
                stack.extend(
                    (child, f"{path}[{index}]", depth + 1) for index, child in enumerate(item)
                )


def _shown_key(key: str) -> str:
    """A key as a path shows it: short, and printable whatever it holds."""
    text = key if len(key) <= 40 else key[:40] + "..."
    return text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")


def _check_string(text: str, path: str) -> None:
    if len(text) > MAX_STRING:
        raise InvalidPayload(
            f"{path}: a string of {len(text)} characters; the limit is {MAX_STRING}"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidPayload(
            f"{path}: invalid Unicode (a lone surrogate {text[error.start]!a} at "
            f"character {error.start})"
        ) from None


def serialized_size(value: Any) -> int:
    """Bytes of ``value`` as the stores write it (compact JSON in UTF-8)."""
    return len(json.dumps(value, separators=(",", ":"), default=str).encode("utf-8"))


def check_plan_size(planner: Any, attack: Any) -> None:
    """InvalidPayload, naming the larger config, when a plan's configs would not fit in one
    stored item (DynamoDB's 400 KB limit, less a margin for the plan's other fields)."""
    sizes = {"planner": serialized_size(planner), "attack": serialized_size(attack)}
    total = sum(sizes.values())
    if total > MAX_CONFIGS_BYTES:
        largest = max(sizes, key=lambda name: sizes[name])
        raise InvalidPayload(
            f"{largest}: {sizes[largest]} bytes serialized ({total} with the "
            f"{'attack' if largest == 'planner' else 'planner'}); a plan's planner and "
            f"attack together may take at most {MAX_CONFIGS_BYTES} bytes"
        )


def check_proposals(proposals: Sequence[ProposedExecutor]) -> None:
    """PlanningError for a proposed executor whose time is outside the range dates may
    take, or whose attack config would not fit in one stored item."""
    for proposal in proposals:
        try:
            check_range(proposal.run_at)
        except InvalidDate as error:
            raise PlanningError(f"executor {proposal.name!r}: {error.message}") from None
        size = serialized_size(proposal.attack)
        if size > MAX_CONFIGS_BYTES:
            raise PlanningError(
                f"executor {proposal.name!r}: its attack is {size} bytes serialized; the "
                f"limit is {MAX_CONFIGS_BYTES}"
            )
