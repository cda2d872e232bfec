"""One mask vocabulary for the whole project: a bounding box plus a boolean patch.

``bbox`` is ``(z0, y0, x0, z1, y1, x1)``, half-open voxel bounds on the volume grid; an empty mask
has ``bbox == (0, 0, 0, 0, 0, 0)`` and a patch of shape ``(0, 0, 0)``. Everything that needs the
bounding box of a mask or a content digest uses :func:`bounding_box` and :func:`mask_digest`.
"""

from __future__ import annotations

import hashlib

import numpy as np

EMPTY_BBOX = (0, 0, 0, 0, 0, 0)


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int, int, int]:
    """Half-open bounding box of the True voxels of a 3D boolean array; EMPTY_BBOX when none."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return EMPTY_BBOX
    lo, hi = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        nz = np.flatnonzero(mask.any(axis=other))
        lo.append(int(nz[0]))
        hi.append(int(nz[-1]) + 1)
    return (*lo, *hi)  # type: ignore[return-value]


def bbox_slices(bbox) -> tuple[slice, slice, slice]:
    z0, y0, x0, z1, y1, x1 = bbox
    return slice(z0, z1), slice(y0, y1), slice(x0, x1)


def bbox_union(a, b):
    """The smallest box holding both (an empty box is neutral)."""
    if a == EMPTY_BBOX or a is None:
        return tuple(b) if b is not None else EMPTY_BBOX
    if b == EMPTY_BBOX or b is None:
        return tuple(a)
    return tuple(min(a[i], b[i]) for i in range(3)) + tuple(max(a[i], b[i]) for i in range(3, 6))


def bbox_is_empty(bbox) -> bool:
    z0, y0, x0, z1, y1, x1 = bbox
    return z1 <= z0 or y1 <= y0 or x1 <= x0


def mask_digest(mask: np.ndarray) -> str:
    """A short content hash of a boolean mask (shape included), for logs and cache keys."""
    mask = np.ascontiguousarray(np.asarray(mask, dtype=bool))
    h = hashlib.sha256(repr(mask.shape).encode())
    h.update(np.packbits(mask).tobytes())
    return h.hexdigest()[:16]


class SparseMask:
    """A boolean mask on a grid of ``shape``, stored as a bounding box and bit-packed patch.

    Memory is one bit per voxel of the bounding box, so 47 head-and-neck structures on a
    512 x 512 x 300 CT take a few MB instead of 47 x 78 MB.
    """

    __slots__ = ("shape", "bbox", "_bits", "_count")

    def __init__(self, shape, bbox=EMPTY_BBOX, patch: np.ndarray | None = None) -> None:
        self.shape = tuple(int(s) for s in shape)
        if patch is None or bbox_is_empty(bbox) or not np.any(patch):
            self.bbox = EMPTY_BBOX
            self._bits = np.zeros(0, np.uint8)
            self._count = 0
            return
        patch = np.asarray(patch, dtype=bool)
        # trim to the patch's own content so the box is always tight
        inner = bounding_box(patch)
        patch = patch[bbox_slices(inner)]
        self.bbox = tuple(int(bbox[i] + inner[i]) for i in range(3)) + tuple(
            int(bbox[i] + inner[i + 3]) for i in range(3)
        )
        self._bits = np.packbits(patch.ravel())
        self._count = int(patch.sum())

    @classmethod
    def from_dense(cls, mask: np.ndarray) -> SparseMask:
        mask = np.asarray(mask, dtype=bool)
        bbox = bounding_box(mask)
        return cls(mask.shape, bbox, mask[bbox_slices(bbox)] if bbox != EMPTY_BBOX else None)

    @classmethod
    def from_bits(cls, shape, bbox, bits: np.ndarray, count: int | None = None) -> SparseMask:
        """Rebuild from stored parts without unpacking (used by the on-disk format)."""
        out = cls(shape)
        out.bbox = tuple(int(v) for v in bbox)
        out._bits = np.asarray(bits, dtype=np.uint8)
        n = int(np.prod([out.bbox[i + 3] - out.bbox[i] for i in range(3)])) if out.bbox != EMPTY_BBOX else 0
        if len(out._bits) != (n + 7) // 8:
            raise ValueError(f"stored mask bits ({len(out._bits)} bytes) do not fit its box {out.bbox}")
        out._count = int(count) if count is not None else int(out.patch().sum())
        return out

    @property
    def bits(self) -> np.ndarray:
        return self._bits

    @property
    def empty(self) -> bool:
        return self._count == 0

    @property
    def count(self) -> int:
        """Number of True voxels."""
        return self._count

    @property
    def nbytes(self) -> int:
        return int(self._bits.nbytes)

    def patch(self) -> np.ndarray:
        """The boolean patch inside :attr:`bbox`."""
        if self.bbox == EMPTY_BBOX:
            return np.zeros((0, 0, 0), bool)
        shape = tuple(self.bbox[i + 3] - self.bbox[i] for i in range(3))
        n = int(np.prod(shape))
        return np.unpackbits(self._bits, count=n).view(bool).reshape(shape)

    def _slab(self, za: int, zb: int) -> np.ndarray:
        """Planes ``za:zb`` of the patch (patch-relative), unpacking only their bits: a view that
        scrolls or a small edit of a tall structure never unpacks the whole structure."""
        dy, dx = self.bbox[4] - self.bbox[1], self.bbox[5] - self.bbox[2]
        start, stop = za * dy * dx, zb * dy * dx
        first = start // 8
        bits = np.unpackbits(self._bits[first : (stop + 7) // 8])
        return bits[start - 8 * first : stop - 8 * first].view(bool).reshape(zb - za, dy, dx)

    def dense(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=bool)
        if self.bbox != EMPTY_BBOX:
            out[bbox_slices(self.bbox)] = self.patch()
        return out

    def crop(self, bbox) -> np.ndarray:
        """The mask inside an arbitrary box of the grid (zeros outside this mask's own box)."""
        shape = tuple(bbox[i + 3] - bbox[i] for i in range(3))
        out = np.zeros(shape, dtype=bool)
        if self.bbox == EMPTY_BBOX:
            return out
        lo = [max(bbox[i], self.bbox[i]) for i in range(3)]
        hi = [min(bbox[i + 3], self.bbox[i + 3]) for i in range(3)]
        if any(h <= low for low, h in zip(lo, hi)):
            return out
        slab = self._slab(lo[0] - self.bbox[0], hi[0] - self.bbox[0])  # planes lo[0]:hi[0] only
        src = (slice(None), *(slice(lo[i] - self.bbox[i], hi[i] - self.bbox[i]) for i in (1, 2)))
        dst = tuple(slice(lo[i] - bbox[i], hi[i] - bbox[i]) for i in range(3))
        out[dst] = slab[src]
        return out

    def with_region(self, bbox, region: np.ndarray) -> SparseMask:
        """A new mask equal to this one except inside ``bbox``, where it is ``region`` (boolean, the
        box's shape). Costs the union of the two boxes, never the whole grid."""
        region = np.asarray(region, dtype=bool)
        bbox = tuple(int(v) for v in bbox)
        if region.shape != tuple(bbox[i + 3] - bbox[i] for i in range(3)):
            raise ValueError(f"region of shape {region.shape} does not fit the box {bbox}")
        if self.empty and not region.any():
            return SparseMask(self.shape)
        union = bbox_union(self.bbox, bbox)
        dense = self.crop(union)
        z0, y0, x0 = union[:3]
        dense[bbox[0] - z0 : bbox[3] - z0, bbox[1] - y0 : bbox[4] - y0, bbox[2] - x0 : bbox[5] - x0] = region
        return SparseMask(self.shape, union, dense)

    def __eq__(self, other) -> bool:
        if not isinstance(other, SparseMask):
            return NotImplemented
        return (
            self.shape == other.shape
            and self.bbox == other.bbox
            and np.array_equal(self._bits, other._bits)
        )

    def __repr__(self) -> str:
        return f"SparseMask(shape={self.shape}, bbox={self.bbox}, voxels={self._count})"
