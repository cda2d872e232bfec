"""Swin-UMamba: official state-dict layout (strict load), the selective scan, the networks' shapes.

The expected keys and shapes below are written out from reading the official code
(JiarunLiu/Swin-UMamba ``nnunetv2/nets/SwinUMamba.py`` / ``SwinUMambaD.py``, VMamba-Tiny: depths
2, 2, 9, 2, dims 96..768, d_state 16; MONAI's UnetrBasicBlock / UnetrUpBlock / UnetOutBlock for the
CNN decoder), independently of our classes: the official-format checkpoints are made from this
list, not from our network.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from napari_openmedlab.models.errors import CheckpointMismatchError  # noqa: E402
from napari_openmedlab.models.swin_umamba import (  # noqa: E402
    SwinUMamba,
    SwinUMambaD,
    build_swin_umamba,
    build_swin_umamba_d,
    selective_scan_torch,
)

DEPTHS, DIMS = (2, 2, 9, 2), (96, 192, 384, 768)


# ------------------------------------------------------------------ the official layout, by hand


def _ss2d(p: str, c: int) -> dict:
    inner, rank = 2 * c, math.ceil(c / 16)
    return {f"{p}.in_proj.weight": (2 * inner, c), f"{p}.conv2d.weight": (inner, 1, 3, 3),
            f"{p}.conv2d.bias": (inner,), f"{p}.x_proj_weight": (4, rank + 32, inner),
            f"{p}.dt_projs_weight": (4, inner, rank), f"{p}.dt_projs_bias": (4, inner),
            f"{p}.A_logs": (4 * inner, 16), f"{p}.Ds": (4 * inner,), f"{p}.out_norm.weight": (inner,),
            f"{p}.out_norm.bias": (inner,), f"{p}.out_proj.weight": (c, inner)}


def _vss_layer(p: str, c: int, depth: int) -> dict:
    keys = {}
    for j in range(depth):
        keys |= {f"{p}.blocks.{j}.ln_1.weight": (c,), f"{p}.blocks.{j}.ln_1.bias": (c,)}
        keys |= _ss2d(f"{p}.blocks.{j}.self_attention", c)
    return keys


def _vssm_encoder(p: str, patch: int, in_ch: int) -> dict:
    keys = {f"{p}.patch_embed.proj.weight": (DIMS[0], in_ch, patch, patch), f"{p}.patch_embed.proj.bias": (DIMS[0],),
            f"{p}.patch_embed.norm.weight": (DIMS[0],), f"{p}.patch_embed.norm.bias": (DIMS[0],)}
    for i, (c, depth) in enumerate(zip(DIMS, DEPTHS)):
        keys |= _vss_layer(f"{p}.layers.{i}", c, depth)
        if i < 3:
            keys |= {f"{p}.downsamples.{i}.reduction.weight": (2 * c, 4 * c),
                     f"{p}.downsamples.{i}.norm.weight": (4 * c,), f"{p}.downsamples.{i}.norm.bias": (4 * c,)}
    return keys


def _monai_res_block(p: str, cin: int, cout: int) -> dict:
    keys = {f"{p}.conv1.conv.weight": (cout, cin, 3, 3), f"{p}.conv2.conv.weight": (cout, cout, 3, 3)}
    if cin != cout:
        keys[f"{p}.conv3.conv.weight"] = (cout, cin, 1, 1)
    return keys  # MONAI's "instance" norm has no affine parameters


def official_swin_umamba_keys(in_ch: int, n_cls: int) -> dict:
    f = (48, 96, 192, 384, 768)
    keys = {"stem.0.weight": (48, in_ch, 7, 7), "stem.0.bias": (48,), "stem.1.weight": (48,), "stem.1.bias": (48,)}
    keys |= _vssm_encoder("vssm_encoder", 2, 48)
    for i, (cin, cout) in enumerate([(in_ch, f[0]), (f[0], f[1]), (f[1], f[2]), (f[2], f[3]), (f[3], f[4])]):
        keys |= _monai_res_block(f"encoder{i + 1}.layer", cin, cout)
    for name, cin, cout in [("decoder6", 768, 768), ("decoder5", 768, 384), ("decoder4", 384, 192),
                            ("decoder3", 192, 96), ("decoder2", 96, 48)]:
        keys[f"{name}.transp_conv.conv.weight"] = (cin, cout, 2, 2)
        keys |= _monai_res_block(f"{name}.conv_block", 2 * cout, cout)
    keys |= _monai_res_block("decoder1.layer", 48, 48)
    for i in range(4):
        keys |= {f"out_layers.{i}.conv.conv.weight": (n_cls, f[i], 1, 1), f"out_layers.{i}.conv.conv.bias": (n_cls,)}
    return keys


def official_swin_umamba_d_keys(in_ch: int, n_cls: int) -> dict:
    keys = _vssm_encoder("vssm_encoder", 4, in_ch)
    for s, (below, skip) in enumerate([(768, 384), (384, 192), (192, 96)]):
        keys |= {f"decoder.expand_layers.{s}.expand.weight": (2 * below, below),
                 f"decoder.expand_layers.{s}.norm.weight": (below // 2,),
                 f"decoder.expand_layers.{s}.norm.bias": (below // 2,)}
        keys |= _vss_layer(f"decoder.stages.{s}", skip, 2)
        keys |= {f"decoder.seg_layers.{s}.weight": (n_cls, skip, 1, 1), f"decoder.seg_layers.{s}.bias": (n_cls,),
                 f"decoder.concat_back_dim.{s}.weight": (skip, 2 * skip),
                 f"decoder.concat_back_dim.{s}.bias": (skip,)}
    keys |= {"decoder.expand_layers.3.expand.weight": (16 * 96, 96), "decoder.expand_layers.3.norm.weight": (96,),
             "decoder.expand_layers.3.norm.bias": (96,), "decoder.seg_layers.3.weight": (n_cls, 96, 1, 1),
             "decoder.seg_layers.3.bias": (n_cls,)}
    return keys


VARIANTS = {
    "swin": (build_swin_umamba, official_swin_umamba_keys, "nnUNetTrainerSwinUMamba"),
    "swin_d": (build_swin_umamba_d, official_swin_umamba_d_keys, "nnUNetTrainerSwinUMambaD"),
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("in_ch,n_cls", [(1, 14), (3, 2)])
def test_state_dict_is_the_official_layout(variant, in_ch, n_cls):
    build, official, _ = VARIANTS[variant]
    ours = {k: tuple(v.shape) for k, v in build(in_ch, n_cls).state_dict().items()}
    expected = official(in_ch, n_cls)
    assert sorted(set(expected) - set(ours)) == []
    assert sorted(set(ours) - set(expected)) == []
    assert {k: s for k, s in ours.items() if expected[k] != s} == {}


@pytest.mark.parametrize("variant", VARIANTS)
def test_official_format_checkpoint_loads_strictly(tmp_path, variant):
    """A results folder whose checkpoint is built from the official key list loads with strict=True."""
    import nnunet_folders as nf

    from napari_openmedlab.engines.autoseg import AutoSegmenter
    from napari_openmedlab.models.nnunet import read_model_folder

    pytest.importorskip("nnunetv2")
    _, official, trainer = VARIANTS[variant]
    gen = torch.Generator().manual_seed(1)
    weights = {k: torch.randn(shape, generator=gen) * 0.02 for k, shape in official(1, 3).items()}
    plans = nf.plans_json("2d", (64, 64), (1.5, 1.5), generation="2.1", n_stages=6, base=32)
    dataset = nf.dataset_json()
    folder = tmp_path / f"{trainer}__nnUNetPlans__2d"
    folder.mkdir()
    (folder / "plans.json").write_text(__import__("json").dumps(plans))
    (folder / "dataset.json").write_text(__import__("json").dumps(dataset))

    class _Official(torch.nn.Module):  # carries the official tensors into torch.save's format
        def state_dict(self, *a, **k):
            return dict(weights)

    nf.save_checkpoint(folder / "fold_0" / "checkpoint_final.pth", _Official(), trainer, "2d", plans, dataset,
                       mirror_axes=(0, 1), optimizer=False)
    segmenter = AutoSegmenter(read_model_folder(folder), "cpu")
    loaded = segmenter.network.network.state_dict()
    assert set(loaded) == set(weights)
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)

    # one renamed key: refused with the key named, never loaded loosely
    bad = dict(weights)
    bad["vssm_encoder.layers.0.blocks.0.ln_1.gamma"] = bad.pop("vssm_encoder.layers.0.blocks.0.ln_1.weight")
    weights.clear()
    weights.update(bad)
    nf.save_checkpoint(folder / "fold_0" / "checkpoint_final.pth", _Official(), trainer, "2d", plans, dataset,
                       mirror_axes=(0, 1), optimizer=False)
    with pytest.raises(CheckpointMismatchError, match="ln_1.weight"):
        AutoSegmenter(read_model_folder(folder), "cpu")


# ------------------------------------------------------------------ the selective scan


def _reference_scan(u, delta, A, B, C, D=None, delta_bias=None, softplus=False):
    """The recurrence step by step in float64: h = exp(dt A) h + dt B u; y = C.h + D u."""
    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.double()[None, :, None]
    if softplus:
        delta = torch.log1p(torch.exp(delta))
    b, d, length = u.shape
    per = d // B.shape[1]
    h = torch.zeros(b, d, A.shape[1], dtype=torch.float64)
    ys = []
    for t in range(length):
        for ch in range(d):
            g = ch // per
            h[:, ch] = torch.exp(delta[:, ch, t, None] * A[ch]) * h[:, ch] + \
                delta[:, ch, t, None] * B[:, g, :, t] * u[:, ch, t, None]
        ys.append(torch.einsum("bdn,bdn->bd", h, C.repeat_interleave(per, dim=1)[:, :, :, t]))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + u * D.double()[None, :, None]
    return y


@pytest.mark.parametrize("b,d,length,n,groups,block", [(1, 4, 37, 3, 1, None), (2, 8, 64, 16, 4, 5),
                                                        (2, 12, 50, 4, 4, 64), (1, 4, 1, 2, 2, 1)])
@pytest.mark.parametrize("extras", [True, False])
def test_scan_equals_the_reference_recurrence(b, d, length, n, groups, block, extras):
    gen = torch.Generator().manual_seed(length + d)
    u = torch.randn(b, d, length, generator=gen)
    delta = torch.randn(b, d, length, generator=gen) * (1.0 if extras else 0.1) + (0.0 if extras else 0.5)
    A = -torch.exp(torch.randn(d, n, generator=gen))
    B = torch.randn(b, groups, n, length, generator=gen)
    C = torch.randn(b, groups, n, length, generator=gen)
    D = torch.randn(d, generator=gen) if extras else None
    bias = torch.randn(d, generator=gen) if extras else None
    ours = selective_scan_torch(u, delta, A, B, C, D, bias, extras, block_len=block)
    ref = _reference_scan(u, delta, A, B, C, D, bias, extras)
    assert ours.dtype == torch.float32 and ours.shape == (b, d, length)
    assert (ours.double() - ref).abs().max().item() <= 1e-5


def test_scan_stays_finite_with_large_steps():
    """Decays multiply, never divide: huge delta * A cannot overflow."""
    u = torch.ones(1, 2, 300)
    delta = torch.full((1, 2, 300), 50.0)
    A = torch.full((2, 4), -16.0)
    B = torch.ones(1, 1, 4, 300)
    y = selective_scan_torch(u, delta, A, B, B, None, None, False)
    assert torch.isfinite(y).all()
    assert torch.allclose(y, torch.full_like(y, 200.0))  # h = dt*B*u = 50 every step; y = 4 * 50


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA-only: mamba-ssm's kernel needs a GPU")
def test_scan_matches_mamba_ssm_kernel_on_gpu():
    from napari_openmedlab.models.swin_umamba.selective_scan import mamba_ssm_kernel

    kernel = mamba_ssm_kernel()
    if kernel is None:
        pytest.skip("mamba-ssm is not installed (the [gpu] extra)")
    gen = torch.Generator().manual_seed(0)
    b, d, length, n, g = 2, 64, 1024, 16, 4
    args = [torch.randn(b, d, length, generator=gen), torch.randn(b, d, length, generator=gen),
            -torch.exp(torch.randn(d, n, generator=gen)), torch.randn(b, g, n, length, generator=gen),
            torch.randn(b, g, n, length, generator=gen), torch.randn(d, generator=gen)]
    bias = torch.randn(d, generator=gen)
    cuda = [a.cuda() for a in args]
    theirs = kernel(*cuda, z=None, delta_bias=bias.cuda(), delta_softplus=True, return_last_state=False)
    ours = selective_scan_torch(*cuda, delta_bias=bias.cuda(), delta_softplus=True)
    assert (theirs.float() - ours).abs().max().item() <= 1e-3


# ------------------------------------------------------------------ the networks


@pytest.mark.parametrize("deep", [False, True])
def test_tiny_networks_give_logits_at_input_size(deep):
    torch.manual_seed(0)
    nets = [SwinUMamba(2, 3, feat_size=(4, 8, 16, 32, 64), depths=(1, 1, 1, 1), deep_supervision=deep),
            SwinUMambaD(2, 3, dims=(8, 16, 32, 64), depths=(1, 1, 1, 1), decoder_depth=1, deep_supervision=deep)]
    x = torch.randn(2, 2, 64, 96)
    for net in nets:
        with torch.no_grad():
            out = net.eval()(x)
        if deep:
            assert isinstance(out, list) and tuple(out[0].shape) == (2, 3, 64, 96)
        else:
            assert tuple(out.shape) == (2, 3, 64, 96) and torch.isfinite(out).all()


def test_ss2d_scans_rows_columns_and_both_reversed():
    """SS2D's four directions against a pixel-by-pixel reference of the official scan orders.

    Direction 0 reads the image row by row, 1 column by column, 2 and 3 the same backwards; each
    has its own projections, and every output goes back to its pixel before the four are summed.
    """
    from napari_openmedlab.models.swin_umamba.vss import SS2D

    torch.manual_seed(0)
    ss = SS2D(8).eval()
    d, h, w = ss.d_inner, 3, 5
    x = torch.randn(1, d, h, w)
    row_major = [(i, j) for i in range(h) for j in range(w)]
    col_major = [(i, j) for j in range(w) for i in range(h)]
    orders = [row_major, col_major, row_major[::-1], col_major[::-1]]
    expected = torch.zeros(1, d, h, w, dtype=torch.float64)
    with torch.no_grad():
        for k, order in enumerate(orders):
            seq = torch.stack([x[0, :, i, j] for i, j in order], dim=-1)[None]  # (1, d, l)
            proj = torch.einsum("cd,bdl->bcl", ss.x_proj_weight[k], seq)
            dts, bs, cs = torch.split(proj, [ss.dt_rank, ss.d_state, ss.d_state], dim=1)
            dts = torch.einsum("dr,brl->bdl", ss.dt_projs_weight[k], dts)
            y = _reference_scan(seq, dts, -torch.exp(ss.A_logs[k * d:(k + 1) * d]), bs[:, None], cs[:, None],
                                ss.Ds[k * d:(k + 1) * d], ss.dt_projs_bias[k], softplus=True)
            for pos, (i, j) in enumerate(order):
                expected[0, :, i, j] += y[0, :, pos]
        ours = ss.forward_core(x).view(1, d, h, w)
    assert (ours.double() - expected).abs().max().item() <= 1e-5


def test_scan_checks_for_interruption_between_blocks():
    from napari_openmedlab.models.swin_umamba.selective_scan import interrupt_check

    calls = []

    def check():
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # any exception: what a cancelled prediction raises

    u = torch.randn(1, 4, 100)
    B = torch.randn(1, 1, 2, 100)
    with pytest.raises(KeyboardInterrupt), interrupt_check(check):
        selective_scan_torch(u, u, -torch.ones(4, 2), B, B, block_len=10)
    assert len(calls) == 3
    selective_scan_torch(u, u, -torch.ones(4, 2), B, B, block_len=10)  # outside: never called
    assert len(calls) == 3
