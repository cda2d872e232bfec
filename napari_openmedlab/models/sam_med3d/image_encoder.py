"""3D ViT image encoder of SAM-Med3D (``vit_b_ori``).

Input/output
------------
``ImageEncoderViT3D(x)`` maps a normalised crop ``x`` of shape
``(B, 1, 128, 128, 128)`` (axes 2, 3, 4 of the crop) to an embedding of shape
``(B, 384, 8, 8, 8)``; embedding axis 2/3/4 is crop axis 2/3/4 divided by the
patch size 16. Inside the blocks tokens are kept channel-last:
``(B, 8, 8, 8, 768)``.

Official quirks kept on purpose (the weights were trained with them)
--------------------------------------------------------------------
* Blocks not listed in ``global_attn_indexes`` (all but 2, 5, 8, 11) use window
  attention with window 14 > 8: the layer-normed token grid is zero-padded to
  14^3 and the padded tokens take part in the softmax (their key/value are the
  ``qkv`` biases). Their relative-position tables have ``2 * 14 - 1 = 27`` rows.
* Relative positions are decomposed per axis and dotted with the *unscaled*
  query (MViTv2 style), but the official code broadcasts the three per-axis
  terms onto the wrong key axes (every term varies with the key's last
  coordinate; two of them use the query of another token of the same row).
  The exact formula is in :mod:`.fast_encoder`; both paths reproduce it. The
  global blocks have tables of ``2 * 8 - 1 = 15`` rows.
* ``LayerNorm3d`` of the neck uses ``eps = 1e-6`` inside the square root.

Two execution paths give the same numbers (max abs diff ~1e-5 in fp32 on
random weights; the reference path is bit-identical to the official code):
``fast=True`` (default) uses :mod:`.fast_encoder` and never materialises the
padding; ``fast=False`` is the straightforward padded reference computation.
On CPU the fast path also keeps the op count low, because on small shared
machines each parallel op costs far more than its arithmetic: linear layers
fuse their bias, GELU and residual add (:func:`.fast_encoder.fused_linear`),
and the small ops (layer norms, attention bias) run single-threaded
(:func:`.fast_encoder.serial_cpu_ops`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from .fast_encoder import fused_linear, num_virtual_keys, rel_pos_table, relpos_attention, serial_cpu_ops
from .transformer import LayerNorm3d, MLPBlock

__all__ = ["ImageEncoderViT3D", "Block3D", "Attention3D", "PatchEmbed3D"]


class PatchEmbed3D(nn.Module):
    """``(B, C_in, D, H, W) -> (B, D/p, H/p, W/p, E)`` via a strided ``Conv3d`` (``proj``)."""

    def __init__(self, patch_size: int = 16, in_chans: int = 1, embed_dim: int = 768) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 4, 1)


class Attention3D(nn.Module):
    """Multi-head self-attention with decomposed 3D relative positions.

    Parameters: ``qkv`` (Linear ``dim -> 3 * dim``, channel layout
    ``[q | k | v]`` each split into ``heads x head_dim``), ``proj`` and, if
    ``use_rel_pos``, ``rel_pos_d``/``rel_pos_h``/``rel_pos_w`` of shape
    ``(2 * size - 1, head_dim)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        input_size: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("input_size is required when use_rel_pos=True")
            self.rel_pos_d = nn.Parameter(torch.zeros(2 * input_size[0] - 1, self.head_dim))
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[1] - 1, self.head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[2] - 1, self.head_dim))

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, D, H, W, C)`` -> q, k, v each ``(B, heads, N, head_dim)``."""
        b = x.shape[0]
        qkv = self.qkv(x).reshape(b, -1, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return q, k, v

    def _tables(self, sizes: Sequence[int]) -> tuple[torch.Tensor, ...]:
        params = (self.rel_pos_d, self.rel_pos_h, self.rel_pos_w)
        return tuple(rel_pos_table(n, p) for n, p in zip(sizes, params))

    def _merge(self, out: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``(B, heads, N, hd)`` -> projected ``(B, D, H, W, C)``."""
        b = out.shape[0]
        out = out.transpose(1, 2).reshape(b, *grid, self.num_heads * self.head_dim)
        return self.proj(out)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """Plain attention over all tokens of ``x`` (``(B, S, S, S, C)``), padding included.

        The relative-position bias follows the official broadcasting exactly
        (see :mod:`.fast_encoder` for the formula); it needs a cubic grid.
        """
        grid = tuple(x.shape[1:4])
        q, k, v = self._qkv(x)
        logits = (q * self.scale) @ k.transpose(-1, -2)  # (B, heads, N, N)
        if self.use_rel_pos:
            side = grid[0]
            if grid != (side,) * 3:
                raise ValueError(f"relative positions need a cubic token grid, got {grid}")
            t_d, t_h, t_w = self._tables(grid)
            q5 = q.reshape(*q.shape[:2], side, side, side, self.head_dim)
            a = torch.einsum("bndhwc,dkc->bndhwk", q5, t_d)
            b = torch.einsum("bndhwc,hkc->bndhwk", q5, t_h)
            c = torch.einsum("bndhwc,wkc->bndhwk", q5, t_w)
            # Official pairing of axes: (qd, qh, qw, kd, kh, kw) receives
            # a[qd, qh, qw, kw] + b[qd, qh, kd, kw] + c[qd, qh, kh, kw].
            logits = logits.view(*q.shape[:2], *grid, *grid)
            logits = (
                logits
                + a[..., None, None, :]
                + b[..., None, :, None, :]
                + c[..., None, None, :, :]
            ).view(*q.shape[:2], side**3, side**3)
        out = logits.softmax(dim=-1) @ v
        return self._merge(out, grid)

    def attend_fast(self, x: torch.Tensor, window: int = 0) -> torch.Tensor:
        """Exact fast path on the *unpadded* tokens ``x`` (``(B, n, n, n, C)``), before ``proj``.

        ``window == 0``: global attention. Otherwise ``n <= window`` and the
        result equals the official zero-padded window attention restricted to
        the real tokens (see :mod:`.fast_encoder`). Returns ``(B, n^3, C)``.
        """
        bsz, n = x.shape[0], x.shape[1]
        if not self.use_rel_pos or tuple(x.shape[1:4]) != (n, n, n):
            raise NotImplementedError("fast path needs relative positions and a cubic grid")
        side = window or n
        tokens = x.reshape(bsz, n**3, -1)
        extra = num_virtual_keys(n, side)
        if extra:
            # Zero rows = the official padded tokens: their q/k/v (the qkv bias)
            # come out of the same matmul, right where the attention reads them.
            with serial_cpu_ops(x.device.type == "cpu"):
                tokens = torch.cat((tokens, tokens.new_zeros(bsz, extra, tokens.shape[-1])), dim=1)
        rel = (self.rel_pos_d, self.rel_pos_h, self.rel_pos_w)
        return relpos_attention(fused_linear(tokens, self.qkv), n, side, rel, self.num_heads)

    def forward_fast(self, x: torch.Tensor, window: int = 0) -> torch.Tensor:
        """:meth:`attend_fast` followed by ``proj``: ``(B, n, n, n, C)`` -> same shape."""
        return self.proj(self.attend_fast(x, window)).view(x.shape)


