"""Denoise layer (finetuning step 2, paper Eq. 11-12): a shallow 3D CNN refining sparse-view quantized
features towards the dense-view ones.

Released: ``StackedResConv(n_layer=2)`` per scale, i.e. two act(x + BN(conv3x3x3(x))) blocks. We keep its
size (two 3x3x3 convs + two BatchNorms per scale) but write it as x + f(x) with no activation after the
sum and the last BatchNorm scale set to zero: it starts as the identity (step 2 begins from step 1's
behaviour) and can output negative features, which the released trailing LeakyReLU squashes although
the dense-view targets (post-quantization conv outputs) are signed.
"""

from __future__ import annotations

import torch
from torch import nn


class DenoiseLayer(nn.Module):
    def __init__(self, ch: int, n_units: int = 2, slope: float = 0.01):
        super().__init__()
        layers = []
        for k in range(n_units):
            layers += [nn.Conv3d(ch, ch, 3, padding=1), nn.BatchNorm3d(ch)]
            if k < n_units - 1:
                layers.append(nn.LeakyReLU(slope))
        self.body = nn.Sequential(*layers)
        nn.init.zeros_(self.body[-1].weight)  # identity at initialization

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, M, M, M) -> same shape."""
        return x + self.body(x)
