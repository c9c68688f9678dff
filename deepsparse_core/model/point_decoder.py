"""Point decoder: per-point MLP from concatenated 2D + 3D features to attenuation (paper Eq. 7).

Released ``point_decoder.PointDecoder(residual=True, use_bn=True)``: 368 -> 184 -> 128 -> 64 -> 16 -> 1,
the input features re-concatenated to every hidden layer's input, Linear + BatchNorm + LeakyReLU per
hidden layer. The output layer here is a plain Linear (released also applies BatchNorm + LeakyReLU to
the single output channel) followed by ``output_activation``.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import DiceConfig


class PointDecoder(nn.Module):
    def __init__(self, cfg: DiceConfig):
        super().__init__()
        c_in, hidden = cfg.point_features, cfg.point_hidden
        widths_in = [c_in] + [h + c_in for h in hidden]  # dense re-concatenation of the input
        self.hidden = nn.ModuleList(
            nn.Sequential(nn.Linear(w_in, h), nn.BatchNorm1d(h), nn.LeakyReLU(cfg.negative_slope))
            for w_in, h in zip(widths_in[:-1], hidden))
        self.out = nn.Linear(widths_in[-1], 1)
        self.sigmoid = cfg.output_activation == "sigmoid"

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(P, point_features) -> (P,) attenuation (raw for "identity": clamp at inference)."""
        x = self.hidden[0](feats)
        for layer in self.hidden[1:]:
            x = layer(torch.cat([x, feats], dim=1))
        y = self.out(torch.cat([x, feats], dim=1)).squeeze(1)
        return torch.sigmoid(y) if self.sigmoid else y
