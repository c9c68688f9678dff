"""Convolution blocks shared by the 2D encoder and the 3D decoders (released ``conv_utils.py``)."""

from __future__ import annotations

from torch import nn

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def conv_bn_act(in_ch: int, out_ch: int, dims: int, kernel_size: int = 3, stride: int = 1,
                slope: float = 0.01) -> nn.Sequential:
    """Conv (2D or 3D) -> BatchNorm -> LeakyReLU; "same" padding for 3x3, none for the 2x2 stride-2 one."""
    return nn.Sequential(
        _CONV[dims](in_ch, out_ch, kernel_size, stride=stride, padding=(kernel_size - 1) // 2),
        _NORM[dims](out_ch),
        nn.LeakyReLU(slope),
    )


class ResidualBlock(nn.Module):
    """act(x + BN(conv3x3(x))): one 3x3(x3) convolution with an identity shortcut (released ResConv)."""

    def __init__(self, ch: int, dims: int, slope: float = 0.01):
        super().__init__()
        self.conv = _CONV[dims](ch, ch, 3, padding=1)
        self.norm = _NORM[dims](ch)
        self.act = nn.LeakyReLU(slope)

    def forward(self, x):
        return self.act(x + self.norm(self.conv(x)))


class ResidualStack(nn.Module):
    """Optional 3x3(x3) conv changing in_ch -> out_ch, then ``n_blocks`` residual blocks
    (released StackedResConv)."""

    def __init__(self, in_ch: int, out_ch: int, n_blocks: int, dims: int, slope: float = 0.01):
        super().__init__()
        self.project = conv_bn_act(in_ch, out_ch, dims, slope=slope) if in_ch != out_ch else nn.Identity()
        self.blocks = nn.Sequential(*[ResidualBlock(out_ch, dims, slope) for _ in range(n_blocks)])

    def forward(self, x):
        return self.blocks(self.project(x))
