"""The plugin contract (Attack, Planner) and the registry that loads plugin folders."""

from chalicelib.plugins.contract import (
    Attack,
    AttackContext,
    AttackFailed,
    AttackSkipped,
    Planner,
)

__all__ = ["Attack", "AttackContext", "AttackFailed", "AttackSkipped", "Planner"]
