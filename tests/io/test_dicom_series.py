"""The DICOM series index: SimpleITK's grid, any slice order, refusals, the corrected copy."""

from __future__ import annotations

import numpy as np
import pytest

from napari_openmedlab.dicom_rt import SeriesGeometryError, SeriesUidError, read_series
from napari_openmedlab.dicom_rt.corrected import write_corrected_series
from napari_openmedlab.io import read_volume


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"reverse_instances": True, "shuffle_names": True},
        {"rows": 17, "cols": 40, "spacing": (0.5, 1.25, 3.0)},
        # a head-first-prone-like oblique plane: rotated row/column cosines
        {"row_dir": (0.8660254, 0.5, 0.0), "col_dir": (0.0, 0.0, -1.0)},
    ],
)
def test_grid_matches_simpleitk(make_series, kwargs):
    folder = make_series(**kwargs)
    series = read_series(folder)
    volume = read_volume(folder)
    assert series.shape == volume.shape
    assert series.geometry.same_grid(volume.geometry, tol=1e-4)
    # slice k of the grid is the file the index names for k: compare positions with SimpleITK's
    for k, ref in enumerate(series.slices):
        expected = volume.geometry.index_to_physical([k, 0, 0])
        assert np.allclose(ref.position, expected, atol=1e-3)
    assert series.uid_problems() == []


def test_tilted_series_is_refused(make_series):
    folder = make_series(tilt_mm=0.5)
    with pytest.raises(SeriesGeometryError, match="gantry tilt"):
        read_series(folder)


def test_uneven_spacing_is_refused(make_series):
    folder = make_series(slices=5)
    sorted(folder.iterdir())[2].unlink()  # a missing slice in the middle
    with pytest.raises(SeriesGeometryError, match="uneven slice spacing"):
        read_series(folder)


def test_empty_uids_refused_with_the_way_out(make_series):
    series = read_series(make_series(empty_uids=True))
    with pytest.raises(SeriesUidError, match="--write-corrected-series"):
        series.check_referencable()


def test_duplicated_sop_uids_refused(make_series):
    series = read_series(make_series(duplicate_sop=True))
    with pytest.raises(SeriesUidError, match="duplicated SOP Instance UIDs"):
        series.check_referencable()


def test_corrected_copy_has_new_uids_and_same_images(make_series, tmp_path):
    folder = make_series(empty_uids=True, reverse_instances=True)
    series = read_series(folder)
    copy = write_corrected_series(series, tmp_path / "fixed")
    assert copy.uid_problems() == []
    assert copy.geometry.same_grid(series.geometry)
    assert len({s.sop_instance_uid for s in copy.slices}) == len(copy.slices)
    assert np.array_equal(read_volume(tmp_path / "fixed").array, read_volume(folder).array)
    assert not list((tmp_path / "fixed").glob(".*omltmp*"))  # written through io.atomic, nothing left over
    with pytest.raises(Exception, match="new or empty folder"):
        write_corrected_series(series, tmp_path / "fixed")
