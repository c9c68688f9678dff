"""Noise model: statistics of Poisson + Gaussian noise in the photon-count domain."""

import math

import pytest
import torch

from deepsparse_core.errors import DeepSparseError
from deepsparse_core.physics.noise import NoiseModel, add_noise, attenuation_scale


def test_noise_is_unbiased_with_the_expected_variance():
    window = (-1000.0, 1000.0)
    p = torch.full((200_000,), 100.0, dtype=torch.float64)  # 100 mm of water-equivalent [0,1] = 0.5
    model = NoiseModel(photons=1e5, electronic_sigma=10.0)
    noisy = add_noise(p, window, model, seed=1)
    scale = attenuation_scale(window)
    counts = 1e5 * math.exp(-100 * scale)
    # delta method: var(-log(N / I0)) = (counts + sigma^2) / counts^2, in line-integral units / scale
    expected_std = math.sqrt(counts + 100.0) / counts / scale
    # -log of a noisy count is biased upwards by var / (2 mean^2) (second-order delta method)
    bias = (counts + 100.0) / counts ** 2 / 2 / scale
    assert float(noisy.mean()) == pytest.approx(100.0 + bias, abs=4 * expected_std / math.sqrt(p.numel()))
    assert float(noisy.std()) == pytest.approx(expected_std, rel=0.02)


def test_more_photons_means_less_noise_and_disabled_means_none():
    p = torch.full((50_000,), 150.0)
    low = add_noise(p, (-1000, 1000), NoiseModel(photons=1e4), seed=0).std()
    high = add_noise(p, (-1000, 1000), NoiseModel(photons=1e6), seed=0).std()
    assert high < low / 5
    assert torch.equal(add_noise(p, (-1000, 1000), NoiseModel(enabled=False)), p)


def test_noise_is_seeded():
    p = torch.rand(4, 8, 8) * 200
    a = add_noise(p, (-1000, 1000), seed=3)
    assert torch.equal(a, add_noise(p, (-1000, 1000), seed=3))
    assert not torch.equal(a, add_noise(p, (-1000, 1000), seed=4))


def test_photon_starvation_stays_finite():
    p = torch.full((1000,), 5000.0)  # far beyond what 1e5 photons can see through
    assert torch.isfinite(add_noise(p, (-1000, 1000), seed=0)).all()


def test_bad_settings_are_rejected():
    with pytest.raises(DeepSparseError):
        NoiseModel(photons=0)
    with pytest.raises(DeepSparseError):
        NoiseModel(electronic_sigma=-1)
