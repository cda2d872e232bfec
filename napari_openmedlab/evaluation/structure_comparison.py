"""Agreement of two structures on one grid: Dice, HD95 (mm) and surface Dice at a tolerance.

The metrics are those of :mod:`.metrics` (DeepMind ``surface-distance`` conventions), computed on
the union of the two structures' boxes plus one voxel, so sparse masks never become volumes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..annotation.contouring._common import ContouringError, as_sparse, grow_box, same_shape
from ..annotation.masks import EMPTY_BBOX
from ..io.geometry import Geometry
from .metrics import dice, surface_distances


@dataclass(frozen=True)
class Comparison:
    """Agreement of two structures: Dice, 95th-percentile Hausdorff (mm), surface Dice at a tolerance."""

    dice: float
    hd95_mm: float
    surface_dice: float
    tolerance_mm: float


def compare(a, b, geometry: Geometry, tolerance_mm: float = 1.0) -> Comparison:
    """Dice, HD95 (mm) and surface Dice (at ``tolerance_mm``) of two structures on one grid."""
    a, b = as_sparse(a), as_sparse(b)
    shape = same_shape([a, b])
    if tolerance_mm < 0:
        raise ContouringError(f"tolerance must be >= 0 mm, got {tolerance_mm}")
    boxes = [m.bbox for m in (a, b) if m.bbox != EMPTY_BBOX]
    if not boxes:
        return Comparison(float("nan"), float("nan"), float("nan"), tolerance_mm)
    box = tuple(min(bx[i] for bx in boxes) for i in range(3)) + tuple(max(bx[i] for bx in boxes) for i in range(3, 6))
    box = grow_box(box, (1, 1, 1), (1, 1, 1), shape)
    pa, pb = a.crop(box), b.crop(box)
    surfaces = surface_distances(pa, pb, geometry.spacing_zyx)
    return Comparison(dice(pa, pb), surfaces.hausdorff(95.0), surfaces.nsd(tolerance_mm), float(tolerance_mm))


__all__ = ["Comparison", "compare"]
