"""The convolutional blocks of Swin-UMamba's UNet-style decoder, laid out as MONAI's.

The official network builds its CNN branch from MONAI's ``UnetrBasicBlock``, ``UnetrUpBlock`` (both
with ``res_block=True``, ``norm_name="instance"``) and ``UnetOutBlock``. We write the same
computation ourselves (MONAI is not a dependency) and keep MONAI's module names, so that official
state-dict keys fit: ``layer.conv1.conv.weight``, ``transp_conv.conv.weight``,
``conv_block.conv3.conv.weight``, ``conv.conv.bias`` ... MONAI facts used: its convolutions have
no bias except the output block's, its "instance" norm has no affine parameters (so no keys), the
activation is LeakyReLU(0.01), and ``conv3`` (1x1 projection of the residual) exists only when
the channel count changes or the stride is not 1. 2D only (Swin-UMamba's released models are 2D).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["UnetResBlock", "UnetrBasicBlock", "UnetrUpBlock", "UnetOutBlock"]


class _Conv(nn.Module):
    """MONAI's ``Convolution`` with nothing but the convolution: the weight sits at ``conv.weight``."""

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UnetResBlock(nn.Module):
    """conv-norm-lrelu-conv-norm, plus the (projected) input, then lrelu."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        pad = (kernel_size - stride + 1) // 2
        self.conv1 = _Conv(nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad, bias=False))
        self.conv2 = _Conv(nn.Conv2d(out_channels, out_channels, kernel_size, 1, (kernel_size) // 2, bias=False))
        self.lrelu = nn.LeakyReLU(0.01, inplace=True)
        self.norm1 = nn.InstanceNorm2d(out_channels)
        self.norm2 = nn.InstanceNorm2d(out_channels)
        if in_channels != out_channels or stride != 1:
            self.conv3 = _Conv(nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False))
            self.norm3 = nn.InstanceNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lrelu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        residual = self.norm3(self.conv3(x)) if hasattr(self, "conv3") else x
        return self.lrelu(out + residual)


class UnetrBasicBlock(nn.Module):
    """MONAI's ``UnetrBasicBlock(res_block=True)``: one residual block at ``layer``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.layer = UnetResBlock(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class UnetrUpBlock(nn.Module):
    """2x transposed convolution (no bias), concatenated with the skip, then a residual block."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.transp_conv = _Conv(nn.ConvTranspose2d(in_channels, out_channels, 2, 2, bias=False))
        self.conv_block = UnetResBlock(2 * out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat((self.transp_conv(x), skip), dim=1))


class UnetOutBlock(nn.Module):
    """1x1 convolution with bias to the class logits."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = _Conv(nn.Conv2d(in_channels, out_channels, 1, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
