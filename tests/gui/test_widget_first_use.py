"""The widget on first use: restored structure names and colours, a hidden reference, a dock that fits 1280 pixels,
a sensible save name, window presets and an intensity readout for any engine, shortcut tooltips."""

from __future__ import annotations

import numpy as np
import pytest

from napari_openmedlab.annotation.label_classes import LabelClass
from napari_openmedlab.io import Geometry, Volume
from napari_openmedlab.layers import image_layer_data

pytestmark = pytest.mark.gui


def _segment(w, zyx=(12, 16, 16), class_id=2):
    w.select_class(class_id)
    w.add_point_voxel(zyx)
    assert w.wait_for_prediction(10)
    return w.commit()


def test_restoring_an_autosave_brings_back_structure_names_and_colours(make_widget):
    # the structure-set autosave keeps each structure's name and colour (issue #11's restored class
    # names, served by the .omlss generations of issue #14)
    viewer, w = make_widget()
    classes = [LabelClass(1, "liver", "#aa3311"), LabelClass(2, "spleen", "#11cc44")]
    w.add_class_structures(classes)
    _segment(w, class_id=2)
    assert w.wait_for_autosave(30)

    viewer2, w2 = make_widget()  # the same image again: its autosave is offered
    assert w2.session.structures.names() == []
    assert w2.restore_autosave()
    structures = w2.session.structures
    assert [(s.label_id, s.name, s.color.lower()) for s in structures] == [(1, "liver", "#aa3311"), (2, "spleen", "#11cc44")]
    table = w2.structure_list.table
    assert [table.item(i, 1).text() for i in range(table.rowCount())] == ["liver", "spleen"]  # the list shows them
    assert (w2.session.labels_layer.data == 2).sum() > 0
    np.testing.assert_allclose(w2.session.labels_layer.colormap.map(np.array([2]))[0][:3],
                               [0x11 / 255, 0xCC / 255, 0x44 / 255], atol=0.01)


def test_the_sample_reference_starts_hidden(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-openmedlab", "ct_with_organs")
    assert viewer.layers["sample CT"].visible and not viewer.layers["organs"].visible


def test_the_dock_fits_a_1280_pixel_window(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QAbstractButton, QScrollArea

    from napari_openmedlab._widgets.segmentation_widget import SegmentationWidget

    viewer = make_napari_viewer(show=True)
    data, kwargs, _ = image_layer_data(Volume(np.zeros((8, 32, 32), np.int16)), name="ct")
    viewer.add_image(data, **kwargs)
    widget = SegmentationWidget(viewer)
    viewer.window.add_dock_widget(widget, name="segmentation", area="right")
    viewer.window._qt_window.resize(1280, 800)
    scroll = widget.findChild(QScrollArea)
    # the layout settles over a few event-loop turns (the model loads, labels change)
    qtbot.waitUntil(lambda: scroll.horizontalScrollBar().maximum() == 0, timeout=5000)  # no sideways scrolling
    qtbot.wait(300)
    assert scroll.horizontalScrollBar().maximum() == 0, "the dock scrolls sideways"
    clipped = [b.text() for b in widget.findChildren(QAbstractButton)
               if b.isVisibleTo(widget) and b.width() < b.minimumSizeHint().width()]
    assert clipped == []
    assert widget.width() <= 480  # the canvas keeps most of the window
    widget.runner.cancel()


def test_save_proposes_the_image_folder_and_a_name_without_spaces(make_widget, tmp_path):
    from pathlib import Path

    viewer, w = make_widget()
    w.session.source = str(tmp_path / "ct.nii.gz")
    (tmp_path / "ct.nii.gz").write_bytes(b"")
    w.add_class_structures([LabelClass(1, "liver", "#aa3311"), LabelClass(2, "left kidney", "#11cc44")])
    w.select_class(1)
    assert w.suggested_save_path() == tmp_path / "ct_liver.nii.gz"  # nothing drawn: the selected one
    _segment(w, class_id=2)
    assert w.suggested_save_path() == tmp_path / "ct_left_kidney.nii.gz"  # the one drawn structure
    _segment(w, zyx=(12, 32, 34), class_id=1)
    assert w.suggested_save_path() == tmp_path / "ct_structures.omlss"  # several: keep their overlaps
    w.session.source = None  # an image made in napari: the working folder, the layer's name
    assert w.suggested_save_path().parent == Path.cwd() and " " not in w.suggested_save_path().name


def test_window_presets_for_any_engine_and_the_hu_readout_whatever_is_selected(make_widget):
    phantom = _gui_conftest().phantom

    ct = phantom()
    ct.array[ct.array < 0] = -1000  # air around the balls, as in any CT
    viewer, w = make_widget(volume=ct, model="seeded-region")  # a 3D engine: no model window chooser
    display = w.display_controls
    image = w.session.image_layer
    assert display.isVisibleTo(w) or not w.isVisible()
    assert display.apply_window("CT bone (W1800 L400)")
    assert tuple(image.contrast_limits) == (-500.0, 1300.0)
    assert display.apply_window("CT lung (W1500 L-600)")
    assert tuple(image.contrast_limits) == (-1350.0, 150.0)
    viewer.layers.selection.active = w.session.labels_layer  # napari's status now follows the labels
    voxel = (12, 16, 16)
    world = w.session.geometry.index_to_world(voxel)
    text = display.update_readout(world)
    assert f"{int(image.data[voxel])} HU" in text and image.name in text
    assert "outside" in display.update_readout(world + 1000.0)


def test_an_mr_image_gets_no_hu_windows(make_widget):
    zz, yy, xx = np.indices((24, 48, 48))
    mr = Volume((zz * 10 + yy + xx).astype(np.uint16) + 100, Geometry((1.0, 1.0, 2.0)), {"source": "/virtual/t1.nii.gz"})
    viewer, w = make_widget(volume=mr)
    display = w.display_controls
    assert not display.apply_window("CT bone (W1800 L400)")
    assert display.apply_window("Automatic (1-99th percentile)")
    low, high = w.session.image_layer.contrast_limits
    assert 100 <= low < high <= mr.array.max()
    assert "HU" not in display.update_readout(w.session.geometry.index_to_world((3, 4, 5)))


def test_tooltips_name_the_shortcuts(make_widget):
    viewer, w = make_widget()
    expected = {
        w.commit_button: "Ctrl+Enter", w.undo_button: "Ctrl+Z", w.redo_button: "Ctrl+Shift+Z",
        w.negative_button: "(N)", w.clear_button: "Esc", w.cancel_propagation_button: "Esc",
    }
    for button, keys in expected.items():
        assert keys in button.toolTip(), (button.text(), button.toolTip())
    for name, button in w.view_controls.buttons.items():
        assert "Alt+" in button.toolTip(), name


def _gui_conftest():
    """tests/gui/conftest.py as a module (``import conftest`` finds tests/conftest.py in a full run)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("_gui_conftest", Path(__file__).with_name("conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
