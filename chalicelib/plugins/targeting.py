"""The one path every target-picking attack takes: find, guard, size, pick, act.

EC2 instance attacks, Libcloud node attacks and SSH script attacks all run
``strike``: their own code only finds candidates and acts on the picked ones. In
between, the same rules apply to all three:

1. the engine's tag guards (``TargetTags.why_spared``: the opt-in and exclude tags,
   whatever the plan's filters say; SSH hosts named by address have no tags and pass),
   and an attack's own exclusions;
2. the blast radius (``count`` or ``percent`` of the eligible targets, ``max_targets``,
   ``min_remaining``), read from the attack's arguments by ``BlastRadius``;
3. the pick, from ``random.Random(seed)`` over the eligible targets sorted by id, with
   the seed recorded in the result, so that a run can be explained and replayed;
4. the actuator, chosen once, at the start: in a dry run one that only reports
   (``AttackSkipped``, "dry run: would ...; nothing was done") replaces the real one.

Nothing here imports a cloud or SSH library; the families' actuators do.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Generic, Protocol, TypeVar

from chalicelib.domain.safety import TargetTags
from chalicelib.plugins.contract import AttackContext, AttackFailed, AttackSkipped

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)

# The largest seed drawn (and accepted): JSON numbers this size are exact everywhere.
MAX_SEED = 2**53 - 1
# The most targets a result names one by one in a dry run's reason.
MAX_LABELS = 10

BLAST_RADIUS_PROPERTIES: dict[str, Any] = {
    "count": {
        "oneOf": [{"type": "integer", "minimum": 1}, {"const": "all"}],
        "description": 'how many eligible targets to hit (default 1; "all": every one); '
        "not with percent",
    },
    "percent": {
        "type": "number",
        "exclusiveMinimum": 0,
        "maximum": 100,
        "description": "the share of the eligible targets to hit, rounded up, at least 1; "
        "not with count",
    },
    "max_targets": {
        "type": "integer",
        "minimum": 1,
        "description": "never hit more than this many targets, whatever count or percent say",
    },
    "min_remaining": {
        "type": "integer",
        "minimum": 0,
        "description": "never leave fewer than this many eligible targets untouched (0)",
    },
    "seed": {
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_SEED,
        "description": "the pick's random seed (a result's selection.seed replays that pick); "
        "drawn at random when absent",
    },
}

# ``count`` and ``percent`` together: refused naming ``count`` (a schema's ``not`` would
# quote the whole arguments object instead of saying what is wrong).
BLAST_RADIUS_RULES: dict[str, Any] = {
    "dependentSchemas": {
        "percent": {
            "properties": {"count": {"enum": ["(not with percent: give count or percent)"]}}
        }
    }
}


@dataclass(frozen=True)
class BlastRadius:
    """How many of the eligible targets one run may hit.

    ``count`` (an integer, or "all") or ``percent`` (0 < p <= 100, of the eligible
    targets, rounded up, at least 1); ``max_targets`` caps either; ``min_remaining``
    eligible targets are always left untouched.
    """

    count: int | str | None = 1
    percent: float | None = None
    max_targets: int | None = None
    min_remaining: int = 0

    @classmethod
    def from_args(cls, args: Mapping[str, Any], default_count: int | str = 1) -> BlastRadius:
        """The radius an attack's (valid) arguments ask for; ``default_count`` when they
        name neither ``count`` nor ``percent``."""
        percent = args.get("percent")
        count = None if percent is not None else args.get("count", default_count)
        max_targets = args.get("max_targets")
        return cls(
            count=count if count == "all" or count is None else int(count),
            percent=None if percent is None else float(percent),
            max_targets=None if max_targets is None else int(max_targets),
            min_remaining=int(args.get("min_remaining", 0)),
        )

    def wanted(self, eligible: int) -> int:
        """How many of ``eligible`` targets count/percent and max_targets ask for."""
        if self.percent is not None:
            # Exact decimal arithmetic: 7.3 % of 1000 is 73, not 74 (float says 73.00...01).
            wanted = max(1, math.ceil(Fraction(str(self.percent)) * eligible / 100))
        elif self.count == "all":
            wanted = eligible
        else:
            wanted = int(self.count or 1)
        if self.max_targets is not None:
            wanted = min(wanted, self.max_targets)
        return min(wanted, eligible)

    def bound(self, known: int | None = None) -> int | None:
        """The most targets a run can hit, when it can be told before any is found
        (``known``: how many candidates there are, when the plan lists them); None when
        it depends on how many match (a percent, or "all", without max_targets)."""
        if isinstance(self.count, int):
            most: int | None = self.count
        elif known is not None:
            most = known
        else:
            most = None
        if self.max_targets is not None:
            most = self.max_targets if most is None else min(most, self.max_targets)
        if known is not None and most is not None:
            most = min(most, known)
        return most

    def as_dict(self) -> dict[str, Any]:
        """The radius as a result records it."""
        shown: dict[str, Any] = (
            {"percent": self.percent} if self.percent is not None else {"count": self.count}
        )
        if self.max_targets is not None:
            shown["max_targets"] = self.max_targets
        shown["min_remaining"] = self.min_remaining
        return shown

    def describe(self) -> str:
        text = f"{self.percent:g}%" if self.percent is not None else f"count {self.count}"
        if self.max_targets is not None:
            text += f", max_targets {self.max_targets}"
        return text


@dataclass(frozen=True)
class Spared:
    """A candidate a guard kept out of reach, and why."""

    id: str
    why: str
    guard: str  # "opt-in", "exclude" (the engine's tags) or "excluded" (the attack's own)

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "why": self.why}


@dataclass(frozen=True)
class Selection(Generic[T]):
    """What one pick found: the targets to hit, who was spared and why, and the seed.

    ``refusal`` is why nothing may be hit (a guard spared every candidate, or the blast
    radius leaves none), None when ``targets`` is not empty or nothing matched at all.
    """

    targets: list[T]
    spared: list[Spared]
    matched: int
    eligible: int
    seed: int
    radius: BlastRadius
    refusal: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "matched": self.matched,
            "eligible": self.eligible,
            "spared": [item.as_dict() for item in self.spared],
            "seed": self.seed,
            "radius": self.radius.as_dict(),
        }


def draw_seed() -> int:
    """A fresh seed from the system's random source."""
    return random.SystemRandom().randint(0, MAX_SEED)


