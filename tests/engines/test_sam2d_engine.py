"""Sam2DEngine on the CPU without downloads.

Three stand-ins, each for what it can check:

* ``FakeSam``: a network whose decoder answers "the box" (or a disc around a click) in the
  model's input frame. Any mistake in slice extraction, orientation, the per-model resize or the
  prompt/logit coordinate mapping shows up as a mask off the box.
* helper networks of the real architecture in a tiny size (``small_config``): the real code path
  end to end, checkpoint loading included.
* ``OracleEngine``: ``segment_slice`` answered from the reference segmentation, to check
  ``propagate`` (prompt grouping, axes, annotations) with a perfect 2D model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from napari_openmedlab.engines.base import Box, Cancelled, Prediction, PromptError, Prompts
from napari_openmedlab.engines.propagation import PropagationOptions
from napari_openmedlab.engines.sam2d import Sam2DEngine, SliceResult, slice_of
from napari_openmedlab.engines.slice_cache import SliceCache
from napari_openmedlab.io import Geometry, Volume, read_volume
from napari_openmedlab.models.registry import get_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/engines/conftest.py


@pytest.fixture(scope="module")
def liver(shared_data) -> np.ndarray:
    folder = shared_data / "totalseg-ct"
    seg = read_volume(folder / "seg.nii.gz").array
    names = {v: int(k) for k, v in json.loads((folder / "labels.json").read_text())["labels"].items()}
    return seg == names["liver"]


# ---------------------------------------------------------------- a geometric stand-in network


class FakeEncoder(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.img_size = size
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        assert x.shape[1:] == (3, self.img_size, self.img_size)
        self.inputs.append(x)
        return torch.zeros(len(x), 8, self.img_size // 16, self.img_size // 16)


class FakePromptEncoder(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.mask_input_size = (size // 4, size // 4)
        self.last: dict = {}

    def get_dense_pe(self):
        return torch.zeros(1)

    def forward(self, points, boxes, masks):
        self.last = {"points": points, "boxes": boxes, "masks": masks}
        return torch.zeros(1, 0, 8), torch.zeros(1)


class FakeDecoder(nn.Module):
    """Low-res logits +5 inside the box (else within 6 input pixels of the positive clicks)."""

    def __init__(self, prompt_encoder: FakePromptEncoder, size: int) -> None:
        super().__init__()
        self.pe = prompt_encoder
        self.size = size
        self.multimask: list[bool] = []

    def forward(
        self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, multimask_output
    ):
        low = self.size // 4
        centres = (torch.arange(low) + 0.5) * (
            self.size / low
        ) - 0.5  # input-frame pixel of each low-res pixel
        yy, xx = torch.meshgrid(centres, centres, indexing="ij")
        inside = torch.zeros(low, low, dtype=torch.bool)
        last = self.pe.last
        if last["boxes"] is not None:
            x0, y0, x1, y1 = last["boxes"][0].tolist()
            inside = (xx >= x0 - 0.5) & (xx <= x1 + 0.5) & (yy >= y0 - 0.5) & (yy <= y1 + 0.5)
        elif last["points"] is not None:
            coords, labels = last["points"]
            for (x, y), lab in zip(coords[0].tolist(), labels[0].tolist()):
                if lab == 1:
                    inside |= (xx - x) ** 2 + (yy - y) ** 2 <= (6 * self.size / 256) ** 2
        logits = torch.where(inside, 5.0, -5.0)[None, None]
        self.multimask.append(bool(multimask_output))
        if multimask_output:  # the right mask is the second one, which has the best IoU
            empty = torch.full_like(logits, -5.0)
            return torch.cat([empty, logits, empty], 1), torch.tensor([[0.2, 0.9, 0.1]])
        return logits, torch.tensor([[0.5]])


class FakeSam(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.image_encoder = FakeEncoder(size)
        self.prompt_encoder = FakePromptEncoder(size)
        self.mask_decoder = FakeDecoder(self.prompt_encoder, size)


SIZES = {"sam-med2d": 256, "sam-vit-b": 1024, "medsam": 1024}


def fake_engine(name: str = "sam-med2d", **kwargs) -> Sam2DEngine:
    return Sam2DEngine(FakeSam(SIZES[name]), get_spec(name), **kwargs)


def box_region(shape2d, r0, c0, r1, c1) -> np.ndarray:
    m = np.zeros(shape2d, bool)
    m[r0 : r1 + 1, c0 : c1 + 1] = True
    return m


def iou(a, b) -> float:
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


# ---------------------------------------------------------------- orientation and coordinates


@pytest.mark.parametrize("name", ["sam-med2d", "sam-vit-b", "medsam"])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_box_lands_on_its_slice(ct, name, axis):
    engine = fake_engine(name)
    engine.set_volume(ct)
    index = ct.shape[axis] // 3
    rows, cols = slice_of(ct.array, axis, index).shape
    r0, c0, r1, c1 = rows // 5, cols // 5, rows * 3 // 4, cols * 3 // 5
    pred = engine.predict(Prompts(boxes=[Box(axis, index, r0, c0, r1, c1)]))
    lo, hi = pred.bbox[:3], pred.bbox[3:]
    assert (lo[axis], hi[axis]) == (index, index + 1)
    assert pred.state["axis"] == axis and pred.state["index"] == index
    mask = pred.to_mask()
    other = tuple(a for a in range(3) if a != axis)
    assert np.flatnonzero(mask.any(axis=other)).tolist() == [index]
    assert iou(slice_of(mask, axis, index), box_region((rows, cols), r0, c0, r1, c1)) > 0.85
    assert engine.network.mask_decoder.multimask == [False]  # a box: single-mask output


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_click_uses_slice_axis(ct, axis):
    engine = fake_engine("sam-med2d", slice_axis=axis)
    engine.set_volume(ct)
    click = (12, 40, 70)
    pred = engine.predict(Prompts(points=[click], labels=[1]))
    mask = pred.to_mask()
    assert mask[click]
    other = tuple(a for a in range(3) if a != axis)
    assert np.flatnonzero(mask.any(axis=other)).tolist() == [click[axis]]
    # a single click: three masks asked, the best by predicted IoU kept
    assert engine.network.mask_decoder.multimask == [True]
    assert pred.state["multimask"] and pred.state["iou"] == pytest.approx(0.9)


def test_anisotropic_slice_is_stretched_for_sam():
    # 4 mm slices, 1 mm pixels: a coronal slice is 20 x 64 voxels but 80 x 64 mm
    rng = np.random.default_rng(0)
    vol = Volume(rng.normal(0, 100, (20, 64, 64)).astype(np.float32) - 600, Geometry(spacing=(1.0, 1.0, 4.0)))
    engine = fake_engine("sam-vit-b")
    engine.set_volume(vol)
    emb = engine.embedding(1, 30)
    h, w = emb.transform.input_size
    assert h == 1024 and abs(h / w - 80 / 64) < 0.01  # physical aspect kept
    pred = engine.predict(Prompts(boxes=[Box(1, 30, 4, 10, 12, 40)]))
    assert iou(slice_of(pred.to_mask(), 1, 30), box_region((20, 64), 4, 10, 12, 40)) > 0.85
    # SAM-Med2D resizes to a square anyway: no stretch
    other = fake_engine("sam-med2d")
    other.set_volume(vol)
    assert other.embedding(1, 30).transform.input_size == (256, 256)


# ---------------------------------------------------------------- prompt rules


def test_prompts_on_several_slices_are_rejected(ct):
    engine = fake_engine()
    engine.set_volume(ct)
    with pytest.raises(PromptError, match="different slices"):
        engine.predict(Prompts(points=[(5, 40, 40), (6, 40, 40)], labels=[1, 1]))
    with pytest.raises(PromptError, match="different slices"):
        engine.predict(Prompts(boxes=[Box(0, 5, 1, 1, 9, 9), Box(0, 6, 1, 1, 9, 9)]))
    with pytest.raises(PromptError, match="box on slice 50"):
        engine.predict(Prompts(points=[(5, 40, 51)], labels=[1], boxes=[Box(2, 50, 1, 1, 9, 9)]))
    two = np.zeros(ct.shape, bool)
    two[3:5, 10:20, 10:20] = True
    with pytest.raises(PromptError, match="exactly one slice"):
        engine.predict(Prompts(mask=two))
    assert engine.encoder_calls == 0  # rejected before any encoding
    # clicks on one slice are fine, also with a box on that slice (in the box's orientation)
    engine.predict(Prompts(points=[(5.2, 40, 40), (4.8, 60, 60)], labels=[1, 0]))
    pred = engine.predict(Prompts(points=[(5, 40, 50)], labels=[1], boxes=[Box(2, 50, 1, 30, 9, 60)]))
    assert pred.state["axis"] == 2 and pred.state["index"] == 50


def test_last_box_of_a_slice_counts(ct):
    engine = fake_engine()
    engine.set_volume(ct)
    pred = engine.predict(Prompts(boxes=[Box(0, 5, 1, 1, 9, 9), Box(0, 5, 30, 40, 60, 80)]))
    assert iou(slice_of(pred.to_mask(), 0, 5), box_region(ct.shape[1:], 30, 40, 60, 80)) > 0.85


def test_mask_prompt_feeds_back_own_logits(ct):
    engine = fake_engine()
    engine.set_volume(ct)
    box = Box(0, 8, 20, 30, 50, 70)
    first = engine.predict(Prompts(boxes=[box]))
    engine.predict(Prompts(boxes=[box], mask=first.to_mask()))
    fed = engine.network.prompt_encoder.last["masks"]
    assert torch.equal(fed, torch.as_tensor(first.state["low_res_logits"]))
    # a mask from elsewhere is converted: +/-8 logits at the prompt encoder's size
    other = np.zeros(ct.shape, bool)
    other[8, 10:20, 10:20] = True
    engine.predict(Prompts(boxes=[box], mask=other))
    fed = engine.network.prompt_encoder.last["masks"]
    assert (
        fed.shape == (1, 1, 64, 64) and fed.max() == pytest.approx(8.0) and fed.min() == pytest.approx(-8.0)
    )
    assert engine.network.mask_decoder.multimask == [False, False, False]
    # after reset the remembered logits are gone
    engine.reset()
    engine.predict(Prompts(boxes=[box], mask=first.to_mask()))
    assert not torch.equal(
        engine.network.prompt_encoder.last["masks"], torch.as_tensor(first.state["low_res_logits"])
    )


def test_window_choice(ct):
    engine = fake_engine()
    engine.set_volume(ct)
    assert engine.intensity_bounds == (-160.0, 240.0)  # CT soft tissue W400/L40
    engine.embedding(0, 3)
    engine.window = "bone"
    assert len(engine.cache) == 0 and engine.intensity_bounds == (-500.0, 1300.0)
    engine.window = (80, 40)
    assert engine.intensity_bounds == (0.0, 80.0)
    with pytest.raises(ValueError):
        engine.window = "no-such-window"
    mr = Volume(np.abs(ct.array.astype(np.float32)) + 0.0)
    mr.array[:2] = 0
    engine.window = None
    engine.set_volume(mr)
    lo, hi = engine.intensity_bounds
    nz = mr.array[mr.array != 0]
    assert (lo, hi) == pytest.approx(tuple(np.percentile(nz, [0.5, 99.5])))
    assert engine.looks_like_ct(ct) and not engine.looks_like_ct(mr)


# ---------------------------------------------------------------- embedding cache


def test_encoder_runs_once_per_slice(ct):
    engine = fake_engine()
    engine.set_volume(ct)
    encoder = engine.network.image_encoder
    engine.predict(Prompts(points=[(7, 40, 40)], labels=[1]))
    engine.predict(Prompts(points=[(7, 40, 40), (7, 60, 60)], labels=[1, 0]))
    p = engine.predict(Prompts(boxes=[Box(0, 7, 10, 10, 50, 50)]))
    assert engine.encoder_calls == 1 and len(encoder.inputs) == 1
    assert p.timings["encoder"] == 0.0
    engine.predict(Prompts(boxes=[Box(1, 7, 10, 10, 20, 50)]))  # coronal 7 is another slice
    assert engine.encoder_calls == 2
    assert engine.cache.hits == 2 and engine.cache.misses == 2
    engine.set_volume(ct)  # a new volume forgets the embeddings
    engine.predict(Prompts(points=[(7, 40, 40)], labels=[1]))
    assert engine.encoder_calls == 3


def test_cache_is_bounded_and_lru(ct):
    engine = fake_engine()  # embeddings of 8 x 16 x 16 float32 = 8 KiB
    engine.set_volume(ct)
    one = engine.cache.nbytes if engine.embedding(0, 0) is not None else 0
    assert one == 8 * 16 * 16 * 4
    engine.cache.max_bytes = 3 * one
    for i in (1, 2, 3):
        engine.embedding(0, i)
    assert engine.cache.keys() == [(0, 1), (0, 2), (0, 3)] and engine.cache.nbytes == 3 * one
    engine.embedding(0, 1)  # used again: most recent
    engine.embedding(0, 4)
    assert engine.cache.keys() == [(0, 3), (0, 1), (0, 4)]


def test_prefetch_encodes_the_neighbours(ct):
    engine = fake_engine(prefetch=1)
    engine.set_volume(ct)
    engine.predict(Prompts(points=[(10, 40, 40)], labels=[1]))
    engine.cache.wait_prefetch(timeout=30)
    assert {(0, 9), (0, 10), (0, 11)} <= set(engine.cache.keys())
    calls = engine.encoder_calls
    assert calls == 3
    engine.predict(Prompts(points=[(11, 40, 40)], labels=[1]))
    assert engine.encoder_calls in (calls, calls + 1)  # 11 was ready; 12 may be prefetched
    engine.cache.wait_prefetch(timeout=30)
    assert (0, 12) in engine.cache
    engine.close()


def test_slice_cache_waits_for_a_running_prefetch():
    import threading

    started, release = threading.Event(), threading.Event()
    calls = []

    def compute(key):
        calls.append(key)
        if key == "slow":
            started.set()
            release.wait(10)
        return np.zeros(10)

    cache = SliceCache(compute, max_bytes=1000)
    cache.prefetch(["slow"])
    assert started.wait(10)
    threading.Timer(0.2, release.set).start()
    cache.get("slow")  # waits for the background result instead of computing again
    assert calls == ["slow"] and cache.prefetched == 1
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0
    cache.close()


# ---------------------------------------------------------------- propagation through the engine


class OracleEngine(Sam2DEngine):
    """segment_slice answered with the reference organ's components that touch the box."""

    def __init__(self, reference: np.ndarray, **kwargs) -> None:
        super().__init__(FakeSam(256), get_spec("sam-med2d"), **kwargs)
        self.reference = reference
        self.asked: list[tuple[int, int]] = []

    def segment_slice(self, axis, index, points_rc=None, labels=None, box=None, **kwargs):
        self.asked.append((axis, index))
        ref = slice_of(self.reference, axis, index)
        lab, _ = ndimage.label(ref)
        if box is None:  # clicks only: the components under the positive clicks
            keep = [lab[int(r), int(c)] for (r, c), lbl in zip(points_rc, labels) if lbl == 1]
        else:
            r0, c0, r1, c1 = box
            keep = lab[int(np.ceil(r0)) : int(r1) + 1, int(np.ceil(c0)) : int(c1) + 1]
        ids = np.unique(np.asarray(keep)[np.asarray(keep) > 0])
        return SliceResult(axis, index, np.isin(lab, ids), torch.zeros(1, 1, 64, 64), 1.0, False)


