"""The small test case shared by the FDK and SART tests: a Shepp-Logan phantom on a 40^3 grid."""

import dataclasses

import numpy as np
import pytest
import torch

from deepsparse_core.data import phantoms
from deepsparse_core.data.hu import normalize_hu
from deepsparse_core.physics.backends import rtk
from deepsparse_core.physics.geometry import Geometry

needs_rtk = pytest.mark.skipif(not rtk.available(), reason="itk-rtk is not installed")

N, SPACING = 40, 5.0  # 200 mm grid: the 64 x 64 detector at 9.6 mm sees all of it in every view


def small_geometry(n_views: int, arc_degrees: float, detector_offset=(0.0, 0.0)) -> Geometry:
    g = Geometry.preset("fast", n_views, arc_degrees=arc_degrees).with_grid((N,) * 3, (SPACING,) * 3)
    return dataclasses.replace(g, detector_shape=(64, 64), detector_spacing=(9.6, 9.6),
                               detector_offset=tuple(detector_offset))


def rel_l2(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


def shepp_logan() -> torch.Tensor:
    hu = phantoms.shepp_logan_phantom((N,) * 3, spacing=(SPACING,) * 3)
    return torch.from_numpy(normalize_hu(hu).astype(np.float32))
