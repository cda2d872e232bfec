"""SAM-Med2D / SAM / MedSAM network, official key layout, preprocessing and the slice helper."""

from __future__ import annotations

import math
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from napari_openmedlab.models.errors import CheckpointMismatchError  # noqa: E402
from napari_openmedlab.models.sam_med2d import (  # noqa: E402
    CT_WINDOWS,
    MEDSAM,
    SAM_MED2D,
    SAM_PIXEL_MEAN,
    SAM_PIXEL_STD,
    SAM_VIT_B,
    ImageEncoderViT,
    Sam2DModel,
    ViTConfig,
    build_sam2d,
    ct_window_bounds,
    intensity_bounds,
    percentile_bounds,
    prepare_slice,
    small_config,
    to_uint8,
)
from napari_openmedlab.models.sam_med2d.sam_modules import modeling as official  # noqa: E402


def _official_package():
    """segment_anything's package as published: its __init__ imports torchvision, which a CPU-only
    environment may hold as a build that does not load beside torch (then the test is skipped)."""
    try:
        import segment_anything
    except Exception as err:  # RuntimeError from a mismatched torchvision, not only ImportError
        pytest.skip(f"segment_anything's package does not import here ({type(err).__name__}: {err})")
    return segment_anything


# ------------------------------------------------------------------ reference maths
# A plain re-statement of the published SAM-Med2D encoder, written for this test: loops over
# windows and heads, explicit index tables for the relative positions, functional convs.


