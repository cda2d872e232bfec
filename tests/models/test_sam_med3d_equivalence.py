"""Our SAM-Med3D network against the official one (medim), with the same random weights.

The official network is built by ``medim.create_model("SAM-Med3D", pretrained=False)``
(no download), its parameters are randomised (including the relative-position
tables, which medim initialises to zero), saved in the official checkpoint format
and loaded into ours through :func:`load_sam_med3d`. Then image embedding, prompt
embeddings and low-res logits must agree to 1e-4 (fp32, CPU).

The full-size official image encoder takes ~10 s on two cores, so it runs once
(module-scoped fixture); the decoder checks reuse that embedding.
"""

from __future__ import annotations

import pytest
import torch

medim = pytest.importorskip("medim")

from napari_openmedlab.models.sam_med3d import (  # noqa: E402
    Sam3D,
    SamMed3DConfig,
    build_sam_med3d,
    load_sam_med3d,
)

TOL = 1e-4


def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every weight a non-trivial value (medim zero-initialises several)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "rel_pos" in name or "pos_embed" in name or name.endswith("qkv.bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            elif "point_embed" in name or "mask_embed" in name or "_token" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias") or (name.endswith(".weight") and p.dim() == 1):
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)


@pytest.fixture(scope="module")
def official():
    torch.manual_seed(0)
    model = medim.create_model("SAM-Med3D", pretrained=False)
    _randomise(model)
    return model.eval()


