"""Synthetic training sets: candidate caches of seeded phantoms, for tests and for a quick start on a
machine with no CT data.

The volumes come from :mod:`deepsparse_core.data.phantoms` (procedural anatomy in HU, windowed to [0, 1]).
That module (through ``volume_io``) and ``preprocess`` import SimpleITK and SciPy at import time, so
where those are missing (a bare GPU box with torch / numpy / safetensors / pyyaml only) random
ellipsoid phantoms are used instead, with a warning. Projections are made by
:func:`~deepsparse_core.data.simulate.project` (pure torch, on ``device``), the path of every cache.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch

from ..data.candidates import write_cache
from ..data.simulate import project
from ..data.splits import write_splits
from ..physics.geometry import Geometry, uniform_angles
from ..physics.noise import NoiseModel

# The procedural kinds of phantoms.PHANTOM_KINDS (no sample file needed); named here because this
# module must import without SciPy (phantoms needs it), see the module docstring.
KINDS = ("chest", "pelvis", "head", "knee")


def small_geometry(detector: int = 32, grid: int = 16, n_candidates: int = 24) -> Geometry:
    """The ``fast`` preset's scanner shrunk to a ``detector``^2 detector and a ``grid``^3 grid of the same
    extents (409.6 mm field of view), ``n_candidates`` angles over [0, 180) degrees."""
    return Geometry(dso=800.0, dsd=1200.0, detector_shape=(detector, detector),
                    detector_spacing=(614.4 / detector,) * 2, volume_shape=(grid,) * 3,
                    volume_spacing=(409.6 / grid,) * 3, angles=uniform_angles(n_candidates), name="test")


def make_synthetic_cache(folder: str | Path, n_volumes: int, geometry: Geometry, seed: int = 0,
                         kinds=KINDS, noise: NoiseModel | None = None, device: str | torch.device = "cpu",
                         splits: tuple[float, float, float] | None = None) -> list[Path]:
    """Write ``n_volumes`` candidate caches (``<kind>-<i>.safetensors``, float16) into ``folder``.

    Volume i is phantom ``kinds[i % len(kinds)]`` with seed ``seed + i`` on ``geometry``'s grid; its
    ``geometry.n_views`` projections are the candidates (noiseless unless ``noise`` is given).
    ``splits`` = (train, val, test) fractions also writes the split files (:func:`write_splits`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    volume = _phantom_source()
    paths = []
    for i in range(n_volumes):
        kind = kinds[i % len(kinds)]
        data = project(volume(kind, geometry, seed + i), geometry, noise or NoiseModel(enabled=False), seed + i,
                       device=device)
        paths.append(write_cache(folder / f"{kind}-{i:04d}.safetensors", data))
    if splits is not None:
        write_splits(folder, splits, seed)
    return paths


def _phantom_source():
    """kind, geometry, seed -> [0, 1] float32 volume (z, y, x)."""
    try:
        from ..data.hu import normalize_hu
        from ..data.phantoms import make_phantom
    except ImportError as e:  # SimpleITK / SciPy missing
        warnings.warn(f"deepsparse_core.data.phantoms is unavailable ({e}): using random ellipsoid phantoms")
        return lambda kind, geometry, seed: ellipsoid_phantom(geometry.volume_shape, geometry.volume_spacing, seed)

    def volume(kind, geometry, seed):
        hu = make_phantom(kind, geometry.volume_shape, geometry.volume_spacing, seed)
        return normalize_hu(hu, geometry.hu_window)
    return volume


def ellipsoid_phantom(shape, spacing, seed: int = 0) -> np.ndarray:
    """[0, 1] float32 (z, y, x): a soft-tissue body ellipsoid (0.52, i.e. 40 HU in the standard window)
    holding 8 random ellipsoids from lung (0.1) to bone (0.9); numpy only."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)], indexing="ij")
    half = [0.5 * n * s for n, s in zip(shape, spacing)]   # z, y, x half extents, mm
    vol = np.zeros(shape, dtype=np.float32)
    body = (x / (0.85 * half[2])) ** 2 + (y / (0.65 * half[1])) ** 2 <= 1.0
    vol[body & (np.abs(z) <= 0.9 * half[0])] = 0.52
    for _ in range(8):
        c = rng.uniform(-0.4, 0.4, 3) * np.array(half)
        r = rng.uniform(0.08, 0.25, 3) * np.array(half)
        a = rng.uniform(0, math.pi)
        dx, dy = x - c[2], y - c[1]
        xr, yr = dx * math.cos(a) + dy * math.sin(a), -dx * math.sin(a) + dy * math.cos(a)
        inside = (xr / r[2]) ** 2 + (yr / r[1]) ** 2 + ((z - c[0]) / r[0]) ** 2 <= 1.0
        vol[inside & body] = rng.choice([0.1, 0.45, 0.55, 0.65, 0.9])
    return vol
