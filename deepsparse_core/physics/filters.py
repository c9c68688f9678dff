"""The FDK ramp windows every backend offers, and the check of a filter choice.

A window is applied to the ramp on frequency bins below ``cutoff`` times the Nyquist frequency, as
RTK's ``FFTRampImageFilter`` does. Imports nothing heavy: the command line lists the choices fast.
"""

from __future__ import annotations

from ..errors import InputError

FILTERS = ("ram-lak", "shepp-logan", "hann", "cosine")   # FDK ramp windows, as RTK's FFTRampImageFilter


def check_filter(filter: str, cutoff: float) -> None:
    """InputError unless ``filter`` is one of :data:`FILTERS` and ``cutoff`` is in (0, 1]."""
    if filter not in FILTERS:
        raise InputError(f"unknown FDK filter {filter!r}; choose one of: {', '.join(FILTERS)}")
    if not isinstance(cutoff, (int, float)) or isinstance(cutoff, bool) or not 0.0 < cutoff <= 1.0:
        raise InputError(f"filter cutoff must be in (0, 1] (fraction of the Nyquist frequency), got {cutoff!r}")


__all__ = ["FILTERS", "check_filter"]
