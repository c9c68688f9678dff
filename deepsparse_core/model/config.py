"""DiCE hyper-parameters: one JSON-able dataclass, saved next to every checkpoint.

Numbers marked "released" come from the authors' code (github.com/xmed-lab/DeepSparse,
``configs/pretrain.yaml`` and ``code/models/*``); "paper" from the DeepSparse paper, Sec. 3.2-3.5.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class DiceConfig:
    # --- 2D projection encoder (downsampling only)
    n_scales: int = 4                 # S, paper Sec. 3.5 (released: stem + encoder.n_layer = 3 stages)
    base_channels: int = 16           # stem width, released encoder.base_ch
    channel_growth: int = 2           # channels double at each stage, released encoder.ch_up
    projection_scale: float = 200.0   # mm; encoder input = line integral (attenuation [0,1] x mm) / this.
    #   Released datasets/base.py feeds TIGRE projections computed in metres divided by 0.2,
    #   i.e. (attenuation x m) / 0.2 = (attenuation x mm) / 200. A 300 mm body at ~0.5 gives ~0.75.
    # --- low-resolution 3D features and cross-scale 3D decoder
    volume_resolution: int = 32       # M, M^3 back-projection grid, paper Sec. 3.5 / released lr_res
    codebook_size: int = 512          # entries per scale, released codebook.n_embed
    codebook_decay: float = 0.99      # EMA decay, released ema_codebook.py
    codebook_eps: float = 1e-5        # Laplace smoothing of cluster sizes, released ema_codebook.py
    commitment_weight: float = 1.0    # beta of the commitment loss, released EMAVectorQuantizer(beta=1)
    decoder_channels: int = 128       # output channels of every 3D decoder stage, released decoder.out_ch
    decoder_blocks: int = 2           # residual 3x3x3 blocks per stage, released decoder.n_conv3d
    # --- denoise layers (finetuning step 2)
    denoise: bool = False             # build the per-scale denoise layers
    denoise_blocks: int = 2           # residual units per denoise layer, released StackedResConv(n_layer=2)
    # --- point decoder
    point_hidden: tuple[int, ...] = (184, 128, 64, 16)  # released: [368 // 2] + point_decoder.mlp_chs[:-1]
    output_activation: str = "identity"  # "identity" (train MSE on [0,1], clamp at inference) or "sigmoid"
    negative_slope: float = 0.01      # LeakyReLU slope (torch default, as released)

    def __post_init__(self):
        object.__setattr__(self, "point_hidden", tuple(int(h) for h in self.point_hidden))
        if self.n_scales < 1 or self.volume_resolution < 1 or self.codebook_size < 1:
            raise InputError("n_scales, volume_resolution and codebook_size must be >= 1")
        if self.output_activation not in ("identity", "sigmoid"):
            raise InputError(f"output_activation must be 'identity' or 'sigmoid', got {self.output_activation!r}")
        if not self.point_hidden:
            raise InputError("point_hidden needs at least one hidden layer")

    # ------------------------------------------------------------------ derived
    @property
    def scale_channels(self) -> tuple[int, ...]:
        """Channels of the 2D feature maps, finest scale (stride 1) first: 16, 32, 64, 128 in the paper."""
        return tuple(self.base_channels * self.channel_growth ** s for s in range(self.n_scales))

    @property
    def point_features(self) -> int:
        """Width of a point's feature vector: all 2D scales + the 3D volume (368 in the paper)."""
        return sum(self.scale_channels) + self.decoder_channels

    @property
    def downsampling(self) -> int:
        """Total 2D downsampling factor; detector sizes must be multiples of it."""
        return 2 ** (self.n_scales - 1)

    # ------------------------------------------------------------------ presets
    @classmethod
    def paper(cls, **overrides) -> "DiceConfig":
        """Full size, as pretrained in the paper: 6.0 M parameters, 7.2 M with the denoise layers."""
        return cls(**overrides)

    @classmethod
    def small(cls, **overrides) -> "DiceConfig":
        """Half-width model for the bundled CPU checkpoint (same depth, M = 32, 512-entry codebooks)."""
        d = dict(base_channels=8, decoder_channels=64, point_hidden=(92, 64, 32, 16))  # 92 = 184 // 2
        return cls(**{**d, **overrides})

    @classmethod
    def tiny(cls, **overrides) -> "DiceConfig":
        """For unit tests only: 4-wide encoder, M = 8, 32-entry codebooks."""
        d = dict(base_channels=4, decoder_channels=16, volume_resolution=8, codebook_size=32,
                 decoder_blocks=1, denoise_blocks=1, point_hidden=(38, 16, 8))
        return cls(**{**d, **overrides})

    # ------------------------------------------------------------------ (de)serialization
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "DiceConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown DiCE config fields: {', '.join(sorted(unknown))}")
        return cls(**d)
