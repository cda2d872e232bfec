"""Exact, padding-free attention kernels for the SAM-Med3D ViT image encoder.

Why this exists
---------------
SAM-Med3D (``vit_b_ori``) embeds a 128^3 crop into an 8x8x8 token grid, but 8
of its 12 blocks use *window* attention with a window of 14. The official code
zero-pads the (already layer-normed) 8^3 grid to 14^3 = 2744 tokens and runs
full attention over all of them, although only 512 tokens are real. This
module computes the same outputs for the 512 real tokens without materialising
the padding.

The official relative-position bias (a quirk we must keep)
----------------------------------------------------------
Let ``S`` be the side of the attended cube (14 in window blocks, 8 in global
blocks), ``T_d[i, k] = rel_pos_d[i - k + S - 1]`` (same for ``h``, ``w``) and
``q(d, h, x)`` the *unscaled* query at grid position ``(d, h, x)``. Because of
the way the official code broadcasts its per-axis terms, the bias added to the
logit of query ``(d, h, w)`` and key ``(kd, kh, kw)`` is NOT the textbook
MViTv2 sum but::

    A[d, h, w, kw] + Bt[d, h, kd, kw] + Ct[d, h, kh, kw]
    A [d, h, w, k] = q(d, h, w) . T_d[d, k]
    Bt[d, h, x, k] = q(d, h, x) . T_h[h, k]
    Ct[d, h, x, k] = q(d, h, x) . T_w[x, k]

i.e. every term is indexed by the key's ``kw`` and the last two terms use the
query *at another w position* (``kd`` resp. ``kh``) of the same ``(d, h)`` row,
which in window blocks may be a padded position whose query is the ``q`` part
of the ``qkv`` bias. The weights were trained with this, so it is reproduced.

Padded keys
-----------
A padded token is an all-zero vector *after* ``norm1``, so its key and value
are the ``qkv`` biases ``b_k`` and ``b_v`` - the same for all 2232 padded
positions - and it still takes part in every softmax. Since all padded keys
share one value they act like ONE extra key with key vector ``b_k``, value
``b_v`` and additive bias ``log sum_{pad} exp(bias)``. With ``n = 8`` real
positions per axis, that sum factorises over ``kw``::

    sum_kw exp(A[kw]) * (  SB(all) SC(all)                  if kw >= n
                         | SB(hi) SC(all) + SB(lo) SC(hi)   if kw <  n )

where ``SB(lo)``/``SB(hi)``/``SB(all)`` are sums of ``exp(Bt[.., x, kw])`` over
``x < n``, ``x >= n`` and all ``x`` (likewise ``SC``). It is evaluated exactly in
log space (log-sum-exp, no cancellation). Attention thus shrinks from
2744 x 2744 to 512 x 513 logits per head and runs through
:func:`torch.nn.functional.scaled_dot_product_attention`, the relative
position bias being its ``attn_mask``.

Tensor layouts
--------------
``q``, ``k``, ``v``: ``(B, heads, N, head_dim)`` with ``N = n^3`` tokens
flattened in C order over the ``(D, H, W)`` token grid (axes 2, 3, 4 of the
input volume). Only cubic grids are supported (as in the official code, whose
broadcasting requires them).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = [
    "rel_pos_table",
    "rel_pos_terms",
    "real_key_bias",
    "pad_key_log_mass",
    "global_attention",
    "single_window_attention",
]

Tables = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def rel_pos_table(size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Gather a relative-position table: ``out[i, j] = rel_pos[i - j + size - 1]``.

    Args:
        size: number of positions along the axis (query size == key size).
        rel_pos: ``(L, head_dim)`` learned embeddings. If ``L != 2 * size - 1``
            they are linearly resized first, as the official code does.

    Returns:
        ``(size, size, head_dim)`` tensor indexed ``[query_pos, key_pos]``.
    """
    length = 2 * size - 1
    if rel_pos.shape[0] != length:
        rel_pos = F.interpolate(rel_pos.t().unsqueeze(0), size=length, mode="linear")[0].t()
    idx = torch.arange(size, device=rel_pos.device)
    return rel_pos[idx[:, None] - idx[None, :] + (size - 1)]


