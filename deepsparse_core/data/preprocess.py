"""CT preprocessing of the paper: orient, clip and normalize HU, resample, crop/pad, split.

All volumes are :class:`~deepsparse_core.data.volume_io.Volume` (arrays (z, y, x), spacing (sz, sy, sx)
mm, LPS origin/direction in ITK (x, y, z) order). After :func:`reorient_to_lps` the array axes are
(z -> Superior, y -> Posterior, x -> Left) with identity direction, which is the scanner frame of
docs/conventions.md up to a shift.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import InputError
from .hu import AIR_HU, air_value, check_window, normalize_hu
from .placement import Placement
from .volume import Volume

PAPER_SUBVOLUME_MM = 384.0  # the paper crops long CTs into 384 mm sub-volumes
_AXIS_ALIGNED_TOL = 1e-4  # direction cosines closer than this to a signed permutation count as exact


def reorient_to_lps(volume: Volume, fill: float = AIR_HU) -> Volume:
    """Reorder and flip the array axes so that they run (z -> S, y -> P, x -> L), direction = I.

    No interpolation: SimpleITK ``DICOMOrient(image, "LPS")`` permutes/flips the axes and moves
    the origin to the new voxel [0, 0, 0] (ITK orientation codes name where each index axis
    points *to*, so "LPS" is the identity direction). Every voxel keeps its value and its
    physical position. Oblique scans (gantry tilt, direction not a signed permutation) are then
    resampled (linear, ``fill`` outside) onto an axis-aligned grid with the same spacing that
    covers the whole scan, with a warning.
    """
    image = sitk.DICOMOrient(volume.to_sitk(), "LPS")
    direction = np.array(image.GetDirection()).reshape(3, 3)
    if np.abs(direction - np.eye(3)).max() <= _AXIS_ALIGNED_TOL:
        image.SetDirection(np.eye(3).flatten().tolist())
        return Volume.from_sitk(image)
    angle = math.degrees(math.acos(np.clip((np.trace(direction) - 1) / 2, -1, 1)))
    warnings.warn(f"oblique volume ({angle:.2f} deg from the LPS axes): resampling onto an "
                  "axis-aligned grid", stacklevel=2)
    spacing_xyz = np.array(image.GetSpacing())
    size = np.array(image.GetSize())
    corners = np.array(list(itertools.product(*[(-0.5, n - 0.5) for n in size])))  # voxel edges
    points = np.array(image.GetOrigin()) + (corners * spacing_xyz) @ direction.T
    lo, hi = points.min(0), points.max(0)
    new_size = np.maximum(np.ceil((hi - lo) / spacing_xyz - 1e-6).astype(int), 1)
    new_origin = (lo + hi) / 2 - (new_size - 1) / 2 * spacing_xyz
    out = sitk.Resample(image, new_size.tolist(), sitk.Transform(), sitk.sitkLinear,
                        new_origin.tolist(), spacing_xyz.tolist(), np.eye(3).flatten().tolist(),
                        float(fill), sitk.sitkFloat32)
    return Volume.from_sitk(out)


_INTERPOLATORS = {0: sitk.sitkNearestNeighbor, 1: sitk.sitkLinear, 3: sitk.sitkBSpline}


def resample(volume: Volume, spacing, order: int = 1, fill: float = AIR_HU,
             antialias: bool = True) -> Volume:
    """Resample to a new ``spacing`` (sz, sy, sx) mm keeping the physical centre and extent.

    The new shape is ``round(n * s / s_new)`` per axis (same extent up to one new voxel) and the
    grid centre stays at the same LPS point; direction is kept. ``order``: 0 nearest (labels),
    1 linear, 3 B-spline. Points outside the input get ``fill`` (air by default). With
    ``antialias`` (order >= 1), axes that are downsampled by a factor f > 1 are first smoothed by a
    Gaussian of sigma (f - 1) / 2 input voxels (as scikit-image's ``rescale``).

    Backend: SimpleITK ``Resample`` (multithreaded, exact geometry). On 256^3 float32 with two
    cores it took 0.15 s to 1.6 mm and 0.6 s to 0.8 mm; torch ``grid_sample`` took 0.3 s / 2.6 s
    and separable torch interpolation 1.4 s / 6.9 s; scipy ``map_coordinates`` 0.7 s / 4.9 s.
    """
    new_spacing = np.array([float(s) for s in spacing])
    if new_spacing.shape != (3,) or not np.all(new_spacing > 0):
        raise InputError(f"spacing must be 3 positive numbers (sz, sy, sx) mm, got {spacing}")
    if order not in _INTERPOLATORS:
        raise InputError(f"interpolation order must be 0, 1 or 3, got {order}")
    old_spacing = np.array(volume.spacing)
    shape = np.array(volume.shape)
    new_shape = np.maximum(np.floor(shape * old_spacing / new_spacing + 0.5).astype(int), 1)
    centre = volume.centre_lps
    new_origin = centre - volume.direction @ ((new_shape - 1) / 2 * new_spacing)[::-1]

    array = volume.array
    factor = new_spacing / old_spacing
    if antialias and order > 0 and np.any(factor > 1 + 1e-6):
        sigma = np.maximum((factor - 1) / 2, 0.0)
        array = ndimage.gaussian_filter(array, sigma, mode="nearest", truncate=3.0)
    image = Volume(array, volume.spacing, volume.origin, volume.direction).to_sitk()
    out = sitk.Resample(image, new_shape[::-1].tolist(), sitk.Transform(), _INTERPOLATORS[order],
                        new_origin.tolist(), new_spacing[::-1].tolist(),
                        volume.direction.flatten().tolist(), float(fill), sitk.sitkFloat32)
    return Volume.from_sitk(out)


def center_offsets(shape, target_shape) -> tuple[int, ...]:
    """Index in the input of voxel 0 of :func:`center_crop_or_pad`'s output, per axis.

    Positive: that many voxels cropped at the start; negative: that many padded.
    """
    if len(shape) != len(target_shape):
        raise InputError(f"shape {tuple(shape)} and target {tuple(target_shape)} differ in rank")
    return tuple((int(n) - int(t)) // 2 if n >= t else -((int(t) - int(n)) // 2)
                 for n, t in zip(shape, target_shape))


def center_crop_or_pad(array: np.ndarray, shape, fill: float = 0.0) -> np.ndarray:
    """Centre-crop and/or pad ``array`` with ``fill`` to exactly ``shape`` (a new array).

    With an odd difference the extra voxel is cropped/padded at the end.
    """
    return crop_or_pad(array, shape, center_offsets(array.shape, shape), fill)


def crop_or_pad(array: np.ndarray, shape, starts, fill: float = 0.0) -> np.ndarray:
    """The window of ``shape`` whose voxel 0 is input index ``starts`` (negative or running past
    the end: padded with ``fill``), as a new array."""
    shape = tuple(int(s) for s in shape)
    if any(s < 1 for s in shape):
        raise InputError(f"target shape must be positive, got {shape}")
    out = np.full(shape, fill, dtype=array.dtype)
    src, dst = [], []
    for start, n, t in zip(starts, array.shape, shape):
        lo, hi = max(start, 0), min(start + t, n)
        if hi <= lo:
            return out  # the window misses the array on this axis: all fill
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[tuple(dst)] = array[tuple(src)]
    return out


def roi_offsets(shape, target_shape, centre_index) -> tuple[int, ...]:
    """Index in the input of voxel 0 of a ``target_shape`` window centred on ``centre_index``
    (z, y, x), the DeepSparse authors' rule for their label-centred crops: a window that would run
    past the end of a larger volume is moved back to end with it; one starting before index 0 is
    padded there."""
    starts = []
    for n, t, c in zip(shape, target_shape, centre_index):
        start = int(math.floor(c)) - t // 2
        if start + t > n and n >= t:
            start = n - t
        starts.append(start)
    return tuple(starts)


def label_centre_lps(label: Volume) -> tuple[float, float, float] | None:
    """The LPS centre (x, y, z mm) of the bounding box of a label map's foreground (values > 0), or
    None when it has none (the crop then falls back to the scan's centre, as the authors' does)."""
    found = np.nonzero(label.array > 0)
    if len(found[0]) == 0:
        return None
    centre_kji = [(int(a.min()) + int(a.max())) / 2 for a in found]
    return tuple(float(v) for v in label.index_to_lps(centre_kji))


def split_axial(volume: Volume, length_mm: float = PAPER_SUBVOLUME_MM,
                overlap_mm: float = 0.0) -> list[Volume]:
    """Split a long scan along array axis 0 (z, superior after :func:`reorient_to_lps`).

    Pieces have at most ``length_mm`` (paper: 384 mm) and all the same number of slices; they
    are spread evenly from the first to the last slice so that they cover the whole scan, with
    consecutive pieces overlapping by at least ``overlap_mm`` (more when needed). A scan no
    longer than ``length_mm`` comes back as one piece. Each piece carries its own LPS origin.
    """
    sz = volume.spacing[0]
    nz = volume.shape[0]
    piece = max(1, int(math.floor(length_mm / sz + 1e-6)))
    overlap = int(math.ceil(max(overlap_mm, 0.0) / sz - 1e-6))
    if length_mm <= 0 or overlap >= piece:
        raise InputError(f"need 0 <= overlap < length, got length {length_mm} mm, "
                         f"overlap {overlap_mm} mm at {sz} mm slices")
    if nz <= piece:
        return [volume]
    count = math.ceil((nz - overlap) / (piece - overlap))
    starts = [int(round(k * (nz - piece) / (count - 1))) for k in range(count)]
    return [Volume(volume.array[s:s + piece], volume.spacing,
                   volume.index_to_lps((s, 0, 0)), volume.direction) for s in starts]


def preprocess_ct(volume: Volume, grid_shape, grid_spacing, window=(-1000.0, 1000.0),
                  length_mm: float = PAPER_SUBVOLUME_MM,
                  overlap_mm: float = 0.0, roi_centre_lps=None) -> list[tuple[np.ndarray, dict]]:
    """The paper's preprocessing: one CT in HU -> reconstruction-grid volumes in [0, 1].

    Steps: :func:`reorient_to_lps`; :func:`normalize_hu` with ``window``; :func:`split_axial`
    into pieces of at most ``min(length_mm, grid z extent)``; :func:`resample` to
    ``grid_spacing`` (sz, sy, sx) mm; :func:`center_crop_or_pad` to ``grid_shape`` (nz, ny, nx),
    padding with air (:func:`air_value`, 0 for the standard windows).

    Returns one ``(array01, meta)`` per piece: ``array01`` float32 (z, y, x) of exactly
    ``grid_shape``; ``meta`` holds ``origin_lps`` (x, y, z mm of voxel [0, 0, 0]), ``centre_lps``
    (grid centre, which the scanner isocentre is placed on), ``spacing``, ``shape``, ``window``,
    ``piece``/``n_pieces``, ``placement`` (the :class:`~deepsparse_core.data.placement.Placement` of
    the grid, what projections files carry), ``z_range_lps`` (S coordinates of the first and last source slice
    used) and the source geometry. The grid direction is the identity (LPS).

    ``roi_centre_lps`` (x, y, z mm; e.g. a label's bounding-box centre, :func:`label_centre_lps`):
    no split; one grid centred there instead of on the scan (:func:`roi_offsets`), as the DeepSparse
    authors crop PANORAMA and PENGWIN.
    """
    grid_shape = tuple(int(n) for n in grid_shape)
    grid_spacing = tuple(float(s) for s in grid_spacing)
    if len(grid_shape) != 3 or len(grid_spacing) != 3 or min(grid_shape) < 1 \
            or min(grid_spacing) <= 0:
        raise InputError(f"grid shape/spacing must be 3 positive values, got {grid_shape}, "
                         f"{grid_spacing}")
    window = check_window(window)
    air = air_value(window)
    oriented = reorient_to_lps(volume)
    normalized = oriented.with_array(normalize_hu(oriented.array, window))
    if roi_centre_lps is None:
        pieces = split_axial(normalized, min(length_mm, grid_shape[0] * grid_spacing[0]), overlap_mm)
    else:
        roi = np.asarray(roi_centre_lps, dtype=float).reshape(-1)
        if roi.shape != (3,) or not np.all(np.isfinite(roi)):
            raise InputError(f"an ROI centre needs 3 finite LPS coordinates (mm), got {roi_centre_lps}")
        pieces = [normalized]
    results = []
    for index, piece in enumerate(pieces):
        resampled = resample(piece, grid_spacing, order=1, fill=air)
        if roi_centre_lps is None:
            start = center_offsets(resampled.shape, grid_shape)
        else:  # the ROI centre in the resampled grid's (z, y, x) index space
            ijk = np.linalg.solve(resampled.direction * np.asarray(resampled.spacing[::-1]),
                                  roi - np.asarray(resampled.origin))
            start = roi_offsets(resampled.shape, grid_shape, np.round(ijk[::-1]))
        array = crop_or_pad(resampled.array, grid_shape, start, air)
        origin = resampled.index_to_lps(start)
        grid = Volume(array, grid_spacing, origin)
        meta = {
            "origin_lps": tuple(float(v) for v in origin),
            "centre_lps": tuple(float(v) for v in grid.centre_lps),
            "spacing": grid_spacing,
            "shape": grid_shape,
            "direction": np.eye(3).tolist(),
            "window": window,
            "piece": index,
            "n_pieces": len(pieces),
            "placement": Placement(tuple(float(v) for v in origin), piece=index, n_pieces=len(pieces)),
            "z_range_lps": (float(piece.origin[2]),
                            float(piece.origin[2] + (piece.shape[0] - 1) * piece.spacing[0])),
            "source_shape": tuple(volume.shape),
            "source_spacing": tuple(volume.spacing),
            "source_origin": tuple(volume.origin),
            "source_direction": volume.direction.tolist(),
        }
        results.append((array, meta))
    return results
