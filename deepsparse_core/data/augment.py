"""Plausible variants of a CT (HU) for a training corpus built from a few real scans.

:func:`augment_ct` resamples the CT once through one composed, seeded transform and then changes
its values:

- a random sub-volume crop (70-100 % of the extent per axis) and an isotropic scale (0.9-1.1: the
  anatomy is drawn 10 % smaller or larger at the same voxel spacing),
- a left-right flip (probability 1/2; head-foot and front-back flips would not be plausible CT),
- a small rotation about z (the scanner's rotation axis, +-5 degrees),
- a smooth elastic deformation (random displacements on a ~40 mm control grid, Gaussian-smoothed,
  at most ``elastic_mm`` = 4 mm),
- HU jitter of soft tissue only (-200..300 HU, where contrast and kV change the values): a scale of
  +-6 % about water-ish 40 HU and an offset of +-15 HU, faded out smoothly towards air and bone,
- Gaussian noise (sigma 0-15 HU).

Values are clipped to the input's HU range, so a variant never leaves the range of the real scan.
The output is in the LPS orientation of :func:`~deepsparse_core.data.preprocess.reorient_to_lps`
(identity direction, same spacing) and its grid centre sits where the crop centre was in the
patient, so spacing and origin stay meaningful.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .hu import AIR_HU
from .preprocess import reorient_to_lps
from .volume import Volume

CROP_FRACTION = (0.7, 1.0)
SCALE = (0.9, 1.1)
ROTATION_DEG = 5.0
ELASTIC_MM = 4.0
ELASTIC_GRID_MM = 40.0
SOFT_TISSUE_HU = (-200.0, 300.0)
HU_SCALE = 0.06
HU_OFFSET = 15.0
NOISE_HU = 15.0
_CHUNK_VOXELS = 2_000_000  # resample this many output voxels at a time (bounds the memory)


def _soft_tissue_weight(hu: np.ndarray) -> np.ndarray:
    """1 inside SOFT_TISSUE_HU, falling to 0 over 100 HU outside it (smooth in HU)."""
    lo, hi = SOFT_TISSUE_HU
    w = np.clip(np.minimum(hu - (lo - 100.0), (hi + 100.0) - hu) / 100.0, 0.0, 1.0)
    return (w * w * (3.0 - 2.0 * w)).astype(np.float32)  # smoothstep


def _elastic_field(rng: np.random.Generator, shape, spacing, amplitude_mm: float) -> list[np.ndarray]:
    """Smooth displacement (dz, dy, dx) in mm on the output grid, |d| <= amplitude_mm per axis."""
    coarse = [max(2, int(math.ceil(n * s / ELASTIC_GRID_MM)) + 1) for n, s in zip(shape, spacing)]
    fields = []
    for _ in range(3):
        d = ndimage.gaussian_filter(rng.standard_normal(coarse), 0.7, mode="nearest")
        d *= amplitude_mm / max(np.abs(d).max(), 1e-6)
        zoom = [n / c for n, c in zip(shape, coarse)]
        fields.append(ndimage.zoom(d, zoom, order=1, mode="nearest", grid_mode=True)[
            :shape[0], :shape[1], :shape[2]].astype(np.float32))
    return fields


def augment_ct(volume: Volume, rng: np.random.Generator, elastic_mm: float = ELASTIC_MM) -> Volume:
    """A seeded, plausible variant of ``volume`` (HU); see the module docstring for the steps."""
    src = reorient_to_lps(volume)
    hu_lo, hu_hi = float(src.array.min()), float(src.array.max())
    spacing = np.asarray(src.spacing)                 # (sz, sy, sx) mm
    src_shape = np.asarray(src.shape)
    extent = src_shape * spacing

    crop = rng.uniform(*CROP_FRACTION, size=3) * extent
    scale = rng.uniform(*SCALE)
    shape = np.maximum((crop * scale / spacing).round().astype(int), 1)
    # Crop centre (mm, relative to the source grid centre), so that the box stays inside the scan.
    centre = rng.uniform(-1, 1, size=3) * (extent - crop) / 2
    flip = rng.random() < 0.5
    angle = math.radians(rng.uniform(-ROTATION_DEG, ROTATION_DEG))
    field = _elastic_field(rng, tuple(shape), spacing, elastic_mm) if elastic_mm > 0 else None

    cos, sin = math.cos(angle), math.sin(angle)
    out = np.empty(tuple(shape), dtype=np.float32)
    plane = int(shape[1] * shape[2])
    step = max(1, _CHUNK_VOXELS // plane)
    jj, ii = np.meshgrid(np.arange(shape[1]), np.arange(shape[2]), indexing="ij")
    y = ((jj - (shape[1] - 1) / 2) * spacing[1]).astype(np.float32)
    x = ((ii - (shape[2] - 1) / 2) * spacing[2]).astype(np.float32)
    if flip:
        x = -x
    for k0 in range(0, int(shape[0]), step):
        ks = np.arange(k0, min(k0 + step, int(shape[0])))
        z = ((ks - (shape[0] - 1) / 2) * spacing[0]).astype(np.float32)[:, None, None]
        zz, yy, xx = np.broadcast_arrays(z, y[None], x[None])
        # output point -> source point: undo the scale, rotate about z, move to the crop centre
        qz = zz / scale
        qy = (cos * yy - sin * xx) / scale
        qx = (sin * yy + cos * xx) / scale
        if field is not None:
            qz = qz + field[0][ks]
            qy = qy + field[1][ks]
            qx = qx + field[2][ks]
        coords = [(q + c) / s + (n - 1) / 2 for q, c, s, n in zip((qz, qy, qx), centre, spacing, src_shape)]
        out[ks] = ndimage.map_coordinates(src.array, coords, order=1, mode="constant", cval=AIR_HU)

    weight = _soft_tissue_weight(out)
    gain = rng.uniform(-HU_SCALE, HU_SCALE)
    offset = rng.uniform(-HU_OFFSET, HU_OFFSET)
    out += weight * (gain * (out - 40.0) + offset)
    sigma = rng.uniform(0.0, NOISE_HU)
    out += (sigma * rng.standard_normal(out.shape)).astype(np.float32)
    np.clip(out, hu_lo, hu_hi, out=out)

    centre_lps = src.centre_lps + centre[::-1]        # identity direction: (x, y, z) = reversed (z, y, x)
    origin = centre_lps - (shape[::-1] - 1) / 2 * spacing[::-1]
    return Volume(out, tuple(spacing), tuple(origin))
