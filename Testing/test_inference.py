"""DiCE inference (DiceReconstructor) and the bounded data-consistency refinement: tiny model, tiny grids."""

import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch

from deepsparse_core import inference
from deepsparse_core.data.projections_file import ProjectionData
from deepsparse_core.errors import GeometryError, InputError
from deepsparse_core.inference import DiceReconstructor, chunk_size_for, get_reconstructor
from deepsparse_core.model import DiCE, DiceConfig
from deepsparse_core.model.model_file import save_model
from deepsparse_core.physics.data_consistency import (CORRECTION_THRESHOLD, CORRECTION_TV, DC_METHOD, OUTPUT_TV, PLAIN,
                                                      apply_correction, dc_box, garrote, projection_residual, refine)
from deepsparse_core.physics.geometry import Geometry, uniform_angles
from deepsparse_core.physics.projector import forward_project
from deepsparse_core.physics.tv import tv_denoise
from deepsparse_core.progress import Cancelled
from deepsparse_core.reconstruct import reconstruct

VIEWS = 6


pytestmark = pytest.mark.usefixtures("one_thread")


def small_geometry(n_views=VIEWS, **changes) -> Geometry:
    g = Geometry(dso=400.0, dsd=600.0, detector_shape=(32, 32), detector_spacing=(4.8, 4.8),
                 volume_shape=(16, 16, 16), volume_spacing=(6.0, 6.0, 6.0), angles=uniform_angles(n_views),
                 name="test-scanner")
    return dataclasses.replace(g, **changes)


def ball(g: Geometry) -> torch.Tensor:
    """A [0, 1] test object: a 0.6 ball with a 1.0 off-centre insert."""
    pts = g.voxel_centres()
    r = pts.norm(dim=-1)
    insert = (pts - torch.tensor([15.0, -10.0, 5.0])).norm(dim=-1) < 12
    return torch.where(insert, 1.0, torch.where(r < 40, 0.6, 0.0)).float()


def scan(g: Geometry) -> ProjectionData:
    return ProjectionData(forward_project(ball(g), g), g)


def tiny_model(denoise=False) -> DiCE:
    torch.manual_seed(0)  # sigmoid output: untrained values spread around 0.5, so comparisons are not all zeros
    return DiCE(DiceConfig.tiny(denoise=denoise, output_activation="sigmoid")).eval()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    return save_model(path, tiny_model(), small_geometry())


@pytest.fixture(scope="module")
def reconstructor(model_file):
    return DiceReconstructor(model_file, device="cpu")


@pytest.fixture(scope="module")
def data():
    return scan(small_geometry())


@pytest.fixture(scope="module")
def plain(reconstructor, data):
    """The default reconstruction of ``data`` (chunk size from the free memory)."""
    return reconstructor.reconstruct(data)


# ---------------------------------------------------------------------------- output
def test_output_on_the_data_grid_in_unit_range(plain):
    vol = plain
    assert vol.shape == (16, 16, 16) and vol.dtype == torch.float32 and vol.device.type == "cpu"
    assert float(vol.min()) >= 0.0 and float(vol.max()) <= 1.0
    assert float(vol.std()) > 1e-3  # not a constant


def test_voxels_equal_model_reconstruct_on_default_and_custom_grids(reconstructor, data, plain):
    model, p = reconstructor.model, data.projections[None]
    torch.testing.assert_close(plain, model.predict_volume(p, data.geometry)[0], rtol=0, atol=1e-6)
    shape = (20, 24, 18)  # another grid over the same physical extent
    vol = reconstructor.reconstruct(data, resolution=shape)
    assert vol.shape == shape
    expected = model.predict_volume(p, data.geometry.with_grid(shape))[0]
    torch.testing.assert_close(vol, expected, rtol=0, atol=1e-6)


def test_chunk_size_does_not_change_the_result(reconstructor, data, plain):
    small = reconstructor.reconstruct(data, chunk_size=1000)
    large = reconstructor.reconstruct(data, chunk_size=1 << 20)
    torch.testing.assert_close(small, plain, rtol=0, atol=1e-6)
    torch.testing.assert_close(large, plain, rtol=0, atol=1e-6)


def test_a_model_in_training_keeps_its_mode_and_gets_eval_results(reconstructor, data, plain):
    model = reconstructor.model
    model.train()
    try:
        torch.testing.assert_close(DiceReconstructor(model, "cpu").reconstruct(data), plain, rtol=0, atol=1e-6)
        assert model.training
    finally:
        model.eval()


