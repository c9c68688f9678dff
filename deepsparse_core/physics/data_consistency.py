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

The passes' correction d = x_K - x0 lives in the span of the few measured rays, so besides the
network's bias it holds streaks, which cost SSIM. By default it is filtered before it is added
back, and the result lightly denoised:

    x = TV_v( x0 + G_t(TV_w(d)) ),    each step kept inside the box

* ``TV_w`` (:func:`~deepsparse_core.physics.tv.tv_denoise`, ``correction_tv`` w = 0.01):
  piecewise-constant corrections survive, oscillating streaks do not (2026-12-04, K = 12, the
  seven held-out CTs: the PSNR gain kept within 0.04 dB, mean SSIM +0.011 at 6 views and +0.014
  at 10);
* ``G_t`` the non-negative garrote (``correction_threshold`` t = 0.01, 20 HU): d - t^2 / d where
  |d| > t, else 0. What is left of the streaks after TV is small and everywhere; a bias the passes
  fix is large and local, and keeps nearly all of itself;
* ``TV_v`` (``output_tv`` v = 0.005) of the whole result.

On the seven held-out CTs with the day-11 model and K = 16 (2026-12-04, seventh session,
``benchmarks/bench_dc_variants.py``) the garrote and the final TV cost 0.02 dB at 6 views and
0.03 dB at 10 against TV alone, and no CT's SSIM falls more than 0.005 below the network
alone's any more (TV alone: three CTs at 6 views, the worst pycerr1 at -0.016, pycerr2 at
-0.0054). ``PLAIN`` gives the plain passes: ``refine(..., **PLAIN)``.

The passes are :func:`~deepsparse_core.physics.sart.sart` with the Joseph pair, the views in order, a start
volume, the box as bounds and rays under half a voxel left out. Whether this helps at 6-10 views
depends on the trained model (the correction lives in the span of the few measured rays, so it can
add streaks as well as remove bias); ``benchmarks/bench_data_consistency.py`` measures it.
"""

from __future__ import annotations

import dataclasses

import torch

from ..errors import InputError
from ..progress import Cancelled
from .geometry import Geometry
from .projector import forward_project
from .sart import sart
from .tv import tv_denoise

# Rays crossing less than this fraction of a voxel get no weight: their 1 / length weight would
# otherwise blow measurement noise at the grid's corners up into the volume.
_MIN_RAY_VOXELS = 0.5
# The default filtering (normalized units: 0.01 = 20 HU in a 2000 HU window): TV weight of the
# correction's denoising, its garrote threshold, and the TV weight of the whole result.
CORRECTION_TV = 0.01
CORRECTION_THRESHOLD = 0.01
OUTPUT_TV = 0.005
# The method as model cards record it (``inference``); a key missing from an older card is 0.
DC_METHOD = {"correction_tv": CORRECTION_TV, "correction_threshold": CORRECTION_THRESHOLD, "output_tv": OUTPUT_TV}
PLAIN = {key: 0.0 for key in DC_METHOD}   # the plain passes: refine(..., **PLAIN)


def projection_residual(volume: torch.Tensor, projections: torch.Tensor, geometry: Geometry) -> float:
    """Root-mean-square of ``p - FP(volume)`` over the detector pixels, in the projections' units (mm);
    ``geometry`` is the volume's (any resolution over the scan's grid extent)."""
    p = projections.to(volume.device, volume.dtype)
    return float((p - forward_project(volume, geometry)).square().mean().sqrt())


def refine(volume: torch.Tensor, projections: torch.Tensor, geometry: Geometry, iterations: int = 3,
           relaxation: float = 0.5, max_change: float = 0.1, views_per_subset: int = 1,
           correction_tv: float = CORRECTION_TV, correction_threshold: float = CORRECTION_THRESHOLD,
           output_tv: float = OUTPUT_TV, coarsen: int = 1, progress=None, cancel=None) -> torch.Tensor:
    """Pull ``volume`` towards the measured projections, each voxel within ``max_change`` of its start.

    Args:
        volume: (nz, ny, nx) normalized attenuation in [0, 1] (e.g. the DiCE output), on any device
            (the computation runs there).
        projections: (V, nv, nu) the measured line integrals.
        geometry: the scan, with the volume's grid (``Geometry.with_resolution``).
        iterations: passes over all views (0 returns a clipped copy of the input).
        relaxation: step ``lam`` in (0, 2); 0.5 (SART with noisy data: a full step fits the noise).
        max_change: largest allowed |x - x0| per voxel, normalized units (0.1 = 200 HU for the
            [-1000, 1000] window).
        views_per_subset: views per update, consecutive in view order (1 = SART, all = SIRT).
        correction_tv: TV weight for denoising the correction x_K - x0 (normalized units), 0 = off.
        correction_threshold: garrote threshold of the (denoised) correction, normalized units, 0 = off.
        output_tv: TV weight for denoising the refined volume, normalized units, 0 = off.
        coarsen: run the passes ``coarsen`` times coarser over the same extents: x0 resampled to a
            grid with that many times fewer voxels per axis (trilinear, voxel centres: the 2x2x2 block
            mean for coarsen 2 and even sizes), the projections binned to pixels that many times
            larger (block means; only when both detector sizes divide), and the correction resampled
            back. A Joseph pass costs rays x steps per ray, so about coarsen^3 times cheaper.
        progress: Progress-like object, ``update(1, ...)`` after each pass; cancel: callable checked
            before each pass, raising :class:`~deepsparse_core.progress.Cancelled`.

    Returns:
        The refined volume, same shape, device and dtype.
    """
    if volume.dim() != 3:
        raise InputError(f"volume must be (nz, ny, nx), got shape {tuple(volume.shape)}")
    for name, value, ok, rule in (
            ("iterations", iterations, iterations >= 0, ">= 0"),
            ("relaxation", relaxation, 0 < relaxation < 2, "in (0, 2)"),
            ("max_change", max_change, max_change >= 0, ">= 0"),
            ("views_per_subset", views_per_subset, views_per_subset >= 1, ">= 1"),
            ("correction_tv", correction_tv, correction_tv >= 0, ">= 0"),
            ("correction_threshold", correction_threshold, correction_threshold >= 0, ">= 0"),
            ("output_tv", output_tv, output_tv >= 0, ">= 0"),
            ("coarsen", coarsen, not isinstance(coarsen, bool) and isinstance(coarsen, int) and coarsen >= 1,
             "a whole number >= 1")):
        if not ok:
            raise InputError(f"data consistency needs {name} {rule}, got {value!r}")
    x0 = volume.detach()
    start = x0.clamp(0.0, 1.0)
    if iterations == 0 or max_change == 0:
        return start
    if cancel is not None and cancel():
        raise Cancelled("data consistency cancelled")

    def after_pass(iteration: int, _volume) -> None:
        if progress is not None:
            progress.update(1, stage="data consistency", iteration=iteration)
        if iteration < iterations and cancel is not None and cancel():
            raise Cancelled("data consistency cancelled")

    bounds = dc_box(x0, max_change)
    full = tuple(start.shape)
    coarse = tuple(max(2, -(-n // coarsen)) for n in full)
    with torch.no_grad():
        grid, begin, box, measured = geometry, start, bounds, projections.to(x0.device, x0.dtype)
        if coarse != full:
            grid = geometry.with_resolution(coarse)
            begin = _resample(start, coarse)
            box = dc_box(begin, max_change)
            if all(n % coarsen == 0 for n in geometry.detector_shape):
                measured = torch.nn.functional.avg_pool2d(measured, coarsen)
                grid = dataclasses.replace(grid, detector_shape=tuple(n // coarsen for n in grid.detector_shape),
                                           detector_spacing=tuple(d * coarsen for d in grid.detector_spacing))
        out = sart(measured, grid, iterations, relaxation, views_per_subset, init=begin,
                   order="sequential", backprojector="joseph", nonnegative=False, bounds=box,
                   min_ray_length=_MIN_RAY_VOXELS * min(grid.volume_spacing), progress=after_pass)
        if coarse == full and correction_tv == 0 and correction_threshold == 0 and output_tv == 0:
            return out
        if cancel is not None and cancel():
            raise Cancelled("data consistency cancelled")
        correction = out - begin if coarse == full else _resample(out - begin, full)
        if correction_tv:
            correction = tv_denoise(correction, correction_tv)
        if correction_threshold:
            correction = garrote(correction, correction_threshold)
        return apply_correction(start, correction, bounds, output_tv)


def dc_box(volume: torch.Tensor, max_change: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-voxel bounds the passes keep a volume in: ``volume +- max_change`` inside [0, 1]
    (normalized units)."""
    return (volume - max_change).clamp(0.0, 1.0), (volume + max_change).clamp(0.0, 1.0)


