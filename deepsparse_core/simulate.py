"""From a CT to sparse-view projections: preprocess, forward-project, add noise."""

from __future__ import annotations

import numpy as np
import torch

from .devices import resolve_device
from .errors import InputError
from .geometry import Geometry
from .noise import NoiseModel, add_noise
from .preprocess import preprocess_ct
from .projections_file import ProjectionData
from .projector import forward_project
from .volume_io import Volume, read_volume


def prepare_reference(ct: Volume, geometry: Geometry, piece: int | None = None) -> tuple[np.ndarray, dict]:
    """Preprocess ``ct`` (HU) onto ``geometry``'s grid; pick sub-volume ``piece`` (default: the middle one)."""
    pieces = preprocess_ct(ct, geometry.volume_shape, geometry.volume_spacing, geometry.hu_window)
    index = len(pieces) // 2 if piece is None else piece
    if not 0 <= index < len(pieces):
        raise InputError(f"sub-volume {piece} does not exist: the scan splits into {len(pieces)} piece(s)")
    return pieces[index]


def simulate(ct: Volume | str, geometry: Geometry, noise: NoiseModel = NoiseModel(), seed: int = 0,
             piece: int | None = None, device: str = "auto") -> ProjectionData:
    """Simulate the projections of a CT (a :class:`Volume` in HU or a path) for ``geometry``.

    The CT is preprocessed as in the paper (HU window -> [0, 1], resampled to the grid's spacing,
    centre crop/pad, long scans split), forward-projected with the Joseph projector and, when
    ``noise.enabled``, made noisy (Poisson + Gaussian, seeded). The preprocessed volume is kept as
    the reference and its place in the patient (LPS) as the placement.
    """
    if not isinstance(ct, Volume):
        ct = read_volume(ct)
    array01, meta = prepare_reference(ct, geometry, piece)
    dev = resolve_device(device)
    reference = torch.from_numpy(array01).to(dev)
    projections = forward_project(reference, geometry)
    projections = add_noise(projections, geometry.hu_window, noise, seed)
    placement = {"origin_lps": list(meta["origin_lps"]), "direction": np.asarray(meta["direction"]).ravel().tolist(),
                 "piece": meta["piece"], "n_pieces": meta["n_pieces"]}
    return ProjectionData(projections.cpu(), geometry, noise, reference.cpu(), placement)


def grid_volume(array01: np.ndarray | torch.Tensor, data: ProjectionData, units: str = "normalized") -> Volume:
    """A reconstruction over ``data``'s grid extent as a :class:`Volume` placed like the input CT.

    The array may have another shape than the geometry's grid (``--resolution``): it then covers
    the same physical box with spacing ``extent / shape``. ``units``: 'normalized' ([0, 1]
    attenuation) or 'hu' (inverse of the HU window mapping).
    """
    from .preprocess import denormalize

    arr = array01.detach().cpu().numpy() if isinstance(array01, torch.Tensor) else np.asarray(array01)
    if units == "hu":
        arr = denormalize(arr, data.geometry.hu_window)
    elif units != "normalized":
        raise InputError(f"unknown units {units!r}: use normalized or hu")
    g = data.geometry
    spacing = np.array([e / n for e, n in zip(g.volume_extent, arr.shape)])       # (z, y, x)
    if data.placement:
        direction = np.asarray(data.placement["direction"]).reshape(3, 3)
        # the box's corner stays put while the first voxel centre moves by half a voxel change
        origin = np.asarray(data.placement["origin_lps"]) + direction @ ((spacing - g.volume_spacing) / 2)[::-1]
    else:  # no patient placement: the scanner frame, grid centre at the volume offset
        direction = np.eye(3)
        origin = np.asarray(g.volume_offset[::-1]) - (np.asarray(arr.shape[::-1]) - 1) / 2 * spacing[::-1]
    return Volume(arr.astype(np.float32), tuple(spacing), tuple(origin), direction)
