"""The headless SAM-Med3D engine, on stand-in networks (fast) and once on the real architecture."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from napari_openmedlab.engines import Cancelled, EngineError, PromptError, Prompts  # noqa: E402
from napari_openmedlab.engines.crop3d import CROP  # noqa: E402
from napari_openmedlab.engines.sam_med3d import SamMed3DEngine  # noqa: E402
from napari_openmedlab.engines.sam_med3d_crops import kept_seed, seed_near_face  # noqa: E402
from napari_openmedlab.io import Geometry, Volume, read_volume  # noqa: E402

DATA = Path(os.environ.get("OPENMEDLAB_TEST_DATA") or Path(__file__).parents[2] / ".." / "shared" / "data")
CT = DATA / "totalseg-ct"


# --- a stand-in network with the official call signatures ------------------------------------
class _Encoder(nn.Module):
    """Embedding = the normalised crop average-pooled to 32^3; remembers its inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x):
        self.inputs.append(x.detach().cpu().clone())
        return F.avg_pool3d(x, 4)


class _PromptEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def forward(self, points, boxes, masks):
        coords, labels = points
        self.calls.append((coords.cpu().clone(), labels.cpu().clone(), masks.cpu().clone()))
        return coords.new_zeros(1, coords.shape[1] + 1, 4), masks

    def get_dense_pe(self):
        return torch.zeros(1, 1, 32, 32, 32)


