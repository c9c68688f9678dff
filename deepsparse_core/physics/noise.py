"""Projection noise (paper: Poisson quantum noise, then Gaussian electronic noise).

Projections hold line integrals of the *normalized* attenuation ([0, 1] volume x mm). For a
physical photon count they are converted to real attenuation first: with the HU window
``(lo, hi)`` and ``lo = -1000`` (air), ``mu = mu_water * (hi - lo) / 1000 * value`` per mm, since
``HU = 1000 (mu - mu_water) / mu_water``. Then, per detector pixel,

    counts = Poisson(I0 * exp(-mu_line_integral)) + Normal(0, sigma_e^2)
    noisy  = -log(max(counts, 1) / I0)          (back to line integrals, then to [0, 1] x mm)

Defaults (the paper's values did not survive in our copy of its text; the authors' released
pipelines add no noise): ``I0 = 1e5`` photons per pixel and ``sigma_e = 10`` counts;
``mu_water = 0.02 / mm`` (water at ~60-70 keV). TIGRE's ``CTnoise.add`` demos use the same two
numbers on a different model (counts scaled by ``exp(-p / max p)``, so its darkest ray keeps I0/e);
ours is the physical Beer-Lambert count and harsher on long paths, so the two are not comparable.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..errors import DeepSparseError

if TYPE_CHECKING:
    import torch

MU_WATER_PER_MM = 0.02


@dataclass(frozen=True)
class NoiseModel:
    """Noise settings; ``enabled=False`` means noiseless projections."""

    enabled: bool = True
    photons: float = 1e5            # I0, incident photons per detector pixel (our default)
    electronic_sigma: float = 10.0  # Gaussian electronic noise std, photon counts (our default)
    mu_water: float = MU_WATER_PER_MM

    def __post_init__(self):
        values = (self.photons, self.electronic_sigma, self.mu_water)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise DeepSparseError("noise photons, electronic_sigma and mu_water must be finite numbers")
        if self.enabled and not (self.photons > 0 and self.electronic_sigma >= 0 and self.mu_water > 0):
            raise DeepSparseError("noise needs photons > 0, electronic_sigma >= 0 and mu_water > 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NoiseModel":
        if not isinstance(d, dict):
            raise DeepSparseError(f"noise settings must be a mapping, got {d!r}")
        try:
            return cls(**d)
        except TypeError as e:
            raise DeepSparseError(f"bad noise settings: {e}") from None


def attenuation_scale(hu_window: tuple[float, float], mu_water: float = MU_WATER_PER_MM) -> float:
    """Factor from normalized [0, 1] values to attenuation per mm (exact when the window starts at -1000 HU)."""
    lo, hi = hu_window
    return mu_water * (hi - lo) / 1000.0


def add_noise(projections: torch.Tensor, hu_window: tuple[float, float], model: NoiseModel = NoiseModel(),
              seed: int | None = 0) -> torch.Tensor:
    """Noisy copy of ``projections`` (line integrals of the [0, 1] volume, mm); seeded, device-agnostic."""
    import torch

    if not model.enabled:
        return projections.clone()
    gen = torch.Generator(device=projections.device)
    if seed is not None:
        gen.manual_seed(seed)
    else:
        gen.seed()
    scale = attenuation_scale(hu_window, model.mu_water)
    p = projections.double() * scale
    expected = model.photons * torch.exp(-p)
    counts = torch.poisson(expected, generator=gen)
    if model.electronic_sigma > 0:
        counts = counts + model.electronic_sigma * torch.randn(counts.shape, generator=gen,
                                                               dtype=counts.dtype, device=counts.device)
    noisy = -torch.log(counts.clamp_min(1.0) / model.photons)
    return (noisy / scale).to(projections.dtype)
