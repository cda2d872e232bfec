"""Slice-to-slice propagation, tested with a stand-in segmenter on the sample CT's reference.

The stand-in answers a slice with the reference segmentation of the organ, restricted to the
connected components that overlap the prompt box: a perfect 2D model that still depends on the
prompts derived from the previous slice. So these tests measure the propagation logic itself
(prompt derivation, both directions, stop rules, gaps between annotations, cancel, progress).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from napari_openmedlab.engines.base import Cancelled
from napari_openmedlab.engines.propagation import (
    PropagationOptions,
    SlicePrompt,
    derive_prompt,
    dice,
    interior_point,
    mask_box,
    propagate,
)


def _slice(array, axis, index):
    sl = [slice(None)] * 3
    sl[axis] = index
    return array[tuple(sl)]


class Oracle:
    """Answers slice ``prompt.index`` with the organ's components overlapping the box."""

    def __init__(self, organ_mask: np.ndarray, axis: int) -> None:
        self.mask = organ_mask
        self.axis = axis
        self.prompts: list[SlicePrompt] = []

    def __call__(self, prompt: SlicePrompt) -> np.ndarray:
        self.prompts.append(prompt)
        ref = _slice(self.mask, self.axis, prompt.index)
        labels, _ = ndimage.label(ref)
        r0, c0, r1, c1 = prompt.box
        inside = labels[int(np.ceil(r0)) : int(np.floor(r1)) + 1, int(np.ceil(c0)) : int(np.floor(c1)) + 1]
        ids = np.unique(inside[inside > 0])
        return np.isin(labels, ids)


def volume_dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def reference(shared_data):
    import SimpleITK as sitk

    folder = shared_data / "totalseg-ct"
    seg = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "seg.nii.gz")))
    names = {v: int(k) for k, v in json.loads((folder / "labels.json").read_text())["labels"].items()}
    return seg, names


def seeds_of(mask, axis, indices):
    return {i: _slice(mask, axis, i).copy() for i in indices}


def largest_slice(mask, axis):
    other = tuple(a for a in range(3) if a != axis)
    return int(np.argmax(mask.sum(axis=other)))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_liver_from_one_slice(reference, axis):
    seg, names = reference
    liver = seg == names["liver"]
    start = largest_slice(liver, axis)
    oracle = Oracle(liver, axis)
    result = propagate(seeds_of(liver, axis, [start]), liver.shape[axis], oracle)
    out = result.to_volume(axis, liver.shape)
    assert volume_dice(out, liver) >= 0.95
    # each slice is asked at most once; annotated slices are never asked
    asked = [p.index for p in oracle.prompts]
    assert len(asked) == len(set(asked)) and start not in asked
    assert result.segmented == len(asked)


def test_stops_at_the_object_end(reference):
    seg, names = reference
    gb = seg == names["gallbladder"]  # axial slices 2..14 of 30
    on = np.flatnonzero(gb.any(axis=(1, 2)))
    first, last = int(on[0]), int(on[-1])
    assert 0 < first and last < gb.shape[0] - 1
    oracle = Oracle(gb, 0)
    result = propagate(seeds_of(gb, 0, [largest_slice(gb, 0)]), gb.shape[0], oracle)
    out = result.to_volume(0, gb.shape)
    kept = np.flatnonzero(out.any(axis=(1, 2)))
    assert (kept[0], kept[-1]) == (first, last)
    assert volume_dice(out, gb) >= 0.95
    # each direction asked one slice past the end, found nothing there and stopped
    assert sorted((s.index, s.reason) for s in result.stops) == [
        (first - 1, "vanished"),
        (last + 1, "vanished"),
    ]
    assert sorted(p.index for p in oracle.prompts if p.index < first or p.index > last) == [
        first - 1,
        last + 1,
    ]


