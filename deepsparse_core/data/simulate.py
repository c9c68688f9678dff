"""From a CT to projections: preprocess, forward-project, add noise. The one path every projections
file and candidate cache is made by (``deepsparse simulate``, ``candidates``, ``prepare`` and the
synthetic training sets).

:func:`project` needs torch only; reading and preprocessing a CT (:func:`simulate`,
:func:`simulate_pieces`) also needs SimpleITK and SciPy, imported there, so synthetic sets can be
made on a machine without them.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..devices import resolve_device
from ..errors import InputError
from ..physics.geometry import Geometry
from ..physics.noise import NoiseModel, add_noise
from ..physics.projector import forward_project
from .placement import Placement
from .projections_file import ProjectionData
from .volume import Volume


def project(reference01, geometry: Geometry, noise: NoiseModel = NoiseModel(), seed: int | None = 0,
            placement: Placement | None = None, device: str | torch.device = "cpu") -> ProjectionData:
    """Projections of a [0, 1] volume (z, y, x) on ``geometry``'s grid: Joseph forward projection on
    ``device``, then, when ``noise.enabled``, Poisson + Gaussian noise seeded by ``seed``. The volume
    is kept as the reference; tensors come back on the CPU."""
    reference = torch.as_tensor(reference01, dtype=torch.float32).to(resolve_device(device))
    projections = add_noise(forward_project(reference, geometry), geometry.hu_window, noise, seed)
    return ProjectionData(projections.cpu(), geometry, noise, reference.cpu(), placement)


def _pieces(ct: Volume | str, geometry: Geometry, roi_centre_lps=None) -> list[tuple[np.ndarray, dict]]:
    from .preprocess import preprocess_ct
    from .volume_io import read_volume

    if not isinstance(ct, Volume):
        ct = read_volume(ct)
    return preprocess_ct(ct, geometry.volume_shape, geometry.volume_spacing, geometry.hu_window,
                         roi_centre_lps=roi_centre_lps)


def prepare_reference(ct: Volume | str, geometry: Geometry, piece: int | None = None) -> tuple[np.ndarray, dict]:
    """Preprocess ``ct`` (HU) onto ``geometry``'s grid; pick sub-volume ``piece`` (default: the middle one)."""
    pieces = _pieces(ct, geometry)
    index = len(pieces) // 2 if piece is None else piece
    if not 0 <= index < len(pieces):
        raise InputError(f"sub-volume {piece} does not exist: the scan splits into {len(pieces)} piece(s)")
    return pieces[index]


def simulate(ct: Volume | str, geometry: Geometry, noise: NoiseModel = NoiseModel(), seed: int = 0,
             piece: int | None = None, device: str = "auto") -> ProjectionData:
    """Simulate the projections of a CT (a :class:`Volume` in HU or a path) for ``geometry``.

    The CT is preprocessed as in the paper (HU window -> [0, 1], resampled to the grid's spacing,
    centre crop/pad, long scans split; ``piece`` picks one, default the middle one) and passed to
    :func:`project`. The preprocessed volume is kept as the reference and its place in the patient
    (LPS) as the placement.
    """
    array01, meta = prepare_reference(ct, geometry, piece)
    return project(array01, geometry, noise, seed, meta["placement"], device)


def simulate_pieces(ct: Volume | str, geometry: Geometry, noise: NoiseModel, seed_of_piece,
                    device: str = "auto", roi_centre_lps=None) -> Iterator[ProjectionData]:
    """:func:`simulate` for every piece of a long scan in turn; piece k is noised with seed
    ``seed_of_piece(k)``. The CT is read and preprocessed once. With ``roi_centre_lps`` there is
    one piece, the grid centred there (:func:`~deepsparse_core.data.preprocess.preprocess_ct`)."""
    for array01, meta in _pieces(ct, geometry, roi_centre_lps):
        yield project(array01, geometry, noise, seed_of_piece(meta["piece"]), meta["placement"], device)
