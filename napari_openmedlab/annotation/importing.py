"""Many structures into a session as one undo step: the :class:`~.requests.ImportStructures` request.

An automatic draft (``openmedlab autoseg``, the widget's Auto-segment section) gives one mask per
class; the user should be able to take the whole draft back with a single undo, and then refine
each class with clicks and lock the finished ones like any hand-made structure. So the import is
one :class:`~.changes.SessionStep` holding a ``StructureAdded`` per new structure and a
``MaskChange`` per replaced one. Locked structures are never changed (the session's rule): an item
with a locked structure's name is skipped and reported in the outcome's message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .changes import MaskChange, SessionStep
from .masks import EMPTY_BBOX, SparseMask, bbox_union

if TYPE_CHECKING:
    from .requests import ImportStructures
    from .session import AnnotationSession, Outcome


def structures_from_autoseg(result, include_empty: bool = False):
    """An :class:`~napari_openmedlab.engines.autoseg.AutosegResult` as a structure set: one
    structure per class found (per class of ``dataset.json`` with ``include_empty``), on its grid."""
    from .structure_set import StructureSet

    return StructureSet.from_label_map(
        result.labels.array, result.labels.geometry, result.classes, include_empty=include_empty
    )


def import_structures(session: AnnotationSession, r: ImportStructures) -> Outcome:
    from .session import Outcome, SessionError

    ss, shape = session.structures, session.shape
    for item in r.items:  # checked before anything changes
        if any(item["bbox"][i + 3] > shape[i] for i in range(3)):
            raise SessionError(f"{item['name']!r}: box {item['bbox']} reaches outside the image of shape {shape}")
    skipped = [i["name"] for i in r.items if i["name"] in ss and ss.is_locked(i["name"])]
    changes: list = []
    box = EMPTY_BBOX
    try:
        for item, edit in zip(r.items, r.edits()):
            name = item["name"]
            if name in skipped:
                continue
            mask = SparseMask(shape, item["bbox"], edit.patch())
            if name in ss:
                diff = MaskChange.between(name, ss.structure(name).mask, mask)
                if diff is None:
                    continue
                ss.set_mask(name, mask)
                changes.append(diff)
            else:
                used = set(ss.label_ids().values())
                label_id = item["label_id"] if item["label_id"] not in (None, *used) else session._free_id()
                s = ss.add(name, mask, item["color"], label_id=label_id, codes=item["codes"])
                changes.append(session._added(s))
            box = bbox_union(box, mask.bbox)
    except Exception:
        SessionStep("import (failed)", changes).undo(ss)  # all or nothing
        raise
    kept = f"; kept locked {', '.join(skipped)}" if skipped else ""
    if not changes:
        return Outcome(r, message=f"import: nothing changed{kept}")
    what = f"{len(changes)} structure{'s' if len(changes) != 1 else ''}"
    source = f" from {r.source}" if r.source else ""
    session._structure_step(f"import {what}{source}", changes)
    return Outcome(
        r,
        [c.names()[0] for c in changes],
        None if box == EMPTY_BBOX else box,
        order_changed=True,
        message=f"imported {what}{source}{kept}",
    )