def apply_correction(start: torch.Tensor, correction: torch.Tensor, bounds: tuple[torch.Tensor, torch.Tensor],
                     output_tv: float = 0.0) -> torch.Tensor:
    """``start + correction`` clamped to ``bounds`` (:func:`dc_box`), then, where ``output_tv`` > 0,
    TV-denoised as a whole and clamped again: :func:`refine`'s last steps. TV and resampling can move a
    voxel's correction outside its own box (they keep only the overall range), and the final TV
    moves voxels too: each clamp restores the box."""
    refined = (start + correction).clamp_(*bounds)
    if output_tv:
        refined = tv_denoise(refined, output_tv).clamp_(*bounds)
    return refined


def garrote(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """The non-negative garrote (Breiman 1995; Gao 1998 as a wavelet shrinkage) of each value:
    ``x - threshold^2 / x`` where ``|x| > threshold``, else 0. Continuous like the soft threshold,
    but a large value keeps nearly all of itself (the soft threshold takes ``threshold`` off every
    value); the sign is kept and ``|garrote(x)| <= |x|``."""
    if not threshold >= 0:
        raise InputError(f"the garrote threshold must be >= 0, got {threshold}")
    big = x.abs() > threshold
    safe = torch.where(big, x, torch.ones_like(x))
    return torch.where(big, x - threshold * threshold / safe, torch.zeros_like(x))


def _resample(volume: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Trilinear resampling of (nz, ny, nx) to ``shape`` over the same extent (voxel centres)."""
    return torch.nn.functional.interpolate(volume[None, None], size=shape, mode="trilinear",
                                           align_corners=False)[0, 0]


__all__ = ["CORRECTION_TV", "CORRECTION_THRESHOLD", "OUTPUT_TV", "DC_METHOD", "PLAIN", "apply_correction", "dc_box",
           "garrote", "refine", "projection_residual"]
