"""Where a reconstruction grid sits in the patient: the :class:`Placement` of a ``ProjectionData``.

Operators work in the scanner frame (isocentre at the origin, z the rotation axis); a placement
ties that grid to the CT it came from, so reconstructions overlay the input in a viewer. It holds
the LPS position of the centre of voxel (0, 0, 0) in (x, y, z) mm and the 3x3 ITK direction
(columns: LPS unit vectors of the array axes x, y, z), as :class:`~deepsparse_core.data.volume.Volume`
does. Files store it as ``{"origin_lps": [3], "direction": [9, row-major], "piece", "n_pieces"}``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..physics.geometry import Geometry
from .hu import to_units
from .volume import MAX_ORIGIN_MM, Volume


@dataclass(frozen=True)
class Placement:
    """The LPS pose of a reconstruction grid (and which piece of a long scan it is)."""

    origin_lps: tuple[float, float, float]   # LPS mm (x, y, z) of the centre of voxel (0, 0, 0)
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # 3x3, row-major
    piece: int = 0                            # sub-volume of a long scan (preprocess.split_axial)
    n_pieces: int = 1

    def __post_init__(self):
        object.__setattr__(self, "origin_lps", tuple(float(v) for v in self.origin_lps))
        object.__setattr__(self, "direction", tuple(float(v) for v in np.asarray(self.direction).ravel()))
        if len(self.origin_lps) != 3 or len(self.direction) != 9 or not all(
                math.isfinite(v) for v in (*self.origin_lps, *self.direction)):
            raise InputError("a placement needs a finite LPS origin (3 numbers) and direction (9 numbers)")
        if max(abs(v) for v in self.origin_lps) > MAX_ORIGIN_MM:
            raise InputError(f"a placement origin of {self.origin_lps} mm lies beyond {MAX_ORIGIN_MM:g} mm: "
                             "a corrupt file, not a patient position")
        m = self.matrix
        if not np.allclose(m.T @ m, np.eye(3), atol=1e-3):
            raise InputError("a placement direction must be orthonormal")

    @property
    def matrix(self) -> np.ndarray:
        """The 3x3 direction (float64)."""
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    @classmethod
    def scanner(cls, geometry: Geometry) -> "Placement":
        """No patient: the scanner frame itself, the grid centred at ``geometry.volume_offset``."""
        origin_zyx = np.asarray(geometry.volume_offset) - (np.asarray(geometry.volume_shape) - 1) / 2 \
            * np.asarray(geometry.volume_spacing)
        return cls(tuple(origin_zyx[::-1]))

    def regrid(self, old: Geometry, new: Geometry) -> "Placement":
        """The placement of ``new``'s grid, which has the same centre as ``old``'s (``with_grid``,
        another resolution over the same extent, or another extent around the same centre): the
        first voxel centre moves by ``(n - 1)/2 s - (n' - 1)/2 s'`` mm along each grid axis."""
        shift_zyx = [(n - 1) / 2 * s - (m - 1) / 2 * t for n, s, m, t in
                     zip(old.volume_shape, old.volume_spacing, new.volume_shape, new.volume_spacing)]
        origin = np.asarray(self.origin_lps) + self.matrix @ np.asarray(shift_zyx[::-1])
        return Placement(tuple(origin), self.direction, self.piece, self.n_pieces)

    def to_volume(self, array01, geometry: Geometry, units: str = "normalized") -> Volume:
        """A [0, 1] array over ``geometry``'s grid extent as a placed :class:`Volume`.

        The array may have another shape than the geometry's grid (``--resolution``): it then covers
        the same box with spacing ``extent / shape``. ``units``: 'normalized' or 'hu' (the window's
        inverse mapping, :func:`~deepsparse_core.data.hu.to_units`).
        """
        if hasattr(array01, "detach"):  # a torch tensor
            array01 = array01.detach().cpu().numpy()
        array = np.asarray(array01)
        grid = geometry if tuple(array.shape) == geometry.volume_shape else geometry.with_grid(array.shape)
        placed = self.regrid(geometry, grid)
        return Volume(to_units(array, geometry.hu_window, units), grid.volume_spacing, placed.origin_lps,
                      placed.matrix)

    def to_dict(self) -> dict:
        return {"origin_lps": list(self.origin_lps), "direction": list(self.direction),
                "piece": self.piece, "n_pieces": self.n_pieces}

    @classmethod
    def from_dict(cls, d, source="the input") -> "Placement | None":
        """A placement from its dict (None stays None); InputError naming ``source`` when corrupt."""
        if d is None:
            return None
        corrupt = InputError(f"{source} has a corrupt placement: it needs origin_lps (3 numbers) and "
                             "direction (9 numbers)")
        number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
        ok = isinstance(d, dict) and all(isinstance(d.get(key), list) and all(map(number, d[key]))
                                         for key in ("origin_lps", "direction"))
        pieces = [d.get(k, default) for k, default in (("piece", 0), ("n_pieces", 1))] if ok else []
        if not ok or not all(isinstance(v, int) and not isinstance(v, bool) for v in pieces):
            raise corrupt
        try:  # the lengths, finiteness and ranges are the constructor's checks
            return cls(tuple(d["origin_lps"]), tuple(d["direction"]), *pieces)
        except InputError as exc:
            raise InputError(f"{source} has a corrupt placement: {exc}") from None


__all__ = ["Placement"]
