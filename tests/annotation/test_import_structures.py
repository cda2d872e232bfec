"""Many structures into a session as one undo step (the automatic draft's way in)."""

import numpy as np
import pytest

from napari_openmedlab.annotation import (
    AnnotationSession,
    ImportStructures,
    Lock,
    Redo,
    RequestError,
    SessionError,
    StructureSet,
    Undo,
    request_from_dict,
)
from napari_openmedlab.io import Geometry, Volume

SHAPE = (12, 20, 20)
GEOM = Geometry((0.8, 0.8, 2.0), (0.0, 0.0, 0.0))


def _draft():
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:6, 3:9, 3:9] = 1
    labels[5:10, 10:16, 8:18] = 3
    return labels, StructureSet.from_label_map(labels, GEOM, {1: "liver", 3: "spleen"})


def _session():
    return AnnotationSession(Volume(np.zeros(SHAPE, np.float32), GEOM))


def test_draft_enters_as_one_undo_step_with_its_classes():
    labels, draft = _draft()
    s = _session()
    out = s.handle(ImportStructures.from_structure_set(draft, "autoseg"))
    assert s.structures.names() == ["liver", "spleen"] and out.order_changed
    assert s.structures.label_ids() == {"liver": 1, "spleen": 3}
    for name, label_id in (("liver", 1), ("spleen", 3)):
        assert np.array_equal(s.structures.structure(name).mask.dense(), labels == label_id)
    s.handle(Undo())
    assert s.structures.names() == []
    s.handle(Redo())
    assert np.array_equal(s.structures.structure("spleen").mask.dense(), labels == 3)


def test_same_name_is_replaced_locked_is_kept_and_said():
    labels, draft = _draft()
    s = _session()
    s.handle(ImportStructures.from_structure_set(draft))
    s.handle(Lock("liver"))
    moved = np.roll(labels, 2, axis=2)
    out = s.handle(ImportStructures.from_structure_set(StructureSet.from_label_map(moved, GEOM, {1: "liver", 3: "spleen"})))
    assert "kept locked liver" in out.message
    assert np.array_equal(s.structures.structure("liver").mask.dense(), labels == 1)
    assert np.array_equal(s.structures.structure("spleen").mask.dense(), moved == 3)
    s.handle(Undo())
    assert np.array_equal(s.structures.structure("spleen").mask.dense(), labels == 3)
    assert s.structures.is_locked("liver")


def test_json_round_trip_and_bad_items():
    _, draft = _draft()
    req = ImportStructures.from_structure_set(draft, "autoseg")
    assert request_from_dict(req.to_dict()) == req
    with pytest.raises(RequestError, match="twice"):
        ImportStructures((req.items[0], req.items[0]))
    with pytest.raises(RequestError, match="no structures"):
        ImportStructures(())
    with pytest.raises(RequestError, match="unknown field"):
        ImportStructures(({**req.items[0], "colour": "red"},))


def test_outside_the_grid_changes_nothing():
    _, draft = _draft()
    small = AnnotationSession(Volume(np.zeros((4, 20, 20), np.float32), GEOM))
    with pytest.raises(SessionError, match="outside"):
        small.handle(ImportStructures.from_structure_set(draft))
    assert small.structures.names() == [] and not small.can_undo
