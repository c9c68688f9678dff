"""FDK: agreement with RTK's FDK (weights, ramp filters, Parker, offsets) and behaviour on phantoms."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from deepsparse_core.errors import GeometryError, InputError
from deepsparse_core.evaluation.metrics import psnr
from deepsparse_core.physics.backends import rtk
from deepsparse_core.physics.fdk import (FILTERS, angular_weights, displaced_detector_weights, fdk, parker_weights,
                                         ramp_filter, scan_weighting)
from deepsparse_core.physics.geometry import Geometry
from deepsparse_core.physics.projector import forward_project

from baseline_case import N, needs_rtk, rel_l2, shepp_logan, small_geometry


def fully_seen(geometry: Geometry, margin_px: float = 1.0) -> np.ndarray:
    """Voxels projecting at least ``margin_px`` inside the outer pixel centres in every view."""
    uv = geometry.project_points(geometry.voxel_centres(dtype=torch.float64))
    (nv, nu), (dv, du) = geometry.detector_shape, geometry.detector_spacing
    inside = (uv[..., 0].abs() <= ((nu - 1) / 2 - margin_px) * du) \
        & (uv[..., 1].abs() <= ((nv - 1) / 2 - margin_px) * dv)
    return inside.all(dim=0).numpy()


@pytest.fixture(scope="module")
def phantom() -> torch.Tensor:
    return shepp_logan()


@pytest.fixture(scope="module")
def full_scan(phantom):
    g = small_geometry(60, 360)
    return g, forward_project(phantom, g)


# ------------------------------------------------------------------------------------- RTK


def _rtk_image_type():
    import itk
    return itk, itk.Image[itk.F, 3]


@needs_rtk
@pytest.mark.rtk
@pytest.mark.parametrize("n_views, arc, short_scan, filter", [
    (60, 360, None, "ram-lak"),   # full scan
    (6, 180, True, "ram-lak"),    # DeepSparse setting with RTK's Parker weights (arc below pi + fan)
    (6, 180, False, "ram-lak"),   # same without Parker (RTK's half-gap weights)
    (6, 180, None, "ram-lak"),    # the default there: uniform 2 pi / V weights on both backends (issue 17)
    (24, 220, None, "hann"),      # proper short scan, Hann window
])
def test_fdk_matches_rtk(phantom, n_views, arc, short_scan, filter):
    g = small_geometry(n_views, arc)
    p = forward_project(phantom, g)
    ours = fdk(p, g, filter=filter, short_scan=short_scan).numpy()
    ref = rtk.fdk(p.numpy(), g, filter=filter, short_scan=short_scan)
    assert rel_l2(ours, ref) < 1e-5
    assert abs(psnr(ours, phantom) - psnr(ref, phantom)) < 0.01


def test_short_arcs_get_uniform_weights_that_beat_both_rtk_weightings(phantom):
    """6 views over [0, 180) cover 150 degrees: Parker is undefined there (see scan_weighting)."""
    g = small_geometry(6, 180)
    assert scan_weighting(g) == "uniform"
    assert scan_weighting(small_geometry(24, 220)) == "parker"
    assert scan_weighting(small_geometry(8, 360)) == "rtk" and scan_weighting(small_geometry(60, 360)) == "rtk"
    p = forward_project(phantom, g)
    default = psnr(fdk(p, g).numpy(), phantom)
    assert default > psnr(fdk(p, g, short_scan=False).numpy(), phantom) + 1.0
    assert default > psnr(fdk(p, g, short_scan=True).numpy(), phantom) + 1.0


@needs_rtk
@pytest.mark.rtk
def test_fdk_matches_rtk_with_small_detector_offsets(phantom):
    g = small_geometry(30, 360, detector_offset=(7.0, 2.9))
    p = forward_project(phantom, g)
    assert rel_l2(fdk(p, g).numpy(), rtk.fdk(p.numpy(), g)) < 1e-5


@needs_rtk
@pytest.mark.rtk
def test_fdk_matches_rtk_on_displaced_detector(phantom):
    """Half-fan scan: RTK's rtkfdk pipeline (displaced-detector weights, then FDK) where both see."""
    itk, image = _rtk_image_type()
    g = small_geometry(40, 360, detector_offset=(0.0, 150.0))
    p = forward_project(phantom, g)
    displaced = itk.RTK.DisplacedDetectorImageFilter[image].New()
    displaced.SetInput(rtk.projections_to_itk(p.numpy(), g))
    displaced.SetGeometry(rtk.to_rtk_geometry(g))
    displaced.SetPadOnTruncatedSide(False)
    f = itk.RTK.FDKConeBeamReconstructionFilter[image].New()
    f.SetInput(0, rtk.volume_to_itk(np.zeros(g.volume_shape), g))
    f.SetInput(1, displaced.GetOutput())
    f.SetGeometry(rtk.to_rtk_geometry(g))
    f.Update()
    ref = rtk.volume_from_itk(f.GetOutput())
    seen = fully_seen(g)
    assert seen.mean() > 0.3
    assert rel_l2(fdk(p, g).numpy()[seen], ref[seen]) < 1e-5


