"""Exact, padding-free attention kernel for the SAM-Med3D ViT image encoder.

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
A padded token is an all-zero vector *after* ``norm1``, so its query, key and
value are the ``qkv`` biases - the same for all 2232 padded positions - and it
still takes part in every softmax. Since all padded keys share one key vector
and one value, only the sum of ``exp(bias)`` over them matters. With ``n``
real positions per axis and ``lo``/``hi``/``all`` meaning ``x < n``, ``x >= n``
and every ``x``, that sum factorises per ``kw`` (``SB(g) = sum_{x in g}
exp(Bt[.., x, kw])``, likewise ``SC``)::

    sum_kw exp(A[kw]) * ( SB(hi) SC(all) + SB(lo) SC(hi) + [kw >= n] SB(lo) SC(lo) )

We append ``3 * S`` *virtual* pad keys, one per ``(kw, term)``, whose key and
value are the padded token's and whose bias is ``A[kw] + log SB(.) + log SC(.)``
(``-inf`` for the third term when ``kw < n``), and let the attention softmax do
the final log-sum-exp. The ``log SB`` sums are stabilised per ``(row, kw)``
column; a group sum that underflows is negligible next to the terms of the same
column that are kept (those include the real keys' mass), so the result stays
exact to fp32 rounding. Attention thus shrinks from 2744 x 2744 to
512 x (512 + 42) logits per head.

Why it is written this way (CPU performance)
--------------------------------------------
On small shared CPUs (2 cores, other processes running) the cost is dominated
not by FLOPs but by the *number* of tensor operations: each op over more than
~32k elements opens an OpenMP parallel region, and waking the second thread
costs milliseconds when another process holds that core. So the bias is built
from few ops, all run single-threaded (:func:`serial_cpu_ops`): every
``q . table`` product comes from ONE batched matmul against the concatenated
raw tables (no gathered ``(S, S, hd)`` tables), one cached ``take`` index picks
all three terms, and the bias is written in place into the attention mask. The
padded token's ``q``/``k``/``v`` come out of the ``qkv`` linear itself (zero
rows appended to its input), and the attention is one parallel
:func:`torch.nn.functional.scaled_dot_product_attention` call reading ``q``,
``k``, ``v`` as strided views of the ``qkv`` output.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch.nn import functional as F

__all__ = ["rel_pos_table", "num_virtual_keys", "relpos_attention", "serial_cpu_ops", "fused_linear"]


def _resized(rel_pos: torch.Tensor, size: int) -> torch.Tensor:
    """``rel_pos`` linearly resized to ``2 * size - 1`` rows, as the official code does."""
    length = 2 * size - 1
    if rel_pos.shape[0] == length:
        return rel_pos
    return F.interpolate(rel_pos.t().unsqueeze(0), size=length, mode="linear")[0].t()


def rel_pos_table(size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Gather a relative-position table: ``out[i, j] = rel_pos[i - j + size - 1]``.

    Args:
        size: number of positions along the axis (query size == key size).
        rel_pos: ``(L, head_dim)`` learned embeddings, resized if ``L != 2 * size - 1``.

    Returns:
        ``(size, size, head_dim)`` tensor indexed ``[query_pos, key_pos]``.
    """
    idx = torch.arange(size, device=rel_pos.device)
    return _resized(rel_pos, size)[idx[:, None] - idx[None, :] + (size - 1)]


def num_virtual_keys(n: int, side: int) -> int:
    """Number of virtual pad keys appended after the ``n^3`` real keys (0 without padding)."""
    return 3 * side if side > n else 0


