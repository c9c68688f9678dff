"""TV denoising (physics/tv.py) against scikit-image's Chambolle implementation, and its invariants."""

import numpy as np
import pytest
import torch
from skimage.restoration import denoise_tv_chambolle

from deepsparse_core.errors import InputError
from deepsparse_core.physics.tv import tv_denoise


def noisy(shape, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = np.zeros(shape)
    f[tuple(slice(s // 4, 3 * s // 4) for s in shape)] = 0.3  # a box: edges TV must keep
    return f + 0.05 * rng.standard_normal(shape)


@pytest.mark.parametrize("shape", [(9, 11, 13), (20, 17), (24, 24, 24)])
@pytest.mark.parametrize("weight, tol, iterations", [(0.01, 0.0, 25), (0.05, 2e-4, 200), (0.2, 2e-4, 200)])
def test_tv_matches_scikit_image(shape, weight, tol, iterations):
    f = noisy(shape)
    ref = denoise_tv_chambolle(f, weight=weight, eps=tol, max_num_iter=iterations)
    mine = tv_denoise(torch.from_numpy(f), weight, tol=tol, max_iterations=iterations)
    assert mine.dtype == torch.float64 and mine.shape == f.shape
    assert np.abs(mine.numpy() - ref).max() < 1e-10
    assert np.abs(ref - f).max() > 0.02  # the comparison is not between two copies of f


def test_tv_invariants():
    f = torch.from_numpy(noisy((20, 20, 20), seed=1)).float()
    u = tv_denoise(f, 0.05)
    assert abs(float(u.mean() - f.mean())) < 1e-5              # Neumann boundary: the mean is kept
    assert float(u.min()) >= float(f.min()) - 1e-6 and float(u.max()) <= float(f.max()) + 1e-6
    tv = lambda x: float(sum(x.diff(dim=a).abs().sum() for a in range(3)))  # noqa: E731 (anisotropic TV)
    assert tv(u) < 0.5 * tv(f)
    box = torch.zeros_like(f)
    box[5:15, 5:15, 5:15] = 0.3
    assert float((u - box).square().mean()) < 0.3 * float((f - box).square().mean())  # it denoises
    assert torch.equal(tv_denoise(f, 0.0), f) and tv_denoise(f, 0.0) is not f
    const = torch.full((6, 7, 8), 0.25)
    assert torch.equal(tv_denoise(const, 0.1), const)
    more = tv_denoise(f, 0.2)
    assert tv(more) < tv(u)  # a larger weight is smoother


@pytest.mark.parametrize("args", [dict(weight=-0.1), dict(weight=float("nan")), dict(weight=0.1, tol=-1),
                                  dict(weight=0.1, max_iterations=0)])
def test_tv_rejects_bad_parameters(args):
    with pytest.raises(InputError):
        tv_denoise(torch.zeros(4, 4, 4), **args)


def test_tv_rejects_degenerate_shapes():
    with pytest.raises(InputError, match="at least 2"):
        tv_denoise(torch.zeros(4, 1, 4), 0.1)
