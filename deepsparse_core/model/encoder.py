"""Multi-scale 2D projection encoder: convolutions and downsampling only, no 2D decoder (paper Sec. 3.2).

Released ``image_encoders/base.py`` (encoder_type 'base'): a 3x3 stem to 16 channels, then 3 stages of
[2x2 stride-2 conv, channel-doubling 3x3 conv, residual block]. For a 256^2 projection the S = 4 maps
are 16@256^2, 32@128^2, 64@64^2, 128@32^2. Every map spans the whole detector, so with
``grid_sample(align_corners=False)`` one normalized detector coordinate addresses the same spot at
every scale (this needs detector sizes divisible by 2^(S-1); DiCE checks it).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ResidualStack, conv_bn_act
from .config import DiceConfig


class ProjectionEncoder(nn.Module):
    def __init__(self, cfg: DiceConfig):
        super().__init__()
        chs, slope = cfg.scale_channels, cfg.negative_slope
        self.stem = conv_bn_act(1, chs[0], dims=2, slope=slope)
        self.stages = nn.ModuleList(
            nn.Sequential(
                conv_bn_act(c_in, c_in, dims=2, kernel_size=2, stride=2, slope=slope),  # downsample x2
                ResidualStack(c_in, c_out, n_blocks=1, dims=2, slope=slope),           # widen, refine
            )
            for c_in, c_out in zip(chs[:-1], chs[1:]))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(P, 1, nv, nu) normalized projections -> S maps (P, C_s, nv / 2^s, nu / 2^s), finest first."""
        maps = [self.stem(x)]
        for stage in self.stages:
            maps.append(stage(maps[-1]))
        return maps
