"""Candidate-projection cache (paper: 200 projections uniformly over [0, 180) degrees per volume).

Training draws view subsets from these candidates. A cache file is a projections file
(:mod:`~deepsparse_core.data.projections_file`) stored in float16, with the [0, 1] reference volume.
float16 keeps 11 significant bits: the relative rounding error is at most 2^-11 = 4.9e-4 per value
(line integrals up to a few hundred mm stay far below float16's 65504 limit). On the fast preset
chest sample the measured relative L2 error is ~3e-4 for projections and ~2e-4 for the volume,
far below the noise (I0 = 1e5 gives ~1% relative error on typical rays); see
``Testing/test_projections_file.py``. Subsets are read lazily (``safe_open`` memory-maps the file).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..physics.geometry import Geometry
from ..physics.noise import NoiseModel
from .projections_file import ProjectionData, load_projections, save_projections
from .simulate import simulate
from .volume import Volume


def write_cache(path: str | Path, data: ProjectionData) -> Path:
    """Store ``data`` (candidate projections and their reference) as a float16 cache file."""
    return save_projections(path, data, dtype=torch.float16)


def build_candidates(ct: Volume | str, geometry: Geometry, out: str | Path,
                     noise: NoiseModel = NoiseModel(), seed: int = 0, device: str = "auto",
                     piece: int | None = None) -> Path:
    """Simulate ``geometry.n_views`` candidate projections of ``ct`` and store them in float16."""
    return write_cache(out, simulate(ct, geometry, noise, seed=seed, piece=piece, device=device))


def load_candidate_views(path: str | Path, views, device="cpu", with_reference: bool = True) -> ProjectionData:
    """Only the candidate projections ``views`` (indices) of a cache file, with their geometry."""
    return load_projections(path, device=device, with_reference=with_reference, views=views)
