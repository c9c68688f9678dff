"""Image-quality metrics for reconstructed volumes: PSNR, SSIM (3D) and pixel-domain VIF.

Volumes are (nz, ny, nx) arrays (numpy or torch, any device) of normalized attenuation in [0, 1]
(see docs/conventions.md). As the DeepSparse authors evaluate (their released ``evaluate.py``):
the prediction is clipped to [0, 1], the ground truth is used as is (it must already lie in
[0, 1]), and the data range is 1. All computations run in float64 on the device of ``gt``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from ..errors import InputError

# SSIM constants, scikit-image defaults (Wang et al. 2004): uniform 7^3 window, K1, K2,
# sample covariance (N / (N - 1)).
SSIM_WIN_SIZE = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# VIFp constants of the MATLAB reference ``vifp_mscale`` (Sheikh & Bovik 2006).
VIF_SIGMA_NSQ = 2.0       # variance of the visual noise, in 8-bit grey levels squared
VIF_SCALES = 4
VIF_EPS = 1e-10
VIF_GREY_LEVELS = 255.0   # [0, 1] is mapped to [0, 255], the range sigma_nsq was chosen for

_GT_TOLERANCE = 1e-6      # float slack allowed when checking that gt lies in [0, 1]


def _to_float64(x, device=None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    return t.detach().to(device=device if device is not None else t.device, dtype=torch.float64)


def _prepare(pred, gt) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a (pred, gt) pair; return float64 tensors on gt's device, pred clipped to [0, 1]."""
    gt_t = _to_float64(gt)
    pred_t = _to_float64(pred, gt_t.device)
    if gt_t.dim() != 3 or pred_t.dim() != 3:
        raise InputError(f"metrics need 3D volumes (nz, ny, nx), got pred {tuple(pred_t.shape)} "
                         f"and gt {tuple(gt_t.shape)}")
    if pred_t.shape != gt_t.shape:
        raise InputError(f"pred and gt shapes differ: {tuple(pred_t.shape)} vs {tuple(gt_t.shape)}")
    for name, t in (("pred", pred_t), ("gt", gt_t)):
        if not bool(torch.isfinite(t).all()):
            raise InputError(f"{name} contains NaN or infinite values")
    lo, hi = float(gt_t.min()), float(gt_t.max())
    if lo < -_GT_TOLERANCE or hi > 1 + _GT_TOLERANCE:
        raise InputError(f"gt must be normalized to [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return pred_t.clamp(0.0, 1.0), gt_t


def psnr(pred, gt) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(1 / MSE)`` (data range 1; inf if equal).

    Same value as ``skimage.metrics.peak_signal_noise_ratio(gt, clip(pred, 0, 1), data_range=1)``.
    """
    return _psnr(*_prepare(pred, gt))


def _psnr(pred: torch.Tensor, gt: torch.Tensor) -> float:
    mse = float(torch.mean((pred - gt) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def _box_sum_valid(x: torch.Tensor, size: int) -> torch.Tensor:
    """Sums over every ``size``^3 window inside x (C, D, H, W); 'valid' region, size - 1 shorter.

    Separable: one sliding-window sum per axis (``unfold``), so 3 * size additions per voxel.
    """
    for axis in (1, 2, 3):
        x = x.unfold(axis, size, 1).sum(-1)
    return x


def ssim(pred, gt, slab: int = 64) -> float:
    """Mean structural similarity of two 3D volumes, data range 1.

    Exactly scikit-image's default ``structural_similarity(gt, pred, data_range=1)``: uniform
    7x7x7 window, K1 = 0.01, K2 = 0.03, sample covariance (N / (N - 1)), mean over the voxels whose
    window lies inside the volume (skimage crops a 3-voxel border, so its padding never matters).
    Note that skimage computes in the inputs' float type; this always computes in float64.

    ``data_range=1`` matters: earlier sparse-view CT papers computed SSIM without it, and older
    scikit-image then used the float dtype range [-1, 1], i.e. data_range = 2 whatever the data;
    that quadruples C1 and C2 and inflates SSIM. The DeepSparse authors, like this function, use 1.

    The volume is processed in z-slabs of ``slab`` output slices to bound memory (under 1 GB of
    float64 temporaries per slab of 256^2 slices).
    """
    return _ssim(*_prepare(pred, gt), slab=slab)


def _ssim(pred_t: torch.Tensor, gt_t: torch.Tensor, slab: int = 64) -> float:
    w = SSIM_WIN_SIZE
    if min(gt_t.shape) < w:
        raise InputError(f"SSIM needs every dimension >= {w}, got shape {tuple(gt_t.shape)}")
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2          # (K * data_range)^2 with data_range = 1
    n_win = w ** 3
    cov_norm = n_win / (n_win - 1)
    n_out = gt_t.shape[0] - w + 1
    total = 0.0
    for z0 in range(0, n_out, slab):
        z1 = min(z0 + slab, n_out)
        x = gt_t[z0:z1 + w - 1]
        y = pred_t[z0:z1 + w - 1]
        moments = _box_sum_valid(torch.stack([x, y, x * x, y * y, x * y]), w).div_(n_win)
        ux, uy, uxx, uyy, uxy = moments.unbind(0)
        ux_uy = ux * uy
        ux2_uy2 = ux.square_().add_(uy.square_())                      # ux^2 + uy^2
        numer = ux_uy.mul(2).add_(c1).mul_(uxy.sub_(ux_uy).mul_(2 * cov_norm).add_(c2))
        denom = uxx.add_(uyy).sub_(ux2_uy2).mul_(cov_norm).add_(c2).mul_(ux2_uy2.add_(c1))
        total += float(numer.div_(denom).sum())
    return total / (n_out * (gt_t.shape[1] - w + 1) * (gt_t.shape[2] - w + 1))


def _gaussian_band(n_in: int, size: int, sigma: float, device) -> torch.Tensor:
    """(n_in - size + 1, n_in) matrix applying a normalized 1D Gaussian of ``size`` taps, 'valid'.

    Its separable use (rows, then columns) is MATLAB's ``filter2(fspecial('gaussian', size, sigma),
    x, 'valid')``: fspecial's 2D window is the outer product of this normalized 1D window.
    Filtering as a banded matrix product runs on BLAS, much faster in float64 than conv2d.
    """
    r = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-r * r / (2 * sigma * sigma))
    g = g / g.sum()
    n_out = n_in - size + 1
    band = torch.zeros(n_out, n_in, dtype=torch.float64, device=device)
    rows = torch.arange(n_out, device=device)
    for k in range(size):
        band[rows, rows + k] = g[k]
    return band


def _filter_valid(x: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Gaussian-filter the last two axes of x (..., H, W), keeping the 'valid' region only."""
    rows = _gaussian_band(x.shape[-2], size, sigma, x.device)
    cols = _gaussian_band(x.shape[-1], size, sigma, x.device)
    return rows @ x @ cols.T


