"""Area-weighted detector resampling: line integrals stay line integrals; a model's geometry check passes."""

import dataclasses

import numpy as np
import pytest
import torch

from deepsparse_core import cli
from deepsparse_core.data.detector_resampling import (adapt_to_model, detector_like, overlap_weights,
                                                      resample_projections)
from deepsparse_core.data.projections_file import ProjectionData, load_projections
from deepsparse_core.errors import GeometryError
from deepsparse_core.inference import check_compatibility, isocentre_pitch
from deepsparse_core.physics.geometry import Geometry
from deepsparse_core.physics.projector import forward_project

pytestmark = pytest.mark.usefixtures("one_thread")


def fine_geometry(n_views=8, shape=(48, 48), spacing=(3.2, 3.2)) -> Geometry:
    """A 32^3 grid at 6.4 mm (204.8 mm) seen by a 153.6 mm detector at magnification 1.5."""
    g = Geometry.preset("fast", n_views, arc_degrees=360).with_grid((32,) * 3, (6.4,) * 3)
    return dataclasses.replace(g, detector_shape=shape, detector_spacing=spacing, detector_offset=(1.0, 7.0))


def test_overlap_weights_average_whole_pixels_and_cover_fractions():
    w = overlap_weights(6, 1.0, 3, 2.0)                       # pairs of pixels
    torch.testing.assert_close(w, torch.tensor([[.5, .5, 0, 0, 0, 0], [0, 0, .5, .5, 0, 0], [0, 0, 0, 0, .5, .5]],
                                               dtype=torch.float64))
    w = overlap_weights(5, 1.0, 2, 2.5)                       # 2.5 old pixels each: fractions
    torch.testing.assert_close(w[0], torch.tensor([.4, .4, .2, 0, 0], dtype=torch.float64))
    assert torch.allclose(overlap_weights(37, 0.7, 11, 2.3).sum(1), torch.ones(11, dtype=torch.float64))


def test_resampling_keeps_constants_integrals_and_matches_pooling():
    g = fine_geometry()
    p = torch.rand(8, 48, 48, dtype=torch.float64)
    pooled = resample_projections(p, g, (12, 16))
    torch.testing.assert_close(pooled.projections, torch.nn.functional.avg_pool2d(p, (4, 3)))
    assert pooled.geometry.detector_spacing == pytest.approx((12.8, 9.6)) and pooled.geometry.detector_offset == g.detector_offset
    odd = resample_projections(p, g, (13, 17))                # non-integer ratios: area integral conserved
    area = lambda d: d.projections.sum((1, 2)) * np.prod(d.geometry.detector_spacing)  # noqa: E731
    torch.testing.assert_close(area(odd), p.sum((1, 2)) * 3.2 * 3.2)
    torch.testing.assert_close(resample_projections(torch.full((8, 48, 48), 3.0), g, (13, 17)).projections,
                               torch.full((8, 13, 17), 3.0))


def test_resampled_fine_detector_agrees_with_a_coarse_simulation():
    g = fine_geometry(shape=(192, 192), spacing=(0.8, 0.8))
    x, y, z = g.voxel_centres().unbind(-1)
    vol = torch.exp(-(x ** 2 + (y - 10) ** 2 + z ** 2) / (2 * 40.0 ** 2))   # smooth: sampling effects small
    coarse = dataclasses.replace(g, detector_shape=(48, 48), detector_spacing=(3.2, 3.2))
    direct = forward_project(vol, coarse)
    binned = resample_projections(forward_project(vol, g), g, (48, 48)).projections
    assert float((binned - direct).norm() / direct.norm()) < 5e-3


def test_adapt_to_model_makes_the_compatibility_check_pass():
    training = Geometry.preset("fast", 1)                     # 128^2 at 4.8 mm, DSD/DSO 1.5: 3.2 mm at the isocentre
    g = dataclasses.replace(fine_geometry(6), dso=700.0, dsd=1100.0, detector_shape=(256, 256),
                            detector_spacing=(1.2, 1.2))      # a 307.2 mm panel at another magnification
    data = ProjectionData(torch.rand(6, 256, 256), g)
    with pytest.raises(GeometryError, match="too far from the model's training geometry"):
        check_compatibility(g, training)
    adapted = adapt_to_model(data, training, multiple=8)
    a = adapted.geometry
    assert check_compatibility(a, training) == []
    assert a.detector_shape == (64, 64) and all(n % 8 == 0 for n in a.detector_shape)
    assert np.allclose(a.detector_extent, g.detector_extent) and a.detector_offset == g.detector_offset
    assert np.allclose(isocentre_pitch(a), isocentre_pitch(training), rtol=0.05)
    assert a.volume_extent == training.volume_extent and a.volume_offset == g.volume_offset
    shape, spacing = detector_like(g, training, 1)                       # exact pitch rounded, extent kept
    assert shape == (61, 61) and spacing == pytest.approx((307.2 / 61,) * 2)   # 307.2 / (3.2 * 1100 / 700) = 61.1


def test_import_detector_like_fast_from_a_yaml_geometry(tmp_path):
    import SimpleITK as sitk

    fine = dataclasses.replace(Geometry.preset("fast", 4, arc_degrees=180), detector_shape=(256, 256),
                               detector_spacing=(2.4, 2.4))   # the fast preset's panel at half the pitch
    p = np.random.default_rng(0).uniform(0, 2, (4, 256, 256)).astype(np.float32)   # -log(I/I0)
    sitk.WriteImage(sitk.GetImageFromArray(p), str(tmp_path / "p.mha"))
    fine.save(tmp_path / "fine.yaml")
    out = tmp_path / "fast.safetensors"
    assert cli.main(["--progress", "none", "import", str(tmp_path / "p.mha"), "--geometry", str(tmp_path / "fine.yaml"),
                     "--line-integrals", "--detector-like", "fast", "--out", str(out)]) == 0
    data = load_projections(out)
    assert data.geometry.detector_shape == (128, 128) and data.geometry.detector_spacing == pytest.approx((4.8, 4.8))
    expected = torch.nn.functional.avg_pool2d(torch.from_numpy(p), 2) / 0.04
    torch.testing.assert_close(data.projections, expected, rtol=1e-5, atol=1e-5)
    assert check_compatibility(data.geometry, Geometry.preset("fast", 1)) == []
