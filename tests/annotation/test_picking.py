import numpy as np

from napari_openmedlab.annotation.picking import pick_along_ray


def test_pick_max_min_and_first():
    vol = np.zeros((10, 10, 10))
    vol[5, 5, 3] = 5.0
    vol[5, 5, 7] = 9.0
    start, end = (5, 5, -0.5), (5, 5, 9.5)
    np.testing.assert_array_equal(pick_along_ray(vol, start, end, "max"), [5, 5, 7])
    np.testing.assert_array_equal(pick_along_ray(vol, start, end, "first", threshold=4), [5, 5, 3])
    np.testing.assert_array_equal(pick_along_ray(vol, end, start, "first", threshold=4), [5, 5, 7])
    assert pick_along_ray(vol, start, end, "first", threshold=100) is None
    assert pick_along_ray(vol, (20, 20, 20), (30, 30, 30)) is None
