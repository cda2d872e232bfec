"""``--protocol sam-med3d`` with ``encoder="reference"`` IS the official pipeline, click by click.

The official side is built here independently from the installed packages, step by step as
SAM-Med3D's ``utils/infer_utils.py`` (``validate_paired_img_gt`` -> ``data_preprocess`` ->
``sam_model_infer`` -> ``data_postprocess``) runs it: TorchIO reads the files, resamples to
1.5 mm, makes the axes canonical, crops 128^3 around the class, z-normalises; medim's
``SAM-Med3D`` network (same random state dict as ours, small encoder so the test is fast)
encodes and decodes; the global NumPy generator, seeded 233 once per case, draws each click
from the error of ``sigmoid(upsampled logits) > 0.5``; TorchIO resamples each mask back onto
the image grid. Our side is :func:`evaluate_case` with :class:`SamMed3DEngine`.

After every one of 5 clicks, for several cases and classes: the crop mask is equal voxel for
voxel, and the Dice on the image grid equals the official one to 1e-6.
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tio = pytest.importorskip("torchio")
pytest.importorskip("medim")

import torch.nn.functional as F  # noqa: E402

from napari_openmedlab.engines.sam_med3d import SamMed3DEngine  # noqa: E402
from napari_openmedlab.evaluation.runner import evaluate_case  # noqa: E402
from napari_openmedlab.io import Geometry, Volume, read_volume, write_volume  # noqa: E402
from napari_openmedlab.models.sam_med3d import SamMed3DConfig, build_sam_med3d  # noqa: E402

CLICKS = 5
# a small encoder (the decoder is the official size): the same code paths, a fraction of the time
SMALL = dict(encoder_embed_dim=48, encoder_depth=2, encoder_num_heads=2,
             encoder_global_attn_indexes=(1,))


@pytest.fixture(scope="module")
def networks():
    """(ours, official): the same random weights in our Sam3D and in medim's SAM-Med3D."""
    from medim.models.sam_med3d import build_sam3D_vit_b_ori

    torch.manual_seed(0)
    ours = build_sam_med3d(SamMed3DConfig(**SMALL))
    with contextlib.redirect_stdout(io.StringIO()):  # medim prints on import/build
        official = build_sam3D_vit_b_ori(
            encoder_embed_dim=SMALL["encoder_embed_dim"], encoder_depth=SMALL["encoder_depth"],
            encoder_num_heads=SMALL["encoder_num_heads"],
            encoder_global_attn_indexes=list(SMALL["encoder_global_attn_indexes"]),
        )
    official.load_state_dict(ours.state_dict(), strict=True)
    return ours, official.eval()


# --- cases ------------------------------------------------------------------------------------
def _case(kind: int) -> tuple[Volume, Volume]:
    """A CT-like volume with 2-3 labelled blobs; each case another grid (spacing, flips, size)."""
    rng = np.random.default_rng(kind)
    shapes = {0: (36, 70, 64), 1: (60, 48, 52), 2: (24, 90, 80)}
    spacings = {0: (0.9, 1.1, 2.5), 1: (1.5, 1.5, 1.5), 2: (0.7, 0.8, 3.0)}
    directions = {0: (-1, 0, 0, 0, -1, 0, 0, 0, 1), 1: (1, 0, 0, 0, 1, 0, 0, 0, 1),
                  2: (1, 0, 0, 0, -1, 0, 0, 0, -1)}
    shape = shapes[kind]
    array = rng.normal(40, 15, shape).astype(np.int16)
    array[:, :3] = -1000  # some air: voxels <= 0 are left out of the z-normalisation
    labels = np.zeros(shape, np.uint8)
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    for cid in range(1, 3 + (kind == 2)):
        centre = [rng.uniform(0.3, 0.7) * n for n in shape]
        radii = [rng.uniform(0.12, 0.3) * n for n in shape]
        blob = sum(((g - c) / r) ** 2 for g, c, r in zip((zz, yy, xx), centre, radii)) <= 1
        labels[blob & (labels == 0)] = cid
        array[blob] += np.int16(40 * cid)
    geometry = Geometry(spacings[kind], (12.0, -30.0, 7.5), directions[kind])
    return Volume(array, geometry), Volume(labels, geometry)


