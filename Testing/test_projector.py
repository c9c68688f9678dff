"""Torch Joseph projector: adjointness, analytic line integrals and agreement with RTK."""

import math

import numpy as np
import pytest
import torch

from deepsparse_core.errors import GeometryError
from deepsparse_core.physics.backends import rtk
from deepsparse_core.physics.geometry import Geometry, uniform_angles
from deepsparse_core.physics.projector import back_project, back_project_voxel_driven, forward_project, ray_lengths

needs_rtk = pytest.mark.skipif(not rtk.available(), reason="itk-rtk not installed")


def odd_geometry(**kw):
    """Anisotropic, off-centre, with a view at exactly 45 degrees (main-axis ties)."""
    d = dict(dso=800, dsd=1200, detector_shape=(48, 40), detector_spacing=(4, 5), volume_shape=(24, 28, 32),
             volume_spacing=(5, 4.5, 4), angles=[0.1, 0.9, 1.7, 2.5, 3.8, math.pi / 4],
             volume_offset=(3, -5, 7), detector_offset=(4, -6))
    d.update(kw)
    return Geometry(**d)


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def test_back_projection_is_the_exact_adjoint():
    g = odd_geometry()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(g.volume_shape, dtype=torch.float64, generator=gen)
    y = torch.rand(g.n_views, *g.detector_shape, dtype=torch.float64, generator=gen)
    lhs = (forward_project(x, g) * y).sum()
    rhs = (x * back_project(y, g)).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-12)


def test_gradients_of_both_operators_are_each_others_adjoint():
    g = odd_geometry(volume_shape=(6, 7, 8), detector_shape=(10, 9), detector_spacing=(20, 25), angles=[0.2, 2.0])
    x = torch.rand(g.volume_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: forward_project(v, g), (x,), eps=1e-6, atol=1e-6)
    y = torch.rand(g.n_views, *g.detector_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: back_project(p, g), (y,), eps=1e-6, atol=1e-6)


def test_batched_projection_equals_one_by_one():
    g = odd_geometry()
    x = torch.rand(2, *g.volume_shape)
    batched = forward_project(x, g)
    assert torch.allclose(batched[1], forward_project(x[1], g), atol=1e-5)


def test_uniform_ball_projects_to_its_chord_lengths():
    """A 2 mm voxelized ball of radius 50 mm: line integrals ~ analytic chord lengths."""
    n, s, r = 64, 2.0, 50.0
    g = Geometry(dso=600, dsd=1000, detector_shape=(40, 40), detector_spacing=(4, 4), volume_shape=(n, n, n),
                 volume_spacing=(s, s, s), angles=[0.0, 0.7, 2.2])
    c = g.voxel_centres(dtype=torch.float64)
    # supersampled occupancy for a smooth voxelization
    offs = torch.tensor([-0.25, 0.25], dtype=torch.float64) * s
    occ = torch.zeros(n, n, n, dtype=torch.float64)
    for dx in offs:
        for dy in offs:
            for dz in offs:
                occ += ((c + torch.stack([dx, dy, dz])).norm(dim=-1) <= r).double() / 8
    proj = forward_project(occ, g)
    src = g.source_positions(torch.float64)
    centre, e_u, e_v = g.detector_frames(torch.float64)
    v, u = g.pixel_centres(torch.float64)
    pix = centre[:, None, None] + u[None, None, :, None] * e_u[:, None, None] + v[None, :, None, None] * e_v[:, None, None]
    d = pix - src[:, None, None]
    d = d / d.norm(dim=-1, keepdim=True)
    closest = (src[:, None, None] * d).sum(-1)                    # distance along ray to the closest point
    dist2 = (src[:, None, None] ** 2).sum(-1) - closest ** 2      # squared distance ray-centre
    chord = 2 * torch.sqrt((r ** 2 - dist2).clamp_min(0))
    inner = chord > 40                                             # away from the blurred rim
    assert inner.sum() > 100
    err = (proj - chord)[inner].abs() / chord[inner]
    print(float(err.mean()), float(err.max()))
    assert err.mean() < 0.005 and err.max() < 0.03  # rim voxels of the ball are partial


def test_voxel_driven_back_projection_of_ones_counts_views():
    g = Geometry.preset("fast", 4).with_grid((16, 16, 16))
    ones = torch.ones(g.n_views, *g.detector_shape)
    bp = back_project_voxel_driven(ones, g, fdk_weighting=False)
    assert torch.allclose(bp[6:10, 6:10, 6:10], torch.full((4, 4, 4), 4.0), atol=1e-5)


def test_shape_mismatches_are_errors():
    g = odd_geometry()
    with pytest.raises(GeometryError, match="does not match"):
        forward_project(torch.zeros(3, 3, 3), g)
    with pytest.raises(GeometryError, match="2 projections but the geometry has"):
        back_project(torch.zeros(2, *g.detector_shape), g)
    with pytest.raises(GeometryError, match="detector is"):
        back_project_voxel_driven(torch.zeros(g.n_views, 3, 3), g)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_cuda_matches_cpu():
    g = odd_geometry()
    x = torch.rand(g.volume_shape)
    assert rel(forward_project(x.cuda(), g).cpu(), forward_project(x, g)) < 1e-5


# ---------------------------------------------------------------------------- RTK
@needs_rtk
@pytest.mark.rtk
def test_forward_projection_matches_rtk_joseph_on_a_random_volume():
    g = odd_geometry()
    v = np.random.default_rng(0).random(g.volume_shape).astype(np.float32)
    assert rel(forward_project(torch.from_numpy(v), g).numpy(), rtk.forward_project(v, g)) < 1e-5


@needs_rtk
@pytest.mark.rtk
def test_back_projection_matches_rtk_joseph():
    g = odd_geometry()
    p = np.random.default_rng(1).random((g.n_views, *g.detector_shape)).astype(np.float32)
    assert rel(back_project(torch.from_numpy(p), g).numpy(), rtk.back_project(p, g)) < 1e-4


@needs_rtk
@pytest.mark.rtk
@pytest.mark.samples
def test_forward_projection_matches_rtk_on_the_real_chest_ct(sample_file):
    from deepsparse_core.data.simulate import prepare_reference
    from deepsparse_core.data.volume_io import read_volume

    g = Geometry.preset("fast", 8).with_grid((64, 64, 64))
    g = Geometry(**{**g.to_dict(), "detector_shape": (96, 96), "detector_spacing": (6.4, 6.4)})
    ct, _ = prepare_reference(read_volume(sample_file("chest")), g)
    ours = forward_project(torch.from_numpy(ct), g).numpy()
    assert rel(ours, rtk.forward_project(ct, g)) < 0.01
    assert rel(ours, rtk.forward_project(ct, g)) < 1e-5  # in fact identical up to float rounding


def test_ray_lengths_through_the_grid():
    g = Geometry(dso=1000, dsd=1500, detector_shape=(1, 1), detector_spacing=(1, 1), volume_shape=(8, 8, 10),
                 volume_spacing=(1, 1, 1), angles=uniform_angles(1))
    # the central ray runs along x through 10 voxel centres: RTK's Joseph integrates between the
    # first and last centre, i.e. 9 mm
    assert float(ray_lengths(g)[0, 0, 0]) == pytest.approx(9.0)
