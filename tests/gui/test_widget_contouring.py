"""The Structures section: a margin previewed, applied as its own structure layer, then undone."""

from __future__ import annotations

import numpy as np
import pytest

from napari_openmedlab._widgets.contouring_panel import LAYER_PREFIX, PREVIEW_LAYER
from napari_openmedlab.annotation.contouring import Margin, margin

pytestmark = pytest.mark.gui


def test_margin_preview_apply_and_undo(make_widget):
    viewer, w = make_widget()
    s = w.session
    labels = s.labels_layer.data
    gtv = np.zeros(labels.shape, bool)
    gtv[10:14, 14:19, 14:19] = True
    labels[gtv] = 1  # the committed "GTV", class 1 of the table
    panel = w.contouring
    panel.import_target()
    gtv_name = s.classes[0].name
    assert panel.structure_set.names() == [gtv_name]
    panel.structure_set.lock(gtv_name)  # an input may be locked: it is only read

    panel.operation.setCurrentText("margin")
    panel.set_inputs([gtv_name])
    panel.sides.setText("R4,L4,A2,P2,S5,I0")
    panel.output.setText("PTV")
    panel.run(apply=False)
    assert panel.wait_idle(30)
    expected = margin(gtv, s.volume.geometry, Margin.sides(4, 4, 2, 2, 5, 0)).dense()
    preview = viewer.layers[PREVIEW_LAYER]
    np.testing.assert_array_equal(preview.data.astype(bool), expected)
    assert "PTV" not in panel.structure_set and "Preview" in panel.status.text()

    panel.run(apply=True)  # the previewed result, not a second run
    assert panel.wait_idle(30)
    assert PREVIEW_LAYER not in [x.name for x in viewer.layers]
    layer = viewer.layers[LAYER_PREFIX + "PTV"]
    np.testing.assert_array_equal(layer.data.astype(bool), expected)
    np.testing.assert_array_equal(panel.structure_set.mask("PTV"), expected)
    assert np.array_equal(labels.astype(bool), gtv)  # the target labels are untouched
    assert panel.inputs.count() == 2
    panel.set_inputs([gtv_name, "PTV"])
    panel.show_stats()
    assert panel.wait_idle(30)
    text = panel.status.text()
    assert "PTV:" in text and "cm3" in text and "Dice" in text and "mean" in text

    panel.undo()  # one step takes the whole operation back
    assert "PTV" not in panel.structure_set
    assert LAYER_PREFIX + "PTV" not in [x.name for x in viewer.layers]
    assert panel.structure_set.is_locked(gtv_name)


def test_a_locked_output_is_refused_with_a_message(make_widget):
    viewer, w = make_widget()
    w.session.labels_layer.data[10:14, 14:19, 14:19] = 1
    panel = w.contouring
    panel.import_target()
    name = panel.structure_set.names()[0]
    panel.structure_set.lock(name)
    panel.operation.setCurrentText("smooth")
    panel.set_inputs([name])
    panel.output.setText(name)
    panel.run(apply=True)
    assert panel.wait_idle(30)
    assert "locked" in panel.status.text() and not panel.history


def test_every_operation_applies_and_undoes_from_the_panel(make_widget):
    viewer, w = make_widget()
    labels = w.session.labels_layer.data
    labels[8:16, 12:20, 12:20] = 1
    labels[10:14, 14:18, 22:30] = 2
    labels[11, 15, 15] = 0  # a hole
    panel = w.contouring
    panel.import_target()
    a, b = panel.structure_set.names()[:2]
    for op in ("margin", "ring", "union", "intersect", "subtract", "xor", "interpolate", "smooth",
               "fill-holes", "largest", "remove-islands"):
        panel.operation.setCurrentText(op)
        panel.set_inputs([a, b] if op in ("union", "intersect", "subtract", "xor") else [a])
        panel.mm.setValue(2.0)
        panel.count.setValue(1.0 if op == "largest" else 0.01)
        panel.output.setText(f"out_{op}")
        panel.run(apply=True)
        assert panel.wait_idle(30), op
        assert f"out_{op}" in panel.structure_set, (op, panel.status.text())
        panel.undo()
        assert f"out_{op}" not in panel.structure_set
    assert not panel.history and panel.structure_set.names() == [a, b]