def select(  # noqa: PLR0917 (the pick's inputs, named in the docstring)
    candidates: Sequence[T],
    id_of: Callable[[T], str],
    tags_of: Callable[[T], Mapping[str, str] | None],
    radius: BlastRadius,
    target_tags: TargetTags,
    seed: int | None = None,
    *,
    noun: str = "target",
    spare: Callable[[T], str | None] | None = None,
) -> Selection[T]:
    """Guard, size and pick among ``candidates``.

    A candidate is spared when ``target_tags`` refuses its tags (``tags_of`` None: it has
    none to read, and passes) or ``spare`` (the attack's own exclusions) names a reason.
    The eligible rest are sorted by ``id_of`` and ``random.Random(seed)`` samples as many
    as ``radius`` allows, so the same seed over the same candidates picks the same ones
    (``seed`` None: one is drawn from the system's source). The targets keep the
    candidates' order.
    """
    seed = draw_seed() if seed is None else seed
    exclude_only = TargetTags(opt_in=None, exclude=target_tags.exclude)
    spared: list[Spared] = []
    eligible: list[int] = []
    for index, candidate in enumerate(candidates):
        tags = tags_of(candidate)
        why = target_tags.why_spared(tags)
        if why is not None:
            guard = "exclude" if exclude_only.why_spared(tags) is not None else "opt-in"
            spared.append(Spared(id_of(candidate), why, guard))
            continue
        own = spare(candidate) if spare is not None else None
        if own is not None:
            spared.append(Spared(id_of(candidate), own, "excluded"))
            continue
        eligible.append(index)
    spared.sort(key=lambda item: item.id)
    chosen: list[T] = []
    refusal = None
    if not candidates:
        pass
    elif not eligible:
        refusal = _guard_refusal(spared, len(candidates), target_tags, noun)
    else:
        allowed = len(eligible) - radius.min_remaining
        if allowed <= 0:
            refusal = (
                f"blast radius: min_remaining {radius.min_remaining} leaves nothing to hit: "
                f"{len(eligible)} eligible {_plural(noun, len(eligible))} of "
                f"{len(candidates)} matched, at most {len(eligible)} - "
                f"{radius.min_remaining} = {allowed} may be hit"
            )
        else:
            size = min(radius.wanted(len(eligible)), allowed)
            ordered = sorted(eligible, key=lambda index: (id_of(candidates[index]), index))
            # bandit B311: a reproducible pick from a recorded seed, not a secret.
            picked = set(random.Random(seed).sample(ordered, size))  # nosec B311
            chosen = [candidates[index] for index in eligible if index in picked]
    return Selection(chosen, spared, len(candidates), len(eligible), seed, radius, refusal)


