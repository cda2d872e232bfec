"""Swin-UMamba (Liu et al. 2024): our implementation of both official 2D variants.

See :mod:`.model` for the networks, :mod:`.selective_scan` for the scan (mamba-ssm's CUDA kernel
when available, else pure PyTorch).
"""

from .model import SwinUMamba, SwinUMambaD, build_swin_umamba, build_swin_umamba_d
from .selective_scan import selective_scan, selective_scan_torch

__all__ = [
    "SwinUMamba",
    "SwinUMambaD",
    "build_swin_umamba",
    "build_swin_umamba_d",
    "selective_scan",
    "selective_scan_torch",
]
