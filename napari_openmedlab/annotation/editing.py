"""Writing the current object into a label map: the overlap rules and refine-replace, as diffs."""

from __future__ import annotations

import numpy as np

from ..engines.base import Prediction
from .undo import Bbox, LabelDiff, bbox_slices, mask_bbox

OVERLAP_RULES = {
    "overwrite": "Overwrite other labels",
    "empty": "Fill empty voxels only",
}
"""Rule name -> what it means, as the widget shows it."""


def union_bbox(*boxes: Bbox | None) -> Bbox | None:
    boxes = tuple(b for b in boxes if b is not None and b[3] > b[0] and b[4] > b[1] and b[5] > b[2])
    if not boxes:
        return None
    arr = np.array(boxes)
    return (*(int(v) for v in arr[:, :3].min(axis=0)), *(int(v) for v in arr[:, 3:].max(axis=0)))  # type: ignore[return-value]


def fits_dtype(label_id: int, dtype: np.dtype) -> bool:
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.integer):
        return False
    info = np.iinfo(dtype)
    return info.min <= label_id <= info.max


def commit_mask(
    labels: np.ndarray,
    mask: Prediction,
    label_id: int,
    overlap: str = "overwrite",
    replace_id: int | None = None,
) -> LabelDiff | None:
    """Write ``mask`` into ``labels`` (in place) as ``label_id``; return the edit as a diff.

    Args:
        labels: the target label map ``(z, y, x)``, on the same grid as ``mask``.
        mask: the current object (bbox + boolean patch).
        label_id: the id written (> 0).
        overlap: ``"overwrite"`` replaces any label under the mask; ``"empty"`` writes only where
            ``labels`` is 0 (the voxels of ``replace_id`` count as empty, since they are replaced).
        replace_id: when refining an existing label, its voxels outside the new mask become 0.

    Returns:
        The :class:`LabelDiff` of the voxels that changed, or None when nothing changed.
    """
    if overlap not in OVERLAP_RULES:
        raise ValueError(f"overlap must be one of {', '.join(OVERLAP_RULES)}; got {overlap!r}")
    if label_id <= 0:
        raise ValueError(f"label id must be positive; got {label_id}")
    if not fits_dtype(label_id, labels.dtype):
        raise ValueError(f"label id {label_id} does not fit the label map's type {labels.dtype}")
    if tuple(mask.shape) != tuple(labels.shape):
        raise ValueError(f"mask grid {tuple(mask.shape)} differs from the labels {labels.shape}")
    old_box = mask_bbox(labels == replace_id) if replace_id is not None else None
    box = union_bbox(None if mask.empty else mask.bbox, old_box)
    if box is None:
        return None
    region_slices = bbox_slices(box)
    before = labels[region_slices].copy()
    after = before.copy()
    if replace_id is not None:
        after[after == replace_id] = 0
    write = np.zeros(after.shape, dtype=bool)
    if not mask.empty:
        z0, y0, x0 = box[:3]
        mz0, my0, mx0, mz1, my1, mx1 = mask.bbox
        write[mz0 - z0 : mz1 - z0, my0 - y0 : my1 - y0, mx0 - x0 : mx1 - x0] = mask.patch
    if overlap == "empty":
        write &= after == 0
    after[write] = label_id
    diff = LabelDiff.between(before, after, origin=box[:3])
    if diff is not None:
        labels[diff.slices] = diff.after
    return diff