def _plural(noun: str, number: int) -> str:
    return noun if number == 1 else f"{noun}s"


def _guard_refusal(spared: list[Spared], matched: int, tags: TargetTags, noun: str) -> str:
    """Why every candidate was spared, naming the guards that spared them.

    The engine's guards lead (``opt-in:``, ``exclude:``, or both); when only the attack's
    own exclusions spared them, the family's wording of old stands."""
    counts = {guard: sum(1 for item in spared if item.guard == guard) for guard in _GUARDS}
    if not counts["opt-in"] and not counts["exclude"]:
        return f"no {noun} matched that is not excluded"
    lead = " and ".join(guard for guard in ("opt-in", "exclude") if counts[guard])
    reasons = []
    if counts["opt-in"]:
        example = next(item.why for item in spared if item.guard == "opt-in")
        reasons.append(
            f"{counts['opt-in']} {_verb(counts['opt-in'], 'lacks', 'lack')} "
            f"{example.removeprefix('lacks ')}"
        )
    if counts["exclude"]:
        example = next(item.why for item in spared if item.guard == "exclude")
        reasons.append(
            f"{counts['exclude']} {_verb(counts['exclude'], 'carries', 'carry')} "
            f"{example.removeprefix('carries ')}"
        )
    if counts["excluded"]:
        example = next(item.why for item in spared if item.guard == "excluded")
        reasons.append(f"{counts['excluded']} spared by the attack's own arguments ({example})")
    return (
        f"{lead}: {matched} {_plural(noun, matched)} matched and none may be attacked "
        f"({tags.describe()}): " + "; ".join(reasons)
    )


_GUARDS = ("opt-in", "exclude", "excluded")


def _verb(number: int, one: str, many: str) -> str:
    return one if number == 1 else many


