"""One entry point for every reconstruction method: ``reconstruct(data, method, ...)``.

This module owns the choices the command line and the Slicer module offer (:data:`METHODS`,
:data:`BACKENDS`, :data:`FILTERS`) and which options each method takes (:data:`OPTIONS`). It imports
torch only when it reconstructs, so listing the choices stays fast.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING

from .errors import DeepSparseError, InputError
from .limits import MAX_DATA_CONSISTENCY, MAX_SART_ITERATIONS
from .physics.backends import BACKENDS, FILTERS

if TYPE_CHECKING:
    import torch

    from .data.projections_file import ProjectionData

METHODS = ("fdk", "sart", "dice")
# The options of each method, with their defaults; the backends share fdk's and sart's.
OPTIONS = {
    "fdk": {"filter": "ram-lak", "cutoff": 1.0},
    "sart": {"iterations": 20, "relaxation": 0.3, "views_per_subset": 1, "nonnegative": True},
    "dice": {"model": None, "data_consistency": None, "cancel": None},
}
__all__ = ["METHODS", "BACKENDS", "FILTERS", "OPTIONS", "MAX_SART_ITERATIONS", "MAX_DATA_CONSISTENCY", "reconstruct"]


def reconstruct(data: ProjectionData, method: str = "fdk", device: str = "auto", backend: str = "torch",
                progress=None, resolution=None, **options) -> torch.Tensor:
    """Reconstruct ``data`` over its geometry's grid extent; a (nz, ny, nx) CPU tensor in [0, 1] units.

    Args:
        method: 'fdk' (options: filter, cutoff), 'sart' (options: iterations, relaxation,
            views_per_subset, nonnegative) or 'dice' (options: model (default: the bundled model
            for the view count), data_consistency (default: the model card's), cancel).
        resolution: None (the geometry's grid), N (N^3) or (nz, ny, nx) over the same extent.
        device: 'auto', 'cpu' or 'cuda' (torch backend).
        backend: 'torch' (always available), 'rtk' (itk-rtk, CPU) or 'tigre' (CUDA only); see
            :mod:`deepsparse_core.physics.backends`. DiCE runs on torch.
        progress: a :class:`~deepsparse_core.progress.Progress`-like object or None.
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    unknown = sorted(set(options) - set(OPTIONS[method]))
    if unknown:
        raise InputError(f"{method} has no option {', '.join(unknown)}; it takes {', '.join(OPTIONS[method])}")
    options = {**OPTIONS[method], **options}
    geometry = data.geometry.with_resolution(resolution)
    if method == "dice":
        if backend != "torch":
            raise InputError("dice runs on the torch backend")
        from .inference import default_model_for, get_reconstructor

        model = options["model"] if options["model"] is not None else default_model_for(data)
        return get_reconstructor(model, device).reconstruct(
            data, resolution=geometry.volume_shape, progress=progress, cancel=options["cancel"],
            data_consistency=options["data_consistency"])
    if method == "sart" and (isinstance(options["iterations"], bool) or not isinstance(options["iterations"], int)
                             or options["iterations"] < 1):
        raise InputError(f"SART needs at least one iteration, got {options['iterations']!r}")
    import torch

    from .devices import resolve_device
    from .physics.backends import get_backend

    ops = get_backend(backend)
    if backend == "torch":
        projections = data.projections.to(resolve_device(device), torch.float32)
        if method == "sart" and progress is not None:
            options["progress"] = lambda iteration, volume: progress.update()
    else:
        projections = data.projections.detach().cpu().numpy()
    out = torch.as_tensor(getattr(ops, method)(projections, geometry, **options))
    if not torch.isfinite(out).all():
        raise DeepSparseError(f"{method} produced non-finite values; check the projections and geometry")
    return out.cpu()


class _CallableModule(types.ModuleType):
    """``deepsparse_core.reconstruct`` is both this module and its function: ``import deepsparse_core as
    ds; ds.reconstruct(data, "sart")`` works whichever was imported first (a package attribute named
    like a submodule is replaced by the submodule when that is imported)."""

    def __call__(self, *args, **kwargs):
        return reconstruct(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
