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

Windowed blocks do only the real tokens' work (``Block._windowed_attention``); on the CPU the
products of fp32 inference run through oneDNN (:mod:`.cpu_kernels`, about 2.2x faster on AMD).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import cpu_kernels


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

    def forward(self, x: torch.Tensor, fast: bool = False) -> torch.Tensor:
        if fast:  # GELU inside the first product's epilogue
            hidden = cpu_kernels.linear(x, self.lin1.weight, self.lin1.bias, "gelu")
            return cpu_kernels.linear(hidden, self.lin2.weight, self.lin2.bias)
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

    def forward(self, x: torch.Tensor, fast: bool = False) -> torch.Tensor:
        # x: (B, H, W, C)
        gate = self.channel(x.mean(dim=(1, 2)))  # (B, C)
        z = x * gate[:, None, None, :]
        down, up = self.spatial[0], self.spatial[2]
        if fast:  # channels last throughout (cpu_kernels explains why)
            z = cpu_kernels.conv_cl(z, down.weight, down.stride[0], down.padding[0], act="relu")
            s = torch.relu(cpu_kernels.conv_transpose_cl(z, up.weight, up.stride[0], up.padding[0]))
        else:
            z = torch.relu(
                F.conv2d(z.permute(0, 3, 1, 2), down.weight, stride=down.stride, padding=down.padding)
            )
            s = torch.relu(F.conv_transpose2d(z, up.weight, stride=up.stride, padding=up.padding))
            s = s.permute(0, 2, 3, 1)
        return self.norm(x + s)


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

    def project(self, x: torch.Tensor, fast: bool = False) -> torch.Tensor:
        """``(..., C)`` tokens -> ``(..., 3C)`` queries, keys and values."""
        return cpu_kernels.linear(x, self.qkv.weight, self.qkv.bias) if fast else self.qkv(x)

    def output(self, x: torch.Tensor, fast: bool = False) -> torch.Tensor:
        return cpu_kernels.linear(x, self.proj.weight, self.proj.bias) if fast else self.proj(x)

    def forward(self, x: torch.Tensor, fast: bool = False) -> torch.Tensor:
        qkv = self.project(x, fast)
        c = qkv.shape[-1] // 3
        return self.output(self.attend(qkv[..., :c], qkv[..., c:]), fast)

    def attend(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """Attention of ``(N, rq, cq, C)`` queries over a ``(N, hk, wk, 2C)`` grid of keys and values.

        The queries sit on the grid's top-left ``rq x cq`` positions (all of it for global
        attention; a window's real tokens when its bottom or right part is padding), which fixes
        their relative positions to the keys. Returns ``(N, rq, cq, C)`` (before ``proj``).
        """
        n, rq, cq, c = q.shape
        hk, wk = kv.shape[1], kv.shape[2]
        nh, hd = self.num_heads, self.head_dim
        qh = q.reshape(n, rq * cq, nh, hd).transpose(1, 2)  # (n, nh, rq*cq, hd)
        kv = kv.reshape(n, hk * wk, 2, nh, hd).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]  # (n, nh, hk*wk, hd)
        bias = None
        if self.use_rel_pos:
            rh = _rel_pos_table(hk, self.rel_pos_h)[:rq]  # (rq, hk, hd)
            rw = _rel_pos_table(wk, self.rel_pos_w)[:cq]  # (cq, wk, hd)
            qg = qh.reshape(n, nh, rq, cq, hd)
            bias_h = torch.einsum("bnyxd,ykd->bnyxk", qg, rh)  # (n, nh, rq, cq, hk)
            bias_w = torch.einsum("bnyxd,xkd->bnyxk", qg, rw)  # (n, nh, rq, cq, wk)
            bias = (bias_h[..., :, None] + bias_w[..., None, :]).reshape(n, nh, rq * cq, hk * wk)
        out = F.scaled_dot_product_attention(qh, k, v, attn_mask=bias)
        return out.transpose(1, 2).reshape(n, rq, cq, c)


