"""Swin-UMamba and Swin-UMamba-D (the "dagger" variant with a Mamba decoder), 2D, for inference.

Written from the official code (JiarunLiu/Swin-UMamba: ``nnunetv2/nets/SwinUMamba.py`` and
``SwinUMambaD.py``) with its module names, so official nnU-Net checkpoints of the trainers
``nnUNetTrainerSwinUMamba(Scratch)`` and ``nnUNetTrainerSwinUMambaD(Scratch)`` load with
``strict=True``. Both take (b, c, h, w) with h and w multiples of 32 and return class logits
(b, classes, h, w); with ``deep_supervision=True`` a list, full resolution first.

* :class:`SwinUMamba`: a 7x7 stride-2 stem, the VMamba-Tiny encoder (patch 2) and a UNETR-style
  convolutional decoder fed by residual blocks on the input and on every encoder level.
* :class:`SwinUMambaD`: the VMamba-Tiny encoder (patch 4) and a decoder of patch-expanding and
  VSS layers (Swin-Unet style), ending in a 4x patch expansion.

The official builders fix the sizes (VMamba-Tiny); the constructors take them as arguments only
so that tests can build tiny networks of the same structure.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .unet_blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock
from .vss import VSSLayer, VSSMEncoder

__all__ = ["SwinUMamba", "SwinUMambaD", "build_swin_umamba", "build_swin_umamba_d", "VMAMBA_TINY_DEPTHS"]

VMAMBA_TINY_DEPTHS = (2, 2, 9, 2)


class SwinUMamba(nn.Module):
    """Swin-UMamba with the UNet-style decoder (official ``SwinUMamba``)."""

    def __init__(self, in_chans: int = 1, out_chans: int = 13,
                 feat_size: Sequence[int] = (48, 96, 192, 384, 768),
                 depths: Sequence[int] = VMAMBA_TINY_DEPTHS, d_state: int = 16,
                 deep_supervision: bool = False) -> None:
        super().__init__()
        f = list(feat_size)
        self.deep_supervision = deep_supervision
        self.stem = nn.Sequential(nn.Conv2d(in_chans, f[0], kernel_size=7, stride=2, padding=3),
                                  nn.InstanceNorm2d(f[0], eps=1e-5, affine=True))
        self.vssm_encoder = VSSMEncoder(patch_size=2, in_chans=f[0], depths=depths, dims=f[1:],
                                        d_state=d_state)
        self.encoder1 = UnetrBasicBlock(in_chans, f[0])
        self.encoder2 = UnetrBasicBlock(f[0], f[1])
        self.encoder3 = UnetrBasicBlock(f[1], f[2])
        self.encoder4 = UnetrBasicBlock(f[2], f[3])
        self.encoder5 = UnetrBasicBlock(f[3], f[4])
        self.decoder6 = UnetrUpBlock(f[4], f[4])
        self.decoder5 = UnetrUpBlock(f[4], f[3])
        self.decoder4 = UnetrUpBlock(f[3], f[2])
        self.decoder3 = UnetrUpBlock(f[2], f[1])
        self.decoder2 = UnetrUpBlock(f[1], f[0])
        self.decoder1 = UnetrBasicBlock(f[0], f[0])
        # All four heads always exist (training used deep supervision), so checkpoints always fit.
        self.out_layers = nn.ModuleList(UnetOutBlock(f[i], out_chans) for i in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        vss = self.vssm_encoder(self.stem(x))  # [stem /2, /4, /8, /16, /32]
        enc1 = self.encoder1(x)
        enc2 = self.encoder2(vss[0])
        enc3 = self.encoder3(vss[1])
        enc4 = self.encoder4(vss[2])
        enc5 = self.encoder5(vss[3])
        dec4 = self.decoder6(vss[4], enc5)
        dec3 = self.decoder5(dec4, enc4)
        dec2 = self.decoder4(dec3, enc3)
        dec1 = self.decoder3(dec2, enc2)
        dec_out = self.decoder1(self.decoder2(dec1, enc1))
        if self.deep_supervision:
            return [head(f) for head, f in zip(self.out_layers, (dec_out, dec1, dec2, dec3))]
        return self.out_layers[0](dec_out)


class PatchExpand(nn.Module):
    """(b, c, h, w) -> (b, 2h, 2w, c/2): linear c -> 2c, each pixel's 2c spread over a 2x2 patch."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.expand = nn.Linear(dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(dim // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_depth_to_space(self.expand(x.permute(0, 2, 3, 1)), 2))


