"""The widget's DICOM RT section: export the session's structures, import them back as structures."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from napari_openmedlab.annotation import requests as rq
from napari_openmedlab.dicom_rt import DicomExchangeError, SeriesUidError, read_series
from napari_openmedlab.dicom_rt.rtstruct_read import read_rtstruct
from napari_openmedlab.dicom_rt.seg import read_seg
from napari_openmedlab.io import read_volume

sys.path.insert(0, str(Path(__file__).parents[1] / "io"))
from dicom_factory import dciodvfy_errors, write_series  # noqa: E402

pytestmark = pytest.mark.gui


def _paint(widget, name, mask, color=None):
    widget.session.handle(rq.AddStructure(name, color))
    widget.session.handle(rq.Edit.from_mask(name, "paint", mask))


def test_export_and_import_buttons(make_widget, tmp_path):
    folder = write_series(tmp_path / "ct", rows=20, cols=26, slices=5, empty_uids=True)
    volume = read_volume(folder)
    viewer, widget = make_widget(volume)
    panel = widget.dicom
    body = np.zeros(volume.shape, bool)
    body[1:4, 5:12, 5:14] = True
    gtv = np.zeros(volume.shape, bool)
    gtv[2, 7:9, 8:10] = True  # inside the body: an overlap a label map would lose
    _paint(widget, "Body", body, "#e6194b")
    _paint(widget, "GTV", gtv, "#3cb44b")
    widget.session.handle(rq.AddStructure("empty"))  # empty structures are not exported
    with pytest.raises(SeriesUidError, match="corrected"):
        panel.export(tmp_path / "rs.dcm")
    lines = panel.export(tmp_path / "rs.dcm", corrected_dir=tmp_path / "fixed")
    assert "new UIDs" in lines[0] and "RTSTRUCT with 2 ROIs" in lines[1]
    assert dciodvfy_errors(tmp_path / "rs.dcm") == []
    back = read_rtstruct(tmp_path / "rs.dcm", read_series(tmp_path / "fixed")).structures
    assert back.names() == ["Body", "GTV"]
    assert np.array_equal(back.mask("Body"), body) and np.array_equal(back.mask("GTV"), gtv)

    # import onto the image: the structures join the session (names taken get a number)
    widget.session.image_layer.metadata["openmedlab"]["source"] = str(tmp_path / "fixed")
    layers_before = len(viewer.layers)
    problems = panel.import_file(tmp_path / "rs.dcm")
    assert problems == []
    ss = widget.session.structures
    assert ss.names() == ["Body", "GTV", "empty", "Body 2", "GTV 2"]
    assert np.array_equal(ss.mask("Body 2"), body) and np.array_equal(ss.mask("GTV 2"), gtv)
    assert ss.color("GTV 2") == ss.color("GTV")
    assert len(viewer.layers) == layers_before  # shown by the session's layers, no new ones
    assert [row["name"] for row in widget.session.rows()][-2:] == ["Body 2", "GTV 2"]
    assert widget.structure_list.table.rowCount() == 5

    # a SEG of the session keeps the overlap; undo takes the import back
    panel.export(tmp_path / "seg.dcm", kind="seg")
    assert dciodvfy_errors(tmp_path / "seg.dcm") == []
    seg = read_seg(tmp_path / "seg.dcm", read_series(tmp_path / "fixed")).structures
    assert len(seg) == 4 and np.array_equal(seg.mask("GTV 2"), gtv)
    for _ in range(4):
        widget.session.handle(rq.Undo())
    assert widget.session.structures.names() == ["Body", "GTV", "empty"]


def test_export_refuses_an_image_not_from_dicom(make_widget, tmp_path):
    _, widget = make_widget()
    with pytest.raises(DicomExchangeError, match="not read from a DICOM series"):
        widget.dicom.export(tmp_path / "rs.dcm")


def test_structure_layers_dropped_in_later_join_the_session(make_widget, qtbot, tmp_path):
    """A study folder opened in napari after the widget: the reader's ROI layers become structures."""
    from napari_openmedlab.annotation import StructureSet
    from napari_openmedlab.dicom_rt.rtstruct_write import write_rtstruct
    from napari_openmedlab.rt_layers import structure_layers

    folder = write_series(tmp_path / "study", rows=20, cols=26, slices=5)
    volume = read_volume(folder)
    viewer, widget = make_widget(volume)
    s = StructureSet(volume.geometry, volume.shape)
    mask = np.zeros(volume.shape, bool)
    mask[1:4, 3:9, 4:12] = True
    s.add("Brainstem", mask, "#4363d8")
    write_rtstruct(s, read_series(folder), folder / "RS.dcm")
    layers, problems = structure_layers(folder, volume)
    assert problems == [] and len(layers) == 1
    data, kwargs, _ = layers[0]
    viewer.add_labels(data, **kwargs)
    assert widget.session.structures.names() == ["Brainstem"]
    assert np.array_equal(widget.session.structures.mask("Brainstem"), mask)
    assert widget.session.selected == "Brainstem"
    qtbot.waitUntil(lambda: "Brainstem" not in viewer.layers, timeout=5000)
    widget.session.handle(rq.Undo())  # the paint, then the structure
    widget.session.handle(rq.Undo())
    assert widget.session.structures.names() == []
