"""The widget's DICOM RT section: export the target labels + structure layers, import them back."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from napari_openmedlab.io import read_volume
from napari_openmedlab.io.dicom import DicomExchangeError, SeriesUidError, read_series
from napari_openmedlab.io.dicom.rtstruct_read import read_rtstruct

sys.path.insert(0, str(Path(__file__).parents[1] / "io"))
from dicom_factory import dciodvfy_errors, write_series  # noqa: E402

pytestmark = pytest.mark.gui


def test_export_and_import_buttons(make_widget, tmp_path):
    folder = write_series(tmp_path / "ct", rows=20, cols=26, slices=5, empty_uids=True)
    volume = read_volume(folder)
    viewer, widget = make_widget(volume)
    panel = widget.dicom
    target = widget.session.labels_layer
    data = np.zeros(volume.shape, np.uint8)
    data[1:4, 5:12, 5:14] = 1
    data[2, 7:9, 8:10] = 2
    target.data = data
    with pytest.raises(SeriesUidError, match="corrected"):
        panel.export(tmp_path / "rs.dcm")
    lines = panel.export(tmp_path / "rs.dcm", corrected_dir=tmp_path / "fixed")
    assert "new UIDs" in lines[0] and "RTSTRUCT with 2 ROIs" in lines[1]
    assert dciodvfy_errors(tmp_path / "rs.dcm") == []
    back = read_rtstruct(tmp_path / "rs.dcm", read_series(tmp_path / "fixed")).structures
    names = [c.name for c in widget.session.classes]
    assert np.array_equal(back.mask(back.names()[0]), data == 1) and back.names()[0] in (names[0], "label_1")

    # import onto the image: one layer per structure, then a second export keeps them as structures
    widget.session.image_layer.metadata["openmedlab"]["source"] = str(tmp_path / "fixed")
    problems = panel.import_file(tmp_path / "rs.dcm")
    assert problems == []
    imported = [layer for layer in viewer.layers if "structure" in layer.metadata.get("openmedlab", {})]
    assert len(imported) == 2 and np.array_equal(imported[0].data > 0, data == 1)
    panel.export(tmp_path / "seg.dcm", kind="seg")
    assert dciodvfy_errors(tmp_path / "seg.dcm") == []


def test_export_refuses_an_image_not_from_dicom(make_widget, tmp_path):
    _, widget = make_widget()
    with pytest.raises(DicomExchangeError, match="not read from a DICOM series"):
        widget.dicom.export(tmp_path / "rs.dcm")