@contextlib.contextmanager
def serial_cpu_ops(enabled: bool = True):
    """Run the enclosed CPU tensor ops on the calling thread only (intra-op threads = 1).

    Why: every op over more than ~32k elements opens an OpenMP parallel region,
    and on a small shared CPU waking the second thread costs far more than the
    op itself (measured on 2 cores: 64k-element ``log_`` 1.8 ms with 2 threads
    vs 0.3 ms with 1; 8 ms vs 0.9 ms while another process is busy). The many
    small bias ops are cheaper serial; the matmuls and the attention stay
    parallel. ``torch.set_num_threads`` acts on the calling thread's OpenMP and
    MKL settings (torch also keeps it as the default for threads started
    meanwhile); the previous value is restored on exit. Nested uses are no-ops.
    """
    saved = torch.get_num_threads() if enabled else 1
    if saved == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _has_onednn_linear() -> bool:
    try:  # private op used by inductor; absent from builds without oneDNN
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except Exception:  # pragma: no cover - depends on the torch build
        return False


_HAS_ONEDNN_LINEAR = _has_onednn_linear()


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def _onednn_ok(x: torch.Tensor, layer: torch.nn.Linear) -> bool:
    """Whether :func:`fused_linear` may use the fused oneDNN kernel (fp32 CPU inference only)."""
    return (
        _HAS_ONEDNN_LINEAR
        and x.device.type == "cpu"
        and x.dtype == layer.weight.dtype == torch.float32
        and layer.bias is not None
        and not (torch.is_grad_enabled() and (x.requires_grad or layer.weight.requires_grad))
        and not _cpu_autocast()
    )


def fused_linear(
    x: torch.Tensor, layer: torch.nn.Linear, gelu: bool = False, residual: torch.Tensor | None = None
) -> torch.Tensor:
    """``layer(x)``, then exact (erf) GELU or ``+ residual`` (not both).

    On CPU the bias, GELU and residual add are fused into the one oneDNN matmul
    call that inductor uses: each separate elementwise pass over the activations
    is a parallel region, and on small shared CPUs those (not the FLOPs) are
    what stalls. Same numbers as the unfused ops up to fp32 rounding.
    """
    if gelu and residual is not None:
        raise ValueError("fused_linear applies GELU or a residual add, not both")
    fits = residual is None or (
        residual.shape == (*x.shape[:-1], layer.out_features) and residual.is_contiguous()
    )
    if fits and _onednn_ok(x, layer):
        mkldnn = torch.ops.mkldnn
        if residual is not None:
            return mkldnn._linear_pointwise.binary(x, residual, layer.weight, layer.bias, "add")
        return mkldnn._linear_pointwise(x, layer.weight, layer.bias, "gelu" if gelu else "none", [], "none")
    out = layer(x)
    if gelu:
        out = F.gelu(out)
    return out if residual is None else out + residual


def _cached_constant(fn):
    """``lru_cache`` for constant index/selector tensors. They are built outside
    inference mode so that autograd may save them even if the first call came
    from ``torch.inference_mode()``."""

    @functools.lru_cache(maxsize=32)
    def build(*args):
        with torch.inference_mode(False):
            return fn(*args)

    return functools.wraps(fn)(build)


@_cached_constant
def _take_index(bh: int, n: int, side: int, device: torch.device) -> torch.Tensor:
    """Flat index into ``R`` (``(bh, T, 3 * (2S - 1))``, see :func:`relpos_attention`)
    giving ``A`` as ``(bh, n, n, n_w, S_kw)`` followed by ``Bt``/``Ct`` as
    ``(bh, n, n, S_kw, 2, S_x)`` (``x >= n`` reads the padded token's row ``n^3``)."""
    s = side
    rows = n**3 + (1 if s > n else 0)
    span = 2 * s - 1
    ar = functools.partial(torch.arange, device=device)
    bh_, d, h, w, kw, x = ar(bh), ar(n), ar(n), ar(n), ar(s), ar(s)

    def flat(b, tok, j):
        return (b * rows + tok) * (3 * span) + j

    # A: token (d, h, w), table d, offset d - kw.
    tok_a = (d[:, None, None] * n + h[None, :, None]) * n + w[None, None, :]
    idx_a = flat(
        bh_.view(-1, 1, 1, 1, 1),
        tok_a.view(1, n, n, n, 1),
        (d.view(1, n, 1, 1, 1) - kw.view(1, 1, 1, 1, s)) + (s - 1),
    )
    # Bt / Ct: token (d, h, x) or the padded token, tables h / w.
    tok_x = torch.where(
        x[None, None, :] < n,
        (d[:, None, None] * n + h[None, :, None]) * n + x.clamp(max=n - 1)[None, None, :],
        torch.full((), n**3, device=device),
    )
    tok_e = tok_x.view(1, n, n, 1, 1, s)
    j_b = span + h.view(1, 1, n, 1, 1, 1) - kw.view(1, 1, 1, s, 1, 1) + (s - 1)
    j_c = 2 * span + x.view(1, 1, 1, 1, 1, s) - kw.view(1, 1, 1, s, 1, 1) + (s - 1)
    shape = (1, 1, n, s, 1, s)
    j_e = torch.cat((j_b.expand(shape), j_c.expand(shape)), dim=4)  # (1, 1, n, S_kw, 2, S_x)
    idx_e = flat(bh_.view(-1, 1, 1, 1, 1, 1), tok_e, j_e)  # (bh, n, n, S_kw, 2, S_x)
    return torch.cat((idx_a.reshape(-1), idx_e.reshape(-1)))


