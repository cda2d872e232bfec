"""SAM's ViT image encoder, optionally with SAM-Med2D's adapter in every block.

One implementation serves the three 2D models:

* ``sam-med2d``: 256x256 input (16x16 tokens), an adapter in every block;
* ``sam-vit-b`` and ``medsam``: 1024x1024 input (64x64 tokens), no adapters.

Parameter names follow the official checkpoints (``patch_embed.proj``, ``pos_embed``,
``blocks.{i}.norm1/attn.qkv/attn.proj/attn.rel_pos_h/attn.rel_pos_w/norm2/mlp.lin1/mlp.lin2``,
``blocks.{i}.Adapter.{norm,channel.0,channel.2,spatial.0,spatial.2}``, ``neck.0..3``), so
official state dicts load without renaming.

Maths of one block (``x`` is ``(B, H, W, C)`` tokens)::

    y  = x + Attn(LN1(x))                      # windowed or global, decomposed rel-pos bias
    n  = LN2(y)
    out = y + MLP(n) + Adapter(n)              # (no Adapter term without adapters)

    Adapter(n) = LN_a(n + Spatial(n * Channel(n)))
    Channel(n) = sigmoid(W2 relu(W1 mean_hw(n)))          # per-image channel gate, no biases
    Spatial(z) = relu(ConvT_4x4/2(relu(Conv_3x3/2(z))))   # down to H/2 and back up, no biases

The adapter's LayerNorm keeps torch's default eps (1e-5, the official adapter is built without
the block's norm layer); the block norms and the neck use eps 1e-6.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class ViTConfig:
    """Shape of the image encoder.

    ``window_size`` applies to every block not listed in ``global_attn_indexes``; the token grid
    is zero-padded up to a multiple of the window (SAM-Med2D: 16 tokens, window 14 -> 28).
    """

    img_size: int = 1024
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    out_chans: int = 256
    qkv_bias: bool = True
    use_rel_pos: bool = True
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    adapter: bool = False
    adapter_ratio: float = 0.25
    norm_eps: float = 1e-6
    adapter_norm_eps: float = 1e-5

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of ``(B, C, H, W)`` maps."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch x patch`` convolution; returns channels-last tokens."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(F.gelu(self.lin1(x)))


class Adapter(nn.Module):
    """SAM-Med2D's channel + spatial adapter (parameter names as in the official checkpoint)."""

    def __init__(self, dim: int, ratio: float = 0.25, eps: float = 1e-5) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.norm = nn.LayerNorm(dim, eps=eps)
        # indexes 0 and 2 carry weights (1 and 3 are activations), as in the checkpoint keys
        self.channel = nn.Sequential(
            nn.Linear(dim, hidden, bias=False),
            nn.ReLU(),
            nn.Linear(hidden, dim, bias=False),
            nn.Sigmoid(),
        )
        self.spatial = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=3, stride=2, padding=1, bias=False),
            nn.ReLU(),
            nn.ConvTranspose2d(dim, dim, kernel_size=4, stride=2, padding=1, bias=False),
            nn.ReLU(),
        )
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, H, W, C)
        gate = self.channel(x.mean(dim=(1, 2)))  # (B, C)
        z = (x * gate[:, None, None, :]).permute(0, 3, 1, 2)
        down, up = self.spatial[0], self.spatial[2]
        if z.device.type == "cpu":  # same maths as the convolutions, faster on CPU as GEMMs
            z = torch.relu(_conv_gemm(z, down.weight, down.stride[0], down.padding[0]))
            s = _conv_transpose_gemm(z, up.weight, up.stride[0], up.padding[0])
        else:
            z = torch.relu(F.conv2d(z, down.weight, stride=down.stride, padding=down.padding))
            s = F.conv_transpose2d(z, up.weight, stride=up.stride, padding=up.padding)
        s = torch.relu(s).permute(0, 2, 3, 1)
        return self.norm(x + s)


