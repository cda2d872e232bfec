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
