"""One entry point for every reconstruction method: ``reconstruct(data, method, ...)``."""

from __future__ import annotations

import dataclasses

import torch

from .errors import DeepSparseError, InputError
from .projections_file import ProjectionData
from .devices import resolve_device

METHODS = ("fdk", "sart", "dice")
BACKENDS = ("torch", "rtk", "tigre")


def reconstruct(data: ProjectionData, method: str = "fdk", device: str = "auto", backend: str = "torch",
                progress=None, resolution=None, **options) -> torch.Tensor:
    """Reconstruct ``data`` over its geometry's grid; returns a (nz, ny, nx) CPU tensor in [0, 1] units.

    Args:
        method: 'fdk' (options: filter, short_scan), 'sart' (options: iterations, relaxation,
            views_per_subset, nonnegative) or 'dice' (options: model (default: the bundled model
            for the view count), data_consistency, cancel).
        resolution: None (the geometry's grid) or an int / (nz, ny, nx) grid over the same extent.
        device: 'auto', 'cpu' or 'cuda' (torch backend).
        backend: 'torch' (always available), 'rtk' (itk-rtk, CPU) or 'tigre' (CUDA only).
        progress: a :class:`~deepsparse_core.progress.Progress`-like object or None.
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if method == "sart" and options.get("iterations", 20) < 1:
        raise InputError(f"SART needs at least one iteration, got {options['iterations']}")
    if method == "dice":
        if backend != "torch":
            raise InputError("dice runs on the torch backend")
        from .inference import reconstruct_dice

        return reconstruct_dice(data, model=options.get("model"), device=device, resolution=resolution,
                                data_consistency=options.get("data_consistency"), progress=progress,
                                cancel=options.get("cancel"))
    if resolution is not None:
        shape = (resolution,) * 3 if isinstance(resolution, int) else tuple(resolution)
        data = dataclasses.replace(data, geometry=data.geometry.with_grid(shape), reference=None)
    g = data.geometry
    if backend == "rtk":
        from .backends import rtk

        p = data.projections.cpu().numpy()
        if method == "fdk":
            out = rtk.fdk(p, g, hann_cut=options.get("hann_cut", 0.0), short_scan=options.get("short_scan"))
        else:
            out = rtk.sart(p, g, iterations=options.get("iterations", 20), lam=options.get("relaxation", 0.3),
                           nonnegative=options.get("nonnegative", True),
                           views_per_subset=options.get("views_per_subset", 1))
        return torch.from_numpy(out)
    if backend == "tigre":
        from .backends import tigre

        return torch.from_numpy(tigre.reconstruct(data.projections.cpu().numpy(), g, method, **options))
    dev = resolve_device(device)
    proj = data.projections.to(dev, torch.float32)
    if method == "fdk":
        from .fdk import fdk

        out = fdk(proj, g, **options)
    else:
        from .sart import sart

        callback = None if progress is None else (lambda iteration, volume: progress.update())
        out = sart(proj, g, progress=callback, **options)
    if not torch.isfinite(out).all():
        raise DeepSparseError(f"{method} produced non-finite values; check the projections and geometry")
    return out.cpu()
