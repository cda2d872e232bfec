"""Boolean operations on two or more structures, on the boxes that matter only.

* union: voxels in any input;
* intersection: voxels in every input (worked on the boxes' intersection);
* subtraction: the first input minus every other one (worked on the first input's box);
* symmetric difference: voxels in an odd number of inputs (for two: in exactly one).
"""

from __future__ import annotations

from functools import reduce

import numpy as np

from ..masks import EMPTY_BBOX, SparseMask
from ._common import ContouringError, as_sparse, from_patch, same_shape


def _inputs(masks) -> list[SparseMask]:
    masks = [as_sparse(m) for m in masks]
    if len(masks) < 2:
        raise ContouringError("a boolean operation takes two or more structures")
    same_shape(masks)
    return masks


def _box_of(masks, combine) -> tuple[int, ...]:
    boxes = [m.bbox for m in masks if m.bbox != EMPTY_BBOX]
    if not boxes:
        return EMPTY_BBOX
    lo = [combine[0](b[i] for b in boxes) for i in range(3)]
    hi = [combine[1](b[i + 3] for b in boxes) for i in range(3)]
    if any(h <= low for low, h in zip(lo, hi)):
        return EMPTY_BBOX
    return (*lo, *hi)


def union(*masks) -> SparseMask:
    masks = _inputs(masks)
    box = _box_of(masks, (min, max))
    if box == EMPTY_BBOX:
        return SparseMask(masks[0].shape)
    return from_patch(masks[0].shape, box, reduce(np.logical_or, (m.crop(box) for m in masks)))


def intersection(*masks) -> SparseMask:
    masks = _inputs(masks)
    if any(m.empty for m in masks):
        return SparseMask(masks[0].shape)
    box = _box_of(masks, (max, min))
    if box == EMPTY_BBOX:
        return SparseMask(masks[0].shape)
    return from_patch(masks[0].shape, box, reduce(np.logical_and, (m.crop(box) for m in masks)))


def subtract(first, *others) -> SparseMask:
    """``first`` minus every one of ``others``."""
    masks = _inputs((first, *others))
    base = masks[0]
    if base.empty:
        return base
    box = base.bbox
    patch = base.patch().copy()
    for m in masks[1:]:
        if not m.empty:
            patch &= ~m.crop(box)
    return from_patch(base.shape, box, patch)


def symmetric_difference(*masks) -> SparseMask:
    masks = _inputs(masks)
    box = _box_of(masks, (min, max))
    if box == EMPTY_BBOX:
        return SparseMask(masks[0].shape)
    return from_patch(masks[0].shape, box, reduce(np.logical_xor, (m.crop(box) for m in masks)))


__all__ = ["intersection", "subtract", "symmetric_difference", "union"]
