"""Torch cone-beam projector: Joseph forward projection, its exact adjoint, voxel-driven back-projection.

All operators take a :class:`~deepsparse_core.physics.geometry.Geometry` and tensors on any device.
Volumes are (nz, ny, nx) or (B, nz, ny, nx) in normalized attenuation per mm; projections are
(V, nv, nu) or (B, V, nv, nu) line integrals (attenuation x mm).

Joseph's method: each ray is sampled where it crosses the voxel-centre planes of the axis it is
most parallel to (x or y; z never dominates a circular cone beam with a half cone angle < 45
degrees), the volume is bilinearly interpolated in each plane (zero outside the grid), and the sum
is weighted by the ray length between planes, ``s * |d| / |d_axis|``. It is exact for the
piecewise-linear interpolant of the volume and matches RTK's ``JosephForwardProjectionImageFilter``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import GeometryError
from .geometry import Geometry, check_projections


def _batched(volume: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if volume.dim() == 3:
        return volume.unsqueeze(0), True
    if volume.dim() == 4:
        return volume, False
    raise ValueError(f"volume must be (nz, ny, nx) or (B, nz, ny, nx), got shape {tuple(volume.shape)}")


def _batched_projections(projections: torch.Tensor, geometry: Geometry) -> tuple[torch.Tensor, bool]:
    """(B, V, nv, nu) projections that match ``geometry`` (``check_projections``), and whether a
    (V, nv, nu) input was given a batch axis."""
    check_projections(projections, geometry, finite=False)
    squeeze = projections.dim() == 3
    return (projections.unsqueeze(0) if squeeze else projections), squeeze


def _view_columns(geometry: Geometry, device):
    """Per view and detector column: source (V, 3) and in-plane ray direction (V, nu, 2) (x, y).

    Rows share the in-plane direction because the detector rows run along z; the z component of
    a ray to row r is simply the row's height ``v_r`` (the source lies in the z = 0 plane).
    """
    src = geometry.source_positions(torch.float64, device)
    centre, e_u, _ = geometry.detector_frames(torch.float64, device)
    _, u = geometry.pixel_centres(torch.float64, device)
    pix = centre[:, None, :2] + (u - geometry.detector_offset[1])[None, :, None] * e_u[:, None, :2]
    return src, pix - src[:, None, :2]


_GRID_BLOCK = 2e6  # samples per grid_sample call (about 16 MB of float32 grid)


def _views_per_chunk(geometry: Geometry, budget_elems: float = 2.5e7) -> int:
    """Views per chunk so that the sampling grid stays around ``budget_elems`` samples."""
    nv, nu = geometry.detector_shape
    n_planes = max(geometry.volume_shape[1:])
    return max(1, int(budget_elems // (nv * nu * n_planes)))


def _joseph(data: torch.Tensor, geometry: Geometry, src: torch.Tensor, dxy: torch.Tensor,
            adjoint: bool) -> torch.Tensor:
    """Joseph projection of the views given by ``src`` (V, 3) and ``dxy`` (V, nu, 2), or its adjoint.

    Forward: data is a volume (B, nz, ny, nx), returns projections (B, V, nv, nu).
    Adjoint: data is projections (B, V, nv, nu), returns a volume (B, nz, ny, nx).
    Both directions run the same loop over blocks of detector columns; the adjoint uses the
    exact transpose of bilinear sampling (``grid_sampler_2d_backward``).
    """
    B, dtype, device = data.shape[0], data.dtype, data.device
    V, nu, _ = dxy.shape
    nv = geometry.detector_shape[0]
    (sz, sy, sx), (nz, ny, nx) = geometry.volume_spacing, geometry.volume_shape
    oz, oy, ox = geometry.volume_offset
    z_pix, _ = geometry.pixel_centres(torch.float64, device)            # (nv,) ray z at the detector
    zp = (z_pix / (nz * sz / 2)).to(dtype)
    z_shift = torch.tensor(-oz / (nz * sz / 2), dtype=dtype, device=device)
    if adjoint:
        rays = data.transpose(2, 3).reshape(B, V * nu, nv)                # (B, columns, rows)
        out = data.new_zeros(B, nz, ny, nx)
    else:
        out = data.new_zeros(B, V * nu, nv)
    d_flat = dxy.reshape(-1, 2)
    s_flat = src[:, None, :2].expand(V, nu, 2).reshape(-1, 2)
    # Main axis chosen in voxel units (steps of one voxel); ties go to y, as in RTK.
    x_dominant = d_flat[:, 0].abs() / sx > d_flat[:, 1].abs() / sy
    for a in (0, 1):                      # dominant in-plane axis: 0 = x, 1 = y
        cols = torch.nonzero(x_dominant if a == 0 else ~x_dominant).squeeze(1)
        if cols.numel() == 0:
            continue
        s, d = s_flat[cols], d_flat[cols]                              # (C, 2)
        b = 1 - a
        # Planes perpendicular to the dominant axis; plane p of ``stack`` is a (B, nz, n_b) image.
        if a == 0:
            planes, step, off_b, half_b = geometry.axis_centres(2, torch.float64, device), sx, oy, ny * sy / 2
            vol_to_stack = (3, 0, 1, 2)   # (nx, B, nz, ny)
        else:
            planes, step, off_b, half_b = geometry.axis_centres(1, torch.float64, device), sy, ox, nx * sx / 2
            vol_to_stack = (2, 0, 1, 3)   # (ny, B, nz, nx)
        if adjoint:
            stack_grad = out.permute(*vol_to_stack)
        else:
            stack = data.permute(*vol_to_stack).contiguous()
        n_planes = planes.numel()
        planes_idx = torch.arange(n_planes, dtype=dtype, device=device)[:, None, None]
        # Small column blocks with reused buffers: fresh 100 MB+ temporaries per call cost more in
        # page faults than the sampling itself on the CPU.
        block = max(1, int(_GRID_BLOCK // (n_planes * nv)))
        size = n_planes * min(block, cols.numel()) * nv
        grid_buf = torch.empty(size * 2, dtype=dtype, device=device)
        w_buf, tmp_buf = torch.empty(size, dtype=dtype, device=device), torch.empty(size, dtype=dtype, device=device)
        lo_all, hi_all = (x.to(dtype) for x in _box_interval(geometry, a, s, d, z_pix))
        # Ray length per main-axis step: step * |d| / |d_a| with d = (d_x, d_y, z_pix).
        norm = torch.sqrt(d.square().sum(1)[:, None] + z_pix[None, :] ** 2)           # (C, nv)
        length_all = (step * norm / d[:, a].abs()[:, None]).to(dtype)
        for k in range(0, cols.numel(), block):
            cb, sb, db = cols[k:k + block], s[k:k + block], d[k:k + block]
            nc = cb.numel()
            t = (planes[:, None] - sb[None, :, a]) / db[None, :, a]               # (P, C) ray parameter
            grid = grid_buf[: n_planes * nc * nv * 2].view(n_planes, nc, nv, 2)
            grid[..., 0] = (((sb[None, :, b] + t * db[None, :, b]) - off_b) / half_b)[:, :, None]
            torch.addcmul(z_shift, t.to(dtype)[:, :, None], zp, out=grid[..., 1])
            # RTK's Joseph model: the volume is the clamped bilinear interpolant inside the box
            # spanned by the voxel centres, zero outside; plane i integrates the part of the ray
            # whose main-axis index lies in [i - 1/2, i + 1/2] (partial first and last steps).
            lo, hi = lo_all[k:k + block], hi_all[k:k + block]                  # (C, nv) plane index
            w = w_buf[: n_planes * nc * nv].view(n_planes, nc, nv)
            tmp = tmp_buf[: n_planes * nc * nv].view(n_planes, nc, nv)
            torch.minimum(hi, planes_idx + 0.5, out=w)
            torch.maximum(lo, planes_idx - 0.5, out=tmp)
            w.sub_(tmp).clamp_(0.0, 1.0)
            length = length_all[k:k + block]
            if adjoint:
                g_out = w.unsqueeze(1) * (rays[:, cb] * length).unsqueeze(0)       # (P, B, C, nv)
                g_in, _ = torch.ops.aten.grid_sampler_2d_backward(
                    g_out, stack_grad, grid, 0, 1, False, [True, False])
                stack_grad += g_in
            else:
                samples = F.grid_sample(stack, grid, mode="bilinear", padding_mode="border",
                                        align_corners=False)                     # (P, B, C, nv)
                samples.mul_(w.unsqueeze(1))
                out.index_add_(1, cb, samples.sum(dim=0) * length)
    return out if adjoint else out.reshape(B, V, nu, nv).transpose(2, 3)


def _box_interval(geometry: Geometry, a: int, s: torch.Tensor, d: torch.Tensor, z_pix: torch.Tensor):
    """Main-axis index interval [lo, hi] (C, nv) where rays lie inside the voxel-centre box.

    Rays run from ``s`` (C, 2) (x, y; z = 0) along ``(d_x, d_y, z_pix[r])``; ``a`` is the main
    in-plane axis (0 = x, 1 = y). Empty intervals come out with lo > hi.
    """
    nz, ny, nx = geometry.volume_shape
    sz, sy, sx = geometry.volume_spacing
    oz, oy, ox = geometry.volume_offset
    half = [(nx - 1) / 2 * sx, (ny - 1) / 2 * sy, (nz - 1) / 2 * sz]
    centre = [ox, oy, oz]
    t_lo = torch.full((s.shape[0], z_pix.numel()), -math.inf, dtype=s.dtype, device=s.device)
    t_hi = torch.full_like(t_lo, math.inf)
    for k in range(3):
        if k < 2:
            sk, dk = s[:, k:k + 1], d[:, k:k + 1]                           # (C, 1)
        else:
            sk, dk = torch.zeros_like(s[:, :1]), z_pix[None, :]            # (1.., nv)
        lo_k, hi_k = centre[k] - half[k], centre[k] + half[k]
        with torch.no_grad():
            inv = 1.0 / dk
            t1, t2 = (lo_k - sk) * inv, (hi_k - sk) * inv
            parallel = dk == 0
            inside = (sk >= lo_k) & (sk <= hi_k)
            t1 = torch.where(parallel, torch.where(inside, -math.inf, math.inf), t1)
            t2 = torch.where(parallel, torch.where(inside, math.inf, -math.inf), t2)
        t_lo = torch.maximum(t_lo, torch.minimum(t1, t2))
        t_hi = torch.minimum(t_hi, torch.maximum(t1, t2))
    step = sx if a == 0 else sy
    first = centre[a] - half[a]
    i1 = (s[:, a:a + 1] + t_lo * d[:, a:a + 1] - first) / step
    i2 = (s[:, a:a + 1] + t_hi * d[:, a:a + 1] - first) / step
    lo, hi = torch.minimum(i1, i2), torch.maximum(i1, i2)
    empty = t_lo > t_hi
    return lo.masked_fill(empty, math.inf), hi.masked_fill(empty, -math.inf)


def _apply(data: torch.Tensor, geometry: Geometry, adjoint: bool) -> torch.Tensor:
    src, dxy = _view_columns(geometry, data.device)
    chunk = _views_per_chunk(geometry)
    with torch.no_grad():
        if adjoint:
            out = sum(_joseph(data[:, i:i + chunk], geometry, src[i:i + chunk], dxy[i:i + chunk], True)
                      for i in range(0, geometry.n_views, chunk))
        else:
            out = torch.cat([_joseph(data, geometry, src[i:i + chunk], dxy[i:i + chunk], False)
                             for i in range(0, geometry.n_views, chunk)], dim=1)
    return out


class _JosephProjection(torch.autograd.Function):
    """Forward projection whose backward is the exact adjoint (and vice versa)."""

    @staticmethod
    def forward(ctx, data, geometry, adjoint):
        ctx.geometry, ctx.adjoint = geometry, adjoint
        return _apply(data, geometry, adjoint)

    @staticmethod
    def backward(ctx, grad):
        return _JosephProjection.apply(grad.contiguous(), ctx.geometry, not ctx.adjoint), None, None


def forward_project(volume: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Joseph cone-beam forward projection, differentiable (its gradient is :func:`back_project`).

    Args:
        volume: (nz, ny, nx) or (B, nz, ny, nx) attenuation per mm on ``geometry``'s grid.
    Returns:
        (V, nv, nu) or (B, V, nv, nu) line integrals.
    """
    vol, squeeze = _batched(volume)
    if tuple(vol.shape[1:]) != geometry.volume_shape:
        raise GeometryError(f"volume shape {tuple(vol.shape[1:])} does not match the geometry's grid "
                            f"{geometry.volume_shape}")
    out = _JosephProjection.apply(vol, geometry, False)
    return out[0] if squeeze else out


