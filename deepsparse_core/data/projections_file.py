"""Self-describing projections file (``.safetensors``): projections, angles, geometry, noise, reference.

Layout: tensors ``projections`` (V, nv, nu) and optionally ``reference`` (nz, ny, nx) on the
geometry's grid, normalized to [0, 1]; JSON metadata ``format``, ``version``, ``geometry`` (with the
angles), ``noise`` and ``placement`` (where the grid sits in the patient,
:class:`~deepsparse_core.data.placement.Placement`, so reconstructions overlay the input CT).
safetensors never unpickles anything, and the file can be memory-mapped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import GeometryError, InputError
from ..outputs import VOLUME_EXTENSIONS
from ..physics.geometry import Geometry, check_projections
from ..physics.noise import NoiseModel
from ..safetensors_io import read_metadata, save_atomic
from .placement import Placement
from .volume import Volume

FORMAT = "deepsparse-projections"
VERSION = "1"


@dataclass
class ProjectionData:
    """Projections with everything needed to reconstruct and place them."""

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
        views = torch.as_tensor(views, dtype=torch.long)
        angles = [self.geometry.angles[i] for i in views.tolist()]
        return ProjectionData(self.projections[views], self.geometry.with_angles(angles), self.noise,
                              self.reference, self.placement)

    def to_volume(self, array01, units: str = "normalized") -> Volume:
        """A reconstruction over this grid's extent (any resolution) as a :class:`Volume` placed like
        the input CT; ``units`` 'normalized' ([0, 1]) or 'hu'."""
        placement = self.placement or Placement.scanner(self.geometry)
        return placement.to_volume(array01, self.geometry, units)


def save_projections(path: str | Path, data: ProjectionData, dtype: torch.dtype = torch.float32) -> Path:
    """Write atomically (temporary file + rename); ``dtype=torch.float16`` for compact caches."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise InputError(f"projections files end in .safetensors, got {path.name}")
    tensors = {"projections": data.projections.detach().to("cpu", dtype).contiguous()}
    if data.reference is not None:
        tensors["reference"] = data.reference.detach().to("cpu", dtype).contiguous()
    meta = {"format": FORMAT, "version": VERSION,
            "geometry": json.dumps(data.geometry.to_dict()),
            "noise": json.dumps(data.noise.to_dict()),
            "placement": json.dumps(data.placement.to_dict() if data.placement else None)}
    return save_atomic(tensors, path, meta)


def load_projections(path: str | Path, device: str | torch.device = "cpu",
                     with_reference: bool = True, views=None) -> ProjectionData:
    """Read and validate a projections file (float32 tensors on ``device``).

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
        with safe_open(str(path), framework="pt") as f:
            if views is None:
                proj = f.get_tensor("projections")
            else:
                views = [int(v) for v in views]
                sl = f.get_slice("projections")
                n = sl.get_shape()[0]
                if any(not 0 <= v < n for v in views):
                    raise InputError(f"view indices must be in [0, {n}) for {path}")
                proj = torch.stack([sl[v] for v in views]) if views else sl[0:0]
            ref = f.get_tensor("reference") if with_reference and "reference" in f.keys() else None
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"cannot read projections file {path}: {str(e).splitlines()[0]}") from None
    try:
        geometry = Geometry.from_dict(json.loads(meta["geometry"]))
        noise = NoiseModel.from_dict(json.loads(meta.get("noise", "null")) or {"enabled": False})
        placement = json.loads(meta.get("placement", "null"))
    except (KeyError, TypeError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise InputError(f"{path} has corrupt metadata ({e})") from None
    placement = Placement.from_dict(placement, path)
    if not torch.isfinite(proj).all():
        raise InputError(f"{path} contains NaN or infinite projection values")
    if views is not None:
        geometry = geometry.with_angles([geometry.angles[v] for v in views])
    to = dict(device=device, dtype=torch.float32)
    return ProjectionData(proj.to(**to), geometry, noise, None if ref is None else ref.to(**to), placement)
