"""The official SAM-Med3D validation protocol: crop, canonical orientation, seeded click drawing."""

import numpy as np
import pytest

from napari_openmedlab.evaluation.metrics import dice
from napari_openmedlab.evaluation.protocol_sam_med3d import (
    CROP_SIZE,
    SEED,
    SamMed3DClicks,
    canonical,
    prepare_roi,
)
from napari_openmedlab.io import Geometry, Volume, read_volume


def blob_case():
    gt = np.zeros((12, 14, 16), bool)
    gt[3:9, 4:10, 5:12] = True
    return gt


def test_click_drawing_is_the_seeded_global_stream():
    """First click: np.random.randint over argwhere of the object in (x, y, z) order, seed 233."""
    gt = blob_case()
    click = SamMed3DClicks().next_click(gt)
    np.random.seed(SEED)  # the official code seeds the global generator once per case
    points = np.argwhere(gt.transpose(2, 1, 0))
    i, j, k = points[np.random.randint(len(points))]
    assert click.positive and click.zyx == (k, j, i)


def test_click_sequences_are_deterministic_and_signed_by_the_error():
    gt = blob_case()
    pred = np.zeros_like(gt)
    pred[2:7, 4:10, 5:14] = True  # misses some, adds some
    a, b = SamMed3DClicks(), SamMed3DClicks()
    seq_a = [a.next_click(gt, pred) for _ in range(20)]
    seq_b = [b.next_click(gt, pred) for _ in range(20)]
    assert seq_a == seq_b
    fn, fp = gt & ~pred, pred & ~gt
    for c in seq_a:
        assert fn[c.zyx] or fp[c.zyx]
        assert c.positive == bool(fn[c.zyx])
    assert {c.positive for c in seq_a} == {True, False}
    assert [c.zyx for c in seq_a] != [c.zyx for c in (SamMed3DClicks(seed=1).next_click(gt, pred)
                                                       for _ in range(20))]
    # no error left: a positive voxel of the object is drawn, as the official code does
    c = SamMed3DClicks().next_click(gt, gt.copy())
    assert c.positive and gt[c.zyx]
    with pytest.raises(ValueError):
        SamMed3DClicks().next_click(np.zeros_like(gt))


def test_roi_on_the_sample_ct(shared_data):
    ct = read_volume(shared_data / "totalseg-ct" / "ct.nii.gz")
    seg = read_volume(shared_data / "totalseg-ct" / "seg.nii.gz")
    roi = prepare_roi(ct, seg, 1)  # spleen
    assert roi.image.shape == (CROP_SIZE,) * 3 and roi.label.shape == (CROP_SIZE,) * 3
    assert roi.image.geometry.spacing == (1.5, 1.5, 1.5)
    # RAS+ voxel axes, written in LPS: x towards patient left is negative, y too, z positive
    assert np.allclose(roi.image.geometry.direction_matrix, np.diag([-1, -1, 1]))
    # the crop is centred on the label's bounding box (to half a voxel)
    nz = np.argwhere(roi.label)
    centre = (nz.min(0) + nz.max(0) + 1) / 2
    assert np.all(np.abs(centre - CROP_SIZE / 2) <= 1)
    # and lands on the same physical points: back on the original grid it is the spleen again
    back = roi.to_source(roi.label)
    assert back.shape == ct.shape and dice(seg.array == 1, back) > 0.97
    assert roi.image.array.dtype == ct.array.dtype  # TorchIO keeps the voxel type


def test_canonical_permutes_and_flips_to_ras():
    # permuted, flipped index axes: index x runs along -y (anterior), y along +x, z along -z
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 100, (4, 5, 6)).astype(np.int16)
    direction = np.array([[0, 1, 0], [-1, 0, 0], [0, 0, -1]], float)  # columns: index x, y, z
    vol = Volume(arr, Geometry((1.0, 2.0, 3.0), (10.0, 20.0, 30.0), tuple(direction.ravel())))
    can = canonical(vol)
    assert np.allclose(can.geometry.direction_matrix, np.diag([-1, -1, 1]))
    # every voxel keeps its physical position
    for idx in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
        p = vol.geometry.index_to_physical(np.array(idx, float))
        new = np.round(can.geometry.physical_to_index(p)).astype(int)
        assert can.array[tuple(new)] == arr[idx]


def test_matches_torchio_when_installed(shared_data):
    """Resample(1.5) -> ToCanonical -> CropOrPad(128, mask) as TorchIO computes them."""
    tio = pytest.importorskip("torchio")
    torch = pytest.importorskip("torch")
    img_p = shared_data / "totalseg-ct" / "ct.nii.gz"
    gt_p = shared_data / "totalseg-ct" / "seg.nii.gz"
    ct, seg = read_volume(img_p), read_volume(gt_p)
    for cid in (3, 13):  # a kidney, and a one-voxel structure
        subject = tio.Subject(image=tio.ScalarImage(img_p), label=tio.LabelMap(gt_p))
        data = subject.label.data
        subject.label.set_data((data == cid).to(data.dtype))
        s = tio.Resample(target=(1.5, 1.5, 1.5))(subject)
        s = tio.ToCanonical()(s)
        s = tio.CropOrPad(mask_name="label", target_shape=(128, 128, 128))(s)
        roi = prepare_roi(ct, seg, cid)
        assert np.array_equal(s.image.data[0].numpy(), roi.image.array.transpose(2, 1, 0))
        assert np.array_equal(s.label.data[0].numpy() > 0, roi.label.transpose(2, 1, 0))
        g = roi.image.geometry
        ras = np.diag([-1.0, -1.0, 1.0])
        affine = np.eye(4)
        affine[:3, :3] = ras @ g.direction_matrix @ np.diag(g.spacing)
        affine[:3, 3] = ras @ np.asarray(g.origin)
        assert np.allclose(affine, s.image.affine)
    del torch
