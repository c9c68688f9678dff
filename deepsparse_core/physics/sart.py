"""SART / OS-SART for circular cone-beam CT, in torch, following RTK's ``SARTConeBeamReconstructionFilter``.

One update per subset S of views (RTK v2.7 sources):

    x <- max(0, x + BP_S(lambda (p_S - FP_S x) / L_S) / BP_S(1))

with ``FP`` the Joseph forward projector, ``L`` the length of each ray inside the box spanned by
the voxel centres (RTK's ray-box intersection, which is exactly the Joseph projection of a volume
of ones), ``BP`` RTK's default voxel-based back-projector (pixel-interpolating, no distance
weight; ``backprojector="joseph"`` uses the exact adjoint of ``FP`` instead) and ``BP_S(1)`` the
back-projection of a stack of ones. Divisions by values below 1e-5 give 0 (ITK's
``DivideOrZeroOutImageFilter``). A laterally displaced detector gets RTK's displaced-detector
weights on the normalized residual. Views are visited in a fixed pseudo-random order; by default
the very permutation RTK draws (``std::shuffle`` with a default-seeded ``std::default_random_engine``,
as implemented by GCC's libstdc++, which the Linux RTK wheels use).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import InputError
from .fdk import displaced_detector_weights
from .geometry import Geometry, check_projections
from .projector import back_project, back_project_voxel_driven, forward_project, ray_lengths

BACKPROJECTORS = ("voxel", "joseph")
DIVISION_THRESHOLD = 1e-5          # itk::DivideOrZeroOutImageFilter's default
_NORM_CACHE_BYTES = 512 * 2 ** 20  # keep the per-subset BP(1) volumes when they fit in this


def rtk_view_order(n_views: int) -> list[int]:
    """The view order of RTK's SART: ``std::shuffle(0..n-1, std::default_random_engine{})``.

    Reproduces libstdc++: ``minstd_rand0`` seeded with 1 and its ``shuffle``, which draws two swap
    positions per random number when the generator's range allows it. Other C++ standard
    libraries (macOS, Windows builds of RTK) shuffle differently.
    """
    state = 1
    urng_range = 2147483646 - 1                    # minstd_rand0: max() - min()

    def draw() -> int:
        nonlocal state
        state = state * 16807 % 2147483647
        return state - 1                           # minus min()

    def uniform(hi: int) -> int:                   # uniform_int_distribution(0, hi), downscaling
        range_ = hi + 1
        scaling = urng_range // range_
        past = range_ * scaling
        while True:
            value = draw()
            if value < past:
                return value // scaling

    order = list(range(n_views))
    if n_views < 2:
        return order
    if urng_range // n_views >= n_views:
        i = 1
        if n_views % 2 == 0:
            j = uniform(1)
            order[i], order[j] = order[j], order[i]
            i += 1
        while i != n_views:
            swap_range = i + 1
            x = uniform(swap_range * (swap_range + 1) - 1)
            a, b = x // (swap_range + 1), x % (swap_range + 1)
            order[i], order[a] = order[a], order[i]
            order[i + 1], order[b] = order[b], order[i + 1]
            i += 2
    else:
        for i in range(1, n_views):
            j = uniform(i)
            order[i], order[j] = order[j], order[i]
    return order


def _view_order(order, n_views: int) -> list[int]:
    if isinstance(order, str):
        if order == "rtk":
            return rtk_view_order(n_views)
        if order == "sequential":
            return list(range(n_views))
        raise InputError(f"unknown SART view order {order!r}; use 'rtk', 'sequential' or a permutation")
    try:
        out = [int(k) for k in order]
    except (TypeError, ValueError):
        raise InputError("SART view order must be 'rtk', 'sequential' or a sequence of view indices") from None
    if sorted(out) != list(range(n_views)):
        raise InputError(f"SART view order must be a permutation of 0..{n_views - 1}")
    return out


def _integer(value, name: str, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _safe_inverse(t: torch.Tensor) -> torch.Tensor:
    return torch.where(t < DIVISION_THRESHOLD, torch.zeros_like(t), 1.0 / t.clamp(min=DIVISION_THRESHOLD))


def sart(projections, geometry: Geometry, iterations: int = 20, relaxation: float = 0.3,
         views_per_subset: int = 1, nonnegative: bool = True, init=None,
         order: str | Sequence[int] = "rtk", backprojector: str = "voxel", bounds=None,
         min_ray_length: float = 0.0,
         progress: Callable[[int, torch.Tensor], bool | None] | None = None) -> torch.Tensor:
    """SART (``views_per_subset=1``) or OS-SART reconstruction.

    Args:
        projections: (V, nv, nu) or (B, V, nv, nu) line integrals, a tensor on any device (the
            computation runs there) or an array.
        geometry: the acquisition; ``geometry.n_views`` must equal V.
        iterations: passes over all views.
        relaxation: lambda, the step of each update (RTK's default 0.3).
        views_per_subset: views per update; the last subset may be smaller.
        nonnegative: clamp the volume at 0 after every update (RTK's ``EnforcePositivity``).
        init: initial volume (nz, ny, nx) or (B, nz, ny, nx); zeros by default.
        order: view order, "rtk" (RTK's shuffled order), "sequential", or a permutation of 0..V-1.
        backprojector: "voxel" (RTK's default, pixel-interpolating) or "joseph" (adjoint of FP).
        bounds: optional (lower, upper) volumes or numbers; every update is clipped into them (the
            exact projection onto a box), e.g. to stay near a start volume (data consistency).
        min_ray_length: rays crossing less than this many mm of the grid get no weight and are left
            out of the normalization too (0: RTK's rule, only empty rays are dropped).
        progress: called as ``progress(iteration, volume)`` after each iteration (1-based); return
            True to stop early.

    Returns:
        (nz, ny, nx) or (B, nz, ny, nx) volume, attenuation per mm.
    """
    p = check_projections(projections, geometry)
    iterations = _integer(iterations, "iterations", minimum=0)
    views_per_subset = _integer(views_per_subset, "views_per_subset", minimum=1)
    if not isinstance(relaxation, (int, float)) or not np.isfinite(relaxation) or relaxation <= 0:
        raise InputError(f"relaxation must be a positive number, got {relaxation!r}")
    if backprojector not in BACKPROJECTORS:
        raise InputError(f"unknown back-projector {backprojector!r}; choose one of: {', '.join(BACKPROJECTORS)}")
    squeeze = p.dim() == 3
    p = p.unsqueeze(0) if squeeze else p
    dtype, device = p.dtype, p.device
    batch, n_views = p.shape[0], geometry.n_views

    if init is None:
        x = p.new_zeros(batch, *geometry.volume_shape)
    else:
        x = torch.as_tensor(init, dtype=dtype, device=device).clone()
        x = x.expand(batch, *x.shape[-3:]).clone() if x.dim() == 3 else x
        if tuple(x.shape) != (batch, *geometry.volume_shape):
            raise InputError(f"init volume has shape {tuple(torch.as_tensor(init).shape)}, expected "
                             f"{geometry.volume_shape}")

    views = _view_order(order, n_views)
    subsets = [views[i:i + views_per_subset] for i in range(0, n_views, views_per_subset)]
    geometries = [geometry.with_angles([geometry.angles[k] for k in s]) for s in subsets]
    index = [torch.tensor(s, device=device) for s in subsets]

    def bp(data: torch.Tensor, g: Geometry) -> torch.Tensor:
        if backprojector == "joseph":
            return back_project(data, g)
        return back_project_voxel_driven(data, g, fdk_weighting=False)

    # Residual weight lambda / L per ray, with the displaced-detector weights folded in.
    lengths = ray_lengths(geometry, dtype, device)                                       # (V, nv, nu)
    counted = lengths > min_ray_length if min_ray_length > 0 else None
    inverse_length = _safe_inverse(lengths) if counted is None else \
        torch.where(counted, 1.0 / lengths.clamp(min=min_ray_length), torch.zeros_like(lengths))
    residual_weight = relaxation * inverse_length
    column_weights = displaced_detector_weights(geometry)
    if column_weights is not None:
        residual_weight = residual_weight * torch.as_tensor(column_weights, dtype=dtype, device=device)

    def inverse_norm(idx: torch.Tensor, g: Geometry) -> torch.Tensor:
        rays = torch.ones(g.n_views, *geometry.detector_shape, dtype=dtype, device=device) if counted is None \
            else counted[idx].to(dtype)
        return _safe_inverse(bp(rays, g))

    if bounds is not None:
        lower, upper = (torch.as_tensor(b, dtype=dtype, device=device) for b in bounds)
    voxels = int(np.prod(geometry.volume_shape))
    cache = len(subsets) * voxels * p.element_size() <= _NORM_CACHE_BYTES
    norms = [inverse_norm(idx, g) for idx, g in zip(index, geometries)] if cache else None

    with torch.no_grad():
        for iteration in range(1, iterations + 1):
            for k, (idx, g) in enumerate(zip(index, geometries)):
                residual = (p.index_select(1, idx) - forward_project(x, g)) * residual_weight[idx]
                x += bp(residual, g) * (norms[k] if cache else inverse_norm(idx, g))
                if nonnegative:
                    x.clamp_(min=0)
                if bounds is not None:
                    x.clamp_(lower, upper)
            if progress is not None and progress(iteration, x[0] if squeeze else x):
                break
    return x[0] if squeeze else x


__all__ = ["sart", "rtk_view_order", "BACKPROJECTORS"]