@_cached_constant
def _pad_constants(n: int, side: int, device: torch.device, dtype: torch.dtype):
    """``(ind, sel, neg)`` for the virtual pad keys.

    ``ind`` (S, 3): sums ``x`` into the groups ``lo``, ``hi``, ``all``.
    ``sel`` (6, 3): picks ``log SB(g) + log SC(g')`` for the three terms
    ``(hi, all)``, ``(lo, hi)``, ``(lo, lo)`` from ``[B lo, hi, all, C lo, hi, all]``.
    ``neg`` (S, 3): ``-inf`` drops the third term where ``kw < n``.
    """
    x = torch.arange(side, device=device)
    ind = torch.stack((x < n, x >= n, torch.ones_like(x, dtype=torch.bool)), dim=1).to(dtype)
    sel = torch.zeros(6, 3, device=device, dtype=dtype)
    sel[1, 0] = sel[5, 0] = 1.0  # SB(hi) SC(all)
    sel[0, 1] = sel[4, 1] = 1.0  # SB(lo) SC(hi)
    sel[0, 2] = sel[3, 2] = 1.0  # SB(lo) SC(lo), only for kw >= n
    neg = torch.zeros(side, 3, device=device, dtype=dtype)
    neg[:n, 2] = float("-inf")
    return ind, sel, neg


def relpos_attention(
    qkv: torch.Tensor,
    n: int,
    side: int,
    rel_pos: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    num_heads: int,
) -> torch.Tensor:
    """Attention of the ``n^3`` real tokens with the official relative bias.

    Equals the official attention over a zero-padded ``side^3`` window
    (``side > n``) or global attention (``side == n``), see the module doc.

    Args:
        qkv: ``(B, n^3 + V, 3 * C)`` output of the ``qkv`` linear, channel layout
            ``[q | k | v]`` x heads x head_dim; tokens in C order over the
            ``(D, H, W)`` grid, followed by ``V = num_virtual_keys(n, side)``
            rows computed from all-zero inputs (the padded token).
        n: real grid side; side: attended cube side ``S >= n``.
        rel_pos: the block's ``rel_pos_d``, ``rel_pos_h``, ``rel_pos_w``.
        num_heads: number of heads.

    Returns:
        ``(B, n^3, C)``: per-token attention output, heads concatenated (before ``proj``).
    """
    bsz, rows_in, three_c = qkv.shape
    hd = three_c // (3 * num_heads)
    tokens, nv = n**3, num_virtual_keys(n, side)
    if side < n or rows_in != tokens + nv:
        raise ValueError(f"qkv has {rows_in} rows, expected {tokens} + {nv} (n={n}, side={side})")
    qkv5 = qkv.view(bsz, rows_in, 3, num_heads, hd)
    # Strided views, no copies: SDPA reads them in place and its output is
    # laid out (B, tokens, heads, hd), so the final reshape is free too.
    q, k, v = (qkv5[:, :, i].transpose(1, 2) for i in range(3))  # (B, heads, rows_in, hd)
    with serial_cpu_ops(qkv.device.type == "cpu"):
        mask = _relpos_mask(qkv5, n, side, rel_pos)
    out = F.scaled_dot_product_attention(q[:, :, :tokens], k, v, attn_mask=mask)
    return out.transpose(1, 2).reshape(bsz, tokens, num_heads * hd)


