"""Bounded projection-domain refinement of a network reconstruction (beyond the paper).

DeepSparse's output is whatever DiCE decodes; the paper never compares it with the measured
projections. :func:`refine` takes a few SART steps (Andersen & Kak 1984) against the measured views,
starting from the network output and never letting a voxel move more than ``max_change`` away from
it (or leave [0, 1]):

    x <- clip( x + lam * BP_s(W_s (p_s - FP_s x)) / BP_s(1),  [x0 - max_change, x0 + max_change] & [0, 1] )

for each subset s of views in turn, with the torch Joseph pair (``forward_project`` and its exact
adjoint ``back_project``), ``W_s = 1 / FP_s(1)`` (inverse ray length through the grid) and
``BP_s(1)`` the back-projected ones. With one subset holding every view this is SIRT, i.e. projected
gradient descent on the ray-length-weighted residual ``||p - FP x||^2_W`` in the metric of
``BP(1)``; the box is separable, so the clip is the exact projection, and any ``0 < lam < 2`` makes
that residual decrease monotonically. Smaller subsets (SART's one view each, the default) converge
faster per pass and, at the default relaxation, also decrease the residual in practice.

Whether this helps at 6-10 views depends on the trained model (the correction lives in the span of
the few measured rays, so it can add streaks as well as remove bias); ``benchmarks/bench_inference.py``
reports PSNR with and without it for a given model.
"""

from __future__ import annotations

import torch

from .errors import InputError
from .geometry import Geometry
from .progress import Cancelled
from .projections_file import ProjectionData
from .projector import back_project, forward_project

# Rays crossing less than this fraction of a voxel get no weight: their 1 / length weight would
# otherwise blow measurement noise at the grid's corners up into the volume.
_MIN_RAY_VOXELS = 0.5


def grid_geometry(data: ProjectionData, shape) -> Geometry:
    """``data``'s scan with a reconstruction grid of ``shape`` over the same physical extent."""
    shape = tuple(int(n) for n in shape)
    return data.geometry if shape == data.geometry.volume_shape else data.geometry.with_grid(shape)


def projection_residual(volume: torch.Tensor, data: ProjectionData, geometry: Geometry | None = None) -> float:
    """Root-mean-square of ``p - FP(volume)`` over the detector pixels, in the projections' units (mm)."""
    g = geometry or grid_geometry(data, volume.shape)
    p = data.projections.to(volume.device, volume.dtype)
    return float((p - forward_project(volume, g)).square().mean().sqrt())


def refine(volume: torch.Tensor, data: ProjectionData, iterations: int = 3, relaxation: float = 0.5,
           max_change: float = 0.1, views_per_subset: int = 1, geometry: Geometry | None = None,
           progress=None, cancel=None) -> torch.Tensor:
    """Pull ``volume`` towards the measured projections, each voxel within ``max_change`` of its start.

    Args:
        volume: (nz, ny, nx) normalized attenuation in [0, 1] (e.g. the DiCE output), on any device
            (the computation runs there). Its grid spans ``data``'s grid extent at any resolution.
        data: the measured projections and their geometry.
        iterations: passes over all views (0 returns a copy of the input).
        relaxation: step ``lam`` in (0, 2); 0.5 (SART with noisy data: a full step fits the noise).
        max_change: largest allowed |x - x0| per voxel, normalized units (0.1 = 200 HU for the
            [-1000, 1000] window).
        views_per_subset: views per SART update (1 = SART, ``data.geometry.n_views`` = SIRT).
        geometry: the volume's geometry; default ``data.geometry`` regridded to ``volume.shape``.
        progress: Progress-like object, ``update(1, ...)`` after each pass; cancel: callable checked
            before each pass, raising :class:`~deepsparse_core.progress.Cancelled`.

    Returns:
        The refined volume, same shape, device and dtype.
    """
    if volume.dim() != 3:
        raise InputError(f"volume must be (nz, ny, nx), got shape {tuple(volume.shape)}")
    if iterations < 0 or not 0 < relaxation < 2 or max_change < 0 or views_per_subset < 1:
        raise InputError("data consistency needs iterations >= 0, 0 < relaxation < 2, max_change >= 0 "
                         "and views_per_subset >= 1")
    g = geometry or grid_geometry(data, volume.shape)
    x0 = volume.detach()
    lower, upper = (x0 - max_change).clamp_(0.0, 1.0), (x0 + max_change).clamp_(0.0, 1.0)
    x = x0.clamp(0.0, 1.0)
    if iterations == 0 or max_change == 0:
        return x
    p = data.projections.to(x.device, x.dtype)
    n = g.n_views
    subsets = [list(range(i, n, -(-n // views_per_subset))) for i in range(-(-n // views_per_subset))] \
        if views_per_subset < n else [list(range(n))]
    ops = []  # per subset: (geometry, projections, 1 / ray length, lam / BP(1))
    min_length = _MIN_RAY_VOXELS * min(g.volume_spacing)
    with torch.no_grad():
        for views in subsets:
            gs = g.with_angles([g.angles[v] for v in views])
            length = forward_project(torch.ones_like(x), gs)
            ray_weight = torch.where(length > min_length, 1.0 / length.clamp_min(min_length), 0.0)
            coverage = back_project((length > min_length).to(x.dtype), gs)
            step = torch.where(coverage > 1e-6, relaxation / coverage.clamp_min(1e-6), 0.0)
            ops.append((gs, p[views], ray_weight, step))
        for it in range(iterations):
            if cancel is not None and cancel():
                raise Cancelled("data consistency cancelled")
            for gs, ps, ray_weight, step in ops:
                correction = back_project((ps - forward_project(x, gs)) * ray_weight, gs)
                x = torch.minimum(torch.maximum(x + step * correction, lower), upper)
            if progress is not None:
                progress.update(1, stage="data consistency", iteration=it + 1)
    return x


__all__ = ["refine", "projection_residual", "grid_geometry"]