def test_hu_units_use_the_data_window(reconstructor, data, plain):
    hu = reconstructor.reconstruct(data, units="hu")
    torch.testing.assert_close(hu, plain * 2000.0 - 1000.0, rtol=0, atol=1e-3)
    with pytest.raises(InputError, match="units"):
        reconstructor.reconstruct(data, units="kelvin")


def test_bad_resolution_is_an_input_error(reconstructor, data):
    with pytest.raises(InputError, match="resolution"):
        reconstructor.reconstruct(data, resolution=(16, 16))


# ---------------------------------------------------------------------------- progress, cancel, memory
class Recorder:
    def __init__(self):
        self.calls, self.units = [], []

    def update(self, n=1, **fields):
        self.calls.append(fields)
        self.units.append(n)


def test_progress_reports_every_chunk(reconstructor, data):
    bar = Recorder()
    reconstructor.reconstruct(data, progress=bar, chunk_size=1000, data_consistency=1)
    assert len(bar.calls) == 1 + 5 + 1
    assert sum(bar.units) == reconstructor.steps(data, chunk_size=1000, data_consistency=1) == 1 + 5 + 1
    assert [c["stage"] for c in bar.calls] == ["encode"] + ["decode"] * 5 + ["data consistency"]
    assert bar.calls[-2]["points"] == 16 ** 3


def test_data_consistency_passes_weigh_in_the_progress_total(reconstructor, data):
    """Issue 17: the ETA covers the passes: each counts DC_PASS_COST of the decoding's chunks (a linear
    ETA over equal steps said 3.6 s left with 34 s to go)."""
    from deepsparse_core.inference import DC_PASS_COST, dc_pass_weight

    bar = Recorder()
    reconstructor.reconstruct(data, progress=bar, chunk_size=64, data_consistency=3)  # 64 chunks of 16^3
    weight = dc_pass_weight(64)
    assert weight == round(DC_PASS_COST * 64) > 1
    assert bar.units == [1] + [1] * 64 + [weight] * 3
    assert sum(bar.units) == reconstructor.steps(data, chunk_size=64, data_consistency=3)


