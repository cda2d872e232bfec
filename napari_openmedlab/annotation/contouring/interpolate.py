"""Interpolation between drawn slices by signed-distance blending, in millimetres.

Between two drawn slices ``a < b`` of an axis, slice ``t`` gets the voxels where
``(1 - w) * sdf_a + w * sdf_b <= 0``, ``w = (t - a) / (b - a)``, ``sdf`` being the in-plane signed
distance (mm, negative inside) to the drawn contour. The drawn slices themselves are never
changed; slices outside the first and last drawn slice stay as they are.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ...io.geometry import Geometry
from ..masks import EMPTY_BBOX, SparseMask
from ._common import ContouringError, as_sparse, from_patch
from .cleanup import axis_index


def drawn_slices(mask, axis="z") -> list[int]:
    """Indices of the slices of ``axis`` that hold at least one voxel."""
    mask = as_sparse(mask)
    a = axis_index(axis)
    if mask.empty:
        return []
    other = tuple(i for i in range(3) if i != a)
    return [int(i) + mask.bbox[a] for i in np.flatnonzero(mask.patch().any(axis=other))]


def _signed_distance(plane: np.ndarray, sampling) -> np.ndarray:
    if not plane.any():
        return np.full(plane.shape, 1e6, dtype=np.float32)  # nothing drawn: far outside everywhere
    outside = ndimage.distance_transform_edt(~plane, sampling=sampling)
    inside = ndimage.distance_transform_edt(plane, sampling=sampling)
    return (outside - inside).astype(np.float32)


def interpolate_slices(mask, geometry: Geometry, axis="z", drawn=None) -> SparseMask:
    """Fill the slices between drawn slices of ``axis`` (default: the non-empty slices are drawn).

    ``drawn``: the slice indices the user drew (an empty drawn slice ends the structure there);
    slices between two drawn ones are replaced by the interpolation, drawn slices kept exactly.
    """
    mask = as_sparse(mask)
    a = axis_index(axis)
    slices = sorted(set(int(i) for i in drawn)) if drawn is not None else drawn_slices(mask, a)
    if any(i < 0 or i >= mask.shape[a] for i in slices):
        raise ContouringError(f"drawn slices must lie within 0..{mask.shape[a] - 1}")
    gaps = [(s0, s1) for s0, s1 in zip(slices, slices[1:]) if s1 - s0 > 1]
    if not gaps or mask.empty:
        return mask
    plane_axes = [i for i in range(3) if i != a]
    sampling = geometry.spacing_zyx[plane_axes]
    # the box: the structure's box across the plane (+1 so every inside pixel sees an outside one),
    # and along the axis from the first to the last drawn slice
    lo = [0, 0, 0]
    hi = list(mask.shape)
    for i in plane_axes:
        lo[i] = max(0, mask.bbox[i] - 1)
        hi[i] = min(mask.shape[i], mask.bbox[i + 3] + 1)
    lo[a] = min(slices[0], mask.bbox[a]) if mask.bbox != EMPTY_BBOX else slices[0]
    hi[a] = max(slices[-1] + 1, mask.bbox[a + 3])
    box = (*lo, *hi)
    patch = mask.crop(box)
    moved = np.moveaxis(patch, a, 0)  # a view: writing into it writes into patch

    for s0, s1 in gaps:
        d0 = _signed_distance(moved[s0 - lo[a]], sampling)
        d1 = _signed_distance(moved[s1 - lo[a]], sampling)
        for t in range(s0 + 1, s1):
            w = (t - s0) / (s1 - s0)
            moved[t - lo[a]] = (1 - w) * d0 + w * d1 <= 0
    return from_patch(mask.shape, box, patch)


__all__ = ["drawn_slices", "interpolate_slices"]
