"""Cross-scale 3D decoder (paper Eq. 2-4, released ``model_v7.Model_mv``).

All 3D features live on the same M^3 grid (M = 32 in the paper): the scales differ in channels, not
resolution. Stages run coarsest scale first (128 channels in the paper, then 64, 32, 16); stage k
concatenates its scale's quantized features with stage k-1's output and applies a residual stack
(3x3x3 conv to 128 channels when the width changes, then 2 residual blocks).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ResidualStack
from .config import DiceConfig


class CrossScaleDecoder(nn.Module):
    def __init__(self, cfg: DiceConfig):
        super().__init__()
        out = cfg.decoder_channels
        coarse_first = cfg.scale_channels[::-1]
        self.stages = nn.ModuleList(
            ResidualStack(ch + (out if k > 0 else 0), out, cfg.decoder_blocks, dims=3, slope=cfg.negative_slope)
            for k, ch in enumerate(coarse_first))

    def forward(self, quantized: list[torch.Tensor]) -> torch.Tensor:
        """S quantized volumes (B, C_s, M, M, M), finest first -> (B, decoder_channels, M, M, M)."""
        out = None
        for stage, q in zip(self.stages, quantized[::-1]):  # coarsest first
            out = stage(q if out is None else torch.cat([q, out], dim=1))
        return out