def _vif_window(scale: int) -> tuple[int, float]:
    size = 2 ** (VIF_SCALES - scale + 1) + 1      # 17, 9, 5, 3 for scales 1..4
    return size, size / 5.0


def _vif_min_size() -> int:
    """Smallest in-plane size for which every VIF scale keeps at least one pixel."""
    for n in range(3, 10_000):
        m = n
        for scale in range(1, VIF_SCALES + 1):
            size, _ = _vif_window(scale)
            if scale > 1:
                m = (m - size + 1 + 1) // 2     # 'valid' filter then keep every other pixel
            if m - size + 1 < 1:
                break
        else:
            return n
    raise AssertionError("unreachable")


def _vif_num_den(ref: torch.Tensor, dist: torch.Tensor) -> tuple[float, float]:
    """Sums of the VIFp numerator and denominator over images (B, H, W) and all scales.

    Computes what Sheikh & Bovik's MATLAB ``vifp_mscale`` computes, batched over the B images.
    """
    x = torch.stack([ref, dist])                   # (2, B, H, W): ref, distorted
    num = den = 0.0
    for scale in range(1, VIF_SCALES + 1):
        size, sigma = _vif_window(scale)
        if scale > 1:
            # low-pass, decimate; contiguous because matmul is slow on strided input
            x = _filter_valid(x, size, sigma)[..., ::2, ::2].contiguous()
        r, d = x.unbind(0)
        moments = torch.stack([r, d, r * r, d * d, r * d])
        mu1, mu2, e11, e22, e12 = _filter_valid(moments, size, sigma)
        sigma1_sq = (e11 - mu1 * mu1).clamp_min_(0.0)
        sigma2_sq = (e22 - mu2 * mu2).clamp_min_(0.0)
        sigma12 = e12.sub_(mu1 * mu2)
        gain = sigma12 / (sigma1_sq + VIF_EPS)
        sv_sq = (sigma2_sq - gain * sigma12).clamp_min_(VIF_EPS)
        # MATLAB's masking, condensed: where sigma1_sq < eps, sigma2_sq < eps or gain < 0 it sets
        # gain = 0 (numerator term log10(1) = 0), and where sigma1_sq < eps also sigma1_sq = 0.
        informative = (sigma1_sq >= VIF_EPS) & (sigma2_sq >= VIF_EPS) & (gain > 0)
        sigma1_sq = torch.where(sigma1_sq >= VIF_EPS, sigma1_sq, 0.0)
        info = gain.square_().mul_(sigma1_sq).div_(sv_sq.add_(VIF_SIGMA_NSQ))
        info = torch.where(informative, info, 0.0)
        num += float(torch.log1p(info).sum()) / math.log(10)
        den += float(torch.log1p(sigma1_sq.div_(VIF_SIGMA_NSQ)).sum()) / math.log(10)
    return num, den


