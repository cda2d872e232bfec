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


#: a first crop is moved only by at least this many voxels (24 mm): less is not worth an encoder run
RECENTRE_MIN = 16
#: voxels kept between the mask's far edge and the crop face when the crop is moved
RECENTRE_MARGIN = 8
#: the most a first crop moves along an axis: its click stays 16 voxels inside
RECENTRE_MAX = CROP // 2 - 16


def recentred_start(hi: np.ndarray, start, shape) -> tuple | None:
    """Where the first crop should be when its mask ``hi`` shows the object is off centre.

    Along each axis where the mask meets one face only (and the grid goes on beyond it), the
    crop moves toward that face by the free room on the other side, less a margin: an object
    clicked off its centre then fits in fewer lattice crops (a liver clicked 5 cm off centre: 3
    crops instead of 8). None when no axis moves by :data:`RECENTRE_MIN` voxels or more.
    """
    faces = touched_faces(hi, start, shape)
    moved = list(start)
    for axis in range(3):
        sides = [d for a, d in faces if a == axis]
        if len(sides) != 1:
            continue
        extent = np.flatnonzero(hi.any(axis=tuple(k for k in range(3) if k != axis)))
        room = int(extent[0]) if sides[0] > 0 else CROP - 1 - int(extent[-1])
        shift = min(room - RECENTRE_MARGIN, RECENTRE_MAX)
        if shift >= RECENTRE_MIN:
            moved[axis] += sides[0] * shift
    return tuple(moved) if moved != list(start) else None


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


class MergeBuffers:
    """Memory for the merged mask of a click, reused from click to click.

    A new boolean array the size of a large object's box (78 MB for 512 x 512 x 300) costs its
    page faults when it is first written: a few ms on a quiet machine, but 0.2-0.5 s when the
    kernel has to find and zero fresh pages (measured: the same merge took 0.02 s on one click and
    0.49 s on the next). So the engine keeps the arrays it handed out and writes a new answer into
    one that nobody else holds any more, which its reference count tells; a new array is made
    only while every kept one is still in use (e.g. the caller keeps the previous prediction).
    """

    def __init__(self, keep: int = 3) -> None:
        self.keep = int(keep)
        self.allocated = 0  # arrays made so far (a benchmark/test figure)
        self._arrays: list[np.ndarray] = []

    def take(self, shape) -> np.ndarray:
        """An uninitialised boolean array of ``shape`` that no one else references."""
        import sys

        n = int(np.prod(shape))
        for arr in self._arrays:
            # references: the list, the loop variable and getrefcount's own argument; a view
            # handed out earlier (a Prediction's patch) holds one more while it lives
            if sys.getrefcount(arr) <= 3 and arr.size >= n:
                return arr[:n].reshape(shape)
        self._arrays = [a for a in self._arrays if sys.getrefcount(a) > 3 or a.size >= n]
        if not self._arrays:
            # the first answer on this grid: make a spare too and fault its pages in now, while
            # the click runs its encoder anyway; the next click writes into it while the caller
            # still holds this answer (as the session does until the next one arrives)
            spare = np.zeros(n, bool)
            spare[:: 4096] = False  # touch every page
            self._arrays.append(spare)
            self.allocated += 1
        arr = np.empty(n, bool)
        self.allocated += 1
        self._arrays.append(arr)
        del self._arrays[:-self.keep]  # forget the oldest: its holders keep it alive
        return arr[:n].reshape(shape)

    def clear(self) -> None:
        self._arrays = []


def merge_pieces(pieces: list, shape, buffers: MergeBuffers | None = None) -> Prediction:
    """Union of ``(bbox, patch)`` pieces as a Prediction over the pieces' joint bounding box.

    Each piece is already cut to its crop mask's extent (:meth:`CanonicalGrid.paste`), so their
    joint box is the mask's (at most a voxel loose where a coarse grid skips a crop plane): no
    whole-box search for the extent, which would cost more than the union on a large object.
    The patch never shares memory with a piece (pieces are kept for the next click); it is taken
    from ``buffers`` when given.
    """
    pieces = [(b, p) for b, p in pieces if p.any()]
    if not pieces:
        return Prediction((0, 0, 0, 0, 0, 0), np.zeros((0, 0, 0), bool), tuple(shape))
    lo = np.min([b[:3] for b, _ in pieces], axis=0)
    hi = np.max([b[3:] for b, _ in pieces], axis=0)
    size = tuple(int(v) for v in hi - lo)
    union = buffers.take(size) if buffers is not None else np.empty(size, bool)
    if len(pieces) == 1:
        np.copyto(union, pieces[0][1])
    else:
        union[...] = False
        for b, p in pieces:
            union[b[0] - lo[0]:b[3] - lo[0], b[1] - lo[1]:b[4] - lo[1], b[2] - lo[2]:b[5] - lo[2]] |= p
    return Prediction(tuple(int(v) for v in (*lo, *hi)), union, tuple(shape))
