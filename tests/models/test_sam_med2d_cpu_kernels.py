"""The encoder's oneDNN CPU path (``cpu_kernels``) against torch's own operations, and batches
against single images: the same embeddings to fp32 rounding (max |diff| <= 1e-5)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from napari_openmedlab.models.sam_med2d import SAM_MED2D, ImageEncoderViT, ViTConfig  # noqa: E402
from napari_openmedlab.models.sam_med2d import cpu_kernels as ck  # noqa: E402

pytestmark = pytest.mark.skipif(not ck.available(), reason="this torch has no oneDNN linear")
TOL = 1e-5


def _max_diff(a, b) -> float:
    return float((a - b).abs().max())


@pytest.mark.parametrize("size", [(16, 16), (15, 9), (1, 2)])
@pytest.mark.parametrize("k, stride, padding", [(3, 2, 1), (4, 2, 1), (3, 1, 1), (2, 2, 0)])
def test_channels_last_convolutions_equal_torch(size, k, stride, padding):
    g = torch.Generator().manual_seed(k * 10 + stride)
    x = torch.randn(2, *size, 24, generator=g)
    w = torch.randn(20, 24, k, k, generator=g) / (24 * k * k) ** 0.5
    if min(size) + 2 * padding >= k:
        want = torch.relu(F.conv2d(x.permute(0, 3, 1, 2), w, stride=stride, padding=padding))
        got = ck.conv_cl(x, w, stride, padding, act="relu")
        assert got.shape == want.permute(0, 2, 3, 1).shape
        assert _max_diff(got, want.permute(0, 2, 3, 1)) <= TOL
    wt = torch.randn(24, 20, k, k, generator=g) / (24 * k * k) ** 0.5
    want = F.conv_transpose2d(x.permute(0, 3, 1, 2), wt, stride=stride, padding=padding)
    got = ck.conv_transpose_cl(x, wt, stride, padding)
    assert got.shape == want.permute(0, 2, 3, 1).shape
    assert _max_diff(got, want.permute(0, 2, 3, 1)) <= TOL


@pytest.mark.parametrize("act, fn", [("none", lambda t: t), ("relu", torch.relu), ("gelu", F.gelu)])
def test_linear_with_fused_activation_equals_torch(act, fn):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 7, 48, generator=g)
    w, b = torch.randn(96, 48, generator=g) / 7, torch.randn(96, generator=g)
    assert _max_diff(ck.linear(x, w, b, act), fn(F.linear(x, w, b))) <= TOL
    assert _max_diff(ck.linear(x, w.t().contiguous().t(), None), F.linear(x, w)) <= TOL  # strided weight


def test_only_fp32_inference_on_the_cpu_is_routed():
    x = torch.zeros(2, 3)
    assert ck.usable(x) and not ck.usable(x.double())
    assert not ck.usable(torch.zeros(2, 3, requires_grad=True))
    with torch.no_grad():
        assert ck.usable(torch.zeros(2, 3, requires_grad=True))


@pytest.fixture(scope="module")
def official_encoder():
    """SAM-Med2D's encoder in the official configuration (random weights: the init's scales)."""
    torch.manual_seed(0)
    return ImageEncoderViT(SAM_MED2D.encoder).eval()


def _run(encoder, x, kernels):
    encoder.cpu_kernels = kernels
    try:
        with torch.no_grad():
            return encoder(x)
    finally:
        encoder.cpu_kernels = "onednn"


def test_official_encoder_fast_path_equals_torch_path(official_encoder, monkeypatch):
    calls = []
    linear = ck.linear
    monkeypatch.setattr(ck, "linear", lambda *a, **k: (calls.append(1), linear(*a, **k))[1])
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    want = _run(official_encoder, x, "torch")
    assert not calls  # the reference took torch's operations
    got = _run(official_encoder, x, "onednn")
    assert len(calls) == 12 * 6  # qkv, proj, lin1, lin2, adapter down and up per block
    assert got.shape == (1, 256, 16, 16)
    assert _max_diff(got, want) <= TOL


def test_official_encoder_batch_equals_one_by_one(official_encoder):
    x = torch.randn(3, 3, 256, 256, generator=torch.Generator().manual_seed(4))
    together = _run(official_encoder, x, "onednn")
    for i in range(3):
        assert _max_diff(together[i : i + 1], _run(official_encoder, x[i : i + 1], "onednn")) <= TOL


@pytest.mark.parametrize("window", [14, 6, 4])
def test_fast_path_matches_float64_maths(window):
    # small encoder, 16x16 tokens: windows padded to 28 and 18, or tiling exactly
    cfg = ViTConfig(
        img_size=256,
        embed_dim=48,
        depth=2,
        num_heads=4,
        out_chans=16,
        window_size=window,
        global_attn_indexes=(1,),
        adapter=True,
    )
    torch.manual_seed(window)
    enc = ImageEncoderViT(cfg).eval()
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.05 * torch.randn_like(p))  # non-zero biases and rel-pos tables
    x = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(5))
    got = _run(enc, x, "onednn")
    want = _run(enc.double(), x.double(), "torch")  # float64: torch's operations whatever the flag
    assert _max_diff(got.double(), want) <= TOL
