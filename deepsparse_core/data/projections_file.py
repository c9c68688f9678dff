"""Self-describing projections file (``.safetensors``): projections, angles, geometry, noise, reference.

Layout: tensors ``projections`` (V, nv, nu) and optionally ``reference`` (nz, ny, nx) on the
geometry's grid, normalized to [0, 1]; JSON metadata ``format``, ``version``, ``geometry`` (with the
angles), ``noise`` and ``placement`` (where the grid sits in the patient,
:class:`~deepsparse_core.data.placement.Placement`, so reconstructions overlay the input CT).
safetensors never unpickles anything, and the file can be memory-mapped.

The file is read and written as numpy arrays (:func:`read_projection_arrays`,
:func:`save_projection_arrays`: no torch import, as the Slicer module's GUI thread needs);
:func:`load_projections` and :func:`save_projections` are the torch edges the engine uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import GeometryError, InputError
from ..outputs import VOLUME_EXTENSIONS
from ..physics.geometry import Geometry, check_projection_shape, check_projections
from ..physics.noise import NoiseModel
from ..safetensors_io import read_metadata, save_atomic
from .placement import Placement
from .volume import Volume

if TYPE_CHECKING:
    import torch

FORMAT = "deepsparse-projections"
VERSION = "1"


def _check_reference(shape, geometry: Geometry) -> None:
    if tuple(shape) != geometry.volume_shape:
        raise GeometryError(f"reference volume shape {tuple(shape)} does not match the geometry's grid "
                            f"{geometry.volume_shape}")


@dataclass
class _Projections:
    """What a projections file holds; :class:`ProjectionData` (torch) and :class:`ProjectionArrays`
    (numpy) differ only in the array type."""

    projections: object                  # (V, nv, nu) line integrals, [0, 1] volume x mm
    geometry: Geometry
    noise: NoiseModel = field(default_factory=lambda: NoiseModel(enabled=False))
    reference: object = None             # (nz, ny, nx) ground truth in [0, 1], or None
    placement: Placement | None = None   # None: the scanner frame (Placement.scanner)

    def to_volume(self, array01, units: str = "normalized") -> Volume:
        """A reconstruction over this grid's extent (any resolution) as a :class:`Volume` placed like
        the input CT; ``units`` 'normalized' ([0, 1]) or 'hu'."""
        return (self.placement or Placement.scanner(self.geometry)).to_volume(array01, self.geometry, units)


@dataclass
class ProjectionData(_Projections):
    """Projections with everything needed to reconstruct and place them, as torch tensors."""

    def __post_init__(self):
        self.projections = check_projections(self.projections, self.geometry, batched=False, finite=False)
        if isinstance(self.placement, dict):  # as stored in files and Slicer node attributes
            self.placement = Placement.from_dict(self.placement)
        if self.reference is not None:
            _check_reference(self.reference.shape, self.geometry)

    def subset(self, views) -> "ProjectionData":
        """The same data restricted to the view indices ``views``."""
        import torch

        views = torch.as_tensor(views, dtype=torch.long)
        angles = [self.geometry.angles[i] for i in views.tolist()]
        return ProjectionData(self.projections[views], self.geometry.with_angles(angles), self.noise,
                              self.reference, self.placement)


@dataclass
class ProjectionArrays(_Projections):
    """A projections file's content as float32 numpy arrays (no torch)."""