def _relpos_mask(qkv5: torch.Tensor, n: int, side: int, rel_pos) -> torch.Tensor:
    """Attention mask ``(B, heads, n^3, n^3 + V)`` of :func:`relpos_attention`."""
    bsz, _, _, num_heads, hd = qkv5.shape
    tokens, nv = n**3, num_virtual_keys(n, side)
    bh, rows = bsz * num_heads, bsz * num_heads * n * n
    q_all = qkv5[:, :, 0].transpose(1, 2)
    # Every q . rel_pos[j] product for the real tokens and the padded one, in one matmul.
    tables = torch.cat([_resized(t, side) for t in rel_pos]).to(qkv5.dtype)  # (3(2S-1), hd)
    q_r = q_all[:, :, : tokens + (1 if nv else 0)].reshape(bh, -1, hd)  # a view when B == 1
    r = torch.bmm(q_r, tables.t().expand(bh, hd, tables.shape[0]))
    g = torch.take(r, _take_index(bh, n, side, qkv5.device))
    a = g[: rows * n * side].view(rows, n, side)  # [row=(b,h,d,h'), w, kw]
    e = g[rows * n * side :].view(rows, side, 2, side)  # [row, kw, Bt|Ct, x]

    # Real keys: bias[row, w, kd, kh, kw] = A[w, kw] + Bt[kd, kw] + Ct[kh, kw].
    b_t = e[:, :n, 0, :n].transpose(1, 2)  # (rows, kd, kw)
    c_t = e[:, :n, 1, :n].transpose(1, 2)  # (rows, kh, kw)
    bc = b_t[:, :, None, :] + c_t[:, None, :, :]  # (rows, kd, kh, kw)
    real = (a[:, :, None, None, :n], bc[:, None])
    if nv:
        # Virtual pad keys: log of the lo/hi/all sums over x, each Bt / Ct column
        # stabilised by its own max. The clamp keeps log finite (-inf * 0 in the
        # ``sel`` matmul would be NaN); a clamped sum is negligible (module doc).
        ind, sel, neg = _pad_constants(n, side, qkv5.device, qkv5.dtype)
        m = e.amax(dim=-1, keepdim=True)
        sums = torch.matmul((e - m).exp_(), ind)  # (rows, S_kw, 2, 3)
        logs = sums.clamp_min_(torch.finfo(sums.dtype).tiny).log_().add_(m)
        vbias = torch.baddbmm(neg, logs.view(rows, side, 6), sel.expand(rows, 6, 3))
        virtual = (a[:, :, :, None], vbias[:, None])  # -> (rows, w, kw, term)

    mask_shape = (bsz, num_heads, tokens, tokens + nv)
    if torch.is_grad_enabled() and (qkv5.requires_grad or any(t.requires_grad for t in rel_pos)):
        parts = [torch.add(*real).reshape(rows, n, tokens)]  # autograd: no out= writes
        if nv:
            parts.append(torch.add(*virtual).reshape(rows, n, nv))
        return torch.cat(parts, dim=-1).view(mask_shape)
    # Write both parts straight into the mask (no concatenation copy).
    mask = torch.empty(mask_shape, device=qkv5.device, dtype=qkv5.dtype)
    flat = mask.view(rows, n, tokens + nv)
    torch.add(*real, out=flat[..., :tokens].view(rows, n, n, n, n))
    if nv:
        torch.add(*virtual, out=flat[..., tokens:].view(rows, n, side, 3))
    return mask