def _window_partition(x: torch.Tensor, ws: int) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Zero-pad ``(B, D, H, W, C)`` to multiples of ``ws`` and cut it into
    ``(B * nWin, ws, ws, ws, C)`` windows (window order: C order over D, H, W)."""
    b, d, h, w, c = x.shape
    pads = [(-n) % ws for n in (d, h, w)]
    if any(pads):
        x = nn.functional.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
    dp, hp, wp = d + pads[0], h + pads[1], w + pads[2]
    x = x.view(b, dp // ws, ws, hp // ws, ws, wp // ws, ws, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, ws, ws, ws, c), (dp, hp, wp)


def _window_unpartition(
    win: torch.Tensor, ws: int, padded: tuple[int, int, int], grid: tuple[int, int, int]
) -> torch.Tensor:
    """Inverse of :func:`_window_partition`, dropping the padding."""
    dp, hp, wp = padded
    c = win.shape[-1]
    b = win.shape[0] // ((dp // ws) * (hp // ws) * (wp // ws))
    x = win.view(b, dp // ws, hp // ws, wp // ws, ws, ws, ws, c)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, dp, hp, wp, c)
    d, h, w = grid
    return x[:, :d, :h, :w].contiguous()


class Block3D(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``.

    ``window_size > 0`` selects window attention (zero padding after ``norm1``).
    Input/output ``(B, D, H, W, C)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
        use_rel_pos: bool = False,
        window_size: int = 0,
        input_size: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention3D(
            dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            use_rel_pos=use_rel_pos,
            input_size=input_size if window_size == 0 else (window_size,) * 3,
        )
        self.norm2 = norm_layer(dim)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), act_layer)
        self.window_size = window_size

    def _can_fast(self, x: torch.Tensor) -> bool:
        n, ws = x.shape[1], self.window_size
        cubic = tuple(x.shape[1:4]) == (n, n, n)
        return self.attn.use_rel_pos and cubic and (ws == 0 or n <= ws)

    def _attend_reference(self, x: torch.Tensor) -> torch.Tensor:
        ws = self.window_size
        if ws == 0:
            return self.attn.forward_reference(x)
        win, padded = _window_partition(x, ws)
        return _window_unpartition(self.attn.forward_reference(win), ws, padded, tuple(x.shape[1:4]))

    def forward(self, x: torch.Tensor, fast: bool = True) -> torch.Tensor:
        if not (fast and self._can_fast(x)):
            x = x + self._attend_reference(self.norm1(x))
            return x + self.mlp(self.norm2(x))
        # Fast path: tokens as (B, N, C); proj + residual and lin1 + GELU are fused.
        # Layer norms run serially: cheaper than waking a second thread (see serial_cpu_ops).
        shape, cpu = x.shape, x.device.type == "cpu"
        x = x.contiguous().view(shape[0], -1, shape[-1])
        with serial_cpu_ops(cpu):
            normed = self.norm1(x)
        attn = self.attn.attend_fast(normed.view(shape), self.window_size)
        x = fused_linear(attn, self.attn.proj, residual=x)
        with serial_cpu_ops(cpu):
            normed = self.norm2(x)
        act = self.mlp.act
        if isinstance(act, nn.GELU) and act.approximate == "none":
            hidden = fused_linear(normed, self.mlp.lin1, gelu=True)
        else:
            hidden = act(self.mlp.lin1(normed))
        return fused_linear(hidden, self.mlp.lin2, residual=x).view(shape)


class ImageEncoderViT3D(nn.Module):
    """ViT-B 3D encoder: ``(B, in_chans, S, S, S) -> (B, out_chans, S/p, S/p, S/p)``.

    Defaults are the official ``vit_b_ori`` settings used by
    ``sam_med3d_turbo.pth``: ``S = 128``, ``p = 16``, 768-d, 12 blocks, 12 heads,
    global attention in blocks 2, 5, 8, 11, window 14 elsewhere, 384 output
    channels. ``self.fast`` selects the default execution path (see module doc).
    """

    def __init__(
        self,
        img_size: int = 128,
        patch_size: int = 16,
        in_chans: int = 1,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 384,
        qkv_bias: bool = True,
        use_abs_pos: bool = True,
        use_rel_pos: bool = True,
        window_size: int = 14,
        global_attn_indexes: Sequence[int] = (2, 5, 8, 11),
        fast: bool = True,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        self.fast = fast
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed3D(patch_size, in_chans, embed_dim)
        self.pos_embed: nn.Parameter | None = None
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block3D(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                norm_layer=partial(nn.LayerNorm, eps=1e-6),
                act_layer=nn.GELU,
                use_rel_pos=use_rel_pos,
                window_size=0 if i in global_attn_indexes else window_size,
                input_size=(grid, grid, grid),
            )
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv3d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm3d(out_chans),
            nn.Conv3d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm3d(out_chans),
        )

    def forward(self, x: torch.Tensor, fast: bool | None = None) -> torch.Tensor:
        """Encode ``x`` ``(B, in_chans, S, S, S)`` -> ``(B, out_chans, S/p, S/p, S/p)``.

        ``fast=None`` uses ``self.fast``; ``fast=False`` forces the padded
        reference path (slow, for verification).
        """
        use_fast = self.fast if fast is None else bool(fast)
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            if use_fast and not torch.is_grad_enabled():
                # One op writing the sum channel-last contiguous, as the blocks want it.
                out = torch.empty_like(x, memory_format=torch.contiguous_format)
                with serial_cpu_ops(x.device.type == "cpu"):
                    x = torch.add(x, self.pos_embed, out=out)
            else:
                x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x, fast=use_fast)
        if use_fast:
            return self._neck_fast(x)
        return self.neck(x.permute(0, 4, 1, 2, 3))

    def _neck_fast(self, x: torch.Tensor) -> torch.Tensor:
        """``self.neck`` on channel-last tokens ``(B, n, n, n, C)``, in 4 kernels instead of 20.

        The 1x1 conv is a matmul and ``LayerNorm3d`` (biased variance, eps in
        the square root) is :func:`torch.nn.functional.layer_norm` over the
        channel-last axis; equal up to fp32 rounding.
        """
        conv1, norm1, conv2, norm2 = self.neck
        cpu = x.device.type == "cpu"
        y = F.linear(x, conv1.weight.flatten(1))
        with serial_cpu_ops(cpu):
            y = F.layer_norm(y, y.shape[-1:], norm1.weight, norm1.bias, norm1.eps)
            y = y.permute(0, 4, 1, 2, 3).contiguous()  # a plain NCDHW input spares a weight reorder
        y = conv2(y).permute(0, 2, 3, 4, 1)
        with serial_cpu_ops(cpu):
            y = F.layer_norm(y, y.shape[-1:], norm2.weight, norm2.bias, norm2.eps)
            return y.permute(0, 4, 1, 2, 3).contiguous()
