"""The HU window mapping: CT numbers (HU) <-> normalized attenuation in [0, 1] (numpy only).

The paper clips HU to a window [lo, hi] and maps it linearly onto [0, 1]; every volume the
networks and operators see is in those units. This is the one place that converts.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

AIR_HU = -1000.0
UNITS = ("normalized", "hu")


def check_window(window) -> tuple[float, float]:
    """``window`` as (lo, hi) HU floats; InputError unless lo < hi."""
    lo, hi = (float(w) for w in window)
    if not hi > lo:
        raise InputError(f"HU window must satisfy lo < hi, got {window}")
    return lo, hi


def normalize_hu(array: np.ndarray, window=(-1000.0, 1000.0)) -> np.ndarray:
    """Clip HU to ``window`` = (lo, hi) and map linearly to [0, 1] (float32); lo -> 0, hi -> 1."""
    lo, hi = check_window(window)
    out = (np.asarray(array, dtype=np.float32) - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, np.float32(0), np.float32(1)).astype(np.float32, copy=False)


def denormalize(array01: np.ndarray, window=(-1000.0, 1000.0)) -> np.ndarray:
    """Inverse of :func:`normalize_hu` inside the window: [0, 1] -> HU (float32)."""
    lo, hi = check_window(window)
    return (np.asarray(array01, dtype=np.float32) * np.float32(hi - lo) + np.float32(lo))


def guess_units(array: np.ndarray) -> str:
    """'hu' or 'normalized' for a volume of unknown units, as ``deepsparse evaluate --units auto``
    decides: HU when a value lies below -100 or above 10, else [0, 1] attenuation."""
    a = np.asarray(array)
    return "hu" if float(a.min()) < -100 or float(a.max()) > 10 else "normalized"


def air_value(window=(-1000.0, 1000.0)) -> float:
    """Value of air (-1000 HU) after :func:`normalize_hu` (0 for the standard windows)."""
    return float(normalize_hu(np.float32(AIR_HU), window))


def to_units(array01: np.ndarray, window, units: str = "normalized") -> np.ndarray:
    """A [0, 1] volume in ``units``: 'normalized' (as it is, float32) or 'hu' (:func:`denormalize`)."""
    if units == "hu":
        return denormalize(array01, window)
    if units != "normalized":
        raise InputError(f"unknown units {units!r}: use normalized or hu")
    return np.asarray(array01, dtype=np.float32)
