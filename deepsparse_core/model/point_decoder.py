"""Point decoder: per-point MLP from concatenated 2D + 3D features to attenuation (paper Eq. 7).

Released ``point_decoder.PointDecoder(residual=True, use_bn=True)``: 368 -> 184 -> 128 -> 64 -> 16 -> 1,
the input features f re-concatenated to every later layer's input, BatchNorm + LeakyReLU after each
hidden layer. A Linear on cat([x, f]) equals Linear_x(x) + Linear_f(f), so here the input's share of all
later layers is one matmul (``skip``, which also carries their biases) instead of four concatenations:
same function, same parameter count, about twice as fast on CPU. The output layer is linear (released
also applies BatchNorm + LeakyReLU to the single output channel), then ``output_activation``.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import DiceConfig


class PointDecoder(nn.Module):
    def __init__(self, cfg: DiceConfig):
        super().__init__()
        c_in, hidden = cfg.point_features, cfg.point_hidden
        self.widths = list(hidden) + [1]
        self.first = nn.Linear(c_in, hidden[0])
        self.skip = nn.Linear(c_in, sum(self.widths[1:]))  # f -> its share of every later layer
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(self.widths[:-1], self.widths[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(h) for h in hidden)
        self.act = nn.LeakyReLU(cfg.negative_slope)
        self.sigmoid = cfg.output_activation == "sigmoid"

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(P, point_features) -> (P,) attenuation (raw for "identity": clamp at inference)."""
        skips = self.skip(feats).split(self.widths[1:], dim=1)
        x = self.act(self.norms[0](self.first(feats)))
        for k, (layer, skip) in enumerate(zip(self.layers, skips), start=1):
            x = layer(x) + skip                          # = Linear(cat([x, feats]))
            if k < len(self.norms):
                x = self.act(self.norms[k](x))
        y = x.squeeze(1)
        return torch.sigmoid(y) if self.sigmoid else y
