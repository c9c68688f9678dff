"""Where DiCE meets the geometry: mm points -> detector / volume coordinates -> sampled features.

All sampling uses ``grid_sample(align_corners=False)`` (docs/conventions.md): -1 / +1 is the outer edge
of the first / last pixel or voxel, so maps of any resolution that span the same extent line up.

* 2D maps span the detector; ``Geometry.project_points(normalized=True)`` gives their coordinates.
* The low-resolution M^3 volume spans exactly the reconstruction grid's extent (``lowres_grid``), so
  ``Geometry.world_to_grid`` addresses it and its voxel centres are ``lowres_grid(...).voxel_centres()``:
  a voxel feature and a point feature computed for the same (x, y, z) mm refer to the same place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..physics.geometry import Geometry


def lowres_grid(geometry: Geometry, resolution: int) -> Geometry:
    """The geometry with an M^3 grid of the same extent and centre (voxels anisotropic if the grid is)."""
    return geometry.with_grid((resolution,) * 3)


def project_to_views(geometry: Geometry, points: torch.Tensor, angles: torch.Tensor | None = None,
                     batch: int | None = None) -> torch.Tensor:
    """Detector coordinates (grid_sample, align_corners=False) of points in every view.

    Args:
        points: (N, 3) shared by the batch or (B, N, 3), (x, y, z) mm.
        angles: (B, V) per-sample angles in radians, or None for ``geometry.angles``.
        batch: B when ``points`` and ``angles`` are both unbatched.

    Returns:
        (B, V, N, 2) as (u, v).
    """
    if points.dim() == 2:
        if angles is not None:
            return geometry.project_points(points, normalized=True, angles=angles)  # (B, V, N, 2)
        uv = geometry.project_points(points, normalized=True)                       # (V, N, 2)
        return uv.unsqueeze(0).expand(batch or 1, *uv.shape)
    if angles is None:
        return geometry.project_points(points, normalized=True).transpose(0, 1)   # (V, B, N, 2) -> B first
    # project_points broadcasts (B, V) angles against unbatched points only: one call per sample
    return torch.stack([geometry.project_points(p, normalized=True, angles=a) for p, a in zip(points, angles)])


def pixel_features(maps: torch.Tensor, uv: torch.Tensor, view_mask: torch.Tensor,
                   mean: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Pixel-aligned features: bilinear lookups at detector positions, max-pooled over the unmasked
    views (paper Eq. 1, 5). A max, not a sum: nothing here is a tomographic back-projection.
    ``mean`` also returns the mean over the unmasked views (``view_pool`` "max+mean").

    Args:
        maps: (B, V, C, h, w) per-view feature maps spanning the detector.
        uv: (B, V, N, 2) normalized detector coordinates; outside the detector reads zeros.
        view_mask: (B, V) bool, True = use the view. Masked views never reach the max; a sample
            with no view at all gets zeros.

    Returns:
        (B, C, N), or the pair (max, mean) of them with ``mean``.
    """
    b, v, c, h, w = maps.shape
    n = uv.shape[2]
    k = int(view_mask.sum(dim=1).max()) if v else 0
    if 0 < k < v:  # sample only the used view slots (e.g. 6 sparse of 24 in step 1): used first, stable
        order = torch.argsort((~view_mask).to(torch.uint8), dim=1, stable=True)[:, :k]
        maps = maps.gather(1, order[:, :, None, None, None].expand(b, k, c, h, w))
        uv = uv.gather(1, order[:, :, None, None].expand(b, k, n, 2))
        view_mask, v = view_mask.gather(1, order), k
    feats = F.grid_sample(maps.reshape(b * v, c, h, w), uv.reshape(b * v, n, 1, 2).to(maps.dtype),
                          mode="bilinear", padding_mode="zeros", align_corners=False)
    feats = feats.reshape(b, v, c, n)
    if v and bool(view_mask.all()):  # every slot used (inference, most training batches): no masking pass
        return (feats.amax(dim=1), feats.mean(dim=1)) if mean else feats.amax(dim=1)
    unused = ~view_mask[:, :, None, None]
    if mean:  # before the in-place fill below
        avg = feats.masked_fill(unused, 0.0).sum(dim=1) / (~unused).sum(dim=1).clamp_min(1).to(feats.dtype)
    feats = feats.masked_fill_(unused, float("-inf")).amax(dim=1)
    feats = torch.where(view_mask.any(dim=1)[:, None, None], feats, torch.zeros_like(feats))
    return (feats, avg) if mean else feats


def grid_features(maps: torch.Tensor, geometry: Geometry, resolution: int, view_mask: torch.Tensor,
                angles: torch.Tensor | None = None) -> torch.Tensor:
    """Low-resolution 3D features: :func:`pixel_features` at the projected M^3 voxel centres (Eq. 1).

    The paper calls this back-projection; it is the max over views of the sampled maps, not the sum
    of :func:`deepsparse_core.physics.projector.back_project`.

    Returns:
        (B, C, M, M, M) indexed (z, y, x) like every volume in this package.
    """
    b, c, m = maps.shape[0], maps.shape[2], resolution
    centres = lowres_grid(geometry, m).voxel_centres(dtype=maps.dtype, device=maps.device)  # (M, M, M, 3)
    uv = project_to_views(geometry, centres.reshape(-1, 3), angles, batch=b)
    return pixel_features(maps, uv, view_mask).reshape(b, c, m, m, m)


def sample_volume(volume: torch.Tensor, geometry: Geometry, points: torch.Tensor) -> torch.Tensor:
    """Trilinear features of a volume spanning the reconstruction grid at (B, N, 3) mm points (Eq. 6).

    Border padding: between the outermost voxel centres and the grid edge (half a low-resolution
    voxel) the edge value is held instead of fading to zero, so full-resolution rim voxels are fine.

    Returns:
        (B, C, N).
    """
    b, n = points.shape[:2]
    grid = geometry.world_to_grid(points).reshape(b, n, 1, 1, 3).to(volume.dtype)  # (x, y, z) -> (W, H, D)
    feats = F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return feats.reshape(b, volume.shape[1], n)