@dataclass(frozen=True)
class TargetKind(Generic[T]):
    """How the path reads one family's targets.

    ``noun``: "instance", "node", "host". ``single_key``: the result key that names the
    target when exactly one is hit (``instance``, ``node``: what clients and 2017-era
    readers expect), None for none. ``label``: the target in a sentence.
    """

    noun: str
    id_of: Callable[[T], str]
    tags_of: Callable[[T], Mapping[str, str] | None]
    describe: Callable[[T], dict[str, Any]]
    label: Callable[[T], str]
    single_key: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What acting on one target did: its entry in ``targets``, and an error if it failed."""

    id: str
    entry: dict[str, Any]
    error: str | None = None


class Actuator(Protocol[T_contra]):
    """Acts on the picked targets, each one; never raises for one target's failure
    (it says so in that target's ``Outcome``)."""

    def act(self, targets: Sequence[T_contra], result: dict[str, Any]) -> list[Outcome]: ...


@dataclass(frozen=True)
class ActOnEach(Generic[T]):
    """The real actuator of a family that acts on a target with one call: ``act_one`` on
    each picked target in turn. One of ``errors`` is that target's failure (recorded in
    its Outcome; the others are still acted on); anything else fails the attack.
    ``done`` logs a target acted on."""

    kind: TargetKind[T]
    act_one: Callable[[T], None]
    errors: tuple[type[Exception], ...]
    done: Callable[[T], None]

    def act(self, targets: Sequence[T], result: dict[str, Any]) -> list[Outcome]:
        outcomes = []
        for target in targets:
            target_id, entry = self.kind.id_of(target), self.kind.describe(target)
            try:
                self.act_one(target)
            except self.errors as error:
                outcomes.append(Outcome(target_id, entry, str(error)))
                continue
            outcomes.append(Outcome(target_id, entry))
            self.done(target)
        return outcomes


@dataclass(frozen=True)
class ReportOnly(Generic[T]):
    """The dry run's actuator: touches nothing, says what the real one would have done."""

    action: str
    kind: TargetKind[T]

    def act(self, targets: Sequence[T], result: dict[str, Any]) -> list[Outcome]:
        labels = [self.kind.label(target) for target in targets]
        named = ", ".join(labels[:MAX_LABELS])
        if len(labels) > MAX_LABELS:
            named += f" and {len(labels) - MAX_LABELS} more"
        raise AttackSkipped(f"dry run: would {self.action} {named}; nothing was done", result)


@dataclass
class Strike(Generic[T]):
    """One run of the path for one attack: its targets, the finder and the real actuator.

    ``find(may_use_secrets)`` returns the candidates (it may raise AttackSkipped or
    AttackFailed); ``may_use_secrets`` is False in a dry run, whose finder must then
    neither resolve a secret nor contact anything with one. ``actuator()`` builds the
    real actuator, only when there is something to hit and the run is real.
    ``result`` is the attack's result so far (action, region...); the path adds
    ``matched``, ``targets``, ``selection`` and the single-target key.
    """

    kind: TargetKind[T]
    action: str
    find: Callable[[bool], Sequence[T]]
    actuator: Callable[[], Actuator[T]]
    radius: BlastRadius
    no_match: str
    result: dict[str, Any] = field(default_factory=dict)
    spare: Callable[[T], str | None] | None = None
    seed: int | None = None
    failure: Callable[[list[Outcome], int], str] | None = None

    def run(self, context: AttackContext) -> dict[str, Any]:
        """Find, guard, size, pick and act; the result lists every target hit.

        A dry run is decided here, once: its actuator only reports. No match, a guard
        that spares every candidate, and a blast radius that allows none end the run
        ``AttackSkipped``; any target's failure ends it ``AttackFailed`` once every
        picked target was acted on, the result saying which were hit and which failed.
        """
        dry = ReportOnly(self.action, self.kind) if context.dry_run else None
        result = self.result
        result["targets"] = []
        candidates = self.find(dry is None)
        selection = select(
            candidates,
            self.kind.id_of,
            self.kind.tags_of,
            self.radius,
            context.environment.target_tags,
            self.seed,
            noun=self.kind.noun,
            spare=self.spare,
        )
        result["matched"] = selection.matched
        result["targets"] = [self.kind.describe(target) for target in selection.targets]
        result["selection"] = selection.as_dict()
        if not candidates:
            raise AttackSkipped(self.no_match, result)
        if selection.refusal is not None:
            raise AttackSkipped(selection.refusal, result)
        if len(selection.targets) == 1 and self.kind.single_key:
            result[self.kind.single_key] = result["targets"][0]
        actuator: Actuator[T] = dry if dry is not None else self.actuator()
        outcomes = actuator.act(selection.targets, result)
        result["targets"] = [outcome.entry for outcome in outcomes]
        if len(outcomes) == 1 and self.kind.single_key:
            result[self.kind.single_key] = outcomes[0].entry
        failed = [outcome for outcome in outcomes if outcome.error is not None]
        if failed:
            result["hit"] = [outcome.id for outcome in outcomes if outcome.error is None]
            result["failed"] = [{"id": outcome.id, "error": outcome.error} for outcome in failed]
            raise AttackFailed(self._failure_message(failed, len(outcomes)), result)
        return result

    def _failure_message(self, failed: list[Outcome], total: int) -> str:
        if self.failure is not None:
            return self.failure(failed, total)
        if total == 1:
            return str(failed[0].error)
        return f"{self.action} failed on {len(failed)} of {total} {self.kind.noun}s: " + "; ".join(
            str(outcome.error) for outcome in failed
        )
