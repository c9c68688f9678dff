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
from ..physics.geometry import Geometry, check_projections
from ..physics.noise import NoiseModel
from ..safetensors_io import read_metadata, save_atomic
from .placement import Placement
from .volume import Volume

if TYPE_CHECKING:
    import torch

FORMAT = "deepsparse-projections"
VERSION = "1"


def _placed(array01, geometry: Geometry, placement: Placement | None, units: str) -> Volume:
    return (placement or Placement.scanner(geometry)).to_volume(array01, geometry, units)


@dataclass
class ProjectionData:
    """Projections with everything needed to reconstruct and place them (torch tensors)."""

    projections: torch.Tensor            # (V, nv, nu) line integrals, [0, 1] volume x mm
    geometry: Geometry
    noise: NoiseModel = field(default_factory=lambda: NoiseModel(enabled=False))
    reference: torch.Tensor | None = None  # (nz, ny, nx) ground truth in [0, 1]
    placement: Placement | None = None     # None: the scanner frame (Placement.scanner)

    def __post_init__(self):
        self.projections = check_projections(self.projections, self.geometry, batched=False, finite=False)
        if isinstance(self.placement, dict):  # as stored in files and Slicer node attributes
            self.placement = Placement.from_dict(self.placement)
        if self.reference is not None and tuple(self.reference.shape) != self.geometry.volume_shape:
            raise GeometryError(f"reference volume shape {tuple(self.reference.shape)} does not match the "
                                f"geometry's grid {self.geometry.volume_shape}")

    def subset(self, views) -> "ProjectionData":
        """The same data restricted to the view indices ``views``."""
        import torch

        views = torch.as_tensor(views, dtype=torch.long)
        angles = [self.geometry.angles[i] for i in views.tolist()]
        return ProjectionData(self.projections[views], self.geometry.with_angles(angles), self.noise,
                              self.reference, self.placement)

    def to_volume(self, array01, units: str = "normalized") -> Volume:
        """A reconstruction over this grid's extent (any resolution) as a :class:`Volume` placed like
        the input CT; ``units`` 'normalized' ([0, 1]) or 'hu'."""
        return _placed(array01, self.geometry, self.placement, units)


@dataclass
class ProjectionArrays:
    """A projections file's content as float32 numpy arrays (no torch)."""

    projections: np.ndarray              # (V, nv, nu) line integrals, [0, 1] volume x mm
    geometry: Geometry
    noise: NoiseModel = field(default_factory=lambda: NoiseModel(enabled=False))
    reference: np.ndarray | None = None  # (nz, ny, nx) ground truth in [0, 1]
    placement: Placement | None = None   # None: the scanner frame (Placement.scanner)

    def to_volume(self, array01, units: str = "normalized") -> Volume:
        """As :meth:`ProjectionData.to_volume`."""
        return _placed(array01, self.geometry, self.placement, units)


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
    if proj.shape[0] != geometry.n_views:
        raise GeometryError(f"{proj.shape[0]} projections but the geometry has {geometry.n_views} angles")
    if proj.shape[1:] != tuple(geometry.detector_shape):
        raise GeometryError(f"projections are {proj.shape[1]} x {proj.shape[2]} pixels but the geometry's "
                            f"detector is {geometry.detector_shape[0]} x {geometry.detector_shape[1]} "
                            "(rows x columns)")
    if not np.isfinite(proj).all():
        raise InputError("projections contain NaN or infinite values")
    tensors = {"projections": np.ascontiguousarray(proj, dtype=dtype)}
    if reference is not None:
        reference = np.asarray(reference)
        if reference.shape != geometry.volume_shape:
            raise GeometryError(f"reference volume shape {reference.shape} does not match the geometry's grid "
                                f"{geometry.volume_shape}")
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
    if proj.ndim != 3 or proj.shape[0] != geometry.n_views or proj.shape[1:] != tuple(geometry.detector_shape):
        raise GeometryError(f"{path}: projections of shape {proj.shape} do not match its geometry "
                            f"({geometry.n_views} views of {geometry.detector_shape[0]} x "
                            f"{geometry.detector_shape[1]} pixels)")
    if ref is not None and ref.shape != geometry.volume_shape:
        raise GeometryError(f"{path}: reference volume shape {ref.shape} does not match the geometry's grid "
                            f"{geometry.volume_shape}")
    return ProjectionArrays(proj.astype(np.float32, copy=False), geometry, noise,
                            None if ref is None else ref.astype(np.float32, copy=False), placement)


def load_projections(path: str | Path, device: str | torch.device = "cpu",
                     with_reference: bool = True, views=None) -> ProjectionData:
    """:func:`read_projection_arrays` as a :class:`ProjectionData` (float32 tensors on ``device``)."""
    import torch

    a = read_projection_arrays(path, with_reference, views)
    ref = None if a.reference is None else torch.from_numpy(a.reference).to(device)
    return ProjectionData(torch.from_numpy(a.projections).to(device), a.geometry, a.noise, ref, a.placement)
