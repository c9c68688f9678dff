"""The classic reconstructions behind one interface, whichever library computes them.

Every backend has the same two operators, taking our :class:`~deepsparse_core.physics.geometry.Geometry`:

    fdk(projections, geometry, filter="ram-lak", cutoff=1.0) -> (nz, ny, nx)
    sart(projections, geometry, iterations=20, relaxation=0.3, views_per_subset=1, nonnegative=True)

``filter`` is one of :data:`FILTERS` (:mod:`..filters`: RTK's ramp windows, on bins below
``cutoff`` times the Nyquist frequency); ``relaxation`` is SART's lambda. The same arguments mean
the same mathematics on every backend (``Testing/test_reconstruct.py``, ``test_fdk.py`` and
``test_sart.py`` compare torch with RTK). Arcs shorter than pi + the fan angle (the paper's 6 views
over 180 degrees), where Parker weights are undefined, get uniform view weights on torch and RTK
alike (``physics.fdk.scan_weighting``); TIGRE uses its own weighting there.

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
from ..filters import FILTERS, check_filter

BACKENDS = ("torch", "rtk", "tigre")


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


__all__ = ["BACKENDS", "FILTERS", "get_backend", "check_filter"]
