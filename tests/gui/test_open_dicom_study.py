"""``openmedlab view DIR`` on a radiotherapy study folder: the CT and one layer per structure."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from napari_openmedlab.annotation import StructureSet
from napari_openmedlab.cli.view import open_viewer
from napari_openmedlab.dicom_rt import read_series
from napari_openmedlab.dicom_rt.rtstruct_write import write_rtstruct

sys.path.insert(0, str(Path(__file__).parents[1] / "io"))
from dicom_factory import write_series  # noqa: E402

pytestmark = pytest.mark.gui


def test_view_study_folder_shows_each_roi(make_napari_viewer, tmp_path):
    folder = write_series(tmp_path / "study", rows=20, cols=26, slices=5, reverse_instances=True)
    series = read_series(folder)
    z, y, x = np.indices(series.shape)
    s = StructureSet(series.geometry, series.shape)
    s.add("Parotid_L", (abs(y - 8) < 4) & (abs(x - 9) < 5) & (z > 0), "#e6194b")
    s.add("GTV 1", (abs(y - 8) < 2) & (abs(x - 10) < 2) & (z == 2), "#3cb44b")
    write_rtstruct(s, series, folder / "RS.dcm")
    viewer = make_napari_viewer()
    open_viewer([str(folder)], viewer=viewer, dock_widget=False)
    assert [layer.name for layer in viewer.layers] == ["study", "Parotid_L", "GTV 1"]
    parotid = viewer.layers["Parotid_L"]
    assert np.array_equal(parotid.data > 0, s.mask("Parotid_L"))
    assert np.allclose(parotid.colormap.map(1)[:3], [0xE6 / 255, 0x19 / 255, 0x4B / 255])
    # overlapping structures are separate layers, both whole
    assert ((viewer.layers["GTV 1"].data > 0) & (parotid.data > 0)).sum() == s.mask("GTV 1").sum()


def test_view_study_folder_puts_the_rois_in_the_structure_list(make_napari_viewer, qtbot, tmp_path):
    from napari_openmedlab.cli.view import DOCK_NAME

    folder = write_series(tmp_path / "study", rows=20, cols=26, slices=5)
    series = read_series(folder)
    z, y, x = np.indices(series.shape)
    s = StructureSet(series.geometry, series.shape)
    s.add("Parotid_L", (abs(y - 8) < 4) & (abs(x - 9) < 5) & (z > 0), "#e6194b")
    s.add("GTV 1", (abs(y - 8) < 2) & (abs(x - 10) < 2) & (z == 2), "#3cb44b")
    write_rtstruct(s, series, folder / "RS.dcm")
    viewer = make_napari_viewer()
    open_viewer([str(folder)], viewer=viewer)
    widget = viewer.window.dock_widgets[DOCK_NAME]
    ss = widget.session.structures
    assert ss.names() == ["Parotid_L", "GTV 1"]
    for name in ss.names():  # overlaps kept, voxel for voxel, with the file's colours
        assert np.array_equal(ss.mask(name), s.mask(name)) and ss.color(name) == s.color(name)
    assert widget.structure_list.table.rowCount() == 2
    # the reader's one-structure layers are replaced by the session's display
    qtbot.waitUntil(lambda: "Parotid_L" not in viewer.layers, timeout=5000)
    assert "GTV 1" not in viewer.layers and widget.session.labels_layer in viewer.layers
    assert widget.wait_for_prediction(60)
    widget.wait_for_autosave(10)
