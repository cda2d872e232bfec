"""Damaged, unrestored or failing autosaves in the widget: a message, never a crash, nothing lost."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _commit(w, zyx=(12, 16, 16), name=None):
    w.add_point_voxel(zyx)
    assert w.wait_for_prediction(10)
    assert w.commit(name) is not None


class _FullDisk:
    """Stands in for ``os`` in structure_set.py: the fsync of a structure-set file finds the disk full."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_a_damaged_newest_generation_offers_the_previous_one(make_widget):
    viewer, w = make_widget()
    _commit(w, name="A")
    first = w.session.labels_layer.data.copy()
    _commit(w, (12, 32, 34), name="B")
    newest = w.session.autosave.generations()[-1][1]
    newest.write_bytes(newest.read_bytes()[:100])  # cut short after it was written

    viewer2, w2 = make_widget()  # reopening the image: the banner, not an exception
    assert w2.banner.isVisibleTo(w2) and "previous good one" in w2.banner_label.text()
    assert w2.restore_autosave()
    np.testing.assert_array_equal(w2.session.labels_layer.data, first)
    assert "damaged" in w2.status_text and "previous good one" in w2.status_text


def test_every_generation_damaged_is_a_message_and_can_be_discarded(make_widget):
    viewer, w = make_widget()
    _commit(w)
    for _, path in w.session.autosave.generations():
        path.write_bytes(b"junk")
    viewer2, w2 = make_widget()
    assert w2.banner.isVisibleTo(w2) and "no readable autosave" in w2.banner_label.text()
    assert not w2.restore_autosave()
    assert "No autosave restored" in w2.status_text and w2.banner.isVisibleTo(w2)
    w2.discard_autosave()
    assert not w2.session.has_autosave


def test_work_of_an_unrestored_session_is_never_overwritten_or_pruned(make_widget):
    viewer, w = make_widget()
    _commit(w, name="old work")
    old = [p for _, p in w.session.autosave.generations()]

    viewer2, w2 = make_widget()  # the banner is ignored: keep both
    assert w2.banner.isVisibleTo(w2)
    for i in range(5):  # more autosaves than the generations one session keeps
        _commit(w2, (12, 32, 34), name=f"new {i}")
    store = w2.session.autosave
    assert all(p.exists() for p in old)
    mine = [p for _, p in store.generations() if p not in old]
    assert len(mine) == store.keep
    assert w2.session.has_autosave  # still offered
    assert w2.restore_autosave()  # restoring brings back the old session's work, not this one's
    assert w2.session.structures.names() == ["old work"]


def test_a_failing_autosave_shows_a_persistent_warning_until_one_succeeds(make_widget, monkeypatch):
    from napari_openmedlab.annotation import structure_set

    viewer, w = make_widget()
    _commit(w, name="A")
    before = w.session.autosave.generations()
    monkeypatch.setattr(structure_set, "os", _FullDisk())
    _commit(w, (12, 32, 34), name="B")
    assert w.autosave_warning.showing
    assert w.autosave_warning.text() == "autosave failed: the disk is full; your work is only in memory"
    assert w.session.structures.names() == ["A", "B"]  # the commit itself is kept in memory
    assert w.session.autosave.generations() == before  # nothing half-written left
    assert not [p for p in w.session.autosave.folder.iterdir() if p.name.startswith(".")]
    w.select_structure("A")  # other actions keep the warning
    assert w.autosave_warning.showing
    monkeypatch.undo()
    _commit(w, (12, 16, 16), name="C")
    assert not w.autosave_warning.showing


def test_save_that_fails_keeps_the_old_file_and_says_why(make_widget, monkeypatch, tmp_path):
    import SimpleITK as sitk

    from napari_openmedlab._widgets import files

    viewer, w = make_widget()
    _commit(w)
    target = tmp_path / "labels.nii.gz"
    w.save(target)
    before = target.read_bytes()
    _commit(w, (12, 32, 34))
    monkeypatch.setattr(files.QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(target), "NIfTI (*.nii.gz)")))
    real = sitk.WriteImage

    def cut_short(image, path, *args):  # what SimpleITK's NIfTI writer does on a full disk
        real(image, path, *args)
        with open(path, "r+b") as f:
            f.truncate(100)

    monkeypatch.setattr(sitk, "WriteImage", cut_short)
    w._save_dialog()
    assert "Not saved" in w.status_text and "could not be written" in w.status_text
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".labels")) == []
