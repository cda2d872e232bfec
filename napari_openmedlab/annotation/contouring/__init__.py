"""Contouring tools for radiotherapy planning structures, headless.

Pure functions on masks (:class:`~..masks.SparseMask` or dense boolean ``(z, y, x)`` arrays) and an
:class:`io.Geometry`, each returning a :class:`SparseMask` on the same grid and working on the
bounding box (plus the margin) only:

* :mod:`.margins`: exact margins in mm (isotropic, per axis, per side), rings;
* :mod:`.booleans`: union, intersection, subtraction, symmetric difference;
* :mod:`.interpolate`: filling slices between drawn slices (signed-distance blending);
* :mod:`.cleanup`: smoothing with a stated bound, hole filling (2D, 3D), islands;
* :mod:`.stats`: volume, intensity, extent, centroid; Dice, HD95 and surface Dice of a pair;
* :mod:`.operations`: the same on a :class:`StructureSet`, one undoable :class:`ContourEdit` each.
"""

from ._common import ContouringError
from .booleans import intersection, subtract, symmetric_difference, union
from .cleanup import fill_holes, keep_largest, remove_islands, smooth
from .interpolate import drawn_slices, interpolate_slices
from .margins import SIDES, Margin, expand, margin, ring
from .operations import OPERATIONS, ContourEdit, apply_operation, plan, run_operation
from .stats import StructureStats, structure_stats

__all__ = [
    "OPERATIONS",
    "SIDES",
    "ContourEdit",
    "ContouringError",
    "Margin",
    "StructureStats",
    "apply_operation",
    "drawn_slices",
    "expand",
    "fill_holes",
    "interpolate_slices",
    "intersection",
    "keep_largest",
    "margin",
    "plan",
    "remove_islands",
    "ring",
    "run_operation",
    "smooth",
    "structure_stats",
    "subtract",
    "symmetric_difference",
    "union",
]