@needs_rtk
@pytest.mark.rtk
@pytest.mark.parametrize("filter, cutoff, setter", [
    ("ram-lak", 1.0, None), ("ram-lak", 0.6, "SetRamLakCutFrequency"),
    ("hann", 1.0, "SetHannCutFrequency"), ("hann", 0.5, "SetHannCutFrequency"),
    ("cosine", 0.8, "SetCosineCutFrequency"), ("shepp-logan", 0.7, "SetSheppLoganCutFrequency"),
])
def test_ramp_filter_matches_rtk(filter, cutoff, setter):
    itk, image = _rtk_image_type()
    g = dataclasses.replace(small_geometry(3, 360), detector_shape=(5, 37), detector_spacing=(3.0, 2.5))
    p = np.random.default_rng(0).random((3, 5, 37)).astype(np.float32)
    f = itk.RTK.FFTRampImageFilter[image, image, itk.D].New()
    f.SetInput(rtk.projections_to_itk(p, g))
    if setter:
        getattr(f, setter)(cutoff)
    f.Update()
    ref = itk.array_from_image(f.GetOutput())
    assert rel_l2(ramp_filter(torch.from_numpy(p), 2.5, filter, cutoff).numpy(), ref) < 1e-6


@needs_rtk
@pytest.mark.rtk
@pytest.mark.parametrize("angles", [
    np.radians(np.arange(24) * 220 / 24),           # proper short scan
    np.radians(np.arange(6) * 30.0 + 100.0),        # 180 degrees: too short, RTK still weights
    np.radians([10.0, 40.0, 55.0, 120.0, 200.0]),   # irregular
    np.radians(np.arange(36) * 10.0),               # full circle: no weighting
])
def test_parker_weights_match_rtk(angles):
    itk, image = _rtk_image_type()
    g = small_geometry(1, 360, detector_offset=(0.0, 3.0)).with_angles(angles)
    f = itk.RTK.ParkerShortScanImageFilter[image].New()
    f.SetInput(rtk.projections_to_itk(np.ones((g.n_views, *g.detector_shape), np.float32), g))
    f.SetGeometry(rtk.to_rtk_geometry(g))
    f.Update()
    ref = itk.array_from_image(f.GetOutput())
    ours = parker_weights(g)
    ours = np.ones(ref.shape) if ours is None else np.broadcast_to(ours[:, None, :], ref.shape)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


# ------------------------------------------------------------------------------ invariants


@pytest.fixture(scope="module")
def uniform_ball():
    """A ball of 0.02 / mm, radius 70 mm, and its projections over a full circle."""
    g = small_geometry(48, 360)
    r = torch.sqrt(sum(c ** 2 for c in g.voxel_centres().unbind(-1)))
    return g, forward_project((r <= 70.0).float() * 0.02, g)


