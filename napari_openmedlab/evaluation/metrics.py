"""Overlap and surface metrics for binary 3D masks: Dice and normalised surface distance (NSD).

Conventions (the same as DeepMind's ``surface-distance`` package and SAM-Med3D's
``utils/metric_utils.py``, so numbers are comparable with published tables):

* masks are boolean arrays on one voxel grid, indexed like the volume (``(z, y, x)``);
  ``spacing`` is the voxel size in mm **in the same axis order** (``Geometry.spacing_zyx``);
* Dice of two empty masks is NaN (nothing to score); Dice with one empty mask is 0;
* the surface is the set of voxel *corners* whose 2x2x2 neighbourhood is partly inside the mask;
  each such corner carries the area of the marching-cubes surface piece through its cell, in mm^2;
* a surface element counts as matched when the nearest surface element of the other mask is at
  most ``tolerance_mm`` away (distances between corner points, in mm, with the voxel spacing);
* NSD = (matched area of A + matched area of B) / (total area of A + total area of B), in [0, 1];
  NaN when both masks are empty, 0 when exactly one is.

The per-configuration surface areas are computed here with scikit-image's classic (Lorensen)
marching cubes on each of the 256 corner patterns, taking for each pattern the triangulation of
the pattern or its complement with at most four inside corners. That reproduces the area table
of the DeepMind package to float precision (checked for isotropic and anisotropic spacings).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

__all__ = [
    "SurfaceDistances",
    "dice",
    "hausdorff",
    "nsd",
    "surface_distances",
]


def _as_bool(name: str, mask) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.dtype != bool:
        arr = arr != 0
    return arr


def _check_pair(gt: np.ndarray, pred: np.ndarray) -> None:
    if gt.shape != pred.shape:
        raise ValueError(f"masks differ in shape: {gt.shape} vs {pred.shape}")


def dice(gt, pred) -> float:
    """Sørensen-Dice coefficient ``2|A∩B| / (|A| + |B|)``; NaN when both masks are empty."""
    gt = _as_bool("gt", gt)
    pred = _as_bool("pred", pred)
    _check_pair(gt, pred)
    total = int(gt.sum()) + int(pred.sum())
    if total == 0:
        return float("nan")
    return 2.0 * int(np.logical_and(gt, pred).sum()) / total


# --- surface elements ------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _unit_normals() -> tuple[np.ndarray, ...]:
    """For each 8-bit corner pattern, the area-weighted normals of its surface triangles.

    Bit ``7 - (4a + 2b + c)`` of a pattern is the corner at offset ``(a, b, c)`` of the 2x2x2 cell.
    The normal of a triangle is half the cross product of two edges, so its length is the
    triangle's area in a unit-spacing grid.
    """
    from skimage.measure import marching_cubes

    out = [np.zeros((0, 3))]
    for code in range(1, 255):
        ones = bin(code).count("1")
        pattern = code if ones <= 4 else 255 - code  # the same surface, classic triangulation
        cube = np.array([(pattern >> (7 - i)) & 1 for i in range(8)], dtype=float).reshape(2, 2, 2)
        verts, faces, _, _ = marching_cubes(cube, 0.5, method="lorensen")
        tri = verts[faces].astype(float)  # vertices are at 0, 0.5, 1: exact in float32 too
        out.append(0.5 * np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]))
    out.append(np.zeros((0, 3)))
    return tuple(out)


@functools.lru_cache(maxsize=32)
def _area_table(spacing: tuple[float, float, float]) -> np.ndarray:
    """Surface area in mm^2 of each of the 256 corner patterns for voxel size ``spacing``."""
    s0, s1, s2 = spacing
    scale = np.array([s1 * s2, s0 * s2, s0 * s1])
    table = np.zeros(256)
    for code, normals in enumerate(_unit_normals()):
        if len(normals):
            table[code] = np.linalg.norm(normals * scale, axis=1).sum()
    return table


def _corner_codes(mask: np.ndarray) -> np.ndarray:
    """Pattern code of every voxel corner (shape + 1 per axis) of a zero-padded ``mask``."""
    m = np.pad(mask.astype(np.uint8), 1)
    code = np.zeros(tuple(s - 1 for s in m.shape), dtype=np.uint8)
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                bit = 7 - (4 * a + 2 * b + c)
                sub = m[a : a + code.shape[0], b : b + code.shape[1], c : c + code.shape[2]]
                code |= sub << bit
    return code


class SurfaceDistances:
    """Distances from each surface element of one mask to the other mask's surface.

    Attributes:
        distances_gt_to_pred, areas_gt: for each ground-truth surface element, the distance in mm
            to the nearest predicted surface element (``inf`` if the prediction is empty) and
            its area in mm^2.
        distances_pred_to_gt, areas_pred: the same, the other way round.
    """

    def __init__(self, gt, pred, spacing) -> None:
        gt = _as_bool("gt", gt)
        pred = _as_bool("pred", pred)
        _check_pair(gt, pred)
        if gt.ndim != 3:
            raise ValueError(f"surface metrics take 3D masks, got {gt.ndim}D")
        spacing = tuple(float(s) for s in np.broadcast_to(np.asarray(spacing, float), (3,)))
        if min(spacing) <= 0:
            raise ValueError(f"spacing must be positive, got {spacing}")
        self.spacing = spacing
        empty = np.zeros(0)
        self.distances_gt_to_pred = self.distances_pred_to_gt = empty
        self.areas_gt = self.areas_pred = empty

        union = gt | pred
        if not union.any():
            return
        # trim to the bounding box of both masks (+1 voxel of background each side)
        lo, hi = [], []
        for axis in range(3):
            nz = np.flatnonzero(union.any(axis=tuple(a for a in range(3) if a != axis)))
            lo.append(nz[0])
            hi.append(nz[-1] + 1)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        code_gt = _corner_codes(gt[box])
        code_pred = _corner_codes(pred[box])
        border_gt = (code_gt != 0) & (code_gt != 255)
        border_pred = (code_pred != 0) & (code_pred != 255)
        table = _area_table(spacing)

        def distance_to(border: np.ndarray) -> np.ndarray:
            if not border.any():
                return np.full(border.shape, np.inf)
            return ndimage.distance_transform_edt(~border, sampling=spacing)

        self.distances_gt_to_pred = distance_to(border_pred)[border_gt]
        self.distances_pred_to_gt = distance_to(border_gt)[border_pred]
        self.areas_gt = table[code_gt[border_gt]]
        self.areas_pred = table[code_pred[border_pred]]

    def nsd(self, tolerance_mm: float) -> float:
        """Normalised surface distance (surface Dice) at ``tolerance_mm``."""
        total = self.areas_gt.sum() + self.areas_pred.sum()
        if total == 0:
            return float("nan")
        matched = (
            self.areas_gt[self.distances_gt_to_pred <= tolerance_mm].sum()
            + self.areas_pred[self.distances_pred_to_gt <= tolerance_mm].sum()
        )
        return float(matched / total)

    def hausdorff(self, percent: float = 95.0) -> float:
        """Area-weighted ``percent``-th percentile Hausdorff distance in mm (``inf`` if one is empty)."""
        def one_way(distances: np.ndarray, areas: np.ndarray) -> float:
            if len(distances) == 0:
                return float("inf")
            order = np.argsort(distances, kind="stable")
            cum = np.cumsum(areas[order]) / areas.sum()
            idx = min(int(np.searchsorted(cum, percent / 100.0)), len(distances) - 1)
            return float(distances[order][idx])

        if len(self.areas_gt) == 0 and len(self.areas_pred) == 0:
            return float("nan")
        return max(one_way(self.distances_gt_to_pred, self.areas_gt),
                   one_way(self.distances_pred_to_gt, self.areas_pred))


def surface_distances(gt, pred, spacing=(1.0, 1.0, 1.0)) -> SurfaceDistances:
    """Surface elements of both masks and their distances; see :class:`SurfaceDistances`."""
    return SurfaceDistances(gt, pred, spacing)


def nsd(gt, pred, spacing=(1.0, 1.0, 1.0), tolerance_mm: float = 1.0) -> float:
    """Normalised surface distance (surface Dice) of two boolean masks at ``tolerance_mm``.

    ``spacing`` is the voxel size in mm in the masks' axis order (``(z, y, x)`` for volumes).
    """
    if tolerance_mm < 0:
        raise ValueError(f"tolerance must be >= 0 mm, got {tolerance_mm}")
    return SurfaceDistances(gt, pred, spacing).nsd(tolerance_mm)


def hausdorff(gt, pred, spacing=(1.0, 1.0, 1.0), percent: float = 95.0) -> float:
    """Robust (``percent``-th percentile) symmetric Hausdorff distance in mm."""
    return SurfaceDistances(gt, pred, spacing).hausdorff(percent)
