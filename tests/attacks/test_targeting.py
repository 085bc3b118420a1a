"""The targeting path's pure part: tag guards, blast radius arithmetic, the seeded pick."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from chalicelib.domain.errors import InvalidPayload
from chalicelib.domain.safety import TargetTags
from chalicelib.plugins.contract import Attack
from chalicelib.plugins.registry import PluginSet, load_plugins
from chalicelib.plugins.targeting import BlastRadius, Selection, select
from chalicelib.plugins.validation import validate
from chalicelib.settings import builtin_folder

OPT_IN = {"chaos-monkey-engine": "target"}
EXCLUDE = {"chaos-monkey-engine-exclude": "yes"}
TAGS = TargetTags()
CATALOGUE = load_plugins("attacks", Attack, [builtin_folder("attacks")]).catalogue()
# Every built-in attack picks targets (EC2 instances, Libcloud nodes, SSH hosts) except
# ApiRequest, which calls the one endpoint its plan names.
NOT_TARGET_PICKING = {"api_request:ApiRequest"}
# Attacks whose own argument is called percent: their blast radius has no percent.
OWN_PERCENT = {"network_loss:NetworkLoss"}
TARGET_PICKING = sorted(
    entry["ref"] for entry in CATALOGUE if entry["ref"] not in NOT_TARGET_PICKING
)


@dataclass(frozen=True)
class Thing:
    id: str
    tags: dict[str, str] | None = field(default_factory=lambda: dict(OPT_IN))


def pick(
    things: list[Thing], radius: BlastRadius | None = None, seed: int | None = 7, **kw: Any
) -> Selection[Thing]:
    return select(
        things,
        lambda thing: thing.id,
        lambda thing: thing.tags,
        radius or BlastRadius(),
        TAGS,
        seed,
        noun="instance",
        **kw,
    )


def fleet(number: int) -> list[Thing]:
    return [Thing(f"i-{index:02d}") for index in range(number)]


# --- the tag guards ---------------------------------------------------------------------


def test_a_target_without_the_opt_in_tag_is_spared_and_the_refusal_says_so() -> None:
    selection = pick([Thing("i-1", {"Chaos": "true"}), Thing("i-2", {})])

    assert selection.targets == []
    assert selection.refusal == (
        "opt-in: 2 instances matched and none may be attacked (opt-in tag "
        "chaos-monkey-engine=target, exclude tag chaos-monkey-engine-exclude): 2 lack the "
        "opt-in tag chaos-monkey-engine=target"
    )
    assert [item.as_dict() for item in selection.spared] == [
        {"id": "i-1", "why": "lacks the opt-in tag chaos-monkey-engine=target"},
        {"id": "i-2", "why": "lacks the opt-in tag chaos-monkey-engine=target"},
    ]


def test_the_opt_in_tag_with_another_value_does_not_opt_in() -> None:
    selection = pick([Thing("i-1", {"chaos-monkey-engine": "no"})])

    assert selection.refusal is not None
    assert selection.refusal.startswith("opt-in: 1 instance matched and none may be attacked")


def test_the_exclude_tag_spares_even_an_opted_in_target() -> None:
    selection = pick([Thing("i-1", {**OPT_IN, **EXCLUDE})])

    assert selection.refusal == (
        "exclude: 1 instance matched and none may be attacked (opt-in tag "
        "chaos-monkey-engine=target, exclude tag chaos-monkey-engine-exclude): 1 carries the "
        "exclude tag chaos-monkey-engine-exclude"
    )


def test_both_guards_are_named_when_both_spared_targets() -> None:
    own = {"i-3": "matches the attack's excluded filters"}
    selection = pick(
        [Thing("i-1", {}), Thing("i-2", EXCLUDE), Thing("i-3")],
        spare=lambda thing: own.get(thing.id),
    )

    assert selection.refusal == (
        "opt-in and exclude: 3 instances matched and none may be attacked (opt-in tag "
        "chaos-monkey-engine=target, exclude tag chaos-monkey-engine-exclude): 1 lacks the "
        "opt-in tag chaos-monkey-engine=target; 1 carries the exclude tag "
        "chaos-monkey-engine-exclude; 1 spared by the attack's own arguments (matches the "
        "attack's excluded filters)"
    )


def test_only_the_attacks_own_exclusions_keep_their_old_words() -> None:
    selection = pick([Thing("i-1")], spare=lambda thing: "matches the attack's excluded filters")

    assert selection.refusal == "no instance matched that is not excluded"


def test_targets_without_tags_to_read_pass_the_guards() -> None:
    selection = pick([Thing("10.0.0.1", None)])

    assert (selection.targets, selection.refusal) == ([Thing("10.0.0.1", None)], None)


def test_eligible_targets_pass_and_the_spared_are_recorded() -> None:
    selection = pick([Thing("i-1"), Thing("i-2", {}), Thing("i-3", {**OPT_IN, **EXCLUDE})])

    assert [thing.id for thing in selection.targets] == ["i-1"]
    assert (selection.matched, selection.eligible, selection.refusal) == (3, 1, None)
    assert selection.as_dict()["spared"] == [
        {"id": "i-2", "why": "lacks the opt-in tag chaos-monkey-engine=target"},
        {"id": "i-3", "why": "carries the exclude tag chaos-monkey-engine-exclude"},
    ]


def test_settings_that_turn_a_guard_off_let_those_targets_through() -> None:
    selection = select(
        [Thing("i-1", {})],
        lambda thing: thing.id,
        lambda thing: thing.tags,
        BlastRadius(),
        TargetTags(opt_in=None),
        1,
    )

    assert [thing.id for thing in selection.targets] == ["i-1"]


def test_no_candidates_is_no_refusal_the_family_says_no_match() -> None:
    selection = pick([])

    assert (selection.targets, selection.refusal, selection.matched) == ([], None, 0)


# --- the blast radius ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("radius", "eligible", "hit"),
    [
        (BlastRadius(), 5, 1),
        (BlastRadius(count=3), 5, 3),
        (BlastRadius(count=9), 5, 5),
        (BlastRadius(count="all"), 5, 5),
        (BlastRadius(count=None, percent=50), 5, 3),  # 2.5 rounded up
        (BlastRadius(count=None, percent=50), 4, 2),
        (BlastRadius(count=None, percent=10), 5, 1),  # 0.5: at least one
        (BlastRadius(count=None, percent=0.01), 3, 1),
        (BlastRadius(count=None, percent=100), 7, 7),
        (BlastRadius(count=None, percent=33.4), 3, 2),  # 1.002 rounded up
        (BlastRadius(count=None, percent=7.3), 1000, 73),  # exactly 73, not 73.000...1
        (BlastRadius(count=None, percent=100, max_targets=2), 7, 2),
        (BlastRadius(count=4, max_targets=3), 7, 3),
        (BlastRadius(count="all", max_targets=3), 7, 3),
        (BlastRadius(count=5, min_remaining=2), 5, 3),
        (BlastRadius(count=2, min_remaining=2), 5, 2),
        (BlastRadius(count="all", min_remaining=4), 5, 1),  # the boundary: one left to hit
        (BlastRadius(count=None, percent=100, max_targets=4, min_remaining=3), 5, 2),
    ],
)
def test_how_many_are_hit(radius: BlastRadius, eligible: int, hit: int) -> None:
    selection = pick(fleet(eligible), radius)

    assert (len(selection.targets), selection.refusal) == (hit, None)


@pytest.mark.parametrize(("eligible", "min_remaining"), [(5, 5), (5, 9), (1, 1)])
def test_min_remaining_that_leaves_nothing_to_hit_refuses_with_the_numbers(
    eligible: int, min_remaining: int
) -> None:
    selection = pick(
        [*fleet(eligible), Thing("i-spared", {})], BlastRadius(min_remaining=min_remaining)
    )

    assert selection.targets == []
    assert selection.refusal == (
        f"blast radius: min_remaining {min_remaining} leaves nothing to hit: {eligible} "
        f"eligible instance{'s' if eligible != 1 else ''} of {eligible + 1} matched, at most "
        f"{eligible} - {min_remaining} = {eligible - min_remaining} may be hit"
    )


def test_min_remaining_counts_eligible_targets_not_spared_ones() -> None:
    # Three match, two may be attacked: min_remaining 1 leaves one of those two to hit.
    selection = pick(
        [Thing("i-1"), Thing("i-2"), Thing("i-3", {})], BlastRadius(count="all", min_remaining=1)
    )

    assert len(selection.targets) == 1
    assert selection.targets[0].id in ("i-1", "i-2")


@pytest.mark.parametrize(
    ("args", "radius"),
    [
        ({}, BlastRadius(count=1)),
        ({"count": 3}, BlastRadius(count=3)),
        ({"count": "all"}, BlastRadius(count="all")),
        ({"percent": 25}, BlastRadius(count=None, percent=25.0)),
        ({"max_targets": 2, "min_remaining": 1}, BlastRadius(max_targets=2, min_remaining=1)),
    ],
)
def test_the_radius_is_read_from_the_arguments(args: dict[str, Any], radius: BlastRadius) -> None:
    assert BlastRadius.from_args(args) == radius


def test_the_radius_is_recorded_as_given() -> None:
    assert BlastRadius(count=None, percent=25, max_targets=3).as_dict() == {
        "percent": 25,
        "max_targets": 3,
        "min_remaining": 0,
    }
    assert BlastRadius(count=2).as_dict() == {"count": 2, "min_remaining": 0}


# --- the pick -------------------------------------------------------------------------------


def test_the_recorded_seed_reproduces_the_pick_whatever_order_the_candidates_come_in() -> None:
    things = fleet(20)
    first = pick(things, BlastRadius(count=5), seed=None)
    shuffled = list(things)
    random.Random(1).shuffle(shuffled)

    again = pick(shuffled, BlastRadius(count=5), seed=first.seed)

    assert {thing.id for thing in again.targets} == {thing.id for thing in first.targets}
    assert first.as_dict()["seed"] == first.seed


def test_without_a_seed_one_is_drawn_and_picks_differ() -> None:
    things = fleet(50)
    picks = {
        tuple(thing.id for thing in pick(things, BlastRadius(count=3), seed=None).targets)
        for _ in range(10)
    }
    seeds = {pick(things, seed=None).seed for _ in range(10)}

    assert len(picks) > 1
    assert len(seeds) > 1


def test_the_targets_keep_the_candidates_order() -> None:
    things = [Thing("c"), Thing("a"), Thing("b")]

    selection = pick(things, BlastRadius(count="all"))

    assert [thing.id for thing in selection.targets] == ["c", "a", "b"]


# --- the schemas of every target-picking attack -----------------------------------------------


@pytest.fixture(scope="module")
def attacks() -> PluginSet[Attack]:
    return load_plugins("attacks", Attack, [builtin_folder("attacks")])


def example_args(attacks: PluginSet[Attack], ref: str, **extra: Any) -> dict[str, Any]:
    entry = next(item for item in CATALOGUE if item["ref"] == ref)
    return {"ref": ref, "args": {**entry["example"]["args"], **extra}}


def test_the_three_families_are_all_there() -> None:
    assert len(TARGET_PICKING) >= 17
    assert {"terminate_node:TerminateNode", "run_script:RunScript", "burn_cpu:BurnCpu"} <= set(
        TARGET_PICKING
    )


@pytest.mark.parametrize("ref", TARGET_PICKING)
def test_every_target_picking_attack_takes_the_blast_radius(
    attacks: PluginSet[Attack], ref: str
) -> None:
    schema = attacks.resolve(ref).schema
    for extra in (
        {"count": 2, "max_targets": 1, "min_remaining": 1, "seed": 42},
        {"percent": 12.5 if ref not in OWN_PERCENT else 12, "max_targets": 3},
        {"count": "all", "min_remaining": 0},
    ):
        validate(example_args(attacks, ref, **extra), schema, "attack")


BAD_RADII: list[tuple[dict[str, Any], str]] = [
    (
        {"count": 2, "percent": 50},
        "attack.args.count: 2 is not one of ['(not with percent: give count or percent)']",
    ),
    ({"count": 0}, "attack.args.count"),
    ({"percent": 0}, "attack.args.percent: 0 is less than or equal to the minimum of 0"),
    ({"percent": 100.5}, "attack.args.percent: 100.5 is greater than the maximum of 100"),
    ({"max_targets": 0}, "attack.args.max_targets: 0 is less than the minimum of 1"),
    ({"min_remaining": -1}, "attack.args.min_remaining: -1 is less than the minimum of 0"),
    ({"seed": -1}, "attack.args.seed: -1 is less than the minimum of 0"),
]
# An attack whose ``percent`` is its own argument (OWN_PERCENT) has no blast-radius percent.
RADIUS_CASES = [
    (ref, extra, message)
    for ref in TARGET_PICKING
    for extra, message in BAD_RADII
    if not (ref in OWN_PERCENT and "percent" in extra)
]


@pytest.mark.parametrize(("ref", "extra", "message"), RADIUS_CASES)
def test_a_bad_blast_radius_is_refused_naming_the_field(
    attacks: PluginSet[Attack], ref: str, extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidPayload) as raised:
        validate(example_args(attacks, ref, **extra), attacks.resolve(ref).schema, "attack")

    assert message in str(raised.value)


def test_network_loss_keeps_its_percent_and_its_radius_counts_hosts(
    attacks: PluginSet[Attack],
) -> None:
    from attacks import _ssh_attack

    args = {"hosts": ["a", "b", "c"], "percent": 50, "count": 2, "ssh": {"user": "x"}}
    validate(
        {"ref": "network_loss:NetworkLoss", "args": {**args, "ssh": _ssh_attack.EXAMPLE_SSH}},
        attacks.resolve("network_loss:NetworkLoss").schema,
        "attack",
    )

    assert _ssh_attack.blast_radius(args, takes_percent=False) == BlastRadius(count=2)
    assert _ssh_attack.blast_radius({**args, "count": "all"}, False).wanted(3) == 3