def back_project(projections: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Exact adjoint of :func:`forward_project` (the transpose of the Joseph system matrix).

    Args:
        projections: (V, nv, nu) or (B, V, nv, nu).
    Returns:
        (nz, ny, nx) or (B, nz, ny, nx).
    """
    p, squeeze = _batched_projections(projections, geometry)
    out = _JosephProjection.apply(p, geometry, True)
    return out[0] if squeeze else out


def back_project_voxel_driven(projections: torch.Tensor, geometry: Geometry,
                              fdk_weighting: bool = True) -> torch.Tensor:
    """Voxel-driven (pixel-interpolating) back-projection, as used by FDK and RTK's SART.

    Every voxel centre is projected onto each view's detector and the projection is bilinearly
    interpolated there; voxels projecting outside the box of the outermost pixel centres get 0 (as
    in RTK). With ``fdk_weighting`` the value is multiplied by the FDK distance weight
    ``(DSO / (DSO - depth))^2``. Views are summed (no angular normalization).

    Args:
        projections: (V, nv, nu) or (B, V, nv, nu).
    Returns:
        (nz, ny, nx) or (B, nz, ny, nx).
    """
    p, squeeze = _batched_projections(projections, geometry)
    B, V = p.shape[:2]
    nz, ny, nx = geometry.volume_shape
    dtype, device = p.dtype, p.device
    z = geometry.axis_centres(0, torch.float64, device)
    y = geometry.axis_centres(1, torch.float64, device)
    x = geometry.axis_centres(2, torch.float64, device)
    a = torch.tensor(geometry.angles, dtype=torch.float64, device=device)
    (nv, nu), (dv, du) = geometry.detector_shape, geometry.detector_spacing
    out = p.new_zeros(B, nz, ny * nx)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    xx, yy = xx.reshape(-1), yy.reshape(-1)
    zn = (z / (nv * dv / 2)).to(dtype)
    # Small view chunks with one reused grid buffer (page faults of fresh large buffers dominate).
    chunk = max(1, int(4e6 // (nz * ny * nx)))
    grid = torch.empty(min(chunk, V), nz, ny * nx, 2, dtype=dtype, device=device)
    for i in range(0, V, chunk):
        c, s = a[i:i + chunk, None].cos(), a[i:i + chunk, None].sin()
        k = c.shape[0]
        depth = xx * c + yy * s                                  # (k, ny*nx) along the source direction
        scale = geometry.dsd / (geometry.dso - depth)            # magnification
        g = grid[:k]
        g[..., 0] = (((-xx * s + yy * c) * scale - geometry.detector_offset[1]) / (nu * du / 2)).to(dtype)[:, None, :]
        torch.mul(zn[None, :, None], scale.to(dtype)[:, None, :], out=g[..., 1])
        if geometry.detector_offset[0]:
            g[..., 1] -= geometry.detector_offset[0] / (nv * dv / 2)
        w = ((g[..., 0].abs() <= 1 - 1 / nu) & (g[..., 1].abs() <= 1 - 1 / nv)).to(dtype)  # (k, nz, ny*nx)
        if fdk_weighting:
            w = w * ((geometry.dso / (geometry.dso - depth)) ** 2).to(dtype)[:, None, :]
        vals = F.grid_sample(p[:, i:i + chunk].transpose(0, 1), g, mode="bilinear", padding_mode="zeros",
                             align_corners=False)                # (k, B, nz, ny*nx)
        out += torch.einsum("vbzn,vzn->bzn", vals, w)
    out = out.reshape(B, nz, ny, nx)
    return out[0] if squeeze else out


def ray_lengths(geometry: Geometry, dtype=torch.float32, device=None) -> torch.Tensor:
    """Joseph projection of a volume of ones: the length (mm) each ray travels through the grid."""
    ones = torch.ones(geometry.volume_shape, dtype=dtype, device=device)
    return forward_project(ones, geometry)


__all__ = ["forward_project", "back_project", "back_project_voxel_driven", "ray_lengths"]