def dice3(a, b) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _box_of(mask2d) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask2d.any(axis=1))
    cols = np.flatnonzero(mask2d.any(axis=0))
    return rows[0], cols[0], rows[-1], cols[-1]


def test_propagate_prompts_one_box(ct, liver):
    engine = OracleEngine(liver)
    engine.set_volume(ct)
    r0, c0, r1, c1 = _box_of(liver[15])
    progress = []
    pred = engine.propagate(
        Prompts(boxes=[Box(0, 15, r0, c0, r1, c1)]), progress=lambda f, m: progress.append(f)
    )
    assert dice3(pred.to_mask(), liver) >= 0.95
    assert pred.state["axis"] == 0 and pred.state["annotated"] == [15]
    assert progress[-1] == 1.0
    assert sorted(engine.asked) == [(0, i) for i in range(30)]


def test_propagate_several_slices_sagittal(ct, liver):
    engine = OracleEngine(liver, slice_axis=2)
    engine.set_volume(ct)
    x1, x2 = 55, 95
    b1 = _box_of(liver[:, :, x1])
    z, y = np.argwhere(liver[:, :, x2])[0]
    prompts = Prompts(points=[(z, y, x2)], labels=[1], boxes=[Box(2, x1, *b1)])
    pred = engine.propagate(prompts)
    on = np.flatnonzero(liver.sum(axis=(0, 1)) >= PropagationOptions().min_area)  # x = 41 has 2 voxels
    assert dice3(pred.to_mask(), liver) >= 0.95
    assert pred.state["axis"] == 2 and pred.state["annotated"] == [x1, x2]
    kept = np.flatnonzero(pred.to_mask().any(axis=(0, 1)))
    assert kept[0] == on[0] and kept[-1] == on[-1]  # stopped at the organ's ends
    assert {s["reason"] for s in pred.state["stops"]} == {"vanished"}
    # each slice segmented once: the two annotations, then every other slice up to one past each end
    assert len(engine.asked) == len(set(engine.asked))