# --- the official pipeline, independently -----------------------------------------------------
def official_run(model, image_path, label_path) -> dict[int, list[tuple[np.ndarray, float]]]:
    """{class: [(crop mask (x, y, z), Dice on the image grid) after each click]}.

    Run with one torch thread, as our side is: with several threads some CPU builds of torch
    (2.13 here) split reductions differently, which moves a logit near 0 across the threshold.
    Exactness is a statement about the same arithmetic on both sides, thread count included.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _official_run(model, image_path, label_path)
    finally:
        torch.set_num_threads(threads)


def _official_run(model, image_path, label_path) -> dict[int, list[tuple[np.ndarray, float]]]:
    np.random.seed(233)  # validate_paired_img_gt seeds the global generator once per case
    subject = tio.Subject(image=tio.ScalarImage(image_path), label=tio.LabelMap(label_path))
    gt_all = subject.label.data[0].numpy()  # (x, y, z) of the image grid
    out = {}
    for cid in [int(v) for v in np.unique(gt_all) if v != 0]:
        s = copy.deepcopy(subject)
        s.label.set_data((s.label.data == cid).to(s.label.data.dtype))
        original_affine, original_shape = s.image.affine.copy(), s.image.spatial_shape
        s = tio.ToCanonical()(tio.Resample(target=(1.5, 1.5, 1.5))(s))
        s = tio.CropOrPad(mask_name="label", target_shape=(128, 128, 128))(s)
        roi_affine = s.image.affine.copy()
        image = tio.ZNormalization(masking_method=lambda x: x > 0)(s.image.data.clone())[None]
        gt = s.label.data[0] > 0
        if not gt.any():
            continue
        steps = []
        with torch.no_grad():
            embedding = model.image_encoder(image)
            coords, labels = torch.zeros(1, 0, 3), torch.zeros(1, 0)
            prev_logits = torch.zeros(1, 1, 32, 32, 32)
            prev_mask = torch.zeros(128, 128, 128, dtype=torch.bool)
            for _ in range(CLICKS):
                fn, fp = gt & ~prev_mask, ~gt & prev_mask
                error = fn | fp
                if error.any():
                    candidates = torch.argwhere(error)
                    point = candidates[np.random.randint(len(candidates))]
                    positive = bool(fn[tuple(point)])
                else:
                    candidates = torch.argwhere(gt)
                    point = candidates[np.random.randint(len(candidates))]
                    positive = True
                coords = torch.cat([coords, point.reshape(1, 1, 3)], dim=1)
                labels = torch.cat([labels, torch.tensor([[int(positive)]])], dim=1)
                sparse, dense = model.prompt_encoder(points=[coords, labels], boxes=None,
                                                     masks=prev_logits)
                prev_logits, _ = model.mask_decoder(
                    image_embeddings=embedding, image_pe=model.prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense)
                up = F.interpolate(prev_logits, size=(128, 128, 128), mode="trilinear",
                                   align_corners=False)
                prev_mask = (torch.sigmoid(up) > 0.5)[0, 0]
                back = tio.Resample(
                    target=tio.ScalarImage(tensor=torch.zeros((1, *original_shape)),
                                           affine=original_affine),
                    image_interpolation="nearest",
                )(tio.LabelMap(tensor=prev_mask[None].float(), affine=roi_affine))
                pred = back.data[0].numpy() > 0
                target = gt_all == cid
                d = 2.0 * np.logical_and(pred, target).sum() / (pred.sum() + target.sum())
                steps.append((prev_mask.numpy().copy(), float(d)))
        out[cid] = steps
    return out


def ours_run(model, image: Volume, labels: Volume, encoder: str):
    """Rows of evaluate_case, and the engine's crop mask after each click (x, y, z)."""
    engine = SamMed3DEngine(model, "cpu", encoder=encoder, threads=1)
    masks: list[np.ndarray] = []
    predict = engine.predict

    def recording_predict(prompts, *args, **kwargs):
        prediction = predict(prompts, *args, **kwargs)
        masks.append(prediction.to_mask().transpose(2, 1, 0))  # the crop volume is (z, y, x)
        return prediction

    engine.predict = recording_predict
    rows = evaluate_case(engine, image, labels, n_clicks=CLICKS, protocol="sam-med3d")
    return rows, masks


@pytest.mark.parametrize("kind", [0, 1, 2])
def test_every_click_equals_the_official_pipeline(networks, tmp_path, kind):
    ours, official = networks
    image, labels = _case(kind)
    write_volume(image, tmp_path / "image.nii.gz")
    write_volume(labels, tmp_path / "labels.nii.gz", labels=True)
    # read back: both sides start from the same file (the NIfTI header rounds the geometry)
    image, labels = read_volume(tmp_path / "image.nii.gz"), read_volume(tmp_path / "labels.nii.gz")

    expected = official_run(official, tmp_path / "image.nii.gz", tmp_path / "labels.nii.gz")
    rows, masks = ours_run(ours, image, labels, "reference")

    assert sorted(expected) == sorted({r.class_id for r in rows})
    k = 0
    for cid in sorted(expected):
        got = [r for r in rows if r.class_id == cid]
        assert len(got) == CLICKS
        for click, ((mask, official_dice), row) in enumerate(zip(expected[cid], got), 1):
            assert np.array_equal(masks[k], mask), f"class {cid} click {click}: masks differ"
            assert row.dice == pytest.approx(official_dice, abs=1e-6), f"class {cid} click {click}"
            k += 1
    # not a trivial agreement: the masks change from click to click and are neither empty nor full
    sizes = {int(m.sum()) for m in masks}
    assert len(sizes) > 2 and 0 < min(sizes) and max(sizes) < 128**3


def test_the_fast_encoder_stays_within_a_voxel_of_the_official_masks(networks, tmp_path):
    """``fast`` (the default) is not bit-exact; on these cases it differs by a few voxels."""
    ours, official = networks
    image, labels = _case(0)
    write_volume(image, tmp_path / "image.nii.gz")
    write_volume(labels, tmp_path / "labels.nii.gz", labels=True)
    image, labels = read_volume(tmp_path / "image.nii.gz"), read_volume(tmp_path / "labels.nii.gz")
    expected = official_run(official, tmp_path / "image.nii.gz", tmp_path / "labels.nii.gz")
    _, masks = ours_run(ours, image, labels, "fast")
    first = [steps[0][0] for _, steps in sorted(expected.items())]
    ours_first = masks[::CLICKS]
    for a, b in zip(ours_first, first):  # the first click of each class: same click, same crop
        assert np.count_nonzero(a != b) <= 0.001 * b.sum() + 3
