"""PSNR / SSIM / VIF: agreement with scikit-image and with an independent scipy VIFp, invariants."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from deepsparse_core.errors import InputError
from deepsparse_core.evaluation.metrics import evaluate, psnr, ssim, vif


def _phantom(shape, seed=0):
    """Smooth random texture plus a few sharp-edged blobs, normalized to [0, 1]."""
    rng = np.random.default_rng(seed)
    vol = ndimage.gaussian_filter(rng.random(shape), 2.0)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    vol = vol + 0.3 * (xx ** 2 + yy ** 2 + 0.5 * zz ** 2 < 0.4) + 0.2 * (np.abs(xx - 0.3) < 0.1)
    return (vol - vol.min()) / (vol.max() - vol.min())


def _noisy(gt, sigma, seed=1):
    return gt + sigma * np.random.default_rng(seed).standard_normal(gt.shape)


@pytest.fixture(scope="module")
def gt():
    return _phantom((18, 48, 44))


# ---------------------------------------------------------------- PSNR / SSIM vs scikit-image

@pytest.mark.parametrize("sigma", [0.01, 0.1, 0.4])
def test_psnr_matches_skimage_on_clipped_prediction(gt, sigma):
    pred = _noisy(gt, sigma)                       # goes outside [0, 1]: must be clipped
    ref = peak_signal_noise_ratio(gt, np.clip(pred, 0, 1), data_range=1)
    assert psnr(pred, gt) == pytest.approx(ref, rel=1e-5)


def test_psnr_of_identical_volumes_is_infinite(gt):
    assert psnr(gt, gt) == math.inf


@pytest.mark.parametrize("shape", [(18, 48, 44), (7, 7, 7), (9, 30, 11)])
@pytest.mark.parametrize("sigma", [0.02, 0.3])
def test_ssim_matches_skimage_default_window(shape, sigma):
    gt = _phantom(shape, seed=3)
    pred = _noisy(gt, sigma)
    ref = structural_similarity(gt, np.clip(pred, 0, 1), data_range=1)
    assert ssim(pred, gt) == pytest.approx(ref, rel=1e-5)


def test_ssim_slabs_do_not_change_the_value(gt):
    pred = _noisy(gt, 0.05)
    assert ssim(pred, gt, slab=3) == pytest.approx(ssim(pred, gt), rel=1e-12)


def test_ssim_of_identical_volumes_is_one(gt):
    assert ssim(gt, gt) == pytest.approx(1.0, abs=1e-12)


def test_skimage_with_a_wider_data_range_inflates_ssim(gt):
    # The pitfall the docstring warns about: a larger data_range (e.g. the [-1, 1] float range)
    # raises SSIM for the same reconstruction.
    pred = np.clip(_noisy(gt, 0.1), 0, 1)
    assert structural_similarity(gt, pred, data_range=2) > ssim(pred, gt) + 0.01


def test_metrics_accept_torch_tensors_and_float32(gt):
    pred = _noisy(gt, 0.05)
    expected = evaluate(pred, gt)
    got = evaluate(torch.from_numpy(pred), torch.from_numpy(gt))
    assert got == pytest.approx(expected, rel=1e-12)
    got32 = evaluate(pred.astype(np.float32), torch.from_numpy(gt.astype(np.float32)))
    assert got32 == pytest.approx(expected, rel=1e-4)


# ---------------------------------------------------------------- VIF

_EPS = 1e-10


def _vifp_reference_2d(ref, dist, sigma_nsq=2.0):
    """Independent VIFp of one 2D image pair (numerator, denominator), following the MATLAB
    vifp_mscale literally, with scipy Gaussian filters of the same N x N windows ('valid' part)."""
    ref, dist = ref * 255.0, dist * 255.0
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        r = (n - 1) // 2

        def filt(x):
            return ndimage.gaussian_filter(x, n / 5.0, radius=r, mode="constant")[r:-r, r:-r]

        if scale > 1:
            ref, dist = filt(ref)[::2, ::2], filt(dist)[::2, ::2]
        mu1, mu2 = filt(ref), filt(dist)
        sigma1_sq = filt(ref * ref) - mu1 * mu1
        sigma2_sq = filt(dist * dist) - mu2 * mu2
        sigma12 = filt(ref * dist) - mu1 * mu2
        sigma1_sq[sigma1_sq < 0] = 0
        sigma2_sq[sigma2_sq < 0] = 0
        g = sigma12 / (sigma1_sq + _EPS)
        sv_sq = sigma2_sq - g * sigma12
        g[sigma1_sq < _EPS] = 0
        sv_sq[sigma1_sq < _EPS] = sigma2_sq[sigma1_sq < _EPS]
        sigma1_sq[sigma1_sq < _EPS] = 0
        g[sigma2_sq < _EPS] = 0
        sv_sq[sigma2_sq < _EPS] = 0
        sv_sq[g < 0] = sigma2_sq[g < 0]
        g[g < 0] = 0
        sv_sq[sv_sq <= _EPS] = _EPS
        num += np.sum(np.log10(1 + g * g * sigma1_sq / (sv_sq + sigma_nsq)))
        den += np.sum(np.log10(1 + sigma1_sq / sigma_nsq))
    return num, den


@pytest.mark.parametrize("degrade", ["noise", "blur", "contrast"])
def test_vif_matches_independent_scipy_vifp_on_a_2d_image(degrade):
    image = _phantom((1, 96, 80), seed=5)
    if degrade == "noise":
        dist = np.clip(_noisy(image, 0.05), 0, 1)
    elif degrade == "blur":
        dist = ndimage.gaussian_filter(image, (0, 1.5, 1.5))
    else:
        dist = 0.5 + 0.7 * (image - 0.5)
    num, den = _vifp_reference_2d(image[0], dist[0])
    assert vif(dist, image) == pytest.approx(num / den, rel=1e-4)


def test_vif_sums_numerator_and_denominator_over_all_slices():
    gt = _phantom((4, 48, 48), seed=6)
    gt[1] = 0.25 * gt[1]                              # slices with different detail levels
    pred = np.clip(_noisy(gt, 0.08), 0, 1)
    parts = [_vifp_reference_2d(gt[k], pred[k]) for k in range(4)]
    pooled = sum(p[0] for p in parts) / sum(p[1] for p in parts)
    mean_of_ratios = np.mean([p[0] / p[1] for p in parts])
    assert vif(pred, gt) == pytest.approx(pooled, rel=1e-4)
    assert abs(pooled - mean_of_ratios) > 1e-3        # the two conventions are distinguishable


def test_vif_of_identical_volumes_is_one(gt):
    assert vif(gt, gt) == pytest.approx(1.0, abs=1e-6)


def test_vif_decreases_monotonically_with_noise_and_blur(gt):
    noise = [vif(_noisy(gt, s), gt) for s in (0.005, 0.02, 0.05, 0.15, 0.4)]
    blur = [vif(ndimage.gaussian_filter(gt, s), gt) for s in (0.5, 1.0, 2.0, 4.0)]
    for values in (noise, blur):
        assert all(0.0 <= v <= 1.0 for v in values)
        assert all(a > b for a, b in zip(values, values[1:]))


def test_vif_of_flat_ground_truth_is_nan():
    assert math.isnan(vif(np.full((2, 48, 48), 0.3), np.full((2, 48, 48), 0.5)))


def test_evaluate_returns_the_three_metrics(gt):
    pred = _noisy(gt, 0.05)
    out = evaluate(pred, gt)
    assert set(out) == {"psnr", "ssim", "vif"}
    assert out == pytest.approx(dict(psnr=psnr(pred, gt), ssim=ssim(pred, gt), vif=vif(pred, gt)))


# ---------------------------------------------------------------- bad input

def _bad_inputs():
    good = _phantom((8, 48, 48))
    nan_pred = good.copy()
    nan_pred[0, 0, 0] = np.nan
    inf_gt = good.copy()
    inf_gt[1, 2, 3] = np.inf
    return {
        "shape mismatch": (good[:, :, :40], good),
        "NaN in pred": (nan_pred, good),
        "inf in gt": (good, inf_gt),
        "2D": (good[0], good[0]),
        "4D": (good[None], good[None]),
        "gt not normalized": (good, good * 1000 - 1000),
        "too small for SSIM": (good[:5], good[:5]),
    }


def test_small_slices_have_no_vif_but_still_psnr_and_ssim():
    good = np.random.default_rng(0).random((8, 30, 30))
    with pytest.raises(InputError, match="VIF needs slices"):
        vif(good, good)
    with pytest.warns(UserWarning, match="VIF"):
        scores = evaluate(good, good)
    assert np.isnan(scores["vif"]) and scores["ssim"] == pytest.approx(1.0)


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_bad_input_raises_one_line_input_error(case):
    pred, gt = _bad_inputs()[case]
    with pytest.raises(InputError) as info:
        evaluate(pred, gt)
    assert "\n" not in str(info.value) and str(info.value)
