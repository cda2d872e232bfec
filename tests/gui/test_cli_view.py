"""``openmedlab view``: ``open_viewer`` on napari's test viewer (so leaks are still checked)."""

from __future__ import annotations

import pytest

from napari_openmedlab._sample_data import SAMPLE_CT
from napari_openmedlab._widgets.segmentation_widget import SegmentationWidget
from napari_openmedlab.cli.view import DOCK_NAME, open_viewer
from napari_openmedlab.io import read_volume

pytestmark = pytest.mark.gui


def _finish(widget) -> None:
    assert widget.wait_for_prediction(60)  # the default model loads in the background
    widget.wait_for_autosave(10)


def test_view_without_files_opens_the_sample_ct_and_docks_the_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    assert open_viewer([], viewer=viewer) is viewer
    ct, organs = viewer.layers["sample CT"], viewer.layers["organs"]
    assert ct.metadata["openmedlab"]["source"] == str(SAMPLE_CT)
    assert organs.data.shape == ct.data.shape and organs.data.max() > 0
    widget = viewer.window.dock_widgets[DOCK_NAME]
    assert isinstance(widget, SegmentationWidget)
    assert widget.session.image_layer is ct
    assert widget.session.labels_layer in viewer.layers
    _finish(widget)


def test_view_opens_the_given_files(make_napari_viewer, shared_data):
    path = shared_data / "totalseg-ct" / "ct.nii.gz"
    viewer = make_napari_viewer()
    open_viewer([str(path)], viewer=viewer)
    image = viewer.layers[0]
    assert image.metadata["openmedlab"]["source"] == str(path)
    assert image.data.shape == read_volume(path).shape
    assert "organs" not in viewer.layers
    widget = viewer.window.dock_widgets[DOCK_NAME]
    assert widget.session.image_layer is image
    _finish(widget)


def test_view_without_the_widget(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    open_viewer([str(shared_data / "totalseg-ct" / "ct.nii.gz")], dock_widget=False, viewer=viewer)
    assert len(viewer.layers) == 1 and DOCK_NAME not in viewer.window.dock_widgets
