"""Structure-set autosave (issue #13 on the structure-set design): good generations kept per
session, fallback with a message, an unrestored session's work never pruned, impossible ids
refused, a failed save leaves nothing behind and sets the session's warning until one succeeds."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from napari_openmedlab.annotation import AnnotationSession, Edit, StructureSet, StructureSetAutosave
from napari_openmedlab.annotation import structure_set as structure_set_module
from napari_openmedlab.annotation.autosave import RecoveryError, clean_recovery_root
from napari_openmedlab.annotation.structure_autosave import session_of
from napari_openmedlab.io import Geometry, Volume

SHAPE = (6, 8, 8)
GEOM = Geometry((1.0, 1.0, 2.0), (0.0, 0.0, 0.0))


def _set(n: int) -> StructureSet:
    ss = StructureSet(GEOM, SHAPE)
    for i in range(n):
        mask = np.zeros(SHAPE, bool)
        mask[i % SHAPE[0], 1:3, 1:3] = True
        ss.add(f"s{i}", mask, label_id=i + 1)
    return ss


def test_each_session_keeps_its_newest_good_generations_and_falls_back(tmp_path):
    store = StructureSetAutosave(tmp_path / "img", keep=3)
    for i in range(1, 6):
        store.save(_set(i))
    gens = store.generations()
    assert [n for n, _ in gens] == [3, 4, 5] and all(session_of(p) == store.session for _, p in gens)
    gens[-1][1].write_bytes(gens[-1][1].read_bytes()[:80])  # the newest damaged after it was written
    ss, message = store.load_latest()
    assert len(ss) == 4 and "generation 5 is damaged" in message and "previous good one" in message
    assert "previous good one" in store.summary()
    store.save(_set(6))  # the damaged generation 5 does not count as one of the good ones
    assert [n for n, _ in store.generations()] == [3, 4, 5, 6]


def test_an_unrestored_sessions_work_is_never_pruned_until_restored(tmp_path):
    old = StructureSetAutosave(tmp_path / "img")
    for _ in range(3):
        old.save(_set(1))
    new = StructureSetAutosave(tmp_path / "img")  # the image opened again; restore not chosen
    assert new.exists(others_only=True)
    for _ in range(6):
        new.save(_set(2))
    assert len(new.generations()) == 3 + new.keep  # the other session's three are kept
    assert len(new.load_latest()[0]) == 2  # the newest is this session's own
    ss, _ = new.restore()  # a restore brings back the other session's work ...
    assert len(ss) == 1
    for _ in range(3):  # ... whose generations are now this session's to prune
        new.save(_set(3))
    assert len(new.generations()) == new.keep


def test_discarding_the_offered_work_keeps_this_sessions_own(tmp_path):
    StructureSetAutosave(tmp_path / "img").save(_set(1))
    new = StructureSetAutosave(tmp_path / "img")
    new.save(_set(2))
    new.discard(others_only=True)
    assert not new.exists(others_only=True) and len(new.generations()) == 1
    new.discard()
    assert not new.exists()


def test_generations_from_before_session_ids_are_offered_and_kept(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    _set(1).save(folder / "generation-000004.omlss")
    store = StructureSetAutosave(folder)
    for _ in range(4):
        store.save(_set(2))
    assert (folder / "generation-000004.omlss").is_file()
    assert len(store.restore()[0]) == 1


def test_a_generation_with_ids_no_label_map_holds_is_refused_at_restore(tmp_path):
    store = StructureSetAutosave(tmp_path / "img")
    store.save(_set(1))
    bad = _set(2)
    bad.structure("s1").label_id = 70000  # what a damaged or foreign writer could leave
    bad.save(store.folder / "generation-000009-ffffffffffff.omlss")
    ss, message = store.load_latest()
    assert len(ss) == 1 and "label id 70000" in message and "previous good one" in message
    for _, path in store.generations():
        if path.name.startswith("generation-000001"):
            path.unlink()
    with pytest.raises(RecoveryError, match="outside 1..65535"):
        store.load_latest()


class _FullDisk:
    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_failed_autosave_keeps_the_edit_leaves_nothing_and_warns_until_one_succeeds(tmp_path, monkeypatch):
    store = StructureSetAutosave(tmp_path / "img")
    session = AnnotationSession(Volume(np.zeros(SHAPE, np.int16), GEOM), _set(1), autosave=store)
    session.handle(Edit.from_mask("s0", "paint", np.ones((1, 2, 2), bool), (0, 5, 5)))
    assert session.autosave_warning is None and len(store.generations()) == 1
    monkeypatch.setattr(structure_set_module, "os", _FullDisk())
    session.handle(Edit.from_mask("s0", "paint", np.ones((1, 2, 2), bool), (1, 5, 5)))
    assert session.autosave_warning == "autosave failed: the disk is full; your work is only in memory"
    assert session.structures.mask("s0")[1, 5, 5]  # the edit itself is kept
    assert sorted(p.name for p in store.folder.iterdir()) == [store.generations()[0][1].name]
    monkeypatch.undo()
    session.handle(Edit.from_mask("s0", "paint", np.ones((1, 2, 2), bool), (2, 5, 5)))
    assert session.autosave_warning is None and len(store.generations()) == 2
    assert StructureSet.load(store.generations()[-1][1]).mask("s0")[1:3, 5, 5].all()


def test_temporaries_of_a_killed_writer_are_removed_at_start(tmp_path):
    from napari_openmedlab.io.atomic import TEMP_MARKER

    folder = tmp_path / "img-0123" / "structure-set"
    folder.mkdir(parents=True)
    dead = 2**22 + 12345  # no such pid
    stale = folder / f".generation-000002-abc.omlss{TEMP_MARKER}{dead}-x"
    stale.write_bytes(b"\0" * 1000)
    assert stale in clean_recovery_root(tmp_path)
    assert not stale.exists()