def test_stops_when_the_overlap_drops():
    # a disc that jumps sideways at slice 6: no overlap with slice 5 -> stop before it
    shape = (12, 40, 40)
    vol = np.zeros(shape, bool)
    yy, xx = np.mgrid[:40, :40]
    for z in range(12):
        cx = 12 if z < 6 else 30
        vol[z] = (yy - 20) ** 2 + (xx - cx) ** 2 < 36
    seen = []

    def segment(prompt: SlicePrompt) -> np.ndarray:
        seen.append(prompt.index)
        return vol[prompt.index]  # ignores the box: a model that jumped to another structure

    result = propagate({2: vol[2]}, 12, segment)
    out = result.to_volume(0, shape)
    assert np.flatnonzero(out.any(axis=(1, 2))).tolist() == [0, 1, 2, 3, 4, 5]
    assert [(s.index, s.reason) for s in result.stops] == [(6, "jumped")]
    assert result.stops[0].overlap == 0.0
    assert 7 not in seen


def test_two_annotations_meet_in_the_middle(reference):
    seg, names = reference
    liver = seg == names["liver"]
    oracle = Oracle(liver, 0)
    result = propagate(seeds_of(liver, 0, [5, 24]), liver.shape[0], oracle)
    out = result.to_volume(0, liver.shape)
    assert volume_dice(out, liver) >= 0.95
    source = {p.index: p.source for p in oracle.prompts}
    # gap 6..23: slices up to the middle (14) come from below, the rest from above
    for i in range(6, 15):
        assert source[i] == i - 1
    for i in range(15, 24):
        assert source[i] == i + 1
    # outside the annotations: downwards from 5, upwards from 24
    assert all(source[i] == i + 1 for i in range(0, 5))
    assert all(source[i] == i - 1 for i in range(25, liver.shape[0]))
    assert len(oracle.prompts) == liver.shape[0] - 2
    assert result.masks[5] is not None and np.array_equal(result.masks[5], liver[5])


def test_gap_side_that_stops_leaves_the_rest_to_the_other():
    # the object vanishes at slice 8; annotations at 2 and 18 (middle 10)
    shape = (21, 30, 30)
    vol = np.zeros(shape, bool)
    vol[:, 10:20, 10:20] = True
    vol[8] = False
    asked = []

    def segment(prompt):
        asked.append((prompt.index, prompt.source))
        return vol[prompt.index]

    result = propagate({2: vol[2], 18: vol[18]}, 21, segment)
    out = result.to_volume(0, shape)
    assert np.array_equal(out, vol)
    # from below: 3..7 then 8 vanished; from above: 17 down to 9 (past the middle), then 8 again
    assert (8, 7) in asked and (9, 10) in asked and (8, 9) in asked
    assert [s.reason for s in result.stops] == ["vanished", "vanished"]


def test_gap_other_side_stops_first():
    # the object vanishes at slice 15, above the middle (10) of annotations 2 and 18
    shape = (21, 30, 30)
    vol = np.zeros(shape, bool)
    vol[:, 10:20, 10:20] = True
    vol[15] = False
    asked = []

    def segment(prompt):
        asked.append((prompt.index, prompt.source))
        return vol[prompt.index]

    out = propagate({2: vol[2], 18: vol[18]}, 21, segment).to_volume(0, shape)
    assert np.array_equal(out, vol)
    # from above: 17, 16, then 15 vanished; from below: up to 10, then on through 14 and 15
    assert (14, 13) in asked and (15, 14) in asked and (15, 16) in asked
    assert len([a for a in asked if a[0] == 15]) == 2  # the only slice asked twice: both sides stop there


def test_cancel_stops_between_slices(reference):
    seg, names = reference
    liver = seg == names["liver"]
    oracle = Oracle(liver, 0)
    with pytest.raises(Cancelled):
        propagate(seeds_of(liver, 0, [15]), liver.shape[0], oracle, cancel=lambda: len(oracle.prompts) >= 4)
    assert len(oracle.prompts) == 4


