"""The image encoder's matrix products on the CPU through oneDNN, channels last.

Why: torch's CPU ``linear`` and ``matmul`` call MKL, and MKL takes its AVX2 code path on AMD
processors; oneDNN (bundled with torch as ``mkldnn``) runs AVX-512 there. On the project's 2-core
AMD EPYC (Zen 5) oneDNN's fp32 products run at 2.2-2.4x MKL's rate for every shape of the
SAM-Med2D encoder (``benchmarks/bench_sam_med2d_propagation.py`` prints the profile). The maths
is the same fp32 products with another summation order: the encoder's output moves by about
2e-6 (``tests/models/test_sam_med2d_cpu_kernels.py`` holds it to 1e-5).

The adapter's two convolutions (3x3 stride 2 down, 4x4 stride 2 transposed up) are written as
one product each on channels-last tokens, which is how the blocks hold them anyway, so no
permute copies: the down convolution gathers its ``k*k`` strided views into columns, the up
convolution's product gives every input pixel its ``k*k`` output taps, which strided adds place
(the ``fold`` of the NCHW form, without its layout change). torch's own ``conv2d`` /
``conv_transpose2d`` (oneDNN too) were slower here at batch 1 and 4: they reorder the large
adapter weights on every call.

Used only where it is exact to that order of rounding and supported: fp32 tensors on the CPU,
nothing that needs a gradient, and a torch with oneDNN's ``_linear_pointwise``. Everything else
(float64 tests, CUDA, training) takes the plain torch operations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _find_op():
    try:  # absent from builds without oneDNN (some ARM wheels); lookups of a missing op raise
        return torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


_OP = _find_op()


def available() -> bool:
    """Whether this torch build has oneDNN's fused linear (x86 CPU builds do)."""
    return _OP is not None and torch.backends.mkldnn.is_available()


def usable(x: torch.Tensor) -> bool:
    """Whether ``x`` may take the oneDNN path: fp32 on the CPU, no gradient wanted."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not (torch.is_grad_enabled() and x.requires_grad)
        and available()
    )


def linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, act: str = "none"
) -> torch.Tensor:
    """``act(x @ weight.T + bias)`` over the last axis of ``x``; ``act`` "none", "relu" or "gelu"
    (erf GELU, as ``F.gelu``), applied inside the product's epilogue."""
    weight = weight.detach()
    bias = None if bias is None else bias.detach()
    algorithm = "none" if act == "gelu" else ""
    return _OP(x, weight, bias, act, [], algorithm)


def conv_cl(
    x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int, act: str = "none"
) -> torch.Tensor:
    """``conv2d`` (square kernel, no bias) on channels-last ``(B, H, W, Cin)`` -> ``(B, OH, OW, Cout)``.

    The ``k*k`` strided views of the zero-padded input are stacked as columns ordered
    ``(cin, ky, kx)``, the order of ``weight.reshape(cout, -1)`` (a view: no weight copy).
    """
    b, h, w, cin = x.shape
    cout, k = weight.shape[0], weight.shape[2]
    oh, ow = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    xp = F.pad(x, (0, 0, padding, padding, padding, padding)) if padding else x
    span_h, span_w = stride * (oh - 1) + 1, stride * (ow - 1) + 1
    taps = [xp[:, ky : ky + span_h : stride, kx : kx + span_w : stride] for ky in range(k) for kx in range(k)]
    cols = torch.stack(taps, dim=-1).reshape(b, oh, ow, cin * k * k)
    return linear(cols, weight.reshape(cout, -1), None, act)


def conv_transpose_cl(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """``conv_transpose2d`` (square kernel, no bias) on channels-last ``(B, H, W, Cin)`` tokens.

    ``weight`` is ``(cin, cout, k, k)``. One product gives each input pixel its ``cout*k*k``
    contributions; tap ``(ky, kx)`` of input ``(i, j)`` lands on output ``(s*i + ky - p, s*j + kx - p)``,
    so each tap is one strided add into a buffer that the crop by ``padding`` turns into the output.
    """
    b, h, w, cin = x.shape
    cout, k = weight.shape[1], weight.shape[2]
    cols = linear(x, weight.reshape(cin, -1).t()).reshape(b, h, w, cout, k, k)
    full_h, full_w = stride * (h - 1) + k, stride * (w - 1) + k
    out = x.new_zeros(b, full_h, full_w, cout)
    span_h, span_w = stride * (h - 1) + 1, stride * (w - 1) + 1
    for ky in range(k):
        for kx in range(k):
            out[:, ky : ky + span_h : stride, kx : kx + span_w : stride] += cols[..., ky, kx]
    return out[:, padding : full_h - padding, padding : full_w - padding]
