"""Flattening a region of a structure set into label ids, for views that show overlaps.

:meth:`StructureSet.to_label_map` flattens the whole grid for export. A viewer instead redraws
only the box an edit touched, and shows overlaps with two maps: one where the smaller structure
wins a shared voxel (filled: a GTV inside a parotid stays visible) and one where the larger wins
(drawn as outlines: the parotid's whole boundary stays visible around the GTV). Both follow the
same ranking as ``to_label_map`` (voxel count, ties to the structure listed first).
"""

from __future__ import annotations

import numpy as np

from .structure_set import StructureSet


def _intersects(a, b) -> bool:
    return all(max(a[i], b[i]) < min(a[i + 3], b[i + 3]) for i in range(3))


def flatten_region(
    structures: StructureSet,
    bbox,
    *,
    smaller_on_top: bool = True,
    visible_only: bool = True,
    dtype=None,
) -> np.ndarray:
    """Label ids inside ``bbox`` (half-open z0, y0, x0, z1, y1, x1) of the grid.

    ``smaller_on_top``: where structures overlap, the smaller one's id (else the larger one's).
    ``visible_only``: hidden structures are left out (so they hide nothing either).
    """
    ids = structures.label_ids()
    if dtype is None:
        dtype = np.uint8 if max(ids.values(), default=0) <= 255 else np.uint16
    bbox = tuple(int(v) for v in bbox)
    out = np.zeros(tuple(bbox[i + 3] - bbox[i] for i in range(3)), dtype=dtype)
    order = list(structures)
    chosen = [
        i
        for i, s in enumerate(order)
        if (s.visible or not visible_only) and not s.mask.empty and _intersects(s.mask.bbox, bbox)
    ]
    # painted in turn, the last one painted wins: largest first when the smaller win, and the
    # first listed painted last among equals (the same tie rule as to_label_map)
    if smaller_on_top:
        chosen.sort(key=lambda i: (-order[i].voxel_count, -i))
    else:
        chosen.sort(key=lambda i: (order[i].voxel_count, -i))
    for i in chosen:
        s = order[i]
        out[s.mask.crop(bbox)] = ids[s.name]
    return out