def test_progress_reaches_one(reference):
    seg, names = reference
    liver = seg == names["liver"]
    seen = []
    propagate(
        seeds_of(liver, 0, [15]), liver.shape[0], Oracle(liver, 0), progress=lambda f, m: seen.append(f)
    )
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert all(a <= b for a, b in zip(seen, seen[1:]))


def test_derive_prompt():
    mask = np.zeros((50, 60), bool)
    mask[10:30, 20:26] = True  # rows 10..29, cols 20..25
    p = derive_prompt(mask, index=4, source=3)
    assert (p.index, p.source) == (4, 3)
    # 10 % margin, at least 2 voxels: rows 20 * 0.1 = 2, cols max(2, 0.6) = 2
    assert p.box == (8.0, 18.0, 31.0, 27.0)
    assert p.points.shape == (1, 2) and p.labels.tolist() == [1]
    r, c = p.points[0]
    assert mask[int(r), int(c)] and 17 <= r <= 22 and 22 <= c <= 23
    assert p.mask is mask and not p.use_mask_prompt
    # clipped to the slice
    edge = np.zeros((10, 10), bool)
    edge[0:3, 7:10] = True
    assert derive_prompt(edge, 1, 0).box == (0.0, 5.0, 4.0, 9.0)
    q = derive_prompt(mask, 4, 3, PropagationOptions(use_point=False, use_mask_prompt=True))
    assert len(q.points) == 0 and q.use_mask_prompt


def test_helpers_and_errors():
    a = np.zeros((5, 5), bool)
    a[1:3, 1:4] = True
    assert mask_box(a) == (1, 1, 2, 3)
    assert dice(a, a) == 1.0 and dice(a, ~a) == 0.0
    assert a[interior_point(a)]
    with pytest.raises(ValueError):
        propagate({0: np.zeros((5, 5), bool)}, 3, lambda p: a)
    with pytest.raises(ValueError):
        propagate({7: a}, 3, lambda p: a)
    with pytest.raises(ValueError, match="shape"):
        propagate({0: a}, 3, lambda p: np.ones((4, 4), bool))


def test_max_distance():
    vol = np.ones((20, 8, 8), bool)
    result = propagate({10: vol[10]}, 20, lambda p: vol[p.index], PropagationOptions(max_distance=3))
    out = result.to_volume(0, vol.shape)
    assert np.flatnonzero(out.any(axis=(1, 2))).tolist() == list(range(7, 14))
    assert sorted(s.index for s in result.stops) == [6, 14]


def test_stops_when_the_mask_leaks():
    # slice 6 swallows the surroundings: it contains slice 5 (overlap 1) but is 36x larger
    vol = np.zeros((10, 40, 40), bool)
    vol[:, 18:23, 18:23] = True
    vol[6:, 5:35, 5:35] = True

    result = propagate({2: vol[2]}, 10, lambda p: vol[p.index])
    out = result.to_volume(0, vol.shape)
    assert np.flatnonzero(out.any(axis=(1, 2))).tolist() == [0, 1, 2, 3, 4, 5]
    (stop,) = result.stops
    assert (stop.index, stop.reason, stop.overlap) == (6, "grew", 1.0) and stop.dice < 0.3


def test_shrinking_inside_is_kept_but_score_can_stop():
    vol = np.zeros((10, 40, 40), bool)
    vol[:, 10:30, 10:30] = True
    vol[7:, 10:30, 10:30] = False
    vol[7:, 19:21, 19:21] = True  # a tip of 4 voxels inside the 400 before it: Dice 0.02
    result = propagate({2: vol[2]}, 10, lambda p: vol[p.index])
    assert np.array_equal(result.to_volume(0, vol.shape), vol)

    def scored(p):
        return vol[p.index], (0.2 if p.index == 8 else 0.9)

    result = propagate({2: vol[2]}, 10, scored, PropagationOptions(min_score=0.5))
    assert [(s.index, s.reason, s.score) for s in result.stops] == [(8, "score", 0.2)]
    assert sorted(result.masks) == list(range(8))