def _ln(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def _ref_attention(x, p, pre, heads):
    """Self-attention of one window ``x`` of shape (h, w, C) with decomposed rel-pos bias."""
    h, w, c = x.shape
    d = c // heads
    tok = x.reshape(h * w, c)
    qkv = tok @ p[pre + "qkv.weight"].T + p[pre + "qkv.bias"]
    q, k, v = qkv[:, :c], qkv[:, c : 2 * c], qkv[:, 2 * c :]
    rows = torch.arange(h).repeat_interleave(w)  # token -> row
    cols = torch.arange(w).repeat(h)  # token -> column
    rel_h = p[pre + "rel_pos_h"][rows[:, None] - rows[None, :] + h - 1]  # (hw, hw, d)
    rel_w = p[pre + "rel_pos_w"][cols[:, None] - cols[None, :] + w - 1]
    outs = []
    for i in range(heads):
        qh, kh, vh = (t[:, i * d : (i + 1) * d] for t in (q, k, v))
        logits = qh @ kh.T / math.sqrt(d)
        logits = logits + (qh[:, None, :] * rel_h).sum(-1) + (qh[:, None, :] * rel_w).sum(-1)
        outs.append(torch.softmax(logits, dim=-1) @ vh)
    out = torch.cat(outs, dim=1) @ p[pre + "proj.weight"].T + p[pre + "proj.bias"]
    return out.reshape(h, w, c)


def _ref_block(x, p, pre, cfg: ViTConfig, window: int):
    """One block on one image ``x`` of shape (H, W, C)."""
    n1 = _ln(x, p[pre + "norm1.weight"], p[pre + "norm1.bias"], 1e-6)
    H, W, C = x.shape
    if window:
        Hp, Wp = -(-H // window) * window, -(-W // window) * window
        padded = torch.zeros(Hp, Wp, C, dtype=x.dtype)
        padded[:H, :W] = n1
        att = torch.zeros_like(padded)
        for r in range(0, Hp, window):
            for s in range(0, Wp, window):
                att[r : r + window, s : s + window] = _ref_attention(
                    padded[r : r + window, s : s + window], p, pre + "attn.", cfg.num_heads
                )
        att = att[:H, :W]
    else:
        att = _ref_attention(n1, p, pre + "attn.", cfg.num_heads)
    y = x + att
    n = _ln(y, p[pre + "norm2.weight"], p[pre + "norm2.bias"], 1e-6)
    mlp = F.gelu(n @ p[pre + "mlp.lin1.weight"].T + p[pre + "mlp.lin1.bias"]) @ p[pre + "mlp.lin2.weight"].T
    mlp = mlp + p[pre + "mlp.lin2.bias"]
    if not cfg.adapter:
        return y + mlp
    a = pre + "Adapter."
    gate = torch.sigmoid(
        torch.relu(n.mean(dim=(0, 1)) @ p[a + "channel.0.weight"].T) @ p[a + "channel.2.weight"].T
    )
    z = (n * gate).permute(2, 0, 1)[None]
    s = torch.relu(F.conv2d(z, p[a + "spatial.0.weight"], stride=2, padding=1))
    s = torch.relu(F.conv_transpose2d(s, p[a + "spatial.2.weight"], stride=2, padding=1))
    adapter = _ln(n + s[0].permute(1, 2, 0), p[a + "norm.weight"], p[a + "norm.bias"], 1e-5)
    return y + mlp + adapter


def _ln2d(x, w, b):  # (C, H, W)
    return _ln(x.permute(1, 2, 0), w, b, 1e-6).permute(2, 0, 1)


def _ref_encoder(img, p, cfg: ViTConfig):
    """(3, S, S) -> (C_out, S/16, S/16)."""
    x = F.conv2d(img[None], p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], stride=cfg.patch_size)
    x = x[0].permute(1, 2, 0) + p["pos_embed"][0]
    for i in range(cfg.depth):
        window = 0 if i in cfg.global_attn_indexes else cfg.window_size
        x = _ref_block(x, p, f"blocks.{i}.", cfg, window)
    x = x.permute(2, 0, 1)
    x = _ln2d(F.conv2d(x[None], p["neck.0.weight"])[0], p["neck.1.weight"], p["neck.1.bias"])
    x = _ln2d(F.conv2d(x[None], p["neck.2.weight"], padding=1)[0], p["neck.3.weight"], p["neck.3.bias"])
    return x


def _randomise(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            is_norm = name.endswith(("norm1.weight", "norm2.weight", ".norm.weight"))
            if is_norm or (name.startswith("neck.") and t.ndim == 1 and name.endswith("weight")):
                t.copy_(1.0 + 0.2 * torch.randn(t.shape, generator=g, dtype=t.dtype))
            else:
                t.copy_(0.2 * torch.randn(t.shape, generator=g, dtype=t.dtype))
    return module


@pytest.mark.parametrize("window", [14, 6, 4])
def test_adapter_encoder_matches_reference_maths(window):
    # 16x16 tokens: window 14 pads to 28 (the official SAM-Med2D case), 6 pads to 18, 4 tiles
    cfg = ViTConfig(
        img_size=256,
        embed_dim=32,
        depth=2,
        num_heads=4,
        out_chans=16,
        window_size=window,
        global_attn_indexes=(1,),
        adapter=True,
    )
    enc = _randomise(ImageEncoderViT(cfg)).double().eval()
    p = {k: v for k, v in enc.state_dict().items()}
    img = torch.randn(2, 3, 256, 256, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = enc(img)
    assert got.shape == (2, 16, 16, 16)
    for b in range(2):
        want = _ref_encoder(img[b], p, cfg)
        torch.testing.assert_close(got[b], want, rtol=1e-9, atol=1e-9)


def test_adapter_changes_the_output():
    cfg = ViTConfig(
        img_size=64,
        embed_dim=32,
        depth=1,
        num_heads=4,
        out_chans=16,
        window_size=0,
        global_attn_indexes=(),
        adapter=True,
    )
    enc = _randomise(ImageEncoderViT(cfg)).eval()
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        with_adapter = enc(img)
        for n, t in enc.state_dict().items():
            if "Adapter.spatial" in n or "Adapter.norm" in n:
                t.zero_()
        without = enc(img)
    assert not torch.allclose(with_adapter, without)


def test_encoder_without_adapters_matches_segment_anything():
    Reference = official.ImageEncoderViT

    ref = Reference(
        img_size=128,
        patch_size=16,
        embed_dim=48,
        depth=3,
        num_heads=4,
        mlp_ratio=4.0,
        out_chans=24,
        qkv_bias=True,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        use_rel_pos=True,
        window_size=3,
        global_attn_indexes=(1,),
    )
    ours = ImageEncoderViT(
        ViTConfig(
            img_size=128,
            embed_dim=48,
            depth=3,
            num_heads=4,
            out_chans=24,
            window_size=3,
            global_attn_indexes=(1,),
        )
    )
    _randomise(ref)
    ours.load_state_dict(ref.state_dict(), strict=True)
    img = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(ours(img), ref(img), rtol=1e-4, atol=1e-4)


def test_encoder_rejects_wrong_input_size():
    enc = ImageEncoderViT(ViTConfig(img_size=64, embed_dim=16, depth=1, num_heads=2, out_chans=8))
    with pytest.raises(ValueError):
        enc(torch.zeros(1, 3, 32, 32))


# ------------------------------------------------------------------ official key layout


def _official_encoder_keys(
    img, adapter, embed=768, depth=12, heads=12, window=14, glob=(2, 5, 8, 11), out=256
):
    """The image-encoder keys and shapes of the official checkpoints, written out by hand."""
    g, hd, e = img // 16, embed // heads, "image_encoder."
    keys = {
        e + "pos_embed": (1, g, g, embed),
        e + "patch_embed.proj.weight": (embed, 3, 16, 16),
        e + "patch_embed.proj.bias": (embed,),
        e + "neck.0.weight": (out, embed, 1, 1),
        e + "neck.1.weight": (out,),
        e + "neck.1.bias": (out,),
        e + "neck.2.weight": (out, out, 3, 3),
        e + "neck.3.weight": (out,),
        e + "neck.3.bias": (out,),
    }
    for i in range(depth):
        b = f"{e}blocks.{i}."
        rel = 2 * (g if i in glob else window) - 1
        keys.update(
            {
                b + "norm1.weight": (embed,),
                b + "norm1.bias": (embed,),
                b + "attn.rel_pos_h": (rel, hd),
                b + "attn.rel_pos_w": (rel, hd),
                b + "attn.qkv.weight": (3 * embed, embed),
                b + "attn.qkv.bias": (3 * embed,),
                b + "attn.proj.weight": (embed, embed),
                b + "attn.proj.bias": (embed,),
                b + "norm2.weight": (embed,),
                b + "norm2.bias": (embed,),
                b + "mlp.lin1.weight": (4 * embed, embed),
                b + "mlp.lin1.bias": (4 * embed,),
                b + "mlp.lin2.weight": (embed, 4 * embed),
                b + "mlp.lin2.bias": (embed,),
            }
        )
        if adapter:
            keys.update(
                {
                    b + "Adapter.norm.weight": (embed,),
                    b + "Adapter.norm.bias": (embed,),
                    b + "Adapter.channel.0.weight": (embed // 4, embed),
                    b + "Adapter.channel.2.weight": (embed, embed // 4),
                    b + "Adapter.spatial.0.weight": (embed, embed, 3, 3),
                    b + "Adapter.spatial.2.weight": (embed, embed, 4, 4),
                }
            )
    return keys


def _shapes(module, prefix=""):
    return {prefix + k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def full_sam_med2d():
    return Sam2DModel(SAM_MED2D)


def test_full_sam_med2d_keys_and_shapes_are_official(full_sam_med2d):
    MaskDecoder, PromptEncoder = official.MaskDecoder, official.PromptEncoder
    TwoWayTransformer = official.TwoWayTransformer

    ours = _shapes(full_sam_med2d)
    enc = {k: v for k, v in ours.items() if k.startswith("image_encoder.")}
    assert enc == _official_encoder_keys(256, adapter=True)
    # prompt encoder / mask decoder as SAM-Med2D's build_sam builds them for image_size=256
    pe = PromptEncoder(
        embed_dim=256, image_embedding_size=(16, 16), input_image_size=(256, 256), mask_in_chans=16
    )
    md = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    rest = {k: v for k, v in ours.items() if not k.startswith("image_encoder.")}
    assert rest == {**_shapes(pe, "prompt_encoder."), **_shapes(md, "mask_decoder.")}
    # a few size-dependent entries spelled out
    assert ours["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] == (2, 128)
    assert ours["prompt_encoder.mask_downscaling.0.weight"] == (4, 1, 2, 2)
    assert ours["prompt_encoder.mask_downscaling.6.weight"] == (256, 16, 1, 1)
    assert ours["mask_decoder.mask_tokens.weight"] == (4, 256)
    assert ours["mask_decoder.iou_prediction_head.layers.2.weight"] == (4, 256)
    assert len(ours) == 314 + 12 * 6
    assert full_sam_med2d.prompt_encoder.mask_input_size == (64, 64)
    assert full_sam_med2d.prompt_encoder.image_embedding_size == (16, 16)


@pytest.mark.parametrize("config", [SAM_VIT_B, MEDSAM], ids=lambda c: c.name)
def test_sam_vit_b_and_medsam_keys_match_segment_anything(config):
    sam_model_registry = _official_package().sam_model_registry

    ref = _shapes(sam_model_registry["vit_b"]())
    ours = _shapes(Sam2DModel(config))
    assert ours == ref
    assert {k: v for k, v in ours.items() if k.startswith("image_encoder.")} == _official_encoder_keys(
        1024, adapter=False
    )


@pytest.mark.slow
def test_full_sam_med2d_forward_shapes(full_sam_med2d):
    model = full_sam_med2d.eval()
    emb = model.embed(torch.zeros(1, 3, 256, 256))
    assert emb.shape == (1, 256, 16, 16)
    low, iou = model.decode(emb, point_coords=[[128.0, 100.0]], point_labels=[1], multimask_output=True)
    assert low.shape == (1, 3, 64, 64) and iou.shape == (1, 3)


# ------------------------------------------------------------------ preprocessing


def test_ct_windows_and_uint8_scaling():
    assert CT_WINDOWS["soft_tissue"] == (400.0, 40.0)
    assert CT_WINDOWS["bone"] == (1800.0, 400.0)
    assert CT_WINDOWS["lung"] == (1500.0, -600.0)
    assert CT_WINDOWS["brain"] == (80.0, 40.0)
    assert ct_window_bounds("soft_tissue") == (-160.0, 240.0)
    assert ct_window_bounds((100, 50)) == (0.0, 100.0)
    with pytest.raises(ValueError):
        ct_window_bounds("nope")
    hu = np.array([-1000.0, -160.0, 40.0, 240.0, 3000.0])
    out = to_uint8(hu, ct_window_bounds("soft_tissue"))
    assert out.dtype == np.uint8
    assert out.tolist() == [0, 0, 127, 255, 255]


def test_mri_percentiles_ignore_background():
    rng = np.random.default_rng(0)
    vol = np.zeros((4, 50, 50))
    vol[:, 10:40, 10:40] = rng.uniform(100, 200, size=(4, 30, 30))
    lo, hi = percentile_bounds(vol)
    assert 100 <= lo < 102 and 198 < hi <= 200
    assert intensity_bounds(vol, "MR") == (lo, hi)
    assert intensity_bounds(vol, "CT", "bone") == ct_window_bounds("bone")
    u = to_uint8(vol, (lo, hi), keep_zero=True)
    assert (u[vol == 0] == 0).all() and u.max() == 255


def test_sam_med2d_input_is_nearest_resize_then_mean_std():
    rng = np.random.default_rng(1)
    sl = rng.integers(0, 256, size=(100, 300)).astype(np.uint8)
    x, tf = prepare_slice(sl, "sam-med2d")
    assert x.shape == (1, 3, 256, 256) and tf.input_size == (256, 256)
    rows = np.minimum(np.floor(np.arange(256) * 100 / 256).astype(int), 99)  # OpenCV INTER_NEAREST
    cols = np.minimum(np.floor(np.arange(256) * 300 / 256).astype(int), 299)
    resized = sl[rows][:, cols].astype(np.float64)
    for c in range(3):
        want = (resized - SAM_PIXEL_MEAN[c]) / SAM_PIXEL_STD[c]
        np.testing.assert_allclose(x[0, c].numpy(), want, atol=1e-5)
    # coordinates scale each axis separately (no aspect-preserving padding)
    np.testing.assert_allclose(tf.coords_to_input([[300.0, 100.0]]), [[256.0, 256.0]])
    np.testing.assert_allclose(tf.boxes_to_input([30, 10, 150, 50]), [[25.6, 25.6, 128.0, 128.0]])


def test_sam_input_matches_official_resize_longest_side():
    _official_package()
    from segment_anything.utils.transforms import ResizeLongestSide

    rng = np.random.default_rng(2)
    sl = (rng.random((150, 220)) * 255).astype(np.uint8)
    sl = np.kron(sl, np.ones((2, 2), np.uint8))[:300, :437]  # some structure to resample
    x, tf = prepare_slice(sl, "sam")
    rls = ResizeLongestSide(1024)
    official = rls.apply_image(np.repeat(sl[..., None], 3, axis=-1)).astype(np.float64)  # PIL path
    assert tf.input_size == official.shape[:2] == (703, 1024)
    ours_u8 = x[0, 0, :703, :1024].numpy() * SAM_PIXEL_STD[0] + SAM_PIXEL_MEAN[0]
    diff = np.abs(ours_u8 - official[..., 0])
    assert diff.mean() < 0.5 and diff.max() <= 3
    assert torch.count_nonzero(x[..., 703:, :]) == 0  # zero padding at the bottom
    pts = np.array([[10.0, 20.0], [436.0, 299.0]])
    np.testing.assert_allclose(tf.coords_to_input(pts), rls.apply_coords(pts, sl.shape))
    box = np.array([[5.0, 6.0, 400.0, 250.0]])
    np.testing.assert_allclose(tf.boxes_to_input(box), rls.apply_boxes(box, sl.shape))


def test_sam_logits_postprocess_matches_official():
    Sam = official.Sam

    sl = np.zeros((300, 437), np.uint8)
    _, tf = prepare_slice(sl, "sam")
    low = torch.randn(1, 3, 256, 256)
    fake = SimpleNamespace(image_encoder=SimpleNamespace(img_size=1024))
    want = Sam.postprocess_masks(fake, low, tf.input_size, tf.original_size)
    torch.testing.assert_close(tf.logits_to_slice(low), want)


def test_sam_med2d_logits_postprocess_matches_official_predictor():
    _, tf = prepare_slice(np.zeros((90, 120), np.uint8), "sam-med2d")
    low = torch.randn(1, 1, 64, 64)
    want = F.interpolate(
        F.interpolate(low, (256, 256), mode="bilinear", align_corners=False),
        (90, 120),
        mode="bilinear",
        align_corners=False,
    )
    torch.testing.assert_close(tf.logits_to_slice(low), want)


def test_medsam_input():
    rng = np.random.default_rng(3)
    sl = (rng.random((200, 120)) * 200 + 20).astype(np.uint8)
    x, tf = prepare_slice(sl, "medsam")
    assert x.shape == (1, 3, 1024, 1024)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.equal(x[0, 0], x[0, 2])
    assert tf.input_size == (1024, 1024)
    np.testing.assert_allclose(tf.coords_to_input([[120.0, 200.0]]), [[1024.0, 1024.0]])


@pytest.mark.parametrize("kind", ["sam-med2d", "sam", "medsam"])
def test_mask_round_trip_through_model_frame(kind):
    mask = np.zeros((180, 260), bool)
    mask[40:120, 60:200] = True
    _, tf = prepare_slice(mask.astype(np.uint8) * 255, kind)
    low_res = 64 if kind == "sam-med2d" else 256
    prompt = tf.mask_to_prompt(mask, low_res)
    assert prompt.shape == (1, 1, low_res, low_res)
    back = tf.logits_to_slice(prompt)[0, 0].numpy() > 0
    iou = (back & mask).sum() / (back | mask).sum()
    assert iou > 0.95


def test_bad_slices():
    with pytest.raises(ValueError):
        prepare_slice(np.zeros((4, 4, 4)), "sam")
    with pytest.raises(ValueError):
        prepare_slice(np.zeros((4, 4)), "nope")


# ------------------------------------------------------------------ slice helper, builders


@pytest.mark.parametrize("name", ["sam-med2d", "sam-vit-b", "medsam"])
def test_slice_helper_with_all_prompt_kinds(name):
    torch.manual_seed(0)
    cfg = small_config(name)
    model = build_sam2d(cfg)
    sl = (np.random.default_rng(0).random((70, 50)) * 255).astype(np.uint8)
    emb = model.embed_slice(sl)
    e = cfg.embedding_size
    assert emb.embedding.shape == (1, cfg.prompt_embed_dim, e, e)

    pred = model.predict_slice(
        emb, points_xy=[[10, 20], [30, 40]], point_labels=[1, 0], multimask_output=True
    )
    assert pred.logits.shape == (3, 70, 50) and pred.iou.shape == (3,)
    assert pred.low_res_logits.shape == (1, 3, cfg.low_res_size, cfg.low_res_size)
    assert pred.mask().shape == (70, 50) and pred.mask().dtype == bool
    assert 0 <= pred.best_index() < 3

    single = model.predict_slice(
        emb, box_xyxy=[5, 5, 40, 60], points_xy=[[20, 30]], point_labels=[1], mask_input=pred.mask_prompt()
    )
    assert single.logits.shape == (1, 70, 50)
    box_only = model.predict_slice(emb, box_xyxy=[5, 5, 40, 60])
    assert box_only.logits.shape == (1, 70, 50)

    with pytest.raises(ValueError):
        model.decode(emb.embedding, mask_input=torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError):
        model.decode(emb.embedding, point_coords=[[1, 2]], point_labels=[1, 1])


def test_slice_helper_agrees_with_model_frame_calls():
    torch.manual_seed(0)
    model = build_sam2d(small_config("sam-vit-b"))
    sl = (np.random.default_rng(4).random((60, 90)) * 255).astype(np.uint8)
    emb = model.embed_slice(sl)
    x, tf = prepare_slice(sl, "sam", model.config.img_size)
    torch.testing.assert_close(emb.embedding, model.embed(x))
    pts = np.array([[12.0, 30.0]])
    low, iou = model.decode(model.embed(x), point_coords=tf.coords_to_input(pts), point_labels=[1])
    pred = model.predict_slice(emb, points_xy=pts, point_labels=[1])
    torch.testing.assert_close(pred.low_res_logits, low)
    np.testing.assert_allclose(pred.logits, tf.logits_to_slice(low)[0].numpy(), atol=1e-5)


def test_build_from_official_format_checkpoint(tmp_path):
    torch.manual_seed(0)
    cfg = small_config("sam-med2d")
    trained = Sam2DModel(cfg)
    opt = torch.optim.Adam(trained.parameters())
    path = tmp_path / "sam-med2d_b.pth"
    torch.save({"model": trained.state_dict(), "optimizer": opt}, path)
    cache = tmp_path / "cache"
    model = build_sam2d(cfg, path, cache_dir=cache)
    assert not model.training
    for k, v in trained.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert (cache / "sam-med2d_b.pth.safetensors").is_file()

    with pytest.raises(CheckpointMismatchError) as info:
        build_sam2d(small_config("sam-vit-b"), path)
    assert "Adapter" in str(info.value)  # names the offending keys


# ------------------------------------------------------------------ implementation paths


def test_sam_med2d_resize_matches_opencv_inter_nearest():
    cv2 = pytest.importorskip("cv2")
    sl = (np.random.default_rng(6).random((97, 301)) * 255).astype(np.uint8)
    x, _ = prepare_slice(sl, "sam-med2d")
    want = cv2.resize(sl, (256, 256), interpolation=cv2.INTER_NEAREST).astype(np.float64)
    np.testing.assert_allclose(x[0, 0].numpy(), (want - SAM_PIXEL_MEAN[0]) / SAM_PIXEL_STD[0], atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_path_matches_cpu_path(monkeypatch):
    # on CUDA the encoder uses torch's operations, on the CPU oneDNN's products (cpu_kernels)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    torch.manual_seed(0)
    model = build_sam2d(small_config("sam-med2d", embed_dim=64, depth=3))
    _randomise(model.image_encoder)
    x = torch.randn(1, 3, 256, 256)
    cpu = model.embed(x)
    low_cpu, _ = model.decode(cpu, point_coords=[[30.0, 40.0]], point_labels=[1], multimask_output=True)
    model.cuda()
    gpu = model.embed(x)
    low_gpu, _ = model.decode(gpu, point_coords=[[30.0, 40.0]], point_labels=[1], multimask_output=True)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(low_gpu.cpu(), low_cpu, rtol=1e-3, atol=1e-3)


def test_the_2d_models_load_without_torchvision():
    """segment_anything's package __init__ imports torchvision, which a CPU-only environment may lack
    or hold as a build that does not load beside its torch: our network must not need it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.modules['torchvision'] = None  # any import of it now raises ImportError\n"
        "from napari_openmedlab.models.sam_med2d import Sam2DModel, small_config\n"
        "model = Sam2DModel(small_config('sam-med2d'))\n"
        "assert 'segment_anything' not in sys.modules, 'the public package ran'\n"
        "print(sum(p.numel() for p in model.parameters()))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.strip()) > 0
