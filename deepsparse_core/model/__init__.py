"""DiCE, the DeepSparse reconstruction network (see dice.py for the data flow)."""

from .config import DiceConfig
from .dice import GROUPS, DiCE, DiceFeatures

__all__ = ["GROUPS", "DiCE", "DiceConfig", "DiceFeatures"]
