"""Simulated user clicks for interactive-segmentation evaluation.

The rule (``largest-error``, the protocol of RITM / SAM-style interactive benchmarks):

1. the error region is split into false negatives (object voxels the prediction misses) and
   false positives (predicted voxels outside the object); before the first prediction the whole
   object is a false negative, so the first click is positive and inside the object;
2. each of the two is split into connected components (6-connectivity, faces only);
   the largest component by volume is corrected next; a tie goes to the false-negative side,
   then to the component met first in array order;
3. the click is placed at the component's interior-most voxel: the one farthest, in mm (voxel
   spacing honoured), from the component's boundary (the volume's border counts as a boundary);
   ties between equally deep voxels are broken by a seeded random generator, so the same seed
   always gives the same click;
4. the click is positive exactly when its voxel is a false negative.

When there is no error left, :meth:`ClickSimulator.next_click` returns ``None``.

Clicks are ``(z, y, x)`` integer voxel indices, like every engine prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["Click", "ClickSimulator", "error_regions", "interior_point"]

_FACES = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class Click:
    """One simulated click: voxel ``(z, y, x)`` and whether it is positive (adds to the object)."""

    zyx: tuple[int, int, int]
    positive: bool

    @property
    def label(self) -> int:
        return int(self.positive)


def error_regions(gt: np.ndarray, pred: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``(false_negative, false_positive)`` boolean masks of ``pred`` against ``gt``."""
    gt = np.asarray(gt, dtype=bool)
    if pred is None:
        return gt.copy(), np.zeros_like(gt)
    pred = np.asarray(pred, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    return gt & ~pred, pred & ~gt


def _bounding_slices(mask: np.ndarray) -> tuple[slice, ...] | None:
    lo, hi = [], []
    for axis in range(mask.ndim):
        nz = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if len(nz) == 0:
            return None
        lo.append(int(nz[0]))
        hi.append(int(nz[-1]) + 1)
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def interior_point(
    region: np.ndarray,
    spacing=(1.0, 1.0, 1.0),
    rng: np.random.Generator | None = None,
) -> tuple[int, int, int]:
    """The voxel of ``region`` farthest (in mm) from its boundary; the grid border is a boundary.

    Among equally deep voxels one is drawn with ``rng`` (the first in array order without one).
    """
    region = np.asarray(region, dtype=bool)
    box = _bounding_slices(region)
    if box is None:
        raise ValueError("empty region: no voxel to click")
    sub = np.pad(region[box], 1)  # a zero border: the grid edge and the bbox edge are boundaries
    depth = ndimage.distance_transform_edt(sub, sampling=spacing)[1:-1, 1:-1, 1:-1]
    best = np.flatnonzero(depth == depth.max())
    pick = best[0] if rng is None or len(best) == 1 else best[rng.integers(len(best))]
    local = np.unravel_index(pick, depth.shape)
    return tuple(int(i + s.start) for i, s in zip(local, box))  # type: ignore[return-value]


def _largest_component(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The largest 6-connected component of ``mask`` and its size in voxels."""
    labels, n = ndimage.label(mask, structure=_FACES)
    if n == 0:
        return np.zeros_like(mask), 0
    sizes = np.bincount(labels.ravel())[1:]
    best = int(np.argmax(sizes))  # first of equal sizes = first met in array order
    return labels == best + 1, int(sizes[best])


class ClickSimulator:
    """Largest-error click simulator; one instance per object (it only holds the random state).

    Args:
        spacing: voxel size in mm in array order ``(z, y, x)``; distances are measured in mm.
        seed: seeds the tie-breaking between equally deep voxels.
    """

    name = "largest-error"

    def __init__(self, spacing=(1.0, 1.0, 1.0), seed: int = 0) -> None:
        self.spacing = tuple(float(s) for s in np.broadcast_to(np.asarray(spacing, float), (3,)))
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def next_click(self, gt: np.ndarray, pred: np.ndarray | None = None) -> Click | None:
        """The click that corrects the largest error of ``pred`` (None: no prediction yet).

        Returns None when ``pred`` equals ``gt`` (nothing left to correct).
        Raises ValueError when ``gt`` is empty and there is no prediction (no object to click).
        """
        gt = np.asarray(gt, dtype=bool)
        fn, fp = error_regions(gt, pred)
        if pred is None and not gt.any():
            raise ValueError("the object is empty: there is nothing to click")
        error = fn | fp
        box = _bounding_slices(error)
        if box is None:
            return None
        # work inside the errors' bounding box (+1 voxel, where the grid allows): big volumes stay cheap
        box = tuple(
            slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, gt.shape)
        )
        comp_fn, size_fn = _largest_component(fn[box])
        comp_fp, size_fp = _largest_component(fp[box])
        positive = size_fn >= size_fp
        component = comp_fn if positive else comp_fp
        local = interior_point(component, self.spacing, self.rng)
        zyx = tuple(int(i + s.start) for i, s in zip(local, box))
        # by construction the voxel is in the component; say so loudly if that ever breaks
        assert bool(fn[zyx]) == positive and (fn[zyx] or fp[zyx])
        return Click(zyx, bool(positive))