class FinalPatchExpand_X4(nn.Module):  # noqa: N801 - the official class name
    """(b, c, h, w) -> (b, 4h, 4w, c): linear c -> 16c spread over a 4x4 patch."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.expand = nn.Linear(dim, 16 * dim, bias=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_depth_to_space(self.expand(x.permute(0, 2, 3, 1)), 4))


def _depth_to_space(x: torch.Tensor, p: int) -> torch.Tensor:
    """einops ``b h w (p1 p2 c) -> b (h p1) (w p2) c`` on channels-last maps."""
    b, h, w, c = x.shape
    c //= p * p
    return x.view(b, h, w, p, p, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h * p, w * p, c)


class UNetResDecoder(nn.Module):
    """Swin-UMamba-D's decoder: expand, concatenate the skip, project back, VSS layer; x4 at the end."""

    def __init__(self, num_classes: int, features_per_stage: Sequence[int], depth: int = 2,
                 d_state: int = 16, deep_supervision: bool = False) -> None:
        super().__init__()
        f = list(features_per_stage)
        self.deep_supervision = deep_supervision
        stages: list[nn.Module] = []
        expand: list[nn.Module] = []
        seg: list[nn.Module] = []
        back: list[nn.Module] = []
        for s in range(1, len(f)):
            below, skip = f[-s], f[-(s + 1)]
            expand.append(PatchExpand(below))
            stages.append(VSSLayer(skip, depth, d_state))
            seg.append(nn.Conv2d(skip, num_classes, 1, 1, 0, bias=True))
            back.append(nn.Linear(2 * skip, skip))
        expand.append(FinalPatchExpand_X4(f[0]))
        stages.append(nn.Identity())
        seg.append(nn.Conv2d(f[0], num_classes, 1, 1, 0, bias=True))
        self.stages = nn.ModuleList(stages)
        self.expand_layers = nn.ModuleList(expand)
        self.seg_layers = nn.ModuleList(seg)
        self.concat_back_dim = nn.ModuleList(back)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        x = skips[-1]
        last = len(self.stages) - 1
        outputs = []
        for s in range(len(self.stages)):
            y = self.expand_layers[s](x)
            if s < last:
                y = self.concat_back_dim[s](torch.cat((y, skips[-(s + 2)].permute(0, 2, 3, 1)), -1))
            x = self.stages[s](y).permute(0, 3, 1, 2)
            if self.deep_supervision:
                outputs.append(self.seg_layers[s](x))
            elif s == last:
                outputs.append(self.seg_layers[-1](x))
        outputs = outputs[::-1]
        return outputs if self.deep_supervision else outputs[0]


class SwinUMambaD(nn.Module):
    """Swin-UMamba-D: VMamba encoder (patch 4) and the Mamba decoder (official ``SwinUMambaD``)."""

    def __init__(self, in_chans: int = 1, num_classes: int = 13,
                 dims: Sequence[int] = (96, 192, 384, 768), depths: Sequence[int] = VMAMBA_TINY_DEPTHS,
                 decoder_depth: int = 2, d_state: int = 16, deep_supervision: bool = False) -> None:
        super().__init__()
        self.vssm_encoder = VSSMEncoder(patch_size=4, in_chans=in_chans, depths=depths, dims=dims,
                                        d_state=d_state)
        self.decoder = UNetResDecoder(num_classes, dims, decoder_depth, d_state, deep_supervision)

    @property
    def deep_supervision(self) -> bool:
        return self.decoder.deep_supervision

    @deep_supervision.setter
    def deep_supervision(self, value: bool) -> None:
        self.decoder.deep_supervision = value

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.decoder(self.vssm_encoder(x))


def build_swin_umamba(num_input_channels: int, num_classes: int, deep_supervision: bool = False) -> SwinUMamba:
    """The official ``get_swin_umamba_from_plans`` network (VMamba-Tiny sizes), randomly initialised."""
    return SwinUMamba(num_input_channels, num_classes, deep_supervision=deep_supervision)


def build_swin_umamba_d(num_input_channels: int, num_classes: int,
                        deep_supervision: bool = False) -> SwinUMambaD:
    """The official ``get_swin_umamba_d_from_plans`` network (VMamba-Tiny sizes), randomly initialised."""
    return SwinUMambaD(num_input_channels, num_classes, deep_supervision=deep_supervision)
