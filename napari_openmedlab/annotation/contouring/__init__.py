"""Contouring tools for radiotherapy planning structures, headless.

Pure functions on masks (:class:`~..masks.SparseMask` or dense boolean ``(z, y, x)`` arrays) and an
:class:`io.Geometry`, each returning a :class:`SparseMask` on the same grid and working on the
bounding box (plus the margin) only:

* :mod:`.margins`: exact margins in mm (isotropic, per axis, per side), rings;
"""

from ._common import ContouringError
from .margins import SIDES, Margin, expand, margin, ring

__all__ = ["SIDES", "ContouringError", "Margin", "expand", "margin", "ring"]
