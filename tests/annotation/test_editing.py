import numpy as np
import pytest

from napari_openmedlab.annotation.editing import commit_mask, union_bbox
from napari_openmedlab.engines.base import Prediction


def _box_mask(shape, sl):
    m = np.zeros(shape, bool)
    m[sl] = True
    return Prediction.from_mask(m)


def test_overwrite_and_fill_empty_only():
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[0:3] = 2
    mask = _box_mask(labels.shape, np.s_[2:4, 2:4, 2:4])
    over = labels.copy()
    commit_mask(over, mask, 5, "overwrite")
    assert (over[2:4, 2:4, 2:4] == 5).all()
    empty = labels.copy()
    diff = commit_mask(empty, mask, 5, "empty")
    assert (empty[2, 2:4, 2:4] == 2).all() and (empty[3, 2:4, 2:4] == 5).all()
    assert diff.bbox == (3, 2, 2, 4, 4, 4)


def test_refine_replaces_the_old_voxels_of_that_id():
    labels = np.zeros((8, 8, 8), np.uint16)
    labels[0:2, 0:2, 0:2] = 3  # old extent of id 3
    labels[6, 6, 6] = 1
    mask = _box_mask(labels.shape, np.s_[4:6, 4:6, 4:6])
    diff = commit_mask(labels, mask, 3, "empty", replace_id=3)
    assert (labels == 3).sum() == 8 and (labels[4:6, 4:6, 4:6] == 3).all()
    assert labels[6, 6, 6] == 1
    assert diff.bbox == (0, 0, 0, 6, 6, 6)


def test_errors():
    labels = np.zeros((4, 4, 4), np.uint8)
    mask = _box_mask(labels.shape, np.s_[1:2, 1:2, 1:2])
    with pytest.raises(ValueError, match="does not fit"):
        commit_mask(labels, mask, 300)
    with pytest.raises(ValueError, match="overlap"):
        commit_mask(labels, mask, 1, "sometimes")
    with pytest.raises(ValueError, match="positive"):
        commit_mask(labels, mask, 0)
    assert commit_mask(labels, Prediction.from_mask(np.zeros((4, 4, 4), bool)), 1) is None


def test_union_bbox():
    assert union_bbox((0, 0, 0, 1, 1, 1), None, (2, 2, 2, 3, 4, 5)) == (0, 0, 0, 3, 4, 5)
    assert union_bbox(None, (0, 0, 0, 0, 0, 0)) is None