def _spans(size: int, win: int) -> list[tuple[int, int, int]]:
    """``(start, stop, real)`` runs of windows along one axis: the whole windows, then the last
    window's ``real`` tokens when ``size`` is not a multiple of ``win`` (the rest is padding)."""
    full = (size // win) * win
    spans = [(0, full, win)] if full else []
    if size > full:
        spans.append((full, size, size - full))
    return spans


def _windows(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``(B, nr*rows, nc*cols, C)`` -> ``(B*nr*nc, rows, cols, C)`` tiles, row-major."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // rows, rows, w // cols, cols, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, rows, cols, c)


def _unwindows(x: torch.Tensor, b: int, nr: int, nc: int) -> torch.Tensor:
    """Inverse of :func:`_windows`."""
    _, rows, cols, c = x.shape
    x = x.reshape(b, nr, nc, rows, cols, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, nr * rows, nc * cols, c)


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

    def _windowed_attention(self, y: torch.Tensor, fast: bool = False) -> torch.Tensor:
        # Same result as padding the normed tokens with zeros, partitioning and attending, with
        # only the real tokens' work done: a zero token's qkv is the qkv bias, so padding keys
        # and values are that bias and no projection runs on them; a padding token's query
        # only makes an output that is cropped away, so only real tokens are queries (16
        # tokens in windows of 14: 256 real queries instead of 784). Windows with the same
        # number of real rows and columns (whole ones, right edge, bottom edge, corner) are
        # attended together.
        win, attn = self.window_size, self.attn
        b, h, w, _ = y.shape
        qkv = attn.project(y, fast)
        c = qkv.shape[-1] // 3
        q, kv = qkv[..., :c], qkv[..., c:]
        ph, pw = (-h) % win, (-w) % win
        if ph or pw:
            bias = attn.qkv.bias
            fill = bias.detach()[c:] if bias is not None else kv.new_zeros(2 * c)
            full = fill.to(kv.dtype).expand(b, h + ph, w + pw, 2 * c).clone()
            full[:, :h, :w] = kv
            kv = full
        out = q.new_empty(b, h, w, c)
        for r0, r1, rq in _spans(h, win):
            nr = (r1 - r0) // rq
            for c0, c1, cq in _spans(w, win):
                nc = (c1 - c0) // cq
                queries = _windows(q[:, r0:r1, c0:c1], rq, cq)
                grid = _windows(kv[:, r0 : r0 + nr * win, c0 : c0 + nc * win], win, win)
                out[:, r0:r1, c0:c1] = _unwindows(attn.attend(queries, grid), b, nr, nc)
        return attn.output(out, fast)

    def forward(self, x: torch.Tensor, fast: bool = False) -> torch.Tensor:
        y = self.norm1(x)
        y = self._windowed_attention(y, fast) if self.window_size > 0 else self.attn(y, fast)
        x = x + y
        n = self.norm2(x)
        if self.has_adapter:
            return x + self.mlp(n, fast) + self.Adapter(n, fast)
        return x + self.mlp(n, fast)


class ImageEncoderViT(nn.Module):
    """``(B, 3, S, S)`` normalised image -> ``(B, out_chans, S/16, S/16)`` embedding.

    ``cpu_kernels``: ``"onednn"`` (default) runs the products of fp32 inference on the CPU
    through oneDNN (:mod:`.cpu_kernels`), ``"torch"`` through torch's own operations (the
    reference the fast path is tested against). Other devices and dtypes always take torch's.
    A batch gives each image the embedding it gets alone (to fp32 rounding).
    """

    cpu_kernels: str = "onednn"

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
        fast = self.cpu_kernels == "onednn" and cpu_kernels.usable(x)
        x = self.patch_embed(x) + self.pos_embed
        for blk in self.blocks:
            x = blk(x, fast)
        return self.neck(x.permute(0, 3, 1, 2))
