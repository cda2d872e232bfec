"""The Contouring section on the session: a margin previewed, applied as a structure of the
session (in the structure list), undone and redone with the session's one history."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_openmedlab._widgets.contouring_panel import PREVIEW_LAYER
from napari_openmedlab.annotation import requests as rq
from napari_openmedlab.annotation.contouring import Margin, margin

pytestmark = pytest.mark.gui


def draw(w, name, mask):
    assert w.add_structure(name) == name
    assert w._request(rq.Edit.from_mask(name, "paint", mask)) is not None


def names_in_list(w):
    return [row["name"] for row in w.session.rows()]


def test_margin_preview_apply_undo_redo(make_widget):
    viewer, w = make_widget()
    s = w.session
    gtv = np.zeros(s.volume.shape, bool)
    gtv[10:14, 14:19, 14:19] = True
    draw(w, "GTV", gtv)
    w.lock("GTV")  # an input may be locked: it is only read
    panel = w.contouring
    assert [panel.inputs.item(i).data(Qt.UserRole) for i in range(panel.inputs.count())] == ["GTV"]

    panel.operation.setCurrentText("margin")
    panel.set_inputs(["GTV"])
    panel.sides.setText("R4,L4,A2,P2,S5,I0")
    panel.output.setText("PTV")
    panel.run(apply=False)
    assert panel.wait_idle(30)
    expected = margin(gtv, s.volume.geometry, Margin.sides(4, 4, 2, 2, 5, 0)).dense()
    np.testing.assert_array_equal(viewer.layers[PREVIEW_LAYER].data.astype(bool), expected)
    assert "PTV" not in s.structures and "Preview" in panel.status.text()

    panel.run(apply=True)  # the previewed result, not a second run
    assert panel.wait_idle(30)
    assert PREVIEW_LAYER not in [x.name for x in viewer.layers]
    np.testing.assert_array_equal(s.structures.mask("PTV"), expected)
    assert "PTV" in names_in_list(w) and panel.inputs.count() == 2  # in the structure list
    assert (np.asarray(s.labels_layer.data) > 0).sum() >= expected.sum()  # drawn with the others
    panel.set_inputs(["GTV", "PTV"])
    panel.show_stats()
    assert panel.wait_idle(30)
    text = panel.status.text()
    assert "PTV:" in text and "cm3" in text and "Dice" in text and "mean" in text

    w.undo()  # the widget's Undo: one step takes the whole operation back
    assert "PTV" not in s.structures and "PTV" not in names_in_list(w)
    assert s.structures.is_locked("GTV") and panel.inputs.count() == 1
    w.redo()
    np.testing.assert_array_equal(s.structures.mask("PTV"), expected)
    panel.undo()  # the panel's Undo is the session's
    assert "PTV" not in s.structures


def test_a_locked_output_is_refused_with_a_message(make_widget):
    viewer, w = make_widget()
    box = np.zeros(w.session.volume.shape, bool)
    box[10:14, 14:19, 14:19] = True
    draw(w, "GTV", box)
    w.lock("GTV")
    steps = w.session.history.undo_descriptions
    panel = w.contouring
    panel.operation.setCurrentText("smooth")
    panel.set_inputs(["GTV"])
    panel.output.setText("GTV")
    panel.run(apply=True)
    assert panel.wait_idle(30)
    assert "locked" in panel.status.text()
    np.testing.assert_array_equal(w.session.structures.mask("GTV"), box)
    assert w.session.history.undo_descriptions == steps  # no step recorded


def test_every_operation_applies_and_undoes_from_the_panel(make_widget):
    viewer, w = make_widget()
    shape = w.session.volume.shape
    a, b = np.zeros(shape, bool), np.zeros(shape, bool)
    a[8:16, 12:20, 12:20] = True
    a[11, 15, 15] = False  # a hole
    b[10:14, 14:18, 22:30] = True
    draw(w, "A", a)
    draw(w, "B", b)
    panel = w.contouring
    for op in ("margin", "ring", "union", "intersect", "subtract", "xor", "interpolate", "smooth",
               "fill-holes", "largest", "remove-islands"):
        panel.operation.setCurrentText(op)
        panel.set_inputs(["A", "B"] if op in ("union", "intersect", "subtract", "xor") else ["A"])
        panel.mm.setValue(2.0)
        panel.count.setValue(1.0 if op == "largest" else 0.01)
        panel.output.setText(f"out_{op}")
        panel.run(apply=True)
        assert panel.wait_idle(30), op
        assert f"out_{op}" in w.session.structures, (op, panel.status.text())
        panel.undo()
        assert f"out_{op}" not in w.session.structures
    assert w.session.structures.names() == ["A", "B"]
