"""Clean-up of a structure: smoothing in mm with a stated bound, hole filling, islands.

Smoothing: a Gaussian of standard deviation ``mm`` (isotropic in millimetres, whatever the
spacing) thresholded at one half, then held between the structure shrunk and expanded by ``mm``
(exact margins, see :mod:`.margins`). So **no voxel changes unless it lies within ``mm`` of the
original surface**: the surface never moves by more than ``mm``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ...io.geometry import Geometry
from ..masks import SparseMask
from ._common import ContouringError, as_sparse, from_patch, grow_box
from ._components import Components
from .margins import Margin, margin

AXES = {"z": 0, "y": 1, "x": 2}


def axis_index(axis) -> int:
    """An array axis from 0/1/2 or the letters z/y/x (the image's voxel axes, z = slice axis)."""
    if isinstance(axis, str) and axis.lower() in AXES:
        return AXES[axis.lower()]
    if isinstance(axis, (int, np.integer)) and 0 <= int(axis) <= 2:
        return int(axis)
    raise ContouringError(f"axis {axis!r}: use z, y or x (the image's voxel axes; z is the slice axis)")


def smooth(mask, geometry: Geometry, mm: float) -> SparseMask:
    """Smooth the surface by about ``mm`` without moving it by more than ``mm`` anywhere."""
    mask = as_sparse(mask)
    if not np.isfinite(mm) or mm < 0:
        raise ContouringError(f"smoothing distance must be >= 0 mm, got {mm}")
    if mask.empty or mm == 0:
        return mask
    outer = margin(mask, geometry, Margin.isotropic(mm))
    inner = margin(mask, geometry, Margin.isotropic(-mm))
    sigma_vox = mm / geometry.spacing_zyx
    halo = np.ceil(4 * sigma_vox).astype(int) + 1
    box = grow_box(outer.bbox, halo, halo, mask.shape)
    # beyond the grid the structure continues as at the edge ("nearest"), so an edge-cut body does
    # not shrink at the edge; inside the grid the halo holds only background.
    blurred = ndimage.gaussian_filter(mask.crop(box).astype(np.float32), sigma_vox, mode="nearest")
    result = ((blurred >= 0.5) & outer.crop(box)) | inner.crop(box)
    return from_patch(mask.shape, box, result)


def fill_holes(mask, mode: str = "3d", axis="z") -> SparseMask:
    """Fill enclosed cavities: ``mode`` "3d" (cavities closed in 3D) or "2d" (per slice of ``axis``).

    3D: the background pieces (face-connected) of the box that touch none of its faces are holes
    (the box's faces touch the outside, so a piece reaching one is open).
    """
    mask = as_sparse(mask)
    if mask.empty:
        return mask
    patch = mask.patch()
    if mode == "3d":
        background = Components(~patch, 1)
        holes = ~background.touching_border()
        holes[background.component[0]] = False
        filled = patch | background.select(holes)
    elif mode == "2d":
        filled = patch.copy()
        planes = np.moveaxis(filled, axis_index(axis), 0)  # a view: slice by slice, short calls
        for i in range(planes.shape[0]):
            if planes[i].any():
                planes[i] = ndimage.binary_fill_holes(planes[i])
    else:
        raise ContouringError(f"fill-holes mode {mode!r}: use 2d or 3d")
    return from_patch(mask.shape, mask.bbox, filled)


def _components(patch: np.ndarray, connectivity: int) -> Components:
    if connectivity not in (1, 2, 3):
        raise ContouringError("connectivity is 1 (faces), 2 (edges) or 3 (corners)")
    return Components(patch, connectivity)


def remove_islands(mask, geometry: Geometry, min_cm3: float, connectivity: int = 1) -> SparseMask:
    """Drop connected pieces smaller than ``min_cm3`` (faces connect by default)."""
    mask = as_sparse(mask)
    if not np.isfinite(min_cm3) or min_cm3 < 0:
        raise ContouringError(f"the smallest piece kept must be >= 0 cm3, got {min_cm3}")
    if mask.empty:
        return mask
    pieces = _components(mask.patch(), connectivity)
    voxel_cm3 = float(np.prod(geometry.spacing)) / 1000.0
    keep = (pieces.sizes > 0) & (pieces.sizes * voxel_cm3 >= min_cm3)
    return from_patch(mask.shape, mask.bbox, pieces.select(keep))


def keep_largest(mask, count: int = 1, connectivity: int = 1) -> SparseMask:
    """Keep the ``count`` largest connected pieces (ties: the first found)."""
    mask = as_sparse(mask)
    if count < 1:
        raise ContouringError(f"keep at least one piece, got {count}")
    if mask.empty:
        return mask
    pieces = _components(mask.patch(), connectivity)
    order = np.argsort(-pieces.sizes, kind="stable")[:count]
    keep = np.zeros(len(pieces.sizes), bool)
    keep[order] = True
    keep &= pieces.sizes > 0
    return from_patch(mask.shape, mask.bbox, pieces.select(keep))


__all__ = ["axis_index", "fill_holes", "keep_largest", "remove_islands", "smooth"]
