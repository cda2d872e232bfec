"""Shared vocabulary of the contouring operations: masks in, sparse masks out, typed errors.

Every operation accepts a :class:`~..masks.SparseMask` (preferred: it carries its bounding box, so
the work stays on the box plus the margin) or a dense boolean ``(z, y, x)`` array, and returns a
:class:`SparseMask` on the same grid.
"""

from __future__ import annotations

import numpy as np

from ..masks import EMPTY_BBOX, SparseMask, bbox_slices, bounding_box


class ContouringError(ValueError):
    """Bad input for a contouring operation (grids that differ, a margin that cannot be applied...)."""


def as_sparse(mask, shape=None) -> SparseMask:
    """``mask`` (SparseMask or dense boolean array) as a SparseMask; checks the grid shape."""
    if isinstance(mask, SparseMask):
        sparse = mask
    else:
        arr = np.asarray(mask)
        if arr.ndim != 3:
            raise ContouringError(f"a mask is 3D (z, y, x); got shape {arr.shape}")
        sparse = SparseMask.from_dense(arr != 0 if arr.dtype != bool else arr)
    if shape is not None and tuple(sparse.shape) != tuple(shape):
        raise ContouringError(f"masks on different grids: {sparse.shape} vs {tuple(shape)}")
    return sparse


def same_shape(masks) -> tuple[int, int, int]:
    shapes = {tuple(m.shape) for m in masks}
    if len(shapes) != 1:
        raise ContouringError(f"masks on different grids: {sorted(shapes)}")
    return shapes.pop()


def grow_box(bbox, lo, hi, shape) -> tuple[int, ...]:
    """``bbox`` grown by ``lo``/``hi`` voxels per axis (z, y, x), clipped to the grid."""
    return tuple(max(0, bbox[i] - int(lo[i])) for i in range(3)) + tuple(
        min(int(shape[i]), bbox[i + 3] + int(hi[i])) for i in range(3)
    )


def from_patch(shape, box, patch: np.ndarray) -> SparseMask:
    """A SparseMask from a boolean ``patch`` covering ``box`` (the box is tightened)."""
    if box == EMPTY_BBOX or not patch.any():
        return SparseMask(shape)
    return SparseMask(shape, box, patch)


def box_shape(box) -> tuple[int, int, int]:
    return tuple(int(box[i + 3] - box[i]) for i in range(3))  # type: ignore[return-value]


__all__ = [
    "ContouringError",
    "as_sparse",
    "bbox_slices",
    "bounding_box",
    "box_shape",
    "from_patch",
    "grow_box",
    "same_shape",
]
