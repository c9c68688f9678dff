"""The classic reconstructions behind one interface, whichever library computes them.

Every backend has the same two operators, taking our :class:`~deepsparse_core.physics.geometry.Geometry`:

    fdk(projections, geometry, filter="ram-lak", cutoff=1.0) -> (nz, ny, nx)
    sart(projections, geometry, iterations=20, relaxation=0.3, views_per_subset=1, nonnegative=True)

``filter`` is one of :data:`FILTERS` (RTK's ramp windows, on bins below ``cutoff`` times the
Nyquist frequency); ``relaxation`` is SART's lambda. The same arguments mean the same mathematics on
every backend (``Testing/test_reconstruct.py``, ``test_fdk.py`` and ``test_sart.py`` compare torch
with RTK), with one exception: arcs shorter than pi + the fan angle (the paper's 6 views over 180
degrees) get uniform view weights in the torch FDK only (see ``physics.fdk.scan_weighting``); RTK
and TIGRE have no such weighting and use their own (angular gaps, Parker).

* ``torch`` (always there; tensors on any device): :func:`deepsparse_core.physics.fdk.fdk` and
  :func:`deepsparse_core.physics.sart.sart`, which take further torch-only options (``short_scan``,
  ``order``, ``init``, bounds, ``progress``).
* ``rtk`` (``itk-rtk``, CPU; :mod:`.rtk`) and ``tigre`` (CUDA GPUs only; :mod:`.tigre`): numpy
  arrays in and out. TIGRE has no filter cutoff: anything but 1 is an error there.

This module imports neither torch nor the libraries, so the command line can list the choices fast.
"""

from __future__ import annotations

from types import SimpleNamespace

from ...errors import InputError

BACKENDS = ("torch", "rtk", "tigre")
FILTERS = ("ram-lak", "shepp-logan", "hann", "cosine")   # FDK ramp windows, as RTK's FFTRampImageFilter


def get_backend(name: str):
    """The backend ``name`` (an object with ``fdk`` and ``sart``); InputError for an unknown name."""
    if name == "torch":
        from ..fdk import fdk
        from ..sart import sart

        return SimpleNamespace(name="torch", fdk=fdk, sart=sart)
    if name == "rtk":
        from . import rtk

        return rtk
    if name == "tigre":
        from . import tigre

        return tigre
    raise InputError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")


def check_filter(filter: str, cutoff: float) -> None:
    """InputError unless ``filter`` is one of :data:`FILTERS` and ``cutoff`` is in (0, 1]."""
    if filter not in FILTERS:
        raise InputError(f"unknown FDK filter {filter!r}; choose one of: {', '.join(FILTERS)}")
    if not isinstance(cutoff, (int, float)) or isinstance(cutoff, bool) or not 0.0 < cutoff <= 1.0:
        raise InputError(f"filter cutoff must be in (0, 1] (fraction of the Nyquist frequency), got {cutoff!r}")


__all__ = ["BACKENDS", "FILTERS", "get_backend", "check_filter"]
