"""DiCE, the DeepSparse reconstruction network (see dice.py for the data flow).

The network's names load on first use (PEP 562), so the config and the model files' metadata
(:mod:`.model_file`) are read without importing torch.
"""

from .config import DiceConfig

__all__ = ["GROUPS", "DiCE", "DiceConfig", "DiceFeatures"]


def __getattr__(name: str):
    if name in ("GROUPS", "DiCE", "DiceFeatures"):
        from . import dice

        return getattr(dice, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