class _Decoder(nn.Module):
    """Thresholds the pooled normalised intensity: logits = 10 * (embedding - threshold)."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold
        self.calls = 0

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings):
        self.calls += 1
        return 10 * (image_embeddings - self.threshold), torch.ones(1, 1)


class FakeSam3D(nn.Module):
    def __init__(self, threshold: float = 1.0) -> None:
        super().__init__()
        self.image_encoder = _Encoder()
        self.prompt_encoder = _PromptEncoder()
        self.mask_decoder = _Decoder(threshold)


def _engine(**kwargs) -> SamMed3DEngine:
    return SamMed3DEngine(FakeSam3D(), "cpu", **kwargs)


def _blob_volume(shape=(40, 100, 90), centre=(20, 50, 45), radius=12) -> Volume:
    """Positive background noise with a bright ball; anisotropic, LPS-flipped grid."""
    rng = np.random.default_rng(1)
    array = (10 + 2 * rng.standard_normal(shape)).astype(np.float32)
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    ball = (((zz - centre[0]) * 2.5) ** 2 + ((yy - centre[1]) * 0.9) ** 2
            + ((xx - centre[2]) * 0.9) ** 2) <= (radius * 0.9 * 2) ** 2
    array[ball] = 100
    geometry = Geometry((0.9, 0.9, 2.5), (30.0, -10.0, 5.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1))
    return Volume(array, geometry)


def _dice(a, b) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


# --- contract ---------------------------------------------------------------------------------
def test_predict_before_set_volume_raises():
    with pytest.raises(EngineError, match="set_volume"):
        _engine().predict(Prompts([[1, 2, 3]], [1]))


def test_click_outside_the_volume_raises():
    engine = _engine()
    engine.set_volume(_blob_volume())
    with pytest.raises(PromptError):
        engine.predict(Prompts([[40, 5, 5]], [1]))


def test_prediction_is_on_the_volume_grid_and_finds_the_ball():
    volume = _blob_volume()
    engine = _engine()
    engine.set_volume(volume)
    prediction = engine.predict(Prompts([[20, 50, 45]], [1]))
    assert prediction.shape == volume.shape
    mask = prediction.to_mask()
    assert _dice(mask, volume.array > 50) > 0.85
    logits = prediction.state["low_res_logits"]
    assert tuple(logits.shape) == (1, 1, 32, 32, 32)
    assert set(prediction.timings) >= {"encoder", "decoder", "total"}
    # the click sits at crop voxel 64 on every axis, labels as given
    coords, labels, mask_prompt = engine.model.prompt_encoder.calls[0]
    assert coords.tolist() == [[[64.0, 64.0, 64.0]]] and labels.tolist() == [[1]]
    assert not mask_prompt.any()  # first click: all-zero mask prompt, as the official code


def test_second_click_in_the_same_crop_skips_the_encoder_and_reuses_the_logits():
    engine = _engine()
    engine.set_volume(_blob_volume())
    first = engine.predict(Prompts([[20, 50, 45]], [1]))
    second = engine.predict(Prompts([[20, 50, 45], [22, 60, 50]], [1, 0]))
    assert engine.encoder_calls == 1 and len(engine.model.image_encoder.inputs) == 1
    assert second.timings["encoder"] == 0.0
    coords, labels, mask_prompt = engine.model.prompt_encoder.calls[1]
    assert coords.shape == (1, 2, 3) and labels.tolist() == [[1, 0]]
    torch.testing.assert_close(mask_prompt, first.state["low_res_logits"])


def test_undo_returns_the_remembered_mask_without_running_the_network():
    engine = _engine()
    engine.set_volume(_blob_volume())
    one = Prompts([[20, 50, 45]], [1])
    first = engine.predict(one)
    engine.predict(one.add_point([21, 52, 47], positive=True))
    decoder_calls = engine.model.mask_decoder.calls
    again = engine.predict(one)
    assert engine.model.mask_decoder.calls == decoder_calls
    assert again.bbox == first.bbox and np.array_equal(again.patch, first.patch)


def test_cache_is_a_bounded_lru():
    engine = _engine(cache_size=2, max_extra_crops=0)
    engine.set_volume(Volume(np.ones((200, 20, 20), np.float32), Geometry((1.5, 1.5, 1.5))))
    for z in (10, 120, 190, 10):  # three crops, the first evicted before it comes back
        engine.reset()
        engine.predict(Prompts([[z, 10, 10]], [1]))
    assert engine.encoder_calls == 4
    engine.reset()
    engine.predict(Prompts([[190, 10, 10]], [1]))
    assert engine.encoder_calls == 4


def test_set_volume_clears_the_cache():
    engine = _engine()
    volume = _blob_volume()
    engine.set_volume(volume)
    engine.predict(Prompts([[20, 50, 45]], [1]))
    engine.set_volume(volume)
    engine.predict(Prompts([[20, 50, 45]], [1]))
    assert engine.encoder_calls == 2


def test_cancel_and_progress():
    engine = _engine()
    engine.set_volume(_blob_volume())
    with pytest.raises(Cancelled):
        engine.predict(Prompts([[20, 50, 45]], [1]), cancel=lambda: True)
    assert engine.encoder_calls == 0
    seen = []
    engine.predict(Prompts([[20, 50, 45]], [1]), progress=lambda f, what: seen.append(f))
    assert seen[-1] == 1.0 and all(0.0 <= f <= 1.0 for f in seen)


def test_mask_to_refine_centres_the_crop_and_is_the_first_mask_prompt():
    volume = _blob_volume()
    engine = _engine()
    engine.set_volume(volume)
    existing = volume.array > 50
    prediction = engine.predict(Prompts(mask=existing))
    grid = engine.grid
    lo, hi = grid.box_of_volume_box(*_bbox(existing))
    assert prediction.state["first_crop"] == grid.crop_start(lo, hi)
    _, _, mask_prompt = engine.model.prompt_encoder.calls[0]
    assert mask_prompt.max() > 0 and mask_prompt.min() < 0
    assert _dice(prediction.to_mask(), existing) > 0.85


def _bbox(mask):
    nz = np.argwhere(mask)
    return nz.min(axis=0), nz.max(axis=0) + 1


def test_create_engine_builds_it_from_a_checkpoint(monkeypatch, tmp_path):
    import napari_openmedlab.models.sam_med3d as models
    from napari_openmedlab.engines import create_engine

    seen = {}

    def fake_load(path, device):
        seen["path"], seen["device"] = Path(path), str(device)
        return FakeSam3D()

    monkeypatch.setattr(models, "load_sam_med3d", fake_load)
    checkpoint = tmp_path / "sam_med3d_turbo.pth"
    checkpoint.write_bytes(b"stand-in")
    engine = create_engine("sam-med3d-turbo", checkpoint=checkpoint, device="cpu")
    assert isinstance(engine, SamMed3DEngine)
    assert seen == {"path": checkpoint, "device": "cpu"} and engine.device.type == "cpu"


def test_amp_is_off_by_default_and_never_on_cpu():
    assert not _engine().amp
    assert not SamMed3DEngine(FakeSam3D(), "cpu", amp=True).amp


def test_the_same_mask_to_refine_is_recognised_by_content():
    volume = _blob_volume()
    engine = _engine()
    engine.set_volume(volume)
    existing = volume.array > 50
    engine.predict(Prompts([[20, 50, 45]], [1], mask=existing))
    calls = engine.model.mask_decoder.calls
    engine.predict(Prompts([[20, 50, 45]], [1], mask=existing.copy()))
    assert engine.model.mask_decoder.calls == calls


def test_a_large_volume_is_never_copied_or_resampled_whole():
    """512x512x300 int16 (157 MB): a click allocates only crop-sized numpy arrays."""
    import tracemalloc

    array = np.full((300, 512, 512), 10, np.int16)
    array[100:200, 200:300, 200:300] = 100
    engine = _engine(max_extra_crops=0)
    engine.set_volume(Volume(array, Geometry((0.8, 0.8, 1.5))))
    tracemalloc.start()
    try:
        prediction = engine.predict(Prompts([[150, 250, 250]], [1]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 60e6
    assert prediction.shape == array.shape and prediction.patch.any()


# --- objects larger than one crop -------------------------------------------------------------
def _rod_volume():
    """A 39 cm rod along z (2.5 crops) in positive noise, 1.5 mm isotropic."""
    rng = np.random.default_rng(2)
    shape = (300, 48, 48)
    array = (10 + 2 * rng.standard_normal(shape)).astype(np.float32)
    _, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    rod = ((yy - 24) ** 2 + (xx - 24) ** 2 <= 64) & (np.arange(300)[:, None, None] >= 20)
    rod &= np.arange(300)[:, None, None] < 280
    array[rod] = 100
    return Volume(array, Geometry((1.5, 1.5, 1.5))), rod


def test_large_object_is_followed_over_several_crops():
    volume, rod = _rod_volume()
    engine = _engine()
    engine.set_volume(volume)
    prediction = engine.predict(Prompts([[150, 24, 24]], [1]))
    mask = prediction.to_mask()
    assert len(prediction.state["crops"]) >= 3
    assert _dice(mask, rod) > 0.9
    covered = mask.any(axis=(1, 2))
    assert covered[22:278].all() and not covered[:15].any() and not covered[285:].any()
    # each extension crop got one automatic positive point inside the rod
    grid = engine.grid
    for (coords, labels, _), start in zip(engine.model.prompt_encoder.calls[1:],
                                         prediction.state["crops"][1:]):
        assert labels.tolist() == [[1]]
        zyx = np.round(grid.to_volume(coords[0].numpy() + np.asarray(start))).astype(int)[0]
        assert rod[tuple(zyx)]


def test_without_extension_only_the_first_crop_is_segmented():
    volume, rod = _rod_volume()
    engine = _engine(max_extra_crops=0)
    engine.set_volume(volume)
    mask = engine.predict(Prompts([[150, 24, 24]], [1])).to_mask()
    covered = np.flatnonzero(mask.any(axis=(1, 2)))
    assert covered.min() >= 150 - 65 and covered.max() <= 150 + 64


def test_positive_click_outside_the_first_crop_adds_its_lattice_crop():
    volume, rod = _rod_volume()
    engine = _engine(max_extra_crops=1)
    engine.set_volume(volume)
    prediction = engine.predict(Prompts([[150, 24, 24], [265, 24, 24]], [1, 1]))
    covered = prediction.to_mask().any(axis=(1, 2))
    assert covered[265] and len(prediction.state["crops"]) == 2


def test_seed_near_face_lies_in_the_mask_inside_the_overlap():
    hi = np.zeros((CROP,) * 3, bool)
    hi[40:60, 50:70, 100:] = True  # leaves through the + face of axis 2
    seed = seed_near_face(hi, axis=2, direction=1)
    assert hi[tuple(seed)] and seed[2] == CROP - 16
    assert tuple(seed[:2]) in {(49, 59), (49, 60), (50, 59), (50, 60)}


# --- real data --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ct_volume():
    if not (CT / "ct.nii.gz").is_file():
        pytest.skip(f"shared test data not found at {CT}")
    return read_volume(CT / "ct.nii.gz")


def _liver_click() -> tuple[int, int, int]:
    seg = read_volume(CT / "seg.nii.gz").array
    return tuple(int(v) for v in np.round(np.argwhere(seg == 5).mean(axis=0)))


@pytest.mark.slow
def test_whole_pipeline_on_ct_with_the_real_architecture(ct_volume):
    """Random weights (the architecture, not the quality): a mask on the input grid."""
    models = pytest.importorskip("napari_openmedlab.models.sam_med3d")
    torch.manual_seed(0)
    engine = SamMed3DEngine(models.build_sam_med3d(), "cpu", max_extra_crops=0)
    engine.set_volume(ct_volume)
    click = _liver_click()
    prediction = engine.predict(Prompts([click], [1]))
    assert prediction.shape == ct_volume.shape
    assert prediction.to_mask().shape == ct_volume.shape
    assert tuple(prediction.state["low_res_logits"].shape) == (1, 1, 32, 32, 32)
    nxt = engine.predict(Prompts([click, (click[0], click[1] + 5, click[2])], [1, 0]))
    assert nxt.timings["encoder"] == 0.0 and engine.encoder_calls == len(nxt.state["crops"])


@pytest.mark.parametrize("where", ["liver", "corner"])
def test_preprocessing_equals_the_official_torchio_steps(ct_volume, where, tmp_path):
    """Same crop tensor and same click coordinates as Resample(1.5) -> ToCanonical ->
    CropOrPad(128, centred on the clicked voxel's label) -> ZNormalization(x > 0)."""
    tio = pytest.importorskip("torchio")
    import SimpleITK as sitk

    click = _liver_click() if where == "liver" else (1, 2, 3)
    engine = _engine(max_extra_crops=0)
    engine.set_volume(ct_volume)
    engine.predict(Prompts([click], [1]))
    ours = engine.model.image_encoder.inputs[0][0, 0].numpy()
    our_point = engine.model.prompt_encoder.calls[0][0][0, 0].numpy().astype(int)

    image = sitk.ReadImage(str(CT / "ct.nii.gz"))
    label = np.zeros(ct_volume.shape, np.uint8)
    label[click] = 1
    label_image = sitk.GetImageFromArray(label)
    label_image.CopyInformation(image)
    sitk.WriteImage(label_image, str(tmp_path / "click.nii.gz"))
    subject = tio.Subject(image=tio.ScalarImage(CT / "ct.nii.gz"),
                          label=tio.LabelMap(tmp_path / "click.nii.gz"))
    subject = tio.ToCanonical()(tio.Resample(1.5)(subject))
    cropped = tio.CropOrPad(mask_name="label", target_shape=(CROP,) * 3)(subject)
    official = tio.ZNormalization(masking_method=lambda x: x > 0)(cropped.image.data.clone())
    official_points = torch.argwhere(cropped.label.data[0]).numpy()

    # Equal up to 1 HU at a few voxels: where a sample falls midway between two voxels the
    # int16 result of the linear interpolation depends on the last bit of the sample position,
    # which differs between resampling the whole volume and resampling one crop.
    raw = cropped.image.data[0].float()
    one_hu = 1.0 / float(raw[raw > 0].std())
    diff = np.abs(ours - official[0].numpy())
    assert diff.max() <= 1.001 * one_hu + 1e-4
    assert (diff > 1e-3).mean() < 1e-3
    assert any((our_point == p).all() for p in official_points)


# --- the official mask rule -------------------------------------------------------------------
def test_mask_rule_is_the_official_float32_sigmoid_not_the_sign():
    """sigmoid(x) rounds to exactly 0.5 for 0 < x <= ~6e-8: the official mask leaves those out."""
    from napari_openmedlab.engines.sam_med3d import official_threshold

    x = torch.tensor([-1e-3, 0.0, 1e-8, 5e-8, 1e-6, 2.0])
    assert official_threshold(x).tolist() == [False, False, False, False, True, True]
    tiny = torch.full((1, 1, 32, 32, 32), 3e-8)
    assert not SamMed3DEngine._upsample(tiny).any()  # `logits > 0` would fill the crop
    assert SamMed3DEngine._upsample(tiny * 100).all()


def test_encoder_choice_reaches_the_network_and_drops_stale_embeddings():
    models = pytest.importorskip("napari_openmedlab.models.sam_med3d")
    cfg = models.SamMed3DConfig(encoder_embed_dim=16, encoder_depth=1, encoder_num_heads=1,
                                encoder_global_attn_indexes=(0,), prompt_embed_dim=48,
                                decoder_mlp_dim=64, iou_head_hidden_dim=16)
    engine = SamMed3DEngine(models.build_sam_med3d(cfg), "cpu", max_extra_crops=0)
    assert engine.encoder == "fast" and engine.model.fast_encoder
    engine.set_volume(_blob_volume())
    engine.predict(Prompts([[20, 50, 45]], [1]))
    engine.encoder = "reference"
    assert not engine.model.fast_encoder and not engine._cache
    engine.predict(Prompts([[20, 50, 45]], [1]))
    assert engine.encoder_calls == 2
    with pytest.raises(ValueError, match="encoder"):
        SamMed3DEngine(FakeSam3D(), "cpu", encoder="turbo")


def test_batched_extension_crops_give_the_same_masks():
    volume, _ = _rod_volume()
    masks = []
    for batch in (1, 4):
        engine = _engine(encoder_batch=batch)
        engine.set_volume(volume)
        masks.append(engine.predict(Prompts([[150, 24, 24]], [1])).to_mask())
    assert np.array_equal(*masks)


def test_cache_holds_every_crop_one_click_uses():
    engine = _engine(cache_size=2)  # asked for less than one click's crops
    assert engine.cache_size == 1 + engine.max_extra_crops
    volume, _ = _rod_volume()
    engine.set_volume(volume)
    first = engine.predict(Prompts([[150, 24, 24]], [1]))
    calls = engine.encoder_calls
    assert calls == len(first.state["crops"]) >= 3
    # the first crop alone, then each breadth-first level of extension crops in one batch
    assert engine.encoder_batches < calls
    decoded = engine.model.mask_decoder.calls
    second = engine.predict(Prompts([[150, 24, 24], [152, 24, 30]], [1, 0]))  # same region again
    assert engine.encoder_calls == calls
    # only the crops holding the new click run the decoder; the others keep their masks
    grid = engine.grid
    new = grid.grid_voxel([[152, 24, 30]])[0]
    holding = [s for s in second.state["crops"]
               if np.all((new >= np.asarray(s)) & (new < np.asarray(s) + CROP))]
    assert engine.model.mask_decoder.calls - decoded == len(holding) < len(second.state["crops"])
    for start in set(first.state["crops"]) - set(holding):
        assert second.state["logits_by_crop"][start] is first.state["logits_by_crop"][start]


def test_automatic_point_stays_while_the_parent_mask_holds_it():
    parent_mask = np.zeros((CROP,) * 3, bool)
    parent_mask[40:60, 50:70, 100:] = True
    parent, start = ((0, 0, 0), 2, 1), (0, 0, 96)  # the neighbour across the + face of axis 2
    seed = np.array([50, 60, 120 - 96])  # crop voxels of the neighbour; parent voxel (50, 60, 120)
    previous = (np.array([[10, 10, 10], seed]), np.array([0, 1]))  # a negative click, then the seed
    assert np.array_equal(kept_seed(previous, start, parent, parent_mask), seed)
    parent_mask[50, 60, 120] = False  # the mask moved away from it: compute a new one
    assert kept_seed(previous, start, parent, parent_mask) is None
    parent_mask[50, 60, 120] = True
    assert kept_seed((previous[0], np.array([1, 1])), start, parent, parent_mask) is None  # user's
    assert kept_seed(None, start, parent, parent_mask) is None


def test_a_new_object_streams_each_crop_and_the_pieces_make_the_answer():
    volume, _ = _rod_volume()
    engine = _engine(encoder_batch=1)
    engine.set_volume(volume)
    pieces = []

    def partial(piece):
        pieces.append((piece.bbox, piece.patch.copy(), engine.encoder_calls))

    prediction = engine.predict(Prompts([[150, 24, 24]], [1]), partial=partial)
    crops = prediction.state["crops"]
    assert len(pieces) == len(crops) >= 3
    # the first crop is shown before any extension crop is encoded
    assert pieces[0][2] == 1 and pieces[-1][2] == len(crops)
    shown = np.zeros(volume.shape, bool)
    for bbox, patch, _ in pieces:
        shown[bbox[0]:bbox[3], bbox[1]:bbox[4], bbox[2]:bbox[5]] |= patch
    assert np.array_equal(shown, prediction.to_mask())
    # a next click continues from the object's state: its answer may remove voxels, so no pieces
    pieces.clear()
    engine.predict(Prompts([[150, 24, 24], [152, 24, 30]], [1, 0]), partial=partial)
    assert pieces == []


def test_engines_that_do_not_stream_ignore_partial():
    from napari_openmedlab.engines.seeded import SeededRegionEngine

    volume, _ = _rod_volume()
    engine = SeededRegionEngine()
    engine.set_volume(volume)
    got = []
    prediction = engine.predict(Prompts([[150, 24, 24]], [1]), partial=got.append)
    assert got == [] and not prediction.empty


def test_an_answer_held_by_the_caller_is_never_overwritten_by_the_next_click():
    volume, _ = _rod_volume()
    engine = _engine()
    engine.set_volume(volume)
    prompts = Prompts([[150, 24, 24]], [1])
    held = []
    for k in range(5):
        prediction = engine.predict(prompts)
        held.append((prediction, prediction.patch.copy()))
        prompts = prompts.add_point((150 + 20 * (k % 2), 24, 10 + k), positive=False)
    for prediction, copy in held:
        assert np.array_equal(prediction.patch, copy)


def test_merge_buffers_are_reused_only_when_nobody_holds_them():
    from napari_openmedlab.engines.sam_med3d_crops import MergeBuffers, merge_pieces

    buffers = MergeBuffers()
    a = np.zeros((4, 5, 6), bool)
    a[1:3, 1:3, 1:3] = True
    b = np.zeros((4, 5, 6), bool)
    b[2:4, 2:5, 0:2] = True
    pieces = [((0, 0, 0, 4, 5, 6), a), ((2, 3, 4, 6, 8, 10), b)]
    first = merge_pieces(pieces, (10, 10, 10), buffers)
    expected = np.zeros((10, 10, 10), bool)
    expected[0:4, 0:5, 0:6] |= a
    expected[2:6, 3:8, 4:10] |= b
    assert np.array_equal(first.to_mask(), expected)
    made = buffers.allocated  # the answer's array and a spare
    second = merge_pieces(pieces, (10, 10, 10), buffers)  # first is held: the spare is used
    assert not np.shares_memory(first.patch, second.patch) and buffers.allocated == made
    third = merge_pieces(pieces, (10, 10, 10), buffers)  # both held: a new one
    assert buffers.allocated == made + 1
    memory = third.patch.__array_interface__["data"][0]
    del third
    fourth = merge_pieces(pieces, (10, 10, 10), buffers)  # third was dropped: its memory again
    assert fourth.patch.__array_interface__["data"][0] == memory
    assert np.array_equal(fourth.to_mask(), expected) and np.array_equal(first.to_mask(), expected)


def test_an_object_clicked_off_centre_moves_the_first_crop_and_needs_fewer_crops(monkeypatch):
    import napari_openmedlab.engines.sam_med3d as sam_med3d

    shape = (200, 200, 200)
    array = np.full(shape, 10.0, np.float32)
    block = np.zeros(shape, bool)
    block[40:160, 50:150, 50:150] = True  # 18 x 15 x 15 cm, clicked near one corner
    array[block] = 100
    volume = Volume(array, Geometry((1.5, 1.5, 1.5)))
    click = [[60, 70, 70]]
    crops = {}
    for recentre in (True, False):
        if not recentre:
            monkeypatch.setattr(sam_med3d, "recentred_start", lambda *a: None)
        engine = SamMed3DEngine(FakeSam3D(threshold=0.0), "cpu")  # the block fills most crops
        engine.set_volume(volume)
        prediction = engine.predict(Prompts(click, [1]))
        crops[recentre] = (prediction.state["crops"], engine.encoder_calls)
        assert _dice(prediction.to_mask(), block) > 0.95
        first = np.asarray(prediction.state["first_crop"])
        inside = engine.grid.grid_voxel(click)[0] - first
        assert np.all((inside >= 16) & (inside < CROP - 16))
    moved, calls = crops[True]
    lattice, lattice_calls = crops[False]
    assert len(moved) < len(lattice) and calls < lattice_calls  # the moved crop's run included
    assert moved[0] != lattice[0]


def test_recentred_start_moves_toward_the_faces_the_mask_meets():
    from napari_openmedlab.engines.sam_med3d_crops import RECENTRE_MARGIN, recentred_start

    hi = np.zeros((CROP,) * 3, bool)
    hi[40:, 30:100, 60:] = True  # meets the + face of axes 0 and 2 only
    moved = recentred_start(hi, (100, 100, 100), (1000, 1000, 1000))
    assert moved == (100 + 40 - RECENTRE_MARGIN, 100, 100 + 48)  # axis 2: capped, click kept inside
    hi[:, 30:100, :] = True  # both faces of axes 0 and 2: an object larger than the crop
    assert recentred_start(hi, (100, 100, 100), (1000, 1000, 1000)) is None
    hi[...] = False
    hi[40:, 30:100, 50:] = True
    assert recentred_start(hi, (100, 100, 100), (228, 228, 228)) is None  # the grid ends there