@pytest.fixture(scope="module")
def ours(official, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "sam_med3d_random.pth"
    torch.save({"model_state_dict": official.state_dict(), "epoch": 1}, path)
    model = load_sam_med3d(path, "cpu")
    path.unlink()
    return model


@pytest.fixture(scope="module")
def crop():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(1, 1, 128, 128, 128, generator=gen)


@pytest.fixture(scope="module")
def embeddings(official, ours, crop):
    with torch.inference_mode():
        return official.image_encoder(crop), ours.encode(crop)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item() if a.numel() else 0.0


def test_state_dict_keys_and_shapes_are_official(official):
    ours_sd = build_sam_med3d().state_dict()
    official_sd = official.state_dict()
    assert list(ours_sd) == list(official_sd)
    for key, value in official_sd.items():
        assert ours_sd[key].shape == value.shape, key
    assert ours_sd["image_encoder.pos_embed"].shape == (1, 8, 8, 8, 768)
    assert ours_sd["image_encoder.blocks.0.attn.rel_pos_d"].shape == (27, 64)  # window 14
    assert ours_sd["image_encoder.blocks.2.attn.rel_pos_d"].shape == (15, 64)  # global, 8^3
    assert ours_sd["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"].shape == (3, 128)


def test_loaded_model_is_in_eval_mode_with_fast_encoder(ours):
    assert isinstance(ours, Sam3D)
    assert not ours.training
    assert ours.fast_encoder


@pytest.mark.slow
def test_image_embedding_matches_official(embeddings):
    ref, got = embeddings
    assert got.shape == (1, 384, 8, 8, 8)
    assert _max_diff(ref, got) <= TOL


def test_dense_positional_encoding_matches_official(official, ours):
    ref = official.prompt_encoder.get_dense_pe()
    got = ours.prompt_encoder.get_dense_pe()
    assert got.shape == (1, 384, 8, 8, 8)
    assert _max_diff(ref, got) <= TOL


def _official_step(official, emb, coords, labels, mask, multimask=False):
    points = None if coords is None else [coords, labels]
    sparse, dense = official.prompt_encoder(points=points, boxes=None, masks=mask)
    logits, iou = official.mask_decoder(
        image_embeddings=emb,
        image_pe=official.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )
    return sparse, dense, logits, iou


def _our_step(ours, emb, coords, labels, mask, multimask=False):
    points = None if coords is None else (coords, labels)
    sparse, dense = ours.prompt_encoder(points=points, boxes=None, masks=mask)
    logits, iou = ours.mask_decoder(
        emb, ours.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=multimask
    )
    return sparse, dense, logits, iou


def _assert_close(ref, got):
    for name, a, b in zip(("sparse", "dense", "logits", "iou"), ref, got):
        assert _max_diff(a, b) <= TOL, name


ZERO_MASK = torch.zeros(1, 1, 32, 32, 32)
PROMPT_SETS = {
    "single_positive": (torch.tensor([[[64, 64, 64]]]), torch.tensor([[1]])),
    "negatives": (torch.tensor([[[10, 20, 30], [100, 90, 5]]]), torch.tensor([[0, 0]])),
    "mixed_float_coords": (
        torch.tensor([[[70.0, 12.0, 3.0], [127.0, 0.0, 64.0], [33.0, 99.0, 120.0]]]),
        torch.tensor([[1, 0, 1]]),
    ),
}


@pytest.mark.parametrize("name", sorted(PROMPT_SETS))
@pytest.mark.parametrize("mask_kind", ["zeros", "none"])
def test_prompts_and_logits_match_official(official, ours, embeddings, name, mask_kind):
    coords, labels = PROMPT_SETS[name]
    mask = ZERO_MASK if mask_kind == "zeros" else None
    _, emb = embeddings  # the same embedding feeds both decoders
    with torch.inference_mode():
        ref = _official_step(official, emb, coords, labels, mask)
        got = _our_step(ours, emb, coords, labels, mask)
    assert got[0].shape == (1, coords.shape[1] + 1, 384)  # one padding token appended
    assert got[1].shape == (1, 384, 8, 8, 8)
    assert got[2].shape == (1, 1, 32, 32, 32)
    assert got[3].shape == (1, 1)
    _assert_close(ref, got)


def test_accumulated_clicks_with_previous_logits_match_official(official, ours, embeddings):
    """Official inference loop: clicks accumulate, previous logits are the mask prompt."""
    _, emb = embeddings
    clicks = [([64, 64, 64], 1), ([40, 80, 70], 0), ([90, 30, 50], 1), ([5, 120, 60], 0)]
    coords = torch.zeros(1, 0, 3)
    labels = torch.zeros(1, 0, dtype=torch.int64)
    prev_ref = prev_got = None
    with torch.inference_mode():
        for point, label in clicks:
            coords = torch.cat([coords, torch.tensor([[point]], dtype=torch.float32)], dim=1)
            labels = torch.cat([labels, torch.tensor([[label]])], dim=1)
            mask_ref = ZERO_MASK if prev_ref is None else prev_ref
            ref = _official_step(official, emb, coords, labels, mask_ref)
            got_logits = ours.decode(emb, coords, labels, prev_got)
            got = _our_step(ours, emb, coords, labels, mask_ref)
            _assert_close(ref, got)
            assert _max_diff(ref[2], got_logits) <= TOL
            prev_ref, prev_got = ref[2], got_logits


def test_decode_without_mask_uses_zero_logits_like_official_inference(ours, embeddings):
    _, emb = embeddings
    coords, labels = PROMPT_SETS["single_positive"]
    with torch.inference_mode():
        implicit = ours.decode(emb, coords, labels, None)
        explicit = ours.decode(emb, coords, labels, ZERO_MASK)
        no_mask_embed = _our_step(ours, emb, coords, labels, None)[2]
    assert torch.equal(implicit, explicit)
    assert not torch.allclose(implicit, no_mask_embed)


def test_no_points_multimask_and_prompt_batch_match_official(official, ours, embeddings):
    _, emb = embeddings
    coords = torch.tensor([[[64, 64, 64], [10, 10, 10]], [[3, 4, 5], [120, 60, 30]]])
    labels = torch.tensor([[1, 0], [1, 1]])
    masks = torch.randn(2, 1, 32, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        # points=None (used by official training)
        _assert_close(
            _official_step(official, emb, None, None, masks[:1]),
            _our_step(ours, emb, None, None, masks[:1]),
        )
        # a batch of 2 prompt sets against one image embedding, 3 masks out
        ref = _official_step(official, emb, coords, labels, masks, multimask=True)
        got = _our_step(ours, emb, coords, labels, masks, multimask=True)
        assert got[2].shape == (2, 3, 32, 32, 32)
        _assert_close(ref, got)
        logits, iou = ours.decode(emb, coords, labels, masks, multimask_output=True, return_iou=True)
    assert _max_diff(ref[2], logits) <= TOL and _max_diff(ref[3], iou) <= TOL


def _small(window: int, global_idx: tuple = (), heads: int = 2) -> SamMed3DConfig:
    """64^3 input -> 4^3 tokens; ``window`` > 4 pads each window like the official 8 -> 14."""
    return SamMed3DConfig(
        img_size=64,
        encoder_embed_dim=32 * heads,
        encoder_depth=3,
        encoder_num_heads=heads,
        encoder_global_attn_indexes=global_idx,
        window_size=window,
        prompt_embed_dim=96,
        decoder_mlp_dim=128,
    )


SMALL_CONFIGS = {  # name: (config, batch size)
    "official_window_14": (_small(14, (1,)), 1),  # 4^3 tokens padded to 14^3
    "window_7_batch_2": (_small(7, (2,), heads=3), 2),
    "window_plus_one": (_small(5), 2),
    "window_equals_grid": (_small(4, (0,)), 2),  # no padding at all
    "multi_window": (_small(3), 1),  # grid > window: several windows, padded path in both
}


@pytest.mark.parametrize("name", sorted(SMALL_CONFIGS))
def test_fast_encoder_matches_reference_path(name):
    config, batch = SMALL_CONFIGS[name]
    torch.manual_seed(0)
    model = build_sam_med3d(config)
    _randomise(model, seed=5)
    x = torch.randn(batch, 1, 64, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        fast = model.encode(x, fast=True)
        ref = model.encode(x, fast=False)
        model.fast_encoder = False
        default_ref = model.encode(x)
    assert fast.shape == (batch, 96, 4, 4, 4)
    assert torch.equal(ref, default_ref)
    assert _max_diff(fast, ref) <= TOL


def test_fast_encoder_is_differentiable_and_matches_reference_gradients():
    """With autograd on, the fast path takes its unfused branches (no oneDNN fusion,
    no ``out=`` writes) and must still match the reference path, gradients included."""
    config, batch = SMALL_CONFIGS["official_window_14"]
    torch.manual_seed(0)
    model = build_sam_med3d(config)
    _randomise(model, seed=7)
    x = torch.randn(batch, 1, 64, 64, 64, generator=torch.Generator().manual_seed(4))
    encoder = model.image_encoder
    probes = [encoder.blocks[0].attn.rel_pos_d, encoder.blocks[0].attn.qkv.bias, encoder.pos_embed]
    grads = {}
    for fast in (True, False):
        encoder.zero_grad()
        out = encoder(x, fast=fast)
        out.square().sum().backward()
        grads[fast] = (out.detach(), [p.grad.clone() for p in probes])
    assert _max_diff(grads[True][0], grads[False][0]) <= TOL
    for got, ref in zip(grads[True][1], grads[False][1]):
        assert _max_diff(got, ref) <= TOL * max(1.0, ref.abs().max().item())


def test_serial_cpu_ops_restores_the_thread_count():
    from napari_openmedlab.models.sam_med3d.fast_encoder import serial_cpu_ops

    before = torch.get_num_threads()
    with serial_cpu_ops():
        assert torch.get_num_threads() == 1
        with serial_cpu_ops():  # nested: stays serial, restores nothing early
            pass
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), serial_cpu_ops():
        raise RuntimeError("restored on errors too")
    assert torch.get_num_threads() == before
    with serial_cpu_ops(enabled=False):
        assert torch.get_num_threads() == before


def test_fast_encoder_stays_exact_with_huge_relative_position_logits():
    """Bias terms of hundreds (far beyond exp's fp32 range) must not overflow the
    padded-key sums: they are stabilised per column before exponentiation."""
    config, _ = SMALL_CONFIGS["official_window_14"]
    torch.manual_seed(0)
    model = build_sam_med3d(config)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.image_encoder.named_parameters():
            if "rel_pos" in name or name.endswith("qkv.bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 5.0)
    x = torch.randn(1, 1, 64, 64, 64, generator=gen)
    with torch.inference_mode():
        fast, ref = model.encode(x, fast=True), model.encode(x, fast=False)
    assert torch.isfinite(fast).all()
    assert _max_diff(fast, ref) <= TOL
