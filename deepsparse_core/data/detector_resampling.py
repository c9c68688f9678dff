"""Resample projections to another detector pixel pitch, area-weighted, over the same extent.

A model learns structures at its training detector's pitch referred to the isocentre,
``pitch * DSO / DSD`` (see :mod:`deepsparse_core.inference`). A scanner with another panel (say
1024^2 pixels at 0.4 mm) is served by resampling its projections to that isocentre pitch first.

Each new pixel is the *mean* of the old detector over the new pixel's area, the old pixels taken
as constant over their own area (exact box integration, separable in rows and columns): line
integrals stay line integrals, and a constant stays exactly that constant. The new detector covers
the same physical extent and centre (offsets unchanged); its pixel count is rounded to a multiple
of the model's downsampling, and the pitch adjusted by at most that rounding so the extent is
kept exactly.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ..errors import GeometryError
from ..physics.geometry import Geometry
from .projections_file import ProjectionData

_VIEWS_PER_CHUNK = 16  # bounds the (chunk, nv_out, nu_in) intermediate of a 1024^2 panel to ~8 MB per view


def overlap_weights(n_in: int, d_in: float, n_out: int, d_out: float, dtype=torch.float64) -> torch.Tensor:
    """(n_out, n_in) weights: W[j, i] = overlap (mm) of new pixel j with old pixel i divided by the
    part of new pixel j the old detector covers (rows sum to 1; 0 where nothing is covered).
    Both detectors centred on the same point; pitches d_in, d_out in mm."""
    edges_in = (torch.arange(n_in + 1, dtype=dtype) - n_in / 2) * d_in
    edges_out = (torch.arange(n_out + 1, dtype=dtype) - n_out / 2) * d_out
    lo = torch.maximum(edges_out[:-1, None], edges_in[None, :-1])
    hi = torch.minimum(edges_out[1:, None], edges_in[None, 1:])
    w = (hi - lo).clamp_min(0)
    covered = w.sum(dim=1, keepdim=True)
    return torch.where(covered > 0, w / covered.clamp_min(1e-300), w)


def resample_projections(projections: torch.Tensor, geometry: Geometry, shape, spacing=None) -> ProjectionData:
    """(V, nv, nu) projections on ``geometry``'s detector -> a detector of ``shape`` (nv', nu') pixels
    over the same extent (or of pitch ``spacing`` (dv', du') mm when given), area-weighted.

    Returns a :class:`ProjectionData` (no noise model, no reference) with the new geometry.
    """
    (nv, nu), (dv, du) = geometry.detector_shape, geometry.detector_spacing
    shape = tuple(int(s) for s in shape)
    if min(shape) < 1:
        raise GeometryError(f"resampled detector shape must be positive, got {shape}")
    if spacing is None:
        spacing = (nv * dv / shape[0], nu * du / shape[1])
    wv = overlap_weights(nv, dv, shape[0], spacing[0]).to(projections.device)
    wu = overlap_weights(nu, du, shape[1], spacing[1]).to(projections.device)
    out = []
    for chunk in projections.split(_VIEWS_PER_CHUNK):
        c = chunk.to(torch.float64)
        out.append(torch.einsum("ri,vij,cj->vrc", wv, c, wu).to(projections.dtype))
    new = dataclasses.replace(geometry, detector_shape=shape, detector_spacing=tuple(spacing))
    return ProjectionData(torch.cat(out) if out else projections.new_zeros((0, *shape)), new)


def detector_like(geometry: Geometry, target: Geometry, multiple: int = 1) -> tuple[tuple[int, int], tuple[float, float]]:
    """(shape, spacing) of ``geometry``'s detector resampled to ``target``'s isocentre pitch
    (``spacing * DSO / DSD``) over the same extent, pixel counts multiples of ``multiple``."""
    if multiple < 1:
        raise GeometryError(f"the detector multiple must be >= 1, got {multiple}")
    shape, spacing = [], []
    for n, d, d_target in zip(geometry.detector_shape, geometry.detector_spacing, target.detector_spacing):
        pitch = d_target * target.dso / target.dsd * geometry.dsd / geometry.dso   # on this detector, mm
        extent = n * d
        k = max(1, round(extent / pitch / multiple)) * multiple
        shape.append(k)
        spacing.append(extent / k)
    return tuple(shape), tuple(spacing)


def like_grid(geometry: Geometry, target: Geometry) -> Geometry:
    """``geometry`` with ``target``'s reconstruction grid (shape, spacing; its own grid centre)."""
    return dataclasses.replace(geometry, volume_shape=target.volume_shape, volume_spacing=target.volume_spacing)


def adapt_to_model(data: ProjectionData, training: Geometry, multiple: int = 1, grid: bool = True) -> ProjectionData:
    """``data`` resampled for a model trained on ``training``: the detector at the training isocentre
    pitch (same extent, counts multiples of ``multiple``, e.g. ``DiceConfig.downsampling``), and with
    ``grid`` the training grid's extent and shape (centred where ``data``'s grid is), so that
    :func:`~deepsparse_core.inference.check_compatibility` passes. Noise model and placement are kept;
    the reference is dropped when the grid changes. A no-op copy when nothing changes."""
    shape, spacing = detector_like(data.geometry, training, multiple)
    g = data.geometry
    if shape != g.detector_shape or any(not math.isclose(a, b, rel_tol=1e-12) for a, b in zip(spacing, g.detector_spacing)):
        resampled = resample_projections(data.projections, g, shape, spacing)
        projections, g = resampled.projections, resampled.geometry
    else:
        projections = data.projections.clone()
    reference, placement = data.reference, data.placement
    if grid and (g.volume_shape != training.volume_shape or g.volume_spacing != training.volume_spacing):
        old, g, reference = g, like_grid(g, training), None
        placement = placement.regrid(old, g) if placement else None
    return ProjectionData(projections, g, data.noise, reference, placement)


__all__ = ["overlap_weights", "resample_projections", "detector_like", "like_grid", "adapt_to_model"]
