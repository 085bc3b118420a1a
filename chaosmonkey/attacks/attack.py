"""2017 import path ``chaosmonkey.attacks.attack``: the engine's Attack contract."""

from chalicelib.plugins.contract import Attack

__all__ = ["Attack"]
