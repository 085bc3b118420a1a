"""2017 import path ``chaosmonkey.planners.planner``: the engine's Planner contract."""

from chalicelib.plugins.contract import Planner

__all__ = ["Planner"]
