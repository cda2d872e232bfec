"""The selective scan of Mamba (S6), as Swin-UMamba's SS2D calls it.

For every channel ``d`` and state ``n`` the scan runs the linear recurrence over the sequence ``l``::

    delta = softplus(delta + delta_bias)            (if asked)
    h[l]  = exp(delta[l] * A) * h[l - 1] + delta[l] * B[l] * u[l]
    y[l]  = sum_n C[l] * h[l] + D * u[l]

Shapes follow mamba-ssm's ``selective_scan_fn``: ``u, delta`` (b, d, l); ``A`` (d, n); ``B, C``
(b, g, n, l), channel ``d`` using group ``d // (D / g)``; ``D, delta_bias`` (d,). The result is
float32 (b, d, l).

:func:`selective_scan` uses mamba-ssm's CUDA kernel when mamba-ssm imports and the tensors are on a
GPU, else :func:`selective_scan_torch`: the same recurrence in plain PyTorch. The decays and drives
of a block of the sequence are computed vectorised, then the recurrence runs one fused in-place
multiply-add per step over all (b, d, n) at once; blocks hand their last state on, so the
(b, d, l, n) states never exist at once and the working buffers stay bounded (two of 32 MB,
whatever the image size). A sequential step is exact and cheap here: a parallel (doubling) scan would do
log2(l) times the arithmetic, and the closed form through cumulative sums overflows.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

__all__ = ["selective_scan", "selective_scan_torch", "mamba_ssm_kernel", "interrupt_check"]

# Elements of one (block, b, d, n) working buffer (32 MB of float32; two are alive). Large blocks
# keep the vectorised steps big enough for several threads: 1 MB (cache-sized) blocks were up to
# 1.6x faster on one thread but 2.5-7x slower on two (thread start-up per small op).
_WORK_ELEMENTS = 8 * 1024 * 1024


_local = threading.local()


@contextlib.contextmanager
def interrupt_check(check: Callable[[], None]) -> Iterator[None]:
    """While active (in this thread), long CPU scans call ``check()`` between blocks.

    ``check`` raises to stop the scan (a cancelled prediction): a scan over a large image is the
    longest single step of Swin-UMamba on the CPU, so this keeps cancelling quick.
    """
    previous = getattr(_local, "check", None)
    _local.check = check
    try:
        yield
    finally:
        _local.check = previous


@functools.lru_cache(maxsize=1)
def mamba_ssm_kernel():
    """mamba-ssm's ``selective_scan_fn`` if the package imports (the ``[gpu]`` extra), else None."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # not installed, or built without CUDA: the pure-PyTorch scan is used
        return None
    return selective_scan_fn


def selective_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False):
    """The selective scan: mamba-ssm's kernel on a GPU when available, else ours (same result)."""
    kernel = mamba_ssm_kernel() if u.is_cuda else None
    if kernel is not None:
        return kernel(u, delta, A, B, C, D, z=None, delta_bias=delta_bias,
                      delta_softplus=delta_softplus, return_last_state=False)
    return selective_scan_torch(u, delta, A, B, C, D, delta_bias, delta_softplus)


@torch.no_grad()  # inference only: the in-place recurrence has no autograd (training uses mamba-ssm)
def selective_scan_torch(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    block_len: int | None = None,
) -> torch.Tensor:
    """The selective scan in plain PyTorch (see the module doc); float32 (b, d, l)."""
    batch, dim, length = u.shape
    n_state = A.shape[1]
    groups = B.shape[1]
    if dim % groups:
        raise ValueError(f"{dim} channels do not split into {groups} groups of B and C")
    u = u.float()
    delta = delta.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    per_group = dim // groups
    if block_len is None:
        block_len = max(1, _WORK_ELEMENTS // max(1, batch * dim * n_state))
    # Sequence first, so that one step of the recurrence reads and writes contiguous memory.
    a = A.float().view(groups, per_group, n_state)
    u_seq = u.permute(2, 0, 1).reshape(length, batch, groups, per_group)
    dt_seq = delta.permute(2, 0, 1).reshape(length, batch, groups, per_group)
    b_seq = B.float().permute(3, 0, 1, 2).contiguous()  # (l, b, g, n)
    c_seq = C.float().permute(3, 0, 1, 2).contiguous()
    state = torch.zeros(batch, groups, per_group, n_state, dtype=torch.float32, device=u.device)
    y = torch.empty(length, batch, groups, per_group, dtype=torch.float32, device=u.device)
    # Work buffers reused by every block: fresh allocations cost more than the arithmetic here.
    shape = (min(block_len, length), batch, groups, per_group, n_state)
    decay_buf = torch.empty(shape, dtype=torch.float32, device=u.device)
    drive_buf = torch.empty(shape, dtype=torch.float32, device=u.device)
    check = getattr(_local, "check", None)
    for t0 in range(0, length, block_len):
        if check is not None:
            check()
        t1 = min(length, t0 + block_len)
        dt = dt_seq[t0:t1, ..., None]  # (t, b, g, p, 1)
        decay = torch.mul(dt, a, out=decay_buf[: t1 - t0]).exp_()  # (t, b, g, p, n)
        drive = torch.mul(dt * u_seq[t0:t1, ..., None], b_seq[t0:t1, :, :, None, :],
                          out=drive_buf[: t1 - t0])
        for t in range(t1 - t0):  # h = decay * h + drive, written in place into ``drive``
            state = torch.addcmul(drive[t], decay[t], state, out=drive[t])
        state = state.clone()  # a view of the buffer, which is overwritten next
        # ``drive`` now holds the states: y = <C, h>
        torch.matmul(drive, c_seq[t0:t1, :, :, :, None], out=y[t0:t1, ..., None])
    y = y.view(length, batch, dim).permute(1, 2, 0)
    if D is not None:
        y = y + u * D.float()[None, :, None]
    return y.contiguous()
