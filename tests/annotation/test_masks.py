"""SparseMask crop and region replacement against dense numpy on random masks and boxes."""

import numpy as np

from napari_openmedlab.annotation.masks import SparseMask


def test_crop_and_with_region_match_dense_arrays():
    rng = np.random.default_rng(1)
    for _ in range(200):
        shape = tuple(int(v) for v in rng.integers(1, 9, 3))
        m = rng.random(shape) > 0.6
        s = SparseMask.from_dense(m)
        lo = [int(rng.integers(0, n)) for n in shape]
        hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, shape)]
        box, sl = (*lo, *hi), tuple(slice(a, b) for a, b in zip(lo, hi))
        np.testing.assert_array_equal(s.crop(box), m[sl])
        region = rng.random([b - a for a, b in zip(lo, hi)]) > 0.5
        expected = m.copy()
        expected[sl] = region
        assert s.with_region(box, region) == SparseMask.from_dense(expected)
