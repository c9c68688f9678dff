"""Self-describing projections file (``.safetensors``): projections, angles, geometry, noise, reference.

Layout: tensors ``projections`` (V, nv, nu) and optionally ``reference`` (nz, ny, nx) on the
geometry's grid, normalized to [0, 1]; JSON metadata ``format``, ``version``, ``geometry`` (with the
angles), ``noise`` and ``placement`` (where the grid sits in the patient: LPS origin of voxel
(0, 0, 0) in (x, y, z) mm and the 3x3 ITK direction, so reconstructions overlay the input CT).
safetensors never unpickles anything, and the file can be memory-mapped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import GeometryError, InputError
from .geometry import Geometry
from .noise import NoiseModel
from .safetensors_io import read_metadata, save_atomic

FORMAT = "deepsparse-projections"
VERSION = "1"


@dataclass
class ProjectionData:
    """Projections with everything needed to reconstruct and place them."""

    projections: torch.Tensor            # (V, nv, nu) line integrals, [0, 1] volume x mm
    geometry: Geometry
    noise: NoiseModel = field(default_factory=lambda: NoiseModel(enabled=False))
    reference: torch.Tensor | None = None  # (nz, ny, nx) ground truth in [0, 1]
    placement: dict | None = None          # {"origin_lps": [x, y, z], "direction": [9 floats]}

    def __post_init__(self):
        check_projections_match(self.projections, self.geometry)
        if self.reference is not None and tuple(self.reference.shape) != self.geometry.volume_shape:
            raise GeometryError(f"reference volume shape {tuple(self.reference.shape)} does not match the "
                                f"geometry's grid {self.geometry.volume_shape}")

    def subset(self, views) -> "ProjectionData":
        """The same data restricted to the view indices ``views``."""
        views = torch.as_tensor(views, dtype=torch.long)
        angles = [self.geometry.angles[i] for i in views.tolist()]
        return ProjectionData(self.projections[views], self.geometry.with_angles(angles), self.noise,
                              self.reference, self.placement)


def check_projections_match(projections: torch.Tensor, geometry: Geometry) -> None:
    expected = (geometry.n_views, *geometry.detector_shape)
    if projections.dim() != 3 or tuple(projections.shape) != expected:
        raise GeometryError(f"projections have shape {tuple(projections.shape)} but the geometry expects "
                            f"{expected} (views, detector rows, detector columns)")


def check_placement(placement, path) -> None:
    """A placement is null or ``{"origin_lps": 3 numbers, "direction": 9 numbers}`` (finite)."""
    if placement is None:
        return
    ok = isinstance(placement, dict)
    for key, n in (("origin_lps", 3), ("direction", 9)):
        value = placement.get(key) if ok else None
        ok = ok and isinstance(value, list) and len(value) == n and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok:
        raise InputError(f"{path} has a corrupt placement: it needs origin_lps (3 numbers) and "
                         "direction (9 numbers)")


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
            "placement": json.dumps(data.placement)}
    return save_atomic(tensors, path, meta)


def load_projections(path: str | Path, device: str | torch.device = "cpu",
                     with_reference: bool = True, views=None) -> ProjectionData:
    """Read and validate a projections file (float32 tensors on ``device``).

    ``views``: optional view indices to read (only those are read from disk; the file is
    memory-mapped), e.g. a training subset of the candidate projections.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
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
    check_placement(placement, path)
    if not torch.isfinite(proj).all():
        raise InputError(f"{path} contains NaN or infinite projection values")
    if views is not None:
        geometry = geometry.with_angles([geometry.angles[v] for v in views])
    to = dict(device=device, dtype=torch.float32)
    return ProjectionData(proj.to(**to), geometry, noise, None if ref is None else ref.to(**to), placement)