@pytest.mark.parametrize("filter", FILTERS)
def test_fdk_recovers_the_value_of_a_uniform_ball(uniform_ball, filter):
    g, p = uniform_ball
    rec = fdk(p, g, filter=filter)
    centre = rec[N // 2 - 5:N // 2 + 5, N // 2 - 5:N // 2 + 5, N // 2 - 5:N // 2 + 5]
    assert abs(float(centre.mean()) / 0.02 - 1) < 0.03


def test_fdk_is_linear(full_scan):
    g, p = full_scan
    q = torch.roll(p, 5, dims=-1)
    np.testing.assert_allclose(fdk(2 * p - 0.5 * q, g).numpy(),
                               (2 * fdk(p, g) - 0.5 * fdk(q, g)).numpy(), atol=1e-5)


def test_smoother_windows_give_smoother_volumes(full_scan):
    """Ram-Lak >= Shepp-Logan >= cosine >= Hann window at every frequency: less detail, in order."""
    g, p = full_scan

    def high_frequency(vol):
        return float(torch.linalg.vector_norm(vol[1:-1, 1:-1, 1:-1] * 6 - sum(
            vol.roll(s, d)[1:-1, 1:-1, 1:-1] for d in range(3) for s in (1, -1))))

    energy = [high_frequency(fdk(p, g, filter=f)) for f in ("ram-lak", "shepp-logan", "cosine", "hann")]
    assert energy == sorted(energy, reverse=True)
    assert energy[-1] < 0.6 * energy[0]
    assert high_frequency(fdk(p, g, filter="hann", cutoff=0.5)) < energy[-1]


def test_short_scan_is_detected_from_the_arc(phantom):
    g = small_geometry(24, 260)
    assert scan_weighting(g) == "parker"
    p = forward_project(phantom, g)
    auto = fdk(p, g)
    torch.testing.assert_close(auto, fdk(p, g, short_scan=True))
    assert rel_l2(auto.numpy(), fdk(p, g, short_scan=False).numpy()) > 0.05


def test_angular_weights_are_half_the_neighbour_spacing():
    g = small_geometry(8, 360)
    np.testing.assert_allclose(angular_weights(g), 2 * math.pi / 8)
    irregular = g.with_angles([0.0, 0.1, 0.5, 3.0, 2 * math.pi + 4.0])   # last one wraps to 4.0
    w = angular_weights(irregular)
    np.testing.assert_allclose(w, [0.5 * (0.1 - 4.0 + 2 * math.pi), 0.25, 1.45, 1.75,
                                   0.5 * (2 * math.pi - 3.0)], rtol=1e-12)
    assert math.isclose(w.sum(), 2 * math.pi)


def test_displaced_detector_weights_count_every_ray_once():
    assert displaced_detector_weights(small_geometry(4, 360, detector_offset=(0.0, 2.0))) is None
    g = small_geometry(4, 360, detector_offset=(0.0, 9.6 * 16))   # shifted by a quarter detector
    w = displaced_detector_weights(g)
    u = g.pixel_centres(torch.float64)[1].numpy()
    mirrored = np.interp(-u, u, w)                                  # weight of the opposite ray
    overlap = np.abs(u) < u.max() - 5                               # columns with a mirror image
    np.testing.assert_allclose((w + mirrored)[overlap], 2.0, atol=1e-6)
    assert w.min() == 0.0 and w.max() == 2.0
    with pytest.raises(GeometryError):
        displaced_detector_weights(small_geometry(4, 360, detector_offset=(0.0, 400.0)))


def test_fdk_accepts_batches_and_arrays(full_scan):
    g, p = full_scan
    batch = fdk(torch.stack([p, 2 * p]), g)
    single = fdk(p.numpy(), g)
    torch.testing.assert_close(batch[0], single)
    torch.testing.assert_close(batch[1], 2 * single, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case, error", [
    ("views", GeometryError), ("detector", GeometryError), ("2d", InputError), ("nan", InputError),
    ("filter", InputError), ("cutoff", InputError)])
def test_fdk_rejects_bad_input(full_scan, case, error):
    g, p = full_scan
    kwargs = {}
    if case == "views":
        p = p[:-1]
    elif case == "detector":
        p = p[..., :-1]
    elif case == "2d":
        p = p[0]
    elif case == "nan":
        p = p.clone()
        p[0, 0, 0] = float("nan")
    elif case == "filter":
        kwargs["filter"] = "hamming-typo"
    else:
        kwargs["cutoff"] = 0.0
    with pytest.raises(error) as info:
        fdk(p, g, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_fdk_runs_on_the_input_device(full_scan):
    g, p = full_scan
    out = fdk(p.cuda(), g, short_scan=False)
    assert out.device.type == "cuda"
    assert rel_l2(out.cpu().numpy(), fdk(p, g, short_scan=False).numpy()) < 1e-5
