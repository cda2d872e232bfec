"""napari's brush, eraser and fill on the selected-structure layer, read back as voxel changes."""

from __future__ import annotations

import numpy as np

from ..annotation import requests as rq
from ..annotation.masks import EMPTY_BBOX, bbox_union
from ..engines.base import PromptError


def atom_changes(atom) -> list[tuple]:
    """``(box, changed voxels in the box, painted?)`` for one napari Labels history atom: a masked
    paint ``(slice_key, mask, old_values, new_value)`` or an index edit ``(indices, old, new)``."""
    key = getattr(atom, "slice_key", None)
    if key is not None:
        key = key[-3:]
        box = tuple(int(k.start) for k in key) + tuple(int(k.stop) for k in key)
        shape = tuple(box[i + 3] - box[i] for i in range(3))
        changed = np.ones(shape, bool) if atom.mask is None else np.asarray(atom.mask, bool).reshape(shape)
        return [(box, changed, int(atom.new_value) != 0)]
    indices, _old, new = atom
    idx = np.stack([np.asarray(i, dtype=np.int64).ravel() for i in indices[-3:]], axis=1)
    if not len(idx):
        return []
    new = np.broadcast_to(np.asarray(new).ravel(), (len(idx),))
    out = []
    for paint in (True, False):
        pick = idx[(new != 0) == paint]
        if len(pick):
            lo, hi = pick.min(axis=0), pick.max(axis=0) + 1
            changed = np.zeros(tuple(hi - lo), bool)
            changed[tuple((pick - lo).T)] = True
            out.append(((*lo.tolist(), *hi.tolist()), changed, paint))
    return out


def on_paint(view, event) -> None:
    """A stroke on the edit layer becomes Edit requests on the selected structure (one undo step
    each); a refused one (locked structure, none selected) is taken back. napari announces a
    single edit before writing it, so the changes are read from its history atoms, and the
    layer is redrawn from the session once napari is done."""
    box, requests = EMPTY_BBOX, []
    try:
        for atom in event.value or []:
            for abox, changed, paint in atom_changes(atom):
                box = bbox_union(box, abox)
                if view.selected is None:
                    raise PromptError("select a structure in the list before painting")
                mode = "paint" if paint else "erase"
                requests.append(rq.Edit.from_mask(view.selected, mode, changed, origin=abox[:3]))
        for request in requests:
            view.handle(request)
    except (PromptError, ValueError) as err:
        if view.on_message is not None:
            view.on_message(f"Edit refused: {err}")
    if box != EMPTY_BBOX:
        from qtpy.QtCore import QTimer

        # after napari's own write: show what the session has (one value, whatever label napari painted)
        QTimer.singleShot(0, lambda: view._draw_edit(box) if view.edit_layer is not None else None)