def test_propagate_from_a_prediction_and_cancel(ct, liver):
    engine = OracleEngine(liver)
    engine.set_volume(ct)
    seed = np.zeros(liver.shape, bool)
    seed[15] = liver[15]
    pred = engine.propagate(Prediction.from_mask(seed))
    assert dice3(pred.to_mask(), liver) >= 0.95
    engine.asked.clear()
    with pytest.raises(Cancelled):
        engine.propagate(Prediction.from_mask(seed), cancel=lambda: len(engine.asked) >= 3)
    assert len(engine.asked) == 3
    with pytest.raises(PromptError, match="empty"):
        engine.propagate(Prediction.from_mask(np.zeros(liver.shape, bool)))


# ---------------------------------------------------------------- the real architecture, tiny


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A random small SAM-Med2D saved like the official file: {"model": ..., "optimizer": Adam}."""
    from napari_openmedlab.models.sam_med2d import build_sam2d, small_config

    torch.manual_seed(0)
    config = small_config("sam-med2d")
    network = build_sam2d(config)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    path = tmp_path_factory.mktemp("weights") / "sam-med2d_b.pth"
    torch.save({"model": network.state_dict(), "optimizer": optimizer, "epoch": 3}, path)
    return path, config, network


def test_from_checkpoint_predict_and_propagate(ct, liver, tiny_checkpoint, tmp_path):
    path, config, reference_net = tiny_checkpoint
    engine = Sam2DEngine.from_checkpoint(
        get_spec("sam-med2d"), path, device="cpu", config=config, convert_cache=tmp_path / "cache"
    )
    assert (tmp_path / "cache" / "sam-med2d_b.pth.safetensors").is_file()
    assert engine.kind == "sam-med2d" and engine.model_size == 256 and engine.low_res_size == 64
    engine.set_volume(ct)
    box = Box(0, 15, *_box_of(liver[15]))
    pred = engine.predict(Prompts(boxes=[box]))
    assert pred.shape == ct.shape and pred.state["index"] == 15
    # the loaded weights are the saved ones: same logits as the network it was saved from
    direct = Sam2DEngine(reference_net, get_spec("sam-med2d"))
    direct.set_volume(ct)
    same = direct.predict(Prompts(boxes=[box]))
    np.testing.assert_allclose(pred.state["low_res_logits"], same.state["low_res_logits"], atol=1e-5)

    seed = np.zeros(liver.shape, bool)
    seed[15] = liver[15]
    calls = engine.encoder_calls
    engine.batch = 1  # one slice per encoder call: exactly the slices segmented are encoded
    out = engine.propagate(Prediction.from_mask(seed), options=PropagationOptions(max_distance=2))
    assert out.shape == ct.shape and out.to_mask()[15].sum() == liver[15].sum()
    kept = np.flatnonzero(out.to_mask().any(axis=(1, 2)))
    assert set(kept) <= set(range(13, 18)) and 15 in kept
    # slices 14 and 16 were encoded (15 was already), at most 13 and 17 too
    assert engine.encoder_calls - calls == out.timings["slices"]


@pytest.mark.parametrize("name", ["sam-vit-b", "medsam"])
def test_tiny_real_networks(ct, name):
    from napari_openmedlab.models.sam_med2d import build_sam2d, small_config

    torch.manual_seed(1)
    engine = Sam2DEngine(
        build_sam2d(small_config(name, img_size=64, embed_dim=32, depth=1, num_heads=2)), get_spec(name)
    )
    engine.set_volume(ct)
    pred = engine.predict(
        Prompts(points=[(10, 50, 60), (10, 55, 70)], labels=[1, 0], boxes=[Box(0, 10, 30, 40, 80, 100)])
    )
    assert pred.state["axis"] == 0 and pred.state["index"] == 10 and not pred.state["multimask"]
    assert pred.state["low_res_logits"].shape == (1, 1, 16, 16)
    if not pred.empty:
        assert pred.bbox[0] == 10 and pred.bbox[3] == 11
    assert engine.propagation_options.use_point is (name != "medsam")
