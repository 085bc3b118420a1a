"""2017 import path ``chaosmonkey.attacks``: the engine's Attack contract."""

from chalicelib.plugins.contract import Attack, AttackFailed, AttackSkipped

__all__ = ["Attack", "AttackFailed", "AttackSkipped"]
