"""DiCE hyper-parameters: one JSON-able dataclass, saved next to every checkpoint.

Numbers marked "released" come from the authors' code (github.com/xmed-lab/DeepSparse,
``configs/pretrain.yaml`` and ``code/models/*``); "paper" from the DeepSparse paper, Sec. 3.2-3.5.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

VIEW_POOLS = ("max", "max+mean")
MAX_WIDTH = 4096  # channels of any layer; the paper's widest is 368, 4096 already needs GBs per batch

# inclusive [lo, hi] of every integer field: refused before any layer is built (a 100-byte edit of a
# model file's metadata must not allocate 160 GB)
_INT_RANGES = {"n_scales": (1, 8), "base_channels": (1, MAX_WIDTH), "channel_growth": (1, 4),
               "volume_resolution": (1, 256), "codebook_size": (1, 65536), "decoder_channels": (1, MAX_WIDTH),
               "decoder_blocks": (0, 16), "denoise_blocks": (0, 16)}
_FLOAT_RANGES = {"projection_scale": (1e-6, 1e9), "codebook_decay": (0.0, 1.0), "codebook_eps": (0.0, 1.0),
                 "codebook_restart": (0.0, 1e9),
                 "commitment_weight": (0.0, 1e6), "negative_slope": (0.0, 1.0)}


def _check_int(value, name: str, lo: int, hi: int) -> int:
    """``value`` as an int in [lo, hi] (numpy integers accepted); InputError naming the field otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not lo <= value <= hi:
        raise InputError(f"DiCE config {name} must be a whole number in [{lo}, {hi}], got {value!r}")
    return int(value)


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
    codebook_restart: float = 0.0     # restart codes whose EMA count falls below this at a random feature
                                      # of the batch; 0 = never, as released. The count is in vectors per
                                      # step (batch x M^3, summed over DDP ranks): rescale it with those.
    commitment_weight: float = 1.0    # beta of the commitment loss, released EMAVectorQuantizer(beta=1)
    decoder_channels: int = 128       # output channels of every 3D decoder stage, released decoder.out_ch
    decoder_blocks: int = 2           # residual 3x3x3 blocks per stage, released decoder.n_conv3d
    # --- denoise layers (finetuning step 2)
    denoise: bool = False             # build the per-scale denoise layers
    denoise_blocks: int = 2           # residual units per denoise layer, released StackedResConv(n_layer=2)
    # --- point decoder
    point_hidden: tuple[int, ...] = (184, 128, 64, 16)  # released: [368 // 2] + point_decoder.mlp_chs[:-1]
    output_activation: str = "identity"  # "identity" (train MSE on [0,1], clamp at inference) or "sigmoid"
    view_pool: str = "max"            # how a point's 2D features combine its views: "max" (paper Eq. 5, as
                                      # released) or "max+mean" (also the mean over the views, appended after
                                      # the 3D feature, so a "max" model warm-starts into it unchanged)
    negative_slope: float = 0.01      # LeakyReLU slope (torch default, as released)

    def __post_init__(self):
        for name, (lo, hi) in _INT_RANGES.items():
            object.__setattr__(self, name, _check_int(getattr(self, name), name, lo, hi))
        for name, (lo, hi) in _FLOAT_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not lo <= value <= hi:
                raise InputError(f"DiCE config {name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.denoise, bool):
            raise InputError(f"DiCE config denoise must be true or false, got {self.denoise!r}")
        if isinstance(self.point_hidden, (str, bytes, dict)) or not hasattr(self.point_hidden, "__iter__"):
            raise InputError(f"DiCE config point_hidden must be a list of layer widths, got {self.point_hidden!r}")
        hidden = tuple(self.point_hidden)
        if not 1 <= len(hidden) <= 16:
            raise InputError("DiCE config point_hidden needs 1 to 16 hidden layers")
        object.__setattr__(self, "point_hidden", tuple(_check_int(h, "point_hidden", 1, MAX_WIDTH) for h in hidden))
        if self.view_pool not in VIEW_POOLS:
            raise InputError(f"DiCE config view_pool must be one of {', '.join(VIEW_POOLS)}, got {self.view_pool!r}")
        if self.output_activation not in ("identity", "sigmoid"):
            raise InputError(f"output_activation must be 'identity' or 'sigmoid', got {self.output_activation!r}")
        if max(self.scale_channels) > MAX_WIDTH or self.point_features > 4 * MAX_WIDTH:
            raise InputError(f"DiCE config is too wide: {max(self.scale_channels)} channels at the coarsest scale "
                             f"(at most {MAX_WIDTH}); lower base_channels, channel_growth or n_scales")

    # ------------------------------------------------------------------ derived
    @property
    def scale_channels(self) -> tuple[int, ...]:
        """Channels of the 2D feature maps, finest scale (stride 1) first: 16, 32, 64, 128 in the paper."""
        return tuple(self.base_channels * self.channel_growth ** s for s in range(self.n_scales))

    @property
    def point_features(self) -> int:
        """Width of a point's feature vector: all 2D scales + the 3D volume (368 in the paper), then
        all 2D scales again with ``view_pool`` "max+mean"."""
        pooled = 2 if self.view_pool == "max+mean" else 1
        return pooled * sum(self.scale_channels) + self.decoder_channels

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
        """JSON-ready fields; ``codebook_restart`` and ``view_pool`` only when not the released default,
        so files without them stay readable by versions that predate the fields."""
        d = dataclasses.asdict(self)
        if not d["codebook_restart"]:
            del d["codebook_restart"]
        if d["view_pool"] == "max":
            del d["view_pool"]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "DiceConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown DiCE config fields: {', '.join(sorted(unknown))}")
        try:
            return cls(**d)
        except TypeError as e:
            raise InputError(f"bad DiCE config: {e}") from None


PRESETS = ("paper", "small", "tiny")  # DiceConfig class methods: --config NAME


def model_config(spec: str | dict | DiceConfig) -> DiceConfig:
    """'paper' | 'small' | 'tiny' | a JSON file of DiceConfig fields (a preset name under "preset" may be
    combined with overrides) | a dict of the same | a DiceConfig."""
    if isinstance(spec, DiceConfig):
        return spec
    if isinstance(spec, str) and spec in PRESETS:
        return getattr(DiceConfig, spec)()
    if isinstance(spec, str):
        path = Path(spec)
        if not path.is_file():
            raise InputError(f"--config must be one of {', '.join(PRESETS)} or a JSON file; {spec} not found")
        try:
            spec = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"cannot parse model config {path}: {e}") from None
    if not isinstance(spec, dict):
        raise InputError("a model config file must hold a JSON object of DiceConfig fields")
    spec = dict(spec)
    preset = spec.pop("preset", "paper")
    if preset not in PRESETS:
        raise InputError(f"unknown model preset {preset!r}; choose one of {', '.join(PRESETS)}")
    base = getattr(DiceConfig, preset)().to_dict()
    unknown = set(spec) - {f.name for f in dataclasses.fields(DiceConfig)}
    if unknown:
        raise InputError(f"unknown DiCE config fields: {', '.join(sorted(unknown))}")
    try:
        return DiceConfig.from_dict({**base, **spec})
    except TypeError as e:
        raise InputError(f"bad model config: {e}") from None
