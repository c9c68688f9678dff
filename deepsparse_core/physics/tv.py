"""Total-variation denoising (Rudin, Osher & Fatemi 1992) by Chambolle's projection algorithm (2004).

:func:`tv_denoise` returns u minimizing ``||u - f||^2 / 2 + weight * TV(u)`` with the isotropic TV
of forward differences (Neumann boundary: no difference across the last voxel of an axis), in the
units of ``f`` (the weight is in those units too: 0.01 on a normalized volume is 20 HU in the
[-1000, 1000] window). Chambolle's dual iteration, step 1 / (2 ndim):

    u = f + div p,    p <- (p - tau grad u) / (1 + (tau / weight) |grad u|)

stopped when the energy ``(||div p||^2 + weight sum |grad u|) / N`` changes by less than
``tol`` times its first value (the stopping rule of scikit-image's ``denoise_tv_chambolle``, the
test's reference), or after ``max_iterations``. Plain torch: runs on the tensor's device.
"""

from __future__ import annotations

import torch

from ..errors import InputError


def _gradient(u: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Forward differences along each axis into ``out`` (ndim, *shape); zero at each axis' last index."""
    out.zero_()
    for ax in range(u.dim()):
        n = u.shape[ax]
        out[ax].narrow(ax, 0, n - 1).copy_(u.narrow(ax, 1, n - 1) - u.narrow(ax, 0, n - 1))
    return out


def _divergence(p: torch.Tensor) -> torch.Tensor:
    """Minus the adjoint of :func:`_gradient`: sum over axes of p_i - p_(i-1) (p_(-1) = 0)."""
    d = -p.sum(0)
    for ax in range(p.dim() - 1):
        n = p.shape[ax + 1]
        d.narrow(ax, 1, n - 1).add_(p[ax].narrow(ax, 0, n - 1))
    return d


def tv_denoise(f: torch.Tensor, weight: float, tol: float = 2e-4, max_iterations: int = 200) -> torch.Tensor:
    """The ROF (TV-L2) denoising of ``f`` (any shape with every axis >= 2), same dtype and device.

    ``weight`` > 0 (units of ``f``; larger is smoother, 0 returns a copy); ``tol`` >= 0 the relative
    energy change that stops it (0: run ``max_iterations``)."""
    if not weight >= 0 or not tol >= 0 or max_iterations < 1:
        raise InputError(f"TV denoising needs weight >= 0, tol >= 0 and max_iterations >= 1, got "
                         f"{weight}, {tol} and {max_iterations}")
    if weight == 0:
        return f.clone()
    if f.dim() == 0 or min(f.shape) < 2:
        raise InputError(f"TV denoising needs every axis at least 2 long, got shape {tuple(f.shape)}")
    f = f.detach()
    tau = 1.0 / (2 * f.dim())
    p = torch.zeros((f.dim(), *f.shape), dtype=f.dtype, device=f.device)
    g = torch.empty_like(p)
    u, first, previous = f, None, None
    for i in range(max_iterations):
        d = _divergence(p) if i else None
        u = f + d if i else f
        norm = _gradient(u, g).square().sum(0).sqrt_()
        energy = (float(d.square().sum()) if i else 0.0) + weight * float(norm.sum())
        p.sub_(g, alpha=tau).div_(norm.mul_(tau / weight).add_(1.0))
        if first is None:
            first = energy
            if energy == 0.0:  # no gradient anywhere: f is its own minimizer
                break
        elif abs(previous - energy) < tol * first:
            break
        previous = energy
    return u.clone() if u is f else u


__all__ = ["tv_denoise"]