def rel_pos_terms(
    q: torch.Tensor,
    n: int,
    side: int,
    tables: Tables,
    pad_q: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three relative-position terms ``A``, ``Bt``, ``Ct`` (see module doc).

    Args:
        q: ``(B, heads, n^3, hd)`` unscaled queries of the real tokens.
        n: real grid side.
        side: side ``S >= n`` of the attended (padded) cube.
        tables: ``(S, S, hd)`` tables for the d, h, w axes.
        pad_q: ``(heads, hd)`` query of a padded token (needed when ``S > n``).

    Returns:
        ``A``: ``(B, heads, n, n, n, S)``; ``Bt`` and ``Ct``: ``(B, heads, n, n, S, S)``.
    """
    bsz, heads, _, hd = q.shape
    q5 = q.reshape(bsz, heads, n, n, n, hd)
    if side > n:
        if pad_q is None:
            raise ValueError("pad_q is required when the window is larger than the grid")
        fill = pad_q.to(q.dtype).view(1, heads, 1, 1, 1, hd).expand(bsz, heads, n, n, side - n, hd)
        q_ext = torch.cat((q5, fill), dim=4)  # (B, heads, n, n, S, hd)
    else:
        q_ext = q5
    t_d, t_h, t_w = tables
    a = torch.einsum("bndhwc,dkc->bndhwk", q5, t_d[:n])
    b = torch.einsum("bndhxc,hkc->bndhxk", q_ext, t_h[:n])
    c = torch.einsum("bndhxc,xkc->bndhxk", q_ext, t_w)
    return a, b, c


def real_key_bias(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, n: int) -> torch.Tensor:
    """Bias towards the ``n^3`` real keys: ``(B, heads, n^3, n^3)`` (rows = queries)."""
    bias = (
        a[..., None, None, :n]  # (.., d, h, w, 1, 1, kw)
        + b[..., None, :n, None, :n]  # (.., d, h, 1, kd, 1, kw)
        + c[..., None, None, :n, :n]  # (.., d, h, 1, 1, kh, kw)
    )
    return bias.reshape(*bias.shape[:2], n**3, n**3)


def pad_key_log_mass(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, n: int) -> torch.Tensor:
    """``log sum_{padded keys} exp(bias)`` per real query: ``(B, heads, n^3)``."""
    b_lo = torch.logsumexp(b[..., :n, :], dim=-2)  # (B, heads, n, n, S) indexed by kw
    b_hi = torch.logsumexp(b[..., n:, :], dim=-2)
    c_lo = torch.logsumexp(c[..., :n, :], dim=-2)
    c_hi = torch.logsumexp(c[..., n:, :], dim=-2)
    b_all = torch.logaddexp(b_lo, b_hi)
    c_all = torch.logaddexp(c_lo, c_hi)
    inner = torch.cat(
        (
            torch.logaddexp(b_hi + c_all, b_lo + c_hi)[..., :n],  # kw real: (kd, kh) not both real
            (b_all + c_all)[..., n:],  # kw padded: every (kd, kh)
        ),
        dim=-1,
    )
    mass = torch.logsumexp(a + inner[..., :, :, None, :], dim=-1)  # (B, heads, n, n, n)
    return mass.flatten(-3)


def global_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n: int, tables: Tables
) -> torch.Tensor:
    """Global attention over an ``n^3`` grid with the official relative bias.

    ``q, k, v``: ``(B, heads, n^3, hd)``; ``tables``: three ``(n, n, hd)``.
    Returns ``(B, heads, n^3, hd)``.
    """
    a, b, c = rel_pos_terms(q, n, n, tables)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=real_key_bias(a, b, c, n))


def single_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    n: int,
    window: int,
    tables: Tables,
    pad_qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """Exact equivalent of the official zero-padded window attention (grid fits one window).

    Args:
        q, k, v: ``(B, heads, n^3, hd)`` for the real tokens (``n <= window``).
        n: real grid side.
        window: window side ``S``; the official code pads the grid to ``S^3``.
        tables: three ``(S, S, hd)`` relative-position tables.
        pad_qkv: ``(heads, hd)`` query, key and value of a padded token, i.e. the
            ``qkv`` bias split into its q, k, v parts (zeros without bias).

    Returns:
        ``(B, heads, n^3, hd)``: attention output of the real tokens.
    """
    if n > window:
        raise ValueError(f"grid side {n} does not fit in one window of side {window}")
    pad_q, pad_k, pad_v = pad_qkv
    a, b, c = rel_pos_terms(q, n, window, tables, pad_q)
    bias = real_key_bias(a, b, c, n)
    if n == window:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    bias = torch.cat((bias, pad_key_log_mass(a, b, c, n).unsqueeze(-1)), dim=-1)
    bsz, heads, _, hd = q.shape
    k = torch.cat((k, pad_k.to(k.dtype).view(1, heads, 1, hd).expand(bsz, -1, -1, -1)), dim=2)
    v = torch.cat((v, pad_v.to(v.dtype).view(1, heads, 1, hd).expand(bsz, -1, -1, -1)), dim=2)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
