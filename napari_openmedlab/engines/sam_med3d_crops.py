"""SAM-Med3D beyond one crop: the crop lattice, when a mask spills into a neighbour, the automatic
point there, and the union of the crops' masks on the volume grid (see :mod:`.sam_med3d`)."""

from __future__ import annotations

import numpy as np

from .base import Prediction
from .crop3d import CROP

#: overlap of neighbouring lattice crops, in grid voxels (48 mm); the lattice stride is 96
OVERLAP = 32
#: mask voxels on a crop face that make the neighbour across it run
MIN_FACE_VOXELS = 4


def touched_faces(hi: np.ndarray, start, shape) -> list[tuple[int, int]]:
    """``(axis, direction)`` of the faces of the 128^3 crop mask ``hi`` (crop at grid voxel
    ``start``) holding at least ``MIN_FACE_VOXELS`` mask voxels, where the grid goes on beyond."""
    faces = []
    for axis in range(3):
        for direction, index in ((-1, 0), (1, CROP - 1)):
            beyond = start[axis] > 0 if direction < 0 else start[axis] + CROP < shape[axis]
            if beyond and np.take(hi, index, axis=axis).sum() >= MIN_FACE_VOXELS:
                faces.append((axis, direction))
    return faces


def seed_near_face(hi: np.ndarray, axis: int, direction: int) -> np.ndarray | None:
    """The automatic positive point (parent crop voxels) for the neighbour across a face."""
    from scipy.ndimage import distance_transform_edt

    target = CROP - OVERLAP // 2 if direction > 0 else OVERLAP // 2 - 1
    slab = range(CROP - OVERLAP, CROP) if direction > 0 else range(0, OVERLAP)
    planes = sorted(slab, key=lambda i: abs(i - target))
    for plane in planes:
        section = np.take(hi, plane, axis=axis)
        if section.any():
            depth = distance_transform_edt(np.pad(section, 1))[1:-1, 1:-1]
            r, c = np.unravel_index(int(np.argmax(depth)), depth.shape)
            point = [r, c]
            point.insert(axis, plane)
            return np.array(point)
    return None


def kept_seed(previous: tuple | None, start, parent: tuple, parent_mask: np.ndarray):
    """The crop's previous automatic point (crop voxels) if the parent's mask still holds it in
    the overlap slab of the shared face; else None."""
    if previous is None or len(previous[1]) == 0 or (previous[1][:-1] == 1).any() or previous[1][-1] != 1:
        return None
    seed = np.asarray(previous[0][-1])
    parent_start, axis, direction = parent
    q = seed + np.asarray(start) - np.asarray(parent_start)
    if np.any((q < 0) | (q >= CROP)):
        return None
    in_slab = q[axis] >= CROP - OVERLAP if direction > 0 else q[axis] < OVERLAP
    return seed if in_slab and parent_mask[tuple(q)] else None


def merge_pieces(pieces: list, shape) -> Prediction:
    """Union of ``(bbox, patch)`` pieces as a Prediction over the pieces' joint bounding box.

    Each piece is already cut to its crop mask's extent (:meth:`CanonicalGrid.paste`), so their
    joint box is the mask's (at most a voxel loose where a coarse grid skips a crop plane): no
    whole-box search for the extent, which would cost more than the union on a large object.
    The patch is always a new array (pieces are kept for the next click and must not be shared).
    """
    pieces = [(b, p) for b, p in pieces if p.any()]
    if not pieces:
        return Prediction((0, 0, 0, 0, 0, 0), np.zeros((0, 0, 0), bool), tuple(shape))
    lo = np.min([b[:3] for b, _ in pieces], axis=0)
    hi = np.max([b[3:] for b, _ in pieces], axis=0)
    if len(pieces) == 1:
        union = pieces[0][1].copy()
    else:
        union = np.zeros(tuple(hi - lo), bool)
        for b, p in pieces:
            union[b[0] - lo[0]:b[3] - lo[0], b[1] - lo[1]:b[4] - lo[1], b[2] - lo[2]:b[5] - lo[2]] |= p
    return Prediction(tuple(int(v) for v in (*lo, *hi)), union, tuple(shape))