def vif(pred, gt, slices_per_chunk: int = 32) -> float:
    """Pixel-domain visual information fidelity (VIFp) of a 3D volume, over its axial slices.

    VIFp (Sheikh & Bovik 2006) as in their MATLAB ``vifp_mscale``: 4 scales, Gaussian
    windows of 17, 9, 5, 3 pixels with sigma = size / 5, 'valid' filtering (no padding), the
    image low-passed with the scale's window and decimated by 2 before scales 2-4, visual noise
    variance sigma_nsq = 2. Volumes in [0, 1] are first scaled to [0, 255], the grey-level range
    for which sigma_nsq = 2 was chosen (as ``piq.vif_p`` does); without it the noise term would
    swamp every local variance. (The popular Python port by Izvorski filters with scipy's
    'reflect' borders instead of 'valid', so it differs slightly near slice edges.)

    3D aggregation: each axial slice ``vol[k]`` (z = axis 0) is one image; the numerator and the
    denominator log-sums are added over **all slices and all scales**, and VIF is their single
    ratio. Slices with more detail thus weigh more, and flat slices (den = 0) cannot make the
    result undefined unless the whole volume is flat, in which case NaN is returned.

    VIF(gt, gt) = 1; noise and blur lower it towards 0; contrast enhancement can exceed 1.
    """
    return _vif(*_prepare(pred, gt), slices_per_chunk=slices_per_chunk)


def _vif(pred_t: torch.Tensor, gt_t: torch.Tensor, slices_per_chunk: int = 32) -> float:
    if min(gt_t.shape[1:]) < _vif_min_size():
        side = _vif_min_size()
        raise InputError(f"VIF needs slices of at least {side}x{side} pixels, "
                         f"got {tuple(gt_t.shape[1:])}")
    num = den = 0.0
    for k in range(0, gt_t.shape[0], slices_per_chunk):
        n, d = _vif_num_den(gt_t[k:k + slices_per_chunk] * VIF_GREY_LEVELS,
                            pred_t[k:k + slices_per_chunk] * VIF_GREY_LEVELS)
        num, den = num + n, den + d
    return num / den if den > 0 else math.nan


def evaluate(pred, gt) -> dict[str, float]:
    """PSNR (dB), SSIM and VIF of reconstruction ``pred`` against ``gt``, (nz, ny, nx) in [0, 1].

    VIF is NaN (with a warning) for slices smaller than its 4-scale pyramid needs (41 x 41).
    """
    pred_t, gt_t = _prepare(pred, gt)
    if min(gt_t.shape[1:]) < _vif_min_size():
        warnings.warn(f"VIF needs slices of at least {_vif_min_size()} pixels a side; reported as NaN")
        v = math.nan
    else:
        v = _vif(pred_t, gt_t)
    return dict(psnr=_psnr(pred_t, gt_t), ssim=_ssim(pred_t, gt_t), vif=v)
