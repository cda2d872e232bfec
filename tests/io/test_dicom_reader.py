"""The napari reader on a study folder: the image plus one Labels layer per ROI / segment."""

from __future__ import annotations

import numpy as np

from napari_openmedlab._reader import get_reader
from napari_openmedlab.annotation import StructureSet
from napari_openmedlab.dicom_rt import read_series
from napari_openmedlab.dicom_rt.rtstruct_write import build_rtstruct, write_rtstruct
from napari_openmedlab.dicom_rt.seg import write_seg


def test_study_folder_opens_image_and_each_structure(make_series):
    folder = make_series(reverse_instances=True)
    series = read_series(folder)
    z, y, x = np.indices(series.shape)
    s = StructureSet(series.geometry, series.shape)
    s.add("Brain Stem", (abs(y - 10) < 4) & (abs(x - 10) < 5), "#ff0000")
    s.add("GTVp", (abs(y - 10) < 2) & (abs(x - 11) < 2) & (z == 2), "#00ff00")  # overlaps
    write_rtstruct(s, series, folder / "RS.dcm")
    write_seg(s, series, folder / "SEG.dcm")
    layers = get_reader(str(folder))(str(folder))
    kinds = [kind for _, _, kind in layers]
    assert kinds == ["image", "labels", "labels", "labels", "labels"]
    names = [kwargs["name"] for _, kwargs, _ in layers[1:]]
    assert sorted(names) == ["Brain Stem", "Brain Stem", "GTVp", "GTVp"]
    image = layers[0]
    for data, kwargs, _ in layers[1:]:
        assert data.shape == image[0].shape
        assert np.array_equal(kwargs["affine"], image[1]["affine"])
        assert np.array_equal(data > 0, s.mask(kwargs["name"]))
    colors = {kwargs["name"]: kwargs["colormap"][1] for _, kwargs, _ in layers[1:]}
    assert colors == {"Brain Stem": "#ff0000", "GTVp": "#00ff00"}


def test_problems_are_kept_not_raised(make_series):
    folder = make_series()
    series = read_series(folder)
    s = StructureSet(series.geometry, series.shape)
    s.add("ok", np.ones(series.shape, bool))
    s.add("foreign", np.ones(series.shape, bool))
    ds = build_rtstruct(s, series)
    ds.StructureSetROISequence[1].ReferencedFrameOfReferenceUID = "1.2.3"
    ds.save_as(folder / "RS.dcm", enforce_file_format=True)
    layers = get_reader(str(folder))(str(folder))
    assert [kwargs["name"] for _, kwargs, _ in layers[1:]] == ["ok"]
    problems = layers[0][1]["metadata"]["openmedlab"]["structure_problems"]
    assert len(problems) == 1 and "'foreign'" in problems[0]