def test_cancel_stops_between_chunks(reconstructor, data):
    bar, asked = Recorder(), []

    def cancel():
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(Cancelled):
        reconstructor.reconstruct(data, progress=bar, cancel=cancel, chunk_size=500)
    assert 1 <= len(bar.calls) < reconstructor.steps(data, chunk_size=500)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_dice_on_cuda_matches_the_cpu(model_file, data, monkeypatch):
    """The same model and scan on the GPU: the point MLP runs under bfloat16 autocast there (about 3
    significant digits), everything else in float32 (TF32 off here: a training run may have turned it
    on, and it could flip a codebook choice), so the volumes agree to a few 1e-3."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cpu = np.asarray(DiceReconstructor(model_file, "cpu").reconstruct(data, resolution=16), dtype=np.float64)
    gpu = np.asarray(DiceReconstructor(model_file, "cuda").reconstruct(data, resolution=16), dtype=np.float64)
    assert gpu.shape == cpu.shape == (16, 16, 16)
    assert np.abs(gpu - cpu).max() < 0.02 and np.abs(gpu - cpu).mean() < 0.005


def test_chunk_size_follows_free_memory():
    cfg = DiceConfig.paper()
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    sizes = [chunk_size_for(cfg, 6, gpu, free_bytes=gib * 1024 ** 3) for gib in (0.001, 1, 4, 16, 1000)]
    assert sizes == sorted(sizes) and sizes[0] == inference._MIN_CHUNK and sizes[-1] == inference._GPU_MAX_CHUNK
    assert sizes[1] < sizes[2] < sizes[3]
    assert chunk_size_for(cfg, 6, cpu, free_bytes=1000 * 1024 ** 3) == chunk_size_for(cfg, 6, cpu, 10 ** 15)
    assert chunk_size_for(cfg, 200, gpu, 4 * 1024 ** 3) < chunk_size_for(cfg, 6, gpu, 4 * 1024 ** 3)  # more views
    assert inference.available_memory(cpu) > 0


def test_model_file_is_loaded_once_and_reused(model_file, data, monkeypatch):
    import deepsparse_core.model.model_file as mf

    loads = []
    real = mf.load_model
    monkeypatch.setattr(mf, "load_model", lambda *a, **k: loads.append(1) or real(*a, **k))
    monkeypatch.setattr(inference, "_CACHE", {})
    first = get_reconstructor(model_file, "cpu")
    first.reconstruct(data, resolution=8)
    assert get_reconstructor(model_file, "cpu") is first and len(loads) == 1
    out = reconstruct(data, "dice", device="cpu", resolution=8, model=model_file)
    assert out.shape == (8, 8, 8) and len(loads) == 1


# ---------------------------------------------------------------------------- errors and warnings
def test_step2_model_rejects_another_view_count(tmp_path, monkeypatch):
    monkeypatch.setattr(inference, "MODELS_DIR", tmp_path / "none")   # the hint must not depend on bundled files
    path = save_model(tmp_path / "six.safetensors", tiny_model(denoise=True), small_geometry(), n_views=6)
    rec = DiceReconstructor(path, "cpu")
    assert rec.reconstruct(scan(small_geometry(6)), resolution=8).shape == (8, 8, 8)
    with pytest.raises(InputError, match="finetuned for 6 views, got 8: use .*8 views"):
        rec.reconstruct(scan(small_geometry(8)))


def test_detector_not_a_multiple_of_the_downsampling(reconstructor):
    g = small_geometry(detector_shape=(30, 36), detector_spacing=(5.12, 4.27))
    with pytest.raises(InputError, match="multiples of 8.*crop them to 24 x 32 or pad them to 32 x 40"):
        reconstructor.reconstruct(ProjectionData(torch.zeros(VIEWS, 30, 36), g))


def test_geometry_far_from_training_is_an_error_naming_it(reconstructor):
    far = small_geometry(detector_spacing=(12.0, 12.0))  # isocentre pitch x2.5
    with pytest.raises(GeometryError, match="'test-scanner'.*detector pixel at the isocentre.*factor 2.50"):
        reconstructor.reconstruct(scan(far))
    wide = small_geometry(volume_spacing=(15.0, 15.0, 15.0))  # field of view x2.5
    with pytest.raises(GeometryError, match="grid extent"):
        reconstructor.reconstruct(scan(wide))
    lenient = DiceReconstructor(reconstructor.model, "cpu", meta=reconstructor.meta, geometry_tolerance=math.inf)
    with pytest.warns(UserWarning, match="differs from the model's training geometry"):
        lenient.check(scan(far))


def test_moderately_different_geometry_only_warns(reconstructor, data):
    near = small_geometry(detector_spacing=(7.2, 7.2))  # x1.5: allowed, with a warning
    with pytest.warns(UserWarning, match=r"training geometry 'test-scanner' \(DSO 400 mm.*factor 1.50"):
        reconstructor.check(scan(near))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reconstructor.check(data)  # the training geometry: silent


def test_other_hu_window_is_rescaled_to_the_model_units(reconstructor, data, plain):
    wide = dataclasses.replace(data.geometry, hu_window=(-1000.0, 3000.0))  # normalized values halve
    with pytest.warns(UserWarning, match="rescaled from HU window"):
        vol = reconstructor.reconstruct(ProjectionData(data.projections / 2, wide))
    torch.testing.assert_close(vol, plain / 2, rtol=0, atol=1e-5)


def test_projections_in_wrong_units_warn(reconstructor, data):
    with pytest.warns(UserWarning, match="metres or intensities"):
        reconstructor.check(ProjectionData(data.projections / 1000, data.geometry))


def test_corrupt_or_foreign_model_files_are_input_errors(tmp_path):
    from safetensors.torch import save_file

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(InputError):
        DiceReconstructor(bad, "cpu")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(InputError, match="not a DeepSparse DiCE model"):
        DiceReconstructor(foreign, "cpu")
    with pytest.raises(InputError, match="not found"):
        get_reconstructor(tmp_path / "missing.safetensors", "cpu")


def test_bundled_models_are_found_by_view_count(tmp_path, monkeypatch, model_file):
    monkeypatch.setattr(inference, "MODELS_DIR", tmp_path)
    data = scan(small_geometry(8))
    assert inference.bundled_model_path(8) is None
    with pytest.raises(InputError, match="no bundled DiCE model is installed for 8 views"):
        inference.default_model_for(data)
    (tmp_path / "dice_6views.safetensors").write_bytes(model_file.read_bytes())
    assert inference.bundled_model_path(6) == tmp_path / "dice_6views.safetensors"
    with pytest.raises(InputError, match=r"bundled: 6 views"):
        inference.default_model_for(data)
    assert inference.default_model_for(scan(small_geometry(6))) == tmp_path / "dice_6views.safetensors"


def test_a_model_trained_over_a_view_range_serves_every_count_in_it(tmp_path, monkeypatch):
    monkeypatch.setattr(inference, "MODELS_DIR", tmp_path)
    save_model(tmp_path / "dice_6-10views.safetensors", tiny_model(), small_geometry(),
               card={"views": {"min": 6, "max": 10}, "inference": {"data_consistency": 3}})
    assert inference.bundled_view_counts() == [6, 7, 8, 9, 10]
    assert inference.bundled_model_path(8) == tmp_path / "dice_6-10views.safetensors"
    assert inference.bundled_model_path(11) is None
    with pytest.raises(InputError, match=r"bundled: 6-10 views"):
        inference.default_model_for(scan(small_geometry(12)))
    # a model made for exactly 8 views wins over the range; a step-2 model serves its n_views only
    save_model(tmp_path / "dice_8views.safetensors", tiny_model(), small_geometry(), n_views=8)
    assert inference.bundled_model_path(8) == tmp_path / "dice_8views.safetensors"
    assert inference.bundled_model_path(7) == tmp_path / "dice_6-10views.safetensors"
    rec = DiceReconstructor(tmp_path / "dice_6-10views.safetensors", "cpu")
    assert rec.view_range == (6, 10) and rec.recommended_data_consistency == 3
    data = scan(small_geometry(6))
    assert rec.steps(data, data_consistency=None) == rec.steps(data, data_consistency=3)
    with pytest.warns(UserWarning, match="trained for 6-10 views, got 12"):
        rec.reconstruct(scan(small_geometry(12)), data_consistency=0)


# ---------------------------------------------------------------------------- data consistency
def residual(volume, data) -> float:
    return projection_residual(volume, data.projections, data.geometry.with_resolution(tuple(volume.shape)))


@pytest.mark.parametrize("views_per_subset", [1, VIEWS])
def test_data_consistency_lowers_the_residual_within_the_bound(views_per_subset):
    g = small_geometry()
    data = scan(g)
    start = (0.7 * ball(g) + 0.15 * torch.rand(g.volume_shape, generator=torch.Generator().manual_seed(0)))
    start = start.clamp(0, 1)
    before = residual(start, data)
    out = refine(start, data.projections, data.geometry, iterations=3, max_change=0.1, views_per_subset=views_per_subset,
                 **PLAIN)
    after = residual(out, data)
    assert after < 0.8 * before
    assert float((out - start).abs().max()) <= 0.1 + 1e-6
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float((out - start).abs().max()) > 0.05  # the bound is reached, not vacuous
    more = refine(start, data.projections, data.geometry, iterations=6, max_change=0.1,
                  views_per_subset=views_per_subset, **PLAIN)
    assert residual(more, data) <= after + 1e-4


def test_data_consistency_filters_its_correction_by_default():
    """The default is x = TV_v(x0 + G_t(TV_w(x_K - x0))) inside the box, from the plain passes' x_K."""
    g = small_geometry()
    data = scan(g)
    start = (0.7 * ball(g) + 0.15 * torch.rand(g.volume_shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    plain = refine(start, data.projections, data.geometry, iterations=3, **PLAIN)
    default = refine(start, data.projections, data.geometry, iterations=3)
    explicit = refine(start, data.projections, data.geometry, iterations=3, correction_tv=CORRECTION_TV,
                      correction_threshold=CORRECTION_THRESHOLD, output_tv=OUTPUT_TV)
    assert min(CORRECTION_TV, CORRECTION_THRESHOLD, OUTPUT_TV) > 0 and torch.equal(default, explicit)
    assert DC_METHOD == {"correction_tv": CORRECTION_TV, "correction_threshold": CORRECTION_THRESHOLD,
                         "output_tv": OUTPUT_TV} and set(PLAIN) == set(DC_METHOD) and not any(PLAIN.values())
    lo, hi = (start - 0.1).clamp(0, 1), (start + 0.1).clamp(0, 1)
    kept = garrote(tv_denoise(plain - start, CORRECTION_TV), CORRECTION_THRESHOLD)
    expected = tv_denoise((start + kept).clamp(lo, hi), OUTPUT_TV).clamp(lo, hi)
    assert torch.allclose(default, expected, atol=1e-6)
    tv_only = refine(start, data.projections, data.geometry, iterations=3, correction_tv=CORRECTION_TV,
                     correction_threshold=0, output_tv=0)
    assert torch.allclose(tv_only, (start + tv_denoise(plain - start, CORRECTION_TV)).clamp(lo, hi), atol=1e-6)
    tv = lambda x: float(sum(x.diff(dim=a).abs().sum() for a in range(3)))  # noqa: E731
    assert tv(tv_only - start) < 0.8 * tv(plain - start)        # the correction is smoother
    garroted = refine(start, data.projections, data.geometry, iterations=3, correction_tv=CORRECTION_TV,
                      correction_threshold=CORRECTION_THRESHOLD, output_tv=0)
    small, smaller = (tv_only - start).abs(), (garroted - start).abs()
    assert torch.all(smaller <= small + 1e-6) and int((smaller > 0).sum()) < int((small > 0).sum())  # thresholded
    assert tv(default) < tv(garroted)                              # the final TV smooths the result
    assert not torch.allclose(default, tv_only, atol=1e-4)
    assert float((default - start).abs().max()) <= 0.1 + 1e-6 and 0 <= float(default.min()) <= float(default.max()) <= 1
    assert residual(default, data) < 0.9 * residual(start, data)  # and still pulls towards the data


def test_garrote_against_its_formula():
    """d - t^2 / d where |d| > t, else 0; sign kept, never larger, continuous at t, t = 0 the identity."""
    t = 0.01
    x = torch.tensor([-0.5, -0.03, -0.01, -0.004, 0.0, 0.006, 0.01, 0.0100001, 0.02, 0.3], dtype=torch.float64)
    want = [v - t * t / v if abs(v) > t else 0.0 for v in x.tolist()]
    got = garrote(x, t)
    assert got.tolist() == pytest.approx(want, abs=1e-15)
    assert torch.all(got.abs() <= x.abs()) and torch.all(got * x >= 0)
    assert abs(float(garrote(torch.tensor([t * (1 + 1e-6)], dtype=torch.float64), t))) < 1e-7
    assert torch.equal(garrote(x, 0.0), x)
    assert float(garrote(torch.tensor([0.5]), t)) == pytest.approx(0.5 - 2e-4)   # a large value keeps nearly all
    with pytest.raises(InputError, match="garrote"):
        garrote(x, -0.01)


def test_apply_correction_keeps_every_voxel_in_its_box():
    """dc_box is x0 +- r inside [0, 1]; apply_correction clamps start + d to it, before and after the final TV."""
    x0 = torch.tensor([0.0, 0.05, 0.5, 0.5, 0.95, 1.0]).reshape(1, 1, 6)
    lo, hi = dc_box(x0, 0.1)
    assert lo.flatten().tolist() == pytest.approx([0.0, 0.0, 0.4, 0.4, 0.85, 0.9])
    assert hi.flatten().tolist() == pytest.approx([0.1, 0.15, 0.6, 0.6, 1.0, 1.0])
    d = torch.tensor([-0.3, 0.05, 0.3, -0.02, 0.3, -0.05]).reshape(1, 1, 6)
    got = apply_correction(x0, d, (lo, hi))
    assert got.flatten().tolist() == pytest.approx([0.0, 0.1, 0.6, 0.48, 1.0, 0.95])
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(8, 8, 8, generator=g)
    d = 0.3 * torch.randn(8, 8, 8, generator=g)
    lo, hi = dc_box(x0, 0.1)
    x0_copy, d_copy = x0.clone(), d.clone()
    smooth = apply_correction(x0, d, (lo, hi), output_tv=0.05)
    assert torch.equal(x0, x0_copy) and torch.equal(d, d_copy)     # the inputs are left alone
    assert torch.all(smooth >= lo) and torch.all(smooth <= hi)
    denoised = tv_denoise((x0 + d).clamp(lo, hi), 0.05)
    assert torch.any(denoised < lo) or torch.any(denoised > hi)   # the TV leaves the box: the second clamp matters
    assert torch.allclose(smooth, denoised.clamp(lo, hi))
    assert not torch.allclose(smooth, apply_correction(x0, d, (lo, hi)))


def test_data_consistency_on_a_coarser_grid():
    """coarsen=2 runs the passes on a grid half as fine over the same extent: the 2x2x2 block means of
    the start, the correction resampled back, the same box, and still a pull towards the data."""
    from deepsparse_core.physics.data_consistency import _resample

    g = small_geometry()
    data = scan(g)
    x = torch.rand(g.volume_shape, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(_resample(x, tuple(n // 2 for n in g.volume_shape)),
                          torch.nn.functional.avg_pool3d(x[None, None], 2)[0, 0], atol=1e-6)
    start = (0.8 * ball(g)).clamp(0, 1)           # a smooth error: the ball 20 % too dark
    plain = refine(start, data.projections, data.geometry, iterations=3, **PLAIN)
    coarse = refine(start, data.projections, data.geometry, iterations=3, coarsen=2, **PLAIN)
    assert coarse.shape == start.shape
    assert float((coarse - start).abs().max()) <= 0.1 + 1e-6 and 0 <= float(coarse.min()) <= float(coarse.max()) <= 1
    assert residual(coarse, data) < 0.7 * residual(start, data)
    assert residual(plain, data) < residual(coarse, data)   # the fine grid fits the data better, as it should
    assert not torch.equal(coarse, plain)
    both = refine(start, data.projections, data.geometry, iterations=3, coarsen=2)   # with the default TV
    assert residual(both, data) < 0.7 * residual(start, data)
    # the 32^2 detector was binned to 16^2 for the passes; a 31^2 one cannot be and is used as it is
    odd = small_geometry(detector_shape=(31, 31), detector_spacing=(4.8 * 32 / 31,) * 2)
    odd_data = scan(odd)
    unbinned = refine(start, odd_data.projections, odd_data.geometry, iterations=3, coarsen=2, **PLAIN)
    assert residual(unbinned, odd_data) < 0.7 * residual(start, odd_data)
    assert not torch.allclose(unbinned, coarse, atol=1e-3)


def test_data_consistency_bins_the_detector_with_the_grid(monkeypatch):
    """The coarse passes see the 2x2 block means of the projections on a detector of twice the pitch
    (same extent), i.e. what the coarse grid can resolve."""
    from deepsparse_core.physics import data_consistency

    g = small_geometry()
    data = scan(g)
    seen = {}
    real = data_consistency.sart

    def spy(projections, geometry, *args, **kw):
        seen.update(projections=projections, geometry=geometry)
        return real(projections, geometry, *args, **kw)

    monkeypatch.setattr(data_consistency, "sart", spy)
    refine(ball(g), data.projections, data.geometry, iterations=1, coarsen=2)
    assert seen["geometry"].detector_shape == (16, 16) and seen["geometry"].volume_shape == (8, 8, 8)
    assert seen["geometry"].detector_extent == pytest.approx(g.detector_extent)
    assert seen["geometry"].volume_extent == pytest.approx(g.volume_extent)
    p = data.projections
    assert torch.allclose(seen["projections"][:, 1, 2], p[:, 2:4, 4:6].mean(dim=(1, 2)), atol=1e-6)


def test_data_consistency_inside_reconstruct_stays_near_the_network_output(reconstructor, data):
    plain = reconstructor.reconstruct(data, resolution=12)
    refined = reconstructor.reconstruct(data, resolution=12, data_consistency=2)
    assert refined.shape == (12, 12, 12)
    assert float((refined - plain).abs().max()) <= 0.1 + 1e-6
    assert residual(refined, data) < residual(plain, data)


def test_data_consistency_rejects_bad_parameters(data):
    with pytest.raises(InputError):
        refine(torch.zeros(16, 16, 16), data.projections, data.geometry, relaxation=2.5)
    with pytest.raises(InputError):
        refine(torch.zeros(16, 16), data.projections, data.geometry)
    for bad in ({"correction_tv": -0.01}, {"correction_threshold": -0.01}, {"output_tv": float("nan")}):
        with pytest.raises(InputError, match=f"needs {next(iter(bad))} >= 0, got"):
            refine(torch.zeros(16, 16, 16), data.projections, data.geometry, **bad)
    for coarsen in (0, 1.5, True):
        with pytest.raises(InputError, match="coarsen"):
            refine(torch.zeros(16, 16, 16), data.projections, data.geometry, coarsen=coarsen)