def _conv_gemm(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """``conv2d`` (no bias, square kernel) as ``unfold`` and a matrix product."""
    b, _, h, w = x.shape
    cout, k = weight.shape[0], weight.shape[2]
    cols = F.unfold(x, k, padding=padding, stride=stride)  # (b, cin*k*k, L)
    oh, ow = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    return (weight.reshape(cout, -1) @ cols).reshape(b, cout, oh, ow)


def _conv_transpose_gemm(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """``conv_transpose2d`` (no bias, square kernel) as a matrix product and ``fold``."""
    b, cin, h, w = x.shape
    cout, k = weight.shape[1], weight.shape[2]
    cols = x.flatten(2).transpose(1, 2) @ weight.reshape(cin, cout * k * k)  # (b, h*w, cout*k*k)
    out_hw = ((h - 1) * stride - 2 * padding + k, (w - 1) * stride - 2 * padding + k)
    return F.fold(cols.transpose(1, 2), out_hw, kernel_size=k, stride=stride, padding=padding)


def _rel_pos_table(size: int, table: torch.Tensor) -> torch.Tensor:
    """``(size, size, head_dim)`` embeddings for query/key offsets along one axis."""
    length = 2 * size - 1
    if table.shape[0] != length:  # only when the grid differs from the one trained on
        table = F.interpolate(table.T[None], size=length, mode="linear")[0].T
    idx = torch.arange(size, device=table.device)
    offsets = idx[:, None] - idx[None, :] + (size - 1)
    return table[offsets]


class Attention(nn.Module):
    """Multi-head self-attention with SAM's decomposed relative position bias."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, use_rel_pos: bool, grid: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid - 1, self.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid - 1, self.head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.attend(self.qkv(x)))

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """Attention core on ``(B, h, w, 3C)`` projected tokens -> ``(B, h, w, C)`` (before ``proj``)."""
        b, h, w, c3 = qkv.shape
        c = c3 // 3
        nh, hd = self.num_heads, self.head_dim
        qkv = qkv.reshape(b, h * w, 3, nh, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (b, nh, h*w, hd)
        bias = None
        if self.use_rel_pos:
            rh = _rel_pos_table(h, self.rel_pos_h)  # (h, h, hd)
            rw = _rel_pos_table(w, self.rel_pos_w)  # (w, w, hd)
            qg = q.reshape(b, nh, h, w, hd)
            bias_h = torch.einsum("bnyxd,ykd->bnyxk", qg, rh)  # (b, nh, h, w, kh)
            bias_w = torch.einsum("bnyxd,xkd->bnyxk", qg, rw)  # (b, nh, h, w, kw)
            bias = (bias_h[..., :, None] + bias_w[..., None, :]).reshape(b, nh, h * w, h * w)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return out.transpose(1, 2).reshape(b, h, w, c)


def _to_windows(x: torch.Tensor, win: int) -> tuple[torch.Tensor, tuple[int, int]]:
    b, h, w, c = x.shape
    ph, pw = (-h) % win, (-w) % win
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.reshape(b, hp // win, win, wp // win, win, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, win, win, c), (hp, wp)


def _from_windows(x: torch.Tensor, win: int, padded: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    hp, wp = padded
    h, w = size
    b = x.shape[0] // ((hp // win) * (wp // win))
    x = x.reshape(b, hp // win, wp // win, win, win, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, -1)[:, :h, :w, :]


class Block(nn.Module):
    def __init__(self, cfg: ViTConfig, window_size: int) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = Attention(
            dim,
            cfg.num_heads,
            cfg.qkv_bias,
            cfg.use_rel_pos,
            window_size if window_size > 0 else cfg.grid_size,
        )
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = MLP(dim, int(dim * cfg.mlp_ratio))
        self.has_adapter = cfg.adapter
        if cfg.adapter:
            self.Adapter = Adapter(dim, cfg.adapter_ratio, cfg.adapter_norm_eps)

    def _windowed_attention(self, y: torch.Tensor) -> torch.Tensor:
        # Same result as padding the normed tokens with zeros, partitioning and attending, but
        # the projections run on the real tokens only: a zero token's qkv is the qkv bias, and
        # the padded positions' outputs are dropped anyway (16 tokens in windows of 14: 256
        # real of 784 padded).
        win, attn = self.window_size, self.attn
        b, h, w, _ = y.shape
        qkv = attn.qkv(y)
        ph, pw = (-h) % win, (-w) % win
        if ph or pw:
            fill = attn.qkv.bias if attn.qkv.bias is not None else qkv.new_zeros(qkv.shape[-1])
            full = fill.to(qkv.dtype).expand(b, h + ph, w + pw, -1).clone()
            full[:, :h, :w] = qkv
            qkv = full
        windows, padded = _to_windows(qkv, win)
        out = _from_windows(attn.attend(windows), win, padded, (h, w))
        return attn.proj(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        y = self._windowed_attention(y) if self.window_size > 0 else self.attn(y)
        x = x + y
        n = self.norm2(x)
        if self.has_adapter:
            return x + self.mlp(n) + self.Adapter(n)
        return x + self.mlp(n)


class ImageEncoderViT(nn.Module):
    """``(B, 3, S, S)`` normalised image -> ``(B, out_chans, S/16, S/16)`` embedding."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.img_size = cfg.img_size
        g = cfg.grid_size
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.in_chans, cfg.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, g, g, cfg.embed_dim))
        self.blocks = nn.ModuleList(
            Block(cfg, 0 if i in cfg.global_attn_indexes else cfg.window_size) for i in range(cfg.depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(cfg.embed_dim, cfg.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(cfg.out_chans, eps=1e-6),
            nn.Conv2d(cfg.out_chans, cfg.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(cfg.out_chans, eps=1e-6),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(
                f"image encoder expects {self.img_size}x{self.img_size} input, got {tuple(x.shape[-2:])}"
            )
        x = self.patch_embed(x) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))
