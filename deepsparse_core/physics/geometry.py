"""Circular cone-beam geometry: the one object every operator takes.

Frames and units (see docs/conventions.md):

* mm for lengths, radians for angles.
* Scanner frame (x, y, z), origin at the isocentre, z = rotation axis. Preprocessed CTs are LPS
  (x -> Left, y -> Posterior, z -> Superior) shifted so the grid centre sits at ``volume_offset``.
* Volumes are arrays ``vol[k, j, i]`` = (z, y, x); voxel centre ``x_i = (i - (nx-1)/2) sx + ox``.
* Source at angle theta: ``(DSO cos theta, DSO sin theta, 0)``; detector centre at
  ``-(DSD - DSO) (cos theta, sin theta, 0)`` plus offsets; detector columns along
  ``e_u = (-sin theta, cos theta, 0)``, rows along ``e_v = (0, 0, 1)``.
* Projections are arrays ``proj[view, row, col]`` = (V, nv, nu); pixel centre
  ``u_c = (c - (nu-1)/2) du + offset_u``.

Only the tensor methods import torch, so a geometry is made, checked and (de)serialized without it
(the Slicer module's GUI thread never imports torch).
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import yaml

from ..atomic import write_text
from ..errors import GeometryError, InputError

if TYPE_CHECKING:
    import torch

PRESET_DIR = Path(__file__).parent / "presets"
MAX_VIEWS = 100_000  # projections per scan; far beyond any CT, small enough to list the angles


def _number(value, name: str) -> float:
    """``value`` as a float; GeometryError naming the field for text, None, lists..."""
    if isinstance(value, bool):
        raise GeometryError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise GeometryError(f"{name} must be a number, got {value!r}") from None


def _integer(value, name: str) -> int:
    """``value`` as an int; refuses fractions (64.5) instead of truncating them."""
    x = _number(value, name)
    if not math.isfinite(x) or x != int(x):
        raise GeometryError(f"{name} must be a whole number, got {value!r}")
    return int(x)


def _tuple(values, n: int, name: str, kind=float) -> tuple:
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise GeometryError(f"{name} must be a sequence of {n} numbers, got {values!r}")
    convert = _integer if kind is int else _number
    out = tuple(convert(v, name) for v in values)
    if len(out) != n:
        raise GeometryError(f"{name} must have {n} values, got {len(out)}")
    return out


def uniform_angles(n_views: int, arc: float = math.pi, start: float = 0.0) -> tuple[float, ...]:
    """``n_views`` angles (radians) uniformly over ``[start, start + arc)``, end excluded."""
    if n_views < 1:
        raise GeometryError(f"number of views must be >= 1, got {n_views}")
    if n_views > MAX_VIEWS:
        raise GeometryError(f"number of views must be <= {MAX_VIEWS}, got {n_views}")
    return tuple(start + arc * k / n_views for k in range(n_views))


@dataclass(frozen=True)
class Geometry:
    """Circular cone-beam CT acquisition and reconstruction grid.

    Attributes:
        dso: source to isocentre (rotation axis) distance, mm.
        dsd: source to detector distance, mm (> dso).
        detector_shape: (nv rows along z, nu columns) pixels.
        detector_spacing: (dv, du) pixel pitch, mm.
        detector_offset: (offset_v, offset_u) of the detector centre in its plane, mm.
        volume_shape: (nz, ny, nx) voxels.
        volume_spacing: (sz, sy, sx) mm.
        volume_offset: (oz, oy, ox) position of the grid centre in the scanner frame, mm.
        angles: projection angles, radians (source angle measured from +x towards +y).
        hu_window: (lo, hi) HU mapped to [0, 1] by preprocessing.
        name: preset name or free text.
    """

    dso: float
    dsd: float
    detector_shape: tuple[int, int]
    detector_spacing: tuple[float, float]
    volume_shape: tuple[int, int, int]
    volume_spacing: tuple[float, float, float]
    angles: tuple[float, ...] = field(default_factory=lambda: uniform_angles(200))
    detector_offset: tuple[float, float] = (0.0, 0.0)
    volume_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    hu_window: tuple[float, float] = (-1000.0, 1000.0)
    name: str = "custom"

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("detector_shape", _tuple(self.detector_shape, 2, "detector_shape", int))
        set_("detector_spacing", _tuple(self.detector_spacing, 2, "detector_spacing"))
        set_("detector_offset", _tuple(self.detector_offset, 2, "detector_offset"))
        set_("volume_shape", _tuple(self.volume_shape, 3, "volume_shape", int))
        set_("volume_spacing", _tuple(self.volume_spacing, 3, "volume_spacing"))
        set_("volume_offset", _tuple(self.volume_offset, 3, "volume_offset"))
        set_("hu_window", _tuple(self.hu_window, 2, "hu_window"))
        try:
            angles = np.asarray(self.angles, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise GeometryError("angles must be a list of numbers (radians)") from None
        set_("angles", tuple(float(a) for a in angles))
        set_("dso", _number(self.dso, "dso"))
        set_("dsd", _number(self.dsd, "dsd"))
        if not isinstance(self.name, str):
            set_("name", str(self.name))
        self._check()

    # ------------------------------------------------------------------ validation
    def _check(self) -> None:
        finite = [self.dso, self.dsd, *self.detector_spacing, *self.detector_offset,
                  *self.volume_spacing, *self.volume_offset, *self.angles, *self.hu_window]
        if not all(math.isfinite(v) for v in finite):
            raise GeometryError("geometry values must be finite numbers")
        if self.dso <= 0 or self.dsd <= 0:
            raise GeometryError(f"distances must be positive (DSO={self.dso} mm, DSD={self.dsd} mm)")
        if self.dsd <= self.dso:
            raise GeometryError(
                f"DSD ({self.dsd} mm) must be larger than DSO ({self.dso} mm): "
                "the detector lies beyond the rotation axis")
        if min(self.detector_shape) < 1 or min(self.volume_shape) < 1:
            raise GeometryError("detector and volume shapes must be positive")
        if min(self.detector_spacing) <= 0 or min(self.volume_spacing) <= 0:
            raise GeometryError("pixel and voxel spacings must be positive")
        if len(self.angles) < 1:
            raise GeometryError("at least one projection angle is needed")
        if self.hu_window[1] <= self.hu_window[0]:
            raise GeometryError(f"HU window {self.hu_window} must have lo < hi")
        half_diag = 0.5 * math.dist((0, 0), (self.volume_shape[1] * self.volume_spacing[1],
                                             self.volume_shape[2] * self.volume_spacing[2]))
        if half_diag + math.hypot(self.volume_offset[1], self.volume_offset[2]) >= self.dso:
            raise GeometryError("the reconstruction grid reaches the source: reduce it or increase DSO")
        if len(self.angles) > 1 and max(self.angles) - min(self.angles) < 1e-9:
            raise GeometryError(f"all {len(self.angles)} views are at the same angle ({math.degrees(self.angles[0]):g}°): "
                                "an arc of 0? the views must differ")
        self._check_in_beam()
        self._check_memory()

    def _check_in_beam(self) -> None:
        """Refuse a grid that no ray of any view crosses (a volume offset that moved it out of the
        beam): its xy box outside the field-of-view cylinder, or its z range beyond the cone (both
        bounds generous: only a surely wrong grid is refused)."""
        (nv, nu), (dv, du), (off_v, off_u) = self.detector_shape, self.detector_spacing, self.detector_offset
        fov = self.dso * math.sin(math.atan((nu * du / 2 + abs(off_u)) / self.dsd))
        ext = [n * sp for n, sp in zip(self.volume_shape, self.volume_spacing)]  # (z, y, x) mm
        gap_x = max(abs(self.volume_offset[2]) - ext[2] / 2, 0.0)
        gap_y = max(abs(self.volume_offset[1]) - ext[1] / 2, 0.0)
        half_z = (nv * dv / 2 + abs(off_v)) * (self.dso + fov) / self.dsd
        if math.hypot(gap_x, gap_y) >= fov or abs(self.volume_offset[0]) - ext[0] / 2 >= half_z:
            raise GeometryError(f"the reconstruction grid (volume_offset {self.volume_offset} mm) lies outside the "
                                f"X-ray beam (a {fov:.0f} mm field of view, {half_z:.0f} mm high): no view sees it")

    def _check_memory(self) -> None:
        """Refuse a grid or a projection stack (float32) larger than this machine's memory."""
        from ..resources import require_memory

        nz, ny, nx = self.volume_shape
        require_memory(4.0 * nz * ny * nx, f"a {nz}x{ny}x{nx} reconstruction grid", GeometryError)
        (nv, nu), v = self.detector_shape, self.n_views
        require_memory(4.0 * v * nv * nu, f"{v} projections of {nv}x{nu} pixels", GeometryError)

    def covered_fraction(self, max_views: int = 1024) -> float:
        """Fraction of voxel centres (about 32^3 of them) that project inside the detector in every
        view; at most ``max_views`` evenly picked views (the first and last included) are checked, in
        chunks, so a dense arc costs neither memory nor time."""
        import torch

        pts = self.voxel_centres(stride=max(1, max(self.volume_shape) // 32)).reshape(-1, 3).double()
        picked = np.unique(np.linspace(0, self.n_views - 1, min(self.n_views, max_views)).round().astype(int))
        angles = torch.tensor([self.angles[i] for i in picked], dtype=torch.float64)
        inside = torch.ones(len(pts), dtype=torch.bool)
        for chunk in angles.split(64):
            uv = self.project_points(pts, normalized=True, angles=chunk)  # (views, N, 2)
            inside &= (uv.abs() <= 1.0).all(dim=-1).all(dim=0)
        return float(inside.double().mean())

    def validate(self, min_covered: float = 0.6) -> "Geometry":
        """Warn when less than ``min_covered`` of the grid is seen in every view; return self.

        A cube inscribed in the field of view loses its corners (~pi/4 of a square slab is the
        best a circular scan covers), so standard geometries cover about 0.6-0.8.
        """
        frac = self.covered_fraction()
        if frac < min_covered:
            warnings.warn(f"the detector covers only {frac:.0%} of the reconstruction grid in all views",
                          stacklevel=2)
        return self

    # ------------------------------------------------------------------ derived
    @property
    def n_views(self) -> int:
        return len(self.angles)

    @property
    def magnification(self) -> float:
        return self.dsd / self.dso

    @property
    def volume_extent(self) -> tuple[float, float, float]:
        """(z, y, x) physical size of the grid in mm (edge to edge)."""
        return tuple(n * s for n, s in zip(self.volume_shape, self.volume_spacing))

    @property
    def detector_extent(self) -> tuple[float, float]:
        """(v, u) physical size of the detector in mm (edge to edge)."""
        return tuple(n * s for n, s in zip(self.detector_shape, self.detector_spacing))

    def with_angles(self, angles: Sequence[float]) -> "Geometry":
        return dataclasses.replace(self, angles=tuple(angles))

    def with_views(self, n_views: int, arc: float | None = None, start: float = 0.0) -> "Geometry":
        """Same scanner with ``n_views`` uniform angles over ``arc`` (default: this geometry's arc)."""
        return self.with_angles(uniform_angles(n_views, self.arc if arc is None else arc, start))

    def with_grid(self, shape: Sequence[int], spacing: Sequence[float] | None = None) -> "Geometry":
        """Same scanner, another grid; the default spacing keeps the physical extent."""
        if spacing is None:
            spacing = [e / n for e, n in zip(self.volume_extent, shape)]
        return dataclasses.replace(self, volume_shape=tuple(shape), volume_spacing=tuple(spacing))

    def with_resolution(self, resolution=None) -> "Geometry":
        """This scan with the reconstruction grid ``resolution`` asks for, over the same extent:
        None (this grid), N (an N^3 grid) or (nz, ny, nx); every size an integer >= 2. The one
        reading of ``--resolution``."""
        if resolution is None:
            return self
        sizes = [resolution] if isinstance(resolution, (int, np.integer)) else list(resolution) \
            if isinstance(resolution, (list, tuple)) else None
        if sizes is None or len(sizes) not in (1, 3) or not all(
                isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 2 for n in sizes):
            raise InputError(f"resolution takes one size or three (nz ny nx), each an integer >= 2, "
                             f"got {resolution!r}")
        shape = tuple(int(n) for n in sizes) * (3 if len(sizes) == 1 else 1)
        return self if shape == self.volume_shape else self.with_grid(shape)

    @property
    def arc(self) -> float:
        """Angular range covered by uniform views (n * step), radians; pi for one view."""
        if self.n_views < 2:
            return math.pi
        step = (self.angles[-1] - self.angles[0]) / (self.n_views - 1)
        return abs(step) * self.n_views

    def views_phrase(self) -> str:
        """The views in words, one wording everywhere (:func:`~deepsparse_core.physics.angles.views_phrase`):
        '6 views 30° apart (arc 180°)', or '5 views over 0-170° (gaps 20-70°)' for irregular steps."""
        from .angles import views_phrase

        return views_phrase(self.angles)

    # ------------------------------------------------------------------ coordinates
    def axis_centres(self, axis: int, dtype=None, device=None) -> torch.Tensor:
        """Voxel-centre coordinates (mm) along volume axis 0 (z), 1 (y) or 2 (x)."""
        import torch

        n, s, o = self.volume_shape[axis], self.volume_spacing[axis], self.volume_offset[axis]
        return (torch.arange(n, dtype=dtype or torch.float32, device=device) - (n - 1) / 2) * s + o

    def voxel_centres(self, stride: int = 1, dtype=None, device=None) -> torch.Tensor:
        """(nz, ny, nx, 3) voxel-centre positions as (x, y, z) mm; ``stride`` subsamples."""
        import torch

        z, y, x = (self.axis_centres(a, dtype, device)[::stride] for a in range(3))
        zz, yy, xx = torch.meshgrid(z, y, x, indexing="ij")
        return torch.stack([xx, yy, zz], dim=-1)

    def source_positions(self, dtype=None, device=None) -> torch.Tensor:
        """(V, 3) source positions (x, y, z) mm."""
        import torch

        a = torch.tensor(self.angles, dtype=torch.float64)
        s = torch.stack([self.dso * a.cos(), self.dso * a.sin(), torch.zeros_like(a)], -1)
        return s.to(dtype=dtype or torch.float32, device=device)

    def detector_frames(self, dtype=None, device=None):
        """Per view: detector centre (V, 3), unit column axis e_u (V, 3), unit row axis e_v (V, 3)."""
        import torch

        a = torch.tensor(self.angles, dtype=torch.float64)
        c, s, zero = a.cos(), a.sin(), torch.zeros_like(a)
        e_s = torch.stack([c, s, zero], -1)  # unit vector isocentre -> source
        e_u = torch.stack([-s, c, zero], -1)
        e_v = torch.stack([zero, zero, torch.ones_like(a)], -1)
        centre = -(self.dsd - self.dso) * e_s + self.detector_offset[1] * e_u + self.detector_offset[0] * e_v
        return tuple(t.to(dtype=dtype or torch.float32, device=device) for t in (centre, e_u, e_v))

    def pixel_centres(self, dtype=None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Detector pixel-centre coordinates (v of rows (nv,), u of columns (nu,)) mm, in-plane."""
        import torch

        (nv, nu), (dv, du) = self.detector_shape, self.detector_spacing
        dtype = dtype or torch.float32
        v = (torch.arange(nv, dtype=dtype, device=device) - (nv - 1) / 2) * dv + self.detector_offset[0]
        u = (torch.arange(nu, dtype=dtype, device=device) - (nu - 1) / 2) * du + self.detector_offset[1]
        return v, u

    def project_points(self, points: torch.Tensor, normalized: bool = False,
                       angles: torch.Tensor | None = None) -> torch.Tensor:
        """Cone-beam projection of points onto every view's detector.

        Args:
            points: (..., 3) positions (x, y, z) mm in the scanner frame.
            normalized: if True return grid_sample coordinates with ``align_corners=False``
                (-1 / +1 = outer edge of the first / last pixel), else detector (u, v) in mm.
            angles: optional (V,) or (B, V) tensor of angles overriding ``self.angles``.

        Returns:
            (V, ..., 2) or (B, V, ..., 2) as (u, v): the column coordinate first, as grid_sample wants.
        """
        import torch

        a = torch.as_tensor(self.angles if angles is None else angles, dtype=points.dtype,
                            device=points.device)
        c, s = a.cos(), a.sin()
        shape = a.shape + (1,) * (points.dim() - 1)
        c, s = c.reshape(shape), s.reshape(shape)
        x, y, z = points[..., 0], points[..., 1], points[..., 2]
        depth = x * c + y * s                 # along e_s (towards the source)
        lateral = -x * s + y * c              # along e_u
        scale = self.dsd / (self.dso - depth)  # magnification of this point
        u = lateral * scale
        v = z * scale
        if normalized:
            (dv, du), (nv, nu) = self.detector_spacing, self.detector_shape
            u = (u - self.detector_offset[1]) / (nu * du / 2)
            v = (v - self.detector_offset[0]) / (nv * dv / 2)
        else:
            u, v = u - self.detector_offset[1], v - self.detector_offset[0]
        return torch.stack([u, v], dim=-1)

    def world_to_grid(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) (x, y, z) mm -> grid_sample coordinates of the volume (align_corners=False)."""
        import torch

        ext = torch.tensor(self.volume_extent[::-1], dtype=points.dtype, device=points.device)
        off = torch.tensor(self.volume_offset[::-1], dtype=points.dtype, device=points.device)
        return (points - off) / (ext / 2)

    # ------------------------------------------------------------------ (de)serialization
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "Geometry":
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        n_views, arc_deg, start = d.pop("n_views", None), d.pop("arc_degrees", None), d.pop("start_angle", 0.0)
        unknown = set(d) - known
        if unknown:
            raise GeometryError(f"unknown geometry fields: {', '.join(sorted(unknown))}")
        missing = {"dso", "dsd", "detector_shape", "detector_spacing", "volume_shape", "volume_spacing"} - set(d)
        if missing:
            raise GeometryError(f"geometry is missing: {', '.join(sorted(missing))}")
        if "angles" not in d:
            arc = math.radians(180.0 if arc_deg is None else _number(arc_deg, "arc_degrees"))
            views = 200 if n_views is None else _integer(n_views, "n_views")
            d["angles"] = uniform_angles(views, arc, _number(start, "start_angle"))
        return cls(**d)

    def save(self, path: str | Path) -> None:
        """Write as JSON (.json) or YAML (.yaml/.yml)."""
        path = Path(path)
        text = yaml.safe_dump(self.to_dict(), sort_keys=False) if path.suffix in (".yaml", ".yml") \
            else json.dumps(self.to_dict(), indent=1)
        write_text(path, text)

    @classmethod
    def load(cls, path: str | Path) -> "Geometry":
        path = Path(path)
        try:
            d = yaml.safe_load(path.read_text())  # YAML is a superset of JSON
        except FileNotFoundError:
            raise GeometryError(f"geometry file not found: {path}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise GeometryError(f"cannot parse geometry file {path}: {str(e).splitlines()[0]}") from None
        if not isinstance(d, dict):
            raise GeometryError(f"geometry file {path} does not hold a mapping")
        try:
            return cls.from_dict(d)
        except TypeError as e:
            raise GeometryError(f"bad geometry file {path}: {e}") from None

    @classmethod
    def preset(cls, name: str, n_views: int = 200, arc_degrees: float | None = None,
               start_angle: float = 0.0) -> "Geometry":
        """Geometry of a named preset (files in ``presets/``) with ``n_views`` uniform angles."""
        path = PRESET_DIR / f"{name}.yaml"
        if not path.exists():
            raise GeometryError(f"unknown geometry preset {name!r}; choose one of: {', '.join(preset_names())}")
        d = yaml.safe_load(path.read_text())
        if arc_degrees is not None:
            d["arc_degrees"] = arc_degrees
        d.update(n_views=n_views, start_angle=start_angle)
        return cls.from_dict(d)


def check_projection_shape(shape, geometry: "Geometry") -> None:
    """:class:`GeometryError` unless the last three sizes of ``shape`` (views, rows, columns) are
    ``geometry``'s views and detector; no torch (numpy arrays and Slicer nodes are checked too)."""
    views, rows, cols = (int(n) for n in tuple(shape)[-3:])
    nv, nu = geometry.detector_shape
    if views != geometry.n_views:
        raise GeometryError(f"{views} projections but the geometry has {geometry.n_views} angles")
    if (rows, cols) != (nv, nu):
        raise GeometryError(f"projections are {rows} x {cols} pixels but the geometry's detector is "
                            f"{nv} x {nu} (rows x columns)")


def check_projections(projections, geometry: "Geometry", batched: bool = True, finite: bool = True) -> torch.Tensor:
    """``projections`` as a floating tensor (V, nv, nu), or (B, V, nv, nu) when ``batched``, that
    matches ``geometry``: the one check of every operator and of ``ProjectionData``.

    Raises :class:`InputError` for a wrong dimensionality or (with ``finite``) NaN / infinite values,
    and :class:`GeometryError` when the views or the detector do not match the geometry.
    """
    import torch

    if not isinstance(projections, torch.Tensor):
        try:
            projections = torch.as_tensor(np.asarray(projections))
        except (TypeError, ValueError, RuntimeError):
            raise InputError(f"projections must be an array or tensor, got {type(projections).__name__}") \
                from None
    if projections.dim() not in ((3, 4) if batched else (3,)):
        shapes = "(views, rows, columns)" + (" or (batch, views, rows, columns)" if batched else "")
        raise InputError(f"projections must be {shapes}, got shape {tuple(projections.shape)}")
    if not projections.is_floating_point():
        projections = projections.float()
    check_projection_shape(projections.shape, geometry)
    if finite and not bool(torch.isfinite(projections).all()):
        raise InputError("projections contain NaN or infinite values")
    return projections


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
