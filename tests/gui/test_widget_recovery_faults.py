"""Damaged recovery data and failing autosaves in the widget: a message, never a crash."""

from __future__ import annotations

import errno

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _commit(w, zyx=(12, 16, 16)):
    w.add_point_voxel(zyx)
    assert w.wait_for_prediction(10)
    w.commit()
    assert w.wait_for_autosave(30)


def test_a_damaged_newest_snapshot_offers_the_previous_one(make_widget):
    viewer, w = make_widget()
    _commit(w)
    first = w.session.labels_layer.data.copy()
    _commit(w, (12, 30, 30))
    newest = w.session.recovery.generations()[0].folder
    (newest / "prompt_log.json").write_text("[1, 2, 3]")  # a JSON list, not the log object

    viewer2, w2 = make_widget()  # reopening the image: the banner, not an exception
    assert w2.banner.isVisibleTo(w2) and "previous good one" in w2.banner_label.text()
    assert w2.restore_autosave()
    np.testing.assert_array_equal(w2.session.labels_layer.data, first)
    assert "could not be used" in w2.status_text


def test_every_snapshot_damaged_is_a_message(make_widget):
    viewer, w = make_widget()
    _commit(w)
    for gen in w.session.recovery.generations():
        (gen.folder / "prompt_log.json").write_text("{half")
    viewer2, w2 = make_widget()
    assert w2.banner.isVisibleTo(w2) and "no autosave could be restored" in w2.banner_label.text()
    assert not w2.restore_autosave()
    assert "could not be restored" in w2.status_text
    w2.discard_autosave()
    assert not w2.session.has_autosave


def test_a_failing_autosave_shows_a_persistent_warning_until_one_succeeds(make_widget, monkeypatch, qtbot):
    from napari_openmedlab.annotation import autosave

    viewer, w = make_widget()

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(autosave, "atomic_write_json", full)
    _commit(w)
    qtbot.waitUntil(lambda: w.autosave_warning.showing, timeout=3000)
    assert w.autosave_warning.text() == "autosave failed: the disk is full; your work is only in memory"
    monkeypatch.undo()
    _commit(w, (12, 30, 30))
    qtbot.waitUntil(lambda: not w.autosave_warning.showing, timeout=3000)


def test_save_that_fails_keeps_the_old_file_and_says_why(make_widget, monkeypatch, tmp_path):
    import SimpleITK as sitk

    from napari_openmedlab._widgets import files

    viewer, w = make_widget()
    _commit(w)
    target = tmp_path / "labels.nii.gz"
    w.save(target)
    before = target.read_bytes()
    _commit(w, (12, 30, 30))
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
