"""Booleans, interpolation, smoothing, holes, islands, statistics, and operations on a structure set."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_openmedlab.annotation import LockedStructureError, StructureSet
from napari_openmedlab.annotation.contouring import (
    ContouringError,
    Margin,
    apply_operation,
    fill_holes,
    interpolate_slices,
    intersection,
    keep_largest,
    margin,
    plan,
    remove_islands,
    smooth,
    structure_stats,
    subtract,
    symmetric_difference,
    union,
)
from napari_openmedlab.evaluation.structure_comparison import compare
from napari_openmedlab.io import Geometry, read_volume

GEOMETRY = Geometry((0.8, 1.1, 2.5), (10.0, -4.0, 3.0), (-1, 0, 0, 0, 1, 0, 0, 0, -1))


def ball(shape, centre, radius_vox) -> np.ndarray:
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    r = radius_vox
    return ((zz - centre[0]) / r[0]) ** 2 + ((yy - centre[1]) / r[1]) ** 2 + ((xx - centre[2]) / r[2]) ** 2 <= 1


def test_booleans_match_numpy():
    rng = np.random.default_rng(1)
    a, b, c = (rng.random((12, 14, 16)) < 0.2 for _ in range(3))
    a[:, :3] = False  # boxes that differ
    np.testing.assert_array_equal(union(a, b, c).dense(), a | b | c)
    np.testing.assert_array_equal(intersection(a, b).dense(), a & b)
    np.testing.assert_array_equal(subtract(a, b, c).dense(), a & ~b & ~c)
    np.testing.assert_array_equal(symmetric_difference(a, b).dense(), a ^ b)
    empty = np.zeros_like(a)
    assert intersection(a, empty).empty
    with pytest.raises(ContouringError, match="two or more"):
        union(a)
    with pytest.raises(ContouringError, match="different grids"):
        union(a, np.zeros((3, 3, 3), bool))


def test_interpolation_fills_between_drawn_slices_and_keeps_them():
    shape = (21, 40, 40)
    full = np.zeros(shape, bool)
    for z in range(2, 19):
        r = 6 + 0.5 * (z - 2)  # a cone: the radius grows steadily
        full[z] = ball((1, 40, 40), (0, 20, 20), (1, r, r))[0]
    drawn = np.zeros(shape, bool)
    keep = list(range(2, 19, 4))
    drawn[keep] = full[keep]
    out = interpolate_slices(drawn, GEOMETRY, "z").dense()
    np.testing.assert_array_equal(out[keep], full[keep])
    assert not out[:2].any() and not out[19:].any()
    assert compare(full, out, GEOMETRY).dice > 0.97
    # explicit drawn slices: an empty drawn slice ends the structure there
    out = interpolate_slices(drawn, GEOMETRY, "z", drawn=[*keep, 20]).dense()
    assert not out[20].any() and out[19].sum() < full[18].sum()


def test_interpolation_on_a_real_organ_drawn_every_third_slice(shared_data):
    labels = read_volume(shared_data / "totalseg-ct" / "seg.nii.gz")
    liver = labels.array == 5
    slices = np.flatnonzero(liver.any(axis=(1, 2)))
    keep = list(range(slices[0], slices[-1] + 1, 3))
    drawn = np.zeros_like(liver)
    drawn[keep] = liver[keep]
    out = interpolate_slices(drawn, labels.geometry, "z").dense()
    np.testing.assert_array_equal(out[keep], liver[keep])
    score = compare(liver, out, labels.geometry, tolerance_mm=3.0)
    assert compare(liver, drawn, labels.geometry).dice < 0.55  # what drawing alone gives
    assert score.dice > 0.92  # 0.934 measured (docs/contouring.md)


def test_smoothing_never_moves_the_surface_by_more_than_the_bound():
    rng = np.random.default_rng(3)
    shape = (16, 40, 40)
    mask = ball(shape, (8, 20, 20), (4, 12, 12)) ^ (rng.random(shape) < 0.05)
    mm = 2.0
    out = smooth(mask, GEOMETRY, mm).dense()
    changed = out ^ mask
    assert changed.any()
    allowed = margin(mask, GEOMETRY, Margin.isotropic(mm)).dense() & ~margin(mask, GEOMETRY, Margin.isotropic(-mm)).dense()
    assert not (changed & ~allowed).any()
    labels_before = ndimage.label(mask)[1]
    assert ndimage.label(out)[1] < labels_before  # specks removed


def test_fill_holes_2d_and_3d():
    mask = np.zeros((7, 12, 12), bool)
    mask[1:6, 2:10, 2:10] = True
    mask[2:5, 4:7, 4:7] = False  # a closed cavity
    mask[0, 3:8, 3:8] = True
    mask[0, 5, 5] = False  # a hole in the first slice only: 2D fills it, 3D does not
    three = fill_holes(mask, "3d").dense()
    assert three[3, 5, 5] and not three[0, 5, 5]
    two = fill_holes(mask, "2d", "z").dense()
    assert two[3, 5, 5] and two[0, 5, 5]
    tube = np.zeros((7, 12, 12), bool)
    tube[:, 2:10, 2:10] = True
    tube[:, 4:7, 4:7] = False  # open at both ends: a 3D "hole" is not enclosed
    assert not fill_holes(tube, "3d").dense()[3, 5, 5]
    assert fill_holes(tube, "2d", "z").dense()[3, 5, 5]


def test_islands_and_largest():
    geometry = Geometry((2.0, 2.0, 2.5))  # 0.01 cm3 per voxel
    mask = np.zeros((10, 20, 20), bool)
    mask[1:5, 1:6, 1:6] = True  # 100 voxels = 1 cm3
    mask[6:9, 10:13, 10:13] = True  # 27 voxels
    mask[8, 18, 18] = True  # 1 voxel
    assert remove_islands(mask, geometry, 0.2).count == 127
    assert keep_largest(mask).count == 100
    assert keep_largest(mask, 2).count == 127


def test_structure_stats_and_comparison():
    geometry = Geometry((2.0, 2.0, 2.5), (100.0, 50.0, -10.0), (-1, 0, 0, 0, 1, 0, 0, 0, 1))
    mask = np.zeros((10, 20, 20), bool)
    mask[2:4, 5:7, 3:8] = True  # 20 voxels of 10 mm3
    image = np.arange(mask.size, dtype=np.int16).reshape(mask.shape)
    s = structure_stats(mask, geometry, image, "gtv")
    assert s.voxels == 20 and s.volume_cm3 == pytest.approx(0.2)
    # x index 3..7 runs to the right (direction -1): LPS x from 100 - 2*7 to 100 - 2*3
    assert s.bbox_min_mm == pytest.approx((86.0, 60.0, -5.0))
    assert s.bbox_max_mm == pytest.approx((94.0, 62.0, -2.5))
    assert s.centroid_mm == pytest.approx((90.0, 61.0, -3.75))
    assert s.minimum == image[mask].min() and s.maximum == image[mask].max()
    assert s.mean == pytest.approx(image[mask].mean())
    same = compare(mask, mask, geometry)
    assert same.dice == 1.0 and same.hd95_mm == 0.0 and same.surface_dice == 1.0
    shifted = np.roll(mask, 1, axis=2)
    c = compare(mask, shifted, geometry, tolerance_mm=1.0)
    assert c.dice == pytest.approx(2 * 16 / 40) and c.hd95_mm == pytest.approx(2.0)


def make_set() -> StructureSet:
    structures = StructureSet(GEOMETRY, (12, 30, 30))
    structures.add("GTV", ball((12, 30, 30), (6, 15, 15), (2, 4, 5)))
    structures.add("Body", ball((12, 30, 30), (6, 15, 15), (6, 14, 14)), locked=True)
    return structures


def test_operation_on_a_structure_set_is_one_undoable_step(tmp_path):
    structures = make_set()
    gtv = structures.sparse("GTV")
    edit = plan(structures, "margin", ["GTV"], "CTV", margin=Margin.per_axis(5, 5, 3))
    assert "CTV" not in structures  # a plan is a preview
    edit.apply(structures)
    assert structures.sparse("CTV").count > gtv.count and edit.affected == ["CTV"]
    assert structures.structure("CTV").prompts[-1]["operation"] == "margin"
    saved = StructureSet.load(structures.save(tmp_path / "plan.omlss"))  # a normal structure: saved as any
    assert saved.sparse("CTV") == edit.after and saved.structure("CTV").prompts[-1]["inputs"] == ["GTV"]
    clipped = apply_operation(structures, "intersect", ["CTV", "Body"], "CTV")
    assert not clipped.created
    clipped.revert(structures)
    assert structures.sparse("CTV") == edit.after
    edit.revert(structures)
    assert structures.names() == ["GTV", "Body"] and structures.sparse("GTV") == gtv


def test_a_locked_output_is_refused_and_a_locked_input_is_read():
    structures = make_set()
    with pytest.raises(LockedStructureError, match="locked"):
        plan(structures, "smooth", ["Body"], "Body", mm=2.0)
    edit = apply_operation(structures, "ring", ["Body"], "Ring", inner=0.0, outer=3.0)
    assert edit.after.count > 0 and structures.is_locked("Body")
    with pytest.raises(ContouringError, match="takes 2 or more"):
        plan(structures, "union", ["GTV"], "X")
    with pytest.raises(ContouringError, match="unknown operation"):
        plan(structures, "dilate", ["GTV"], "X")


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_slab_labelling_matches_scipy_across_slab_faces(connectivity):
    from napari_openmedlab.annotation.contouring import _components

    rng = np.random.default_rng(connectivity)
    mask = rng.random((50, 20, 20)) < 0.3  # many pieces crossing the faces at 16, 32, 48
    pieces = _components.Components(mask, connectivity)
    labels, n = ndimage.label(mask, ndimage.generate_binary_structure(3, connectivity))
    want = np.sort(np.bincount(labels.ravel())[1:])
    got = np.sort(pieces.sizes[pieces.sizes > 0])
    np.testing.assert_array_equal(got, want)
    largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    np.testing.assert_array_equal(keep_largest(mask, 1, connectivity).dense(), labels == largest)
    holes = np.ones((40, 9, 9), bool)
    holes[10:30, 3:6, 3:6] = False  # one cavity spanning two slab faces
    holes[20, 0, 4] = False  # a dent open to the outside
    filled = fill_holes(holes, "3d").dense()
    np.testing.assert_array_equal(filled, ndimage.binary_fill_holes(holes))


def test_interpolation_along_another_axis_is_the_same_operation_transposed():
    rng = np.random.default_rng(5)
    drawn = np.zeros((13, 20, 22), bool)
    for z in (1, 5, 9, 12):
        drawn[z] = ball((1, 20, 22), (0, 10, 11), (1, 4 + z * 0.4, 6))[0] & (rng.random((20, 22)) < 0.95)
    along_z = interpolate_slices(drawn, GEOMETRY, "z").dense()
    swapped = Geometry((2.5, 1.1, 0.8))  # x and z exchanged, as the transposed array needs
    along_x = interpolate_slices(np.ascontiguousarray(drawn.transpose(2, 1, 0)), swapped, "x").dense()
    np.testing.assert_array_equal(along_x.transpose(2, 1, 0), along_z)
