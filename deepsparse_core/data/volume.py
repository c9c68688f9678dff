"""The :class:`Volume` type: a 3D image that travels with its LPS geometry (numpy only).

Conventions (docs/conventions.md): arrays are ``vol[k, j, i]`` = (z, y, x), float32.
Geometry follows ITK/SimpleITK in the patient **LPS** frame:

* ``spacing`` = (sz, sy, sx) mm, in array order;
* ``origin`` = (x, y, z) LPS mm of the centre of voxel [0, 0, 0], in ITK (x, y, z) order;
* ``direction`` = 3 x 3 ITK direction matrix; column c is the LPS unit vector of index axis c
  (c = 0, 1, 2 for i, j, k, i.e. array axes x, y, z).

So voxel ``vol[k, j, i]`` sits at ``origin + direction @ (i sx, j sy, k sz)`` (LPS mm). SimpleITK is
imported only by the conversions, so the type (and the projections file that places volumes with it)
works where SimpleITK is missing. Reading and writing files: :mod:`deepsparse_core.data.volume_io`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

MAX_ORIGIN_MM = 1e6  # 1 km: a larger origin is a corrupt header, not a patient position


@dataclass
class Volume:
    """A 3D image in (z, y, x) order with its LPS geometry (see the module docstring)."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self):
        self.array = np.ascontiguousarray(self.array, dtype=np.float32)
        if self.array.ndim != 3:
            raise InputError(f"a volume must be 3D (z, y, x), got shape {self.array.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if len(self.spacing) != 3 or len(self.origin) != 3:
            raise InputError(f"spacing and origin need 3 values, got {self.spacing}, {self.origin}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.array.shape

    def index_to_lps(self, kji) -> np.ndarray:
        """LPS mm (x, y, z) of (possibly fractional) array indices ``(..., 3)`` in (k, j, i) order."""
        kji = np.asarray(kji, dtype=np.float64)
        ijk_mm = kji[..., ::-1] * np.asarray(self.spacing[::-1])
        return np.asarray(self.origin) + ijk_mm @ self.direction.T

    @property
    def centre_lps(self) -> np.ndarray:
        """LPS mm (x, y, z) of the grid centre (midpoint between the first and last voxel centres)."""
        return self.index_to_lps((np.asarray(self.shape) - 1) / 2.0)

    def with_array(self, array: np.ndarray) -> Volume:
        """Same geometry, new array of the same shape."""
        if np.shape(array) != self.shape:
            raise InputError(f"array shape {np.shape(array)} differs from volume shape {self.shape}")
        return dataclasses.replace(self, array=array)

    def to_sitk(self):
        """A SimpleITK image with the same voxels and LPS geometry."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(self.array)
        image.SetSpacing(self.spacing[::-1])
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction.flatten().tolist())
        return image

    @classmethod
    def from_sitk(cls, image) -> Volume:
        """From a scalar 3D SimpleITK image."""
        import SimpleITK as sitk

        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"expected a scalar 3D image, got {image.GetDimension()}D with "
                             f"{image.GetNumberOfComponentsPerPixel()} components per pixel")
        return cls(array=sitk.GetArrayFromImage(image),
                   spacing=image.GetSpacing()[::-1],
                   origin=image.GetOrigin(),
                   direction=np.array(image.GetDirection()).reshape(3, 3))