def save_projection_arrays(path: str | Path, projections: np.ndarray, geometry: Geometry,
                           noise: NoiseModel | None = None, reference: np.ndarray | None = None,
                           placement: Placement | dict | None = None, dtype=np.float32) -> Path:
    """Write a projections file atomically (temporary file + rename) from numpy arrays, after
    checking them against ``geometry`` (views, detector, grid; finite); ``dtype=np.float16`` for
    compact caches."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"projections files end in .safetensors, got {path.name}")
    proj = np.asarray(projections)
    if proj.ndim != 3:
        raise InputError(f"projections must be (views, rows, columns), got shape {proj.shape}")
    check_projection_shape(proj.shape, geometry)
    if not np.isfinite(proj).all():
        raise InputError("projections contain NaN or infinite values")
    tensors = {"projections": np.ascontiguousarray(proj, dtype=dtype)}
    if reference is not None:
        reference = np.asarray(reference)
        _check_reference(reference.shape, geometry)
        tensors["reference"] = np.ascontiguousarray(reference, dtype=dtype)
    if isinstance(placement, Placement):
        placement = placement.to_dict()
    meta = {"format": FORMAT, "version": VERSION,
            "geometry": json.dumps(geometry.to_dict()),
            "noise": json.dumps((noise or NoiseModel(enabled=False)).to_dict()),
            "placement": json.dumps(placement)}
    return save_atomic(tensors, path, meta)


def save_projections(path: str | Path, data: ProjectionData, dtype: torch.dtype | None = None) -> Path:
    """:func:`save_projection_arrays` of ``data`` (float32, or ``dtype=torch.float16``)."""
    import torch

    def array(t):
        return t.detach().to("cpu", dtype or torch.float32).numpy()

    return save_projection_arrays(path, array(data.projections), data.geometry, data.noise,
                                  None if data.reference is None else array(data.reference), data.placement,
                                  dtype=None)


def read_projection_arrays(path: str | Path, with_reference: bool = True, views=None) -> ProjectionArrays:
    """Read and validate a projections file as float32 numpy arrays.

    ``views``: optional view indices to read (only those are read from disk; the file is
    memory-mapped), e.g. a training subset of the candidate projections.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if path.name.lower().endswith(VOLUME_EXTENSIONS) or path.is_dir():  # a CT volume or a DICOM folder
        raise InputError(f"{path} is a volume, not a projections file: simulate its views first "
                         f"(deepsparse simulate {path} --views 6 --out views.safetensors), or convert scanner "
                         "projections with deepsparse import")
    meta = read_metadata(path, FORMAT, VERSION, "DeepSparse projections file")
    try:
        with safe_open(str(path), framework="numpy") as f:
            if views is None:
                proj = f.get_tensor("projections")
            else:
                views = [int(v) for v in views]
                sl = f.get_slice("projections")
                n = sl.get_shape()[0]
                if any(not 0 <= v < n for v in views):
                    raise InputError(f"view indices must be in [0, {n}) for {path}")
                proj = np.stack([sl[v] for v in views]) if views else sl[0:0]
            ref = f.get_tensor("reference") if with_reference and "reference" in f.keys() else None
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise InputError(f"cannot read projections file {path}: {str(e).splitlines()[0]}") from None
    try:
        geometry = Geometry.from_dict(json.loads(meta["geometry"]))
        noise = NoiseModel.from_dict(json.loads(meta.get("noise", "null")) or {"enabled": False})
        placement = json.loads(meta.get("placement", "null"))
    except (KeyError, TypeError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise InputError(f"{path} has corrupt metadata ({e})") from None
    placement = Placement.from_dict(placement, path)
    if not np.isfinite(proj).all():
        raise InputError(f"{path} contains NaN or infinite projection values")
    if ref is not None and not np.isfinite(ref).all():
        raise InputError(f"{path} has NaN or infinite values in its reference volume")
    if views is not None:
        geometry = geometry.with_angles([geometry.angles[v] for v in views])
    try:
        if proj.ndim != 3:
            raise GeometryError(f"projections of shape {proj.shape} are not (views, rows, columns)")
        check_projection_shape(proj.shape, geometry)
        if ref is not None:
            _check_reference(ref.shape, geometry)
    except GeometryError as e:
        raise GeometryError(f"{path}: {e}") from None
    return ProjectionArrays(proj.astype(np.float32, copy=False), geometry, noise,
                            None if ref is None else ref.astype(np.float32, copy=False), placement)


def load_projections(path: str | Path, device: str | torch.device = "cpu",
                     with_reference: bool = True, views=None) -> ProjectionData:
    """:func:`read_projection_arrays` as a :class:`ProjectionData` (float32 tensors on ``device``)."""
    import torch

    a = read_projection_arrays(path, with_reference, views)
    ref = None if a.reference is None else torch.from_numpy(a.reference).to(device)
    return ProjectionData(torch.from_numpy(a.projections).to(device), a.geometry, a.noise, ref, a.placement)
