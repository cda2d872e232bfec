"""The VMamba (VSS) encoder pieces of Swin-UMamba: SS2D, VSS blocks and layers, patch embedding and merging.

Written from the official Swin-UMamba code (JiarunLiu/Swin-UMamba, ``nnunetv2/nets/SwinUMamba.py``),
with the official module and parameter names so that an official checkpoint loads with
``strict=True``. Only inference is implemented: stochastic depth and dropout (rates of the
training recipe) are identities at inference and hold no weights, so they are left out.

Feature maps inside the VSS layers are channels-last ``(b, h, w, c)``, as in the official code;
every LayerNorm is ``nn.LayerNorm`` with eps 1e-5 (the official layers pass ``nn.LayerNorm``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .selective_scan import selective_scan

__all__ = ["SS2D", "VSSBlock", "VSSLayer", "PatchEmbed2D", "PatchMerging2D", "VSSMEncoder"]


class PatchEmbed2D(nn.Module):
    """Non-overlapping ``patch_size`` convolution, then LayerNorm: (b, c, h, w) -> (b, h/p, w/p, dim)."""

    def __init__(self, patch_size: int = 4, in_chans: int = 3, embed_dim: int = 96) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PatchMerging2D(nn.Module):
    """2x2 neighbours concatenated (order (0,0), (1,0), (0,1), (1,1)), LayerNorm, linear 4c -> 2c.

    (b, h, w, c) -> (b, h/2, w/2, 2c); an odd row or column at the end is dropped, as officially.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
        x = x[:, :h, :w]
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class SS2D(nn.Module):
    """2D selective scan: the image is read as 4 sequences (rows, columns, and both reversed).

    Parameters keep the official layout: ``x_proj_weight`` (4, dt_rank + 2 d_state, d_inner),
    ``dt_projs_weight`` (4, d_inner, dt_rank), ``dt_projs_bias`` (4, d_inner), ``A_logs``
    (4 d_inner, d_state), ``Ds`` (4 d_inner).
    """

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 3, expand: int = 2) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16)
        k = 4
        self.in_proj = nn.Linear(d_model, self.d_inner * 2, bias=False)
        self.conv2d = nn.Conv2d(self.d_inner, self.d_inner, kernel_size=d_conv, padding=(d_conv - 1) // 2,
                                groups=self.d_inner, bias=True)
        self.x_proj_weight = nn.Parameter(
            torch.randn(k, self.dt_rank + 2 * d_state, self.d_inner) * self.d_inner**-0.5)
        self.dt_projs_weight = nn.Parameter(
            (torch.rand(k, self.d_inner, self.dt_rank) * 2 - 1) * self.dt_rank**-0.5)
        # Official initialisation: softplus(bias) spread log-uniformly over [1e-3, 0.1].
        dt = torch.exp(torch.rand(k, self.d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        self.dt_projs_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(k * self.d_inner, 1)
        self.A_logs = nn.Parameter(torch.log(a))
        self.Ds = nn.Parameter(torch.ones(k * self.d_inner))
        self.out_norm = nn.LayerNorm(self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def forward_core(self, x: torch.Tensor) -> torch.Tensor:
        """(b, d, h, w) -> sum of the 4 directions' scans, (b, d, h*w) in row-major order."""
        b, d, h, w = x.shape
        length = h * w
        k = 4
        rows = x.reshape(b, d, length)
        cols = x.transpose(2, 3).reshape(b, d, length)
        fwd = torch.stack([rows, cols], dim=1)  # (b, 2, d, l)
        xs = torch.cat([fwd, fwd.flip(-1)], dim=1)  # (b, 4, d, l)
        x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj_weight)
        dts, bs, cs = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_projs_weight)
        out = selective_scan(
            xs.float().reshape(b, k * d, length),
            dts.float().reshape(b, k * d, length),
            -torch.exp(self.A_logs.float()),
            bs.float().contiguous(),
            cs.float().contiguous(),
            self.Ds.float(),
            delta_bias=self.dt_projs_bias.float().reshape(-1),
            delta_softplus=True,
        ).view(b, k, d, length)
        # Undo each direction's reordering; sum the four in the official order.
        inv = out[:, 2:4].flip(-1)
        wh = out[:, 1].view(b, d, w, h).transpose(2, 3).reshape(b, d, length)
        invwh = inv[:, 1].view(b, d, w, h).transpose(2, 3).reshape(b, d, length)
        return out[:, 0] + inv[:, 0] + wh + invwh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        x, z = self.in_proj(x).chunk(2, dim=-1)
        x = F.silu(self.conv2d(x.permute(0, 3, 1, 2).contiguous()))
        y = self.forward_core(x).transpose(1, 2).reshape(b, h, w, -1)
        y = self.out_norm(y) * F.silu(z)
        return self.out_proj(y)


class VSSBlock(nn.Module):
    """Pre-norm residual SS2D: ``x + SS2D(LayerNorm(x))`` on (b, h, w, c)."""

    def __init__(self, hidden_dim: int, d_state: int = 16) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(hidden_dim)
        self.self_attention = SS2D(d_model=hidden_dim, d_state=d_state)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.self_attention(self.ln_1(x))


class VSSLayer(nn.Module):
    """``depth`` VSS blocks at one resolution (the official downsample slot is unused, None)."""

    def __init__(self, dim: int, depth: int, d_state: int = 16) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(VSSBlock(dim, d_state) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class VSSMEncoder(nn.Module):
    """VMamba encoder: patch embedding, then VSS layers with patch merging between them.

    Returns ``[x, f0, f1, ..., f_last]``: the input itself, then every layer's output as
    (b, c, h, w). VMamba-Tiny (the official configuration): depths (2, 2, 9, 2), dims
    (96, 192, 384, 768), d_state 16.
    """

    def __init__(self, patch_size: int = 4, in_chans: int = 3, depths: Sequence[int] = (2, 2, 9, 2),
                 dims: Sequence[int] | int = (96, 192, 384, 768), d_state: int = 16) -> None:
        super().__init__()
        if isinstance(dims, int):
            dims = [dims * 2**i for i in range(len(depths))]
        self.dims = list(dims)
        self.patch_embed = PatchEmbed2D(patch_size, in_chans, self.dims[0])
        self.layers = nn.ModuleList(VSSLayer(dim, depth, d_state) for dim, depth in zip(self.dims, depths))
        self.downsamples = nn.ModuleList(PatchMerging2D(dim) for dim in self.dims[:-1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        x = self.patch_embed(x)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            outs.append(x.permute(0, 3, 1, 2))
            if i < len(self.downsamples):
                x = self.downsamples[i](x)
        return outs
