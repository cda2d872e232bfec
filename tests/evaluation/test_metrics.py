"""Dice and NSD on hand-made masks with known answers."""

import math

import numpy as np
import pytest

from napari_openmedlab.evaluation.metrics import dice, hausdorff, nsd, surface_distances


def box(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def test_dice_known_values():
    a = box((20, 20, 20), (2, 2, 2), (12, 12, 12))  # 10^3
    assert dice(a, a) == 1.0
    assert dice(a, ~a) == 0.0
    for k in (1, 3, 5):  # a cube shifted by k voxels along one axis overlaps (10 - k) / 10
        b = np.roll(a, k, axis=0)
        assert dice(a, b) == pytest.approx((10 - k) / 10)
    # conventions: both empty -> NaN (nothing to score), one empty -> 0
    empty = np.zeros_like(a)
    assert math.isnan(dice(empty, empty))
    assert dice(a, empty) == 0.0 and dice(empty, a) == 0.0
    # integer label masks are read as "non-zero"
    assert dice(a.astype(np.uint8) * 7, a) == 1.0
    with pytest.raises(ValueError):
        dice(a, a[:-1])


def test_nsd_identical_empty_and_disjoint():
    a = box((16, 16, 16), (4, 4, 4), (10, 10, 10))
    assert nsd(a, a, (1, 1, 1), 0.0) == 1.0
    empty = np.zeros_like(a)
    assert math.isnan(nsd(empty, empty))
    assert nsd(a, empty) == 0.0 and nsd(empty, a, tolerance_mm=100) == 0.0
    far = np.roll(a, 8, axis=2)
    assert nsd(a, far, (1, 1, 1), 1.0) == 0.0
    assert nsd(a, far, (1, 1, 1), 8.0) == 1.0
    with pytest.raises(ValueError):
        nsd(a, a, tolerance_mm=-1)


def test_surface_area_of_a_box_is_the_marching_cubes_area():
    """A box of n voxels: flat faces, quarter-chamfered edges and corner triangles (exact)."""
    n, (a, b, c) = 5, (2.0, 0.5, 1.25)  # spacing along axes 0, 1, 2
    m = box((n + 4,) * 3, (2, 2, 2), (2 + n,) * 3)
    sd = surface_distances(m, m, (a, b, c))
    L = n - 1
    faces = 2 * L * L * (b * c + a * c + a * b)
    edges = 4 * L * (a * math.hypot(b, c) + b * math.hypot(a, c) + c * math.hypot(a, b)) / 2
    corners = 8 * 0.5 * math.sqrt((b * c) ** 2 + (a * c) ** 2 + (a * b) ** 2) / 4
    assert sd.areas_gt.sum() == pytest.approx(faces + edges + corners, rel=1e-9)
    # one voxel: eight corner triangles, sqrt(3)/8 each at unit spacing
    one = box((3, 3, 3), (1, 1, 1), (2, 2, 2))
    assert surface_distances(one, one).areas_gt.sum() == pytest.approx(math.sqrt(3))


@pytest.mark.parametrize("axis, spacing", [(0, (5.0, 1.0, 1.0)), (2, (5.0, 1.0, 0.5)), (1, (1.0, 3.0, 1.0))])
def test_nsd_uses_the_spacing_of_each_axis(axis, spacing):
    """A one-voxel shift is spacing[axis] mm: matched exactly from that tolerance on."""
    a = box((24, 24, 24), (6, 6, 6), (16, 16, 16))
    b = np.roll(a, 1, axis=axis)
    step = spacing[axis]
    assert nsd(a, b, spacing, step) == 1.0
    below = nsd(a, b, spacing, step * 0.99)
    assert 0.0 < below < 1.0
    # at tolerance 0 only the coinciding parts of the side faces (parallel to the shift) match
    assert 0.0 < nsd(a, b, spacing, 0.0) <= below
    assert nsd(b, a, spacing, step * 0.99) == pytest.approx(below)  # symmetric


def test_nsd_of_a_shifted_box_matches_the_side_face_share():
    """Large box shifted by k along z: at tolerance 0 only the overlapping side faces match."""
    n, k = 40, 2
    a = box((n + 8, n + 4, n + 4), (2, 2, 2), (2 + n, 2 + n, 2 + n))
    b = np.roll(a, k, axis=0)
    # per mask: side area 4 n^2, of which (n - k) / n coincides; caps 2 n^2 never match at tol 0
    expected = (4 * n * (n - k)) / (4 * n * n + 2 * n * n)
    assert nsd(a, b, (1, 1, 1), 0.0) == pytest.approx(expected, abs=0.02)
    assert nsd(a, b, (1, 1, 1), float(k)) == 1.0


def test_hausdorff_of_a_shift():
    a = box((20, 20, 20), (5, 5, 5), (12, 12, 12))
    assert hausdorff(a, np.roll(a, 3, axis=1), (1, 2, 1), 100) == pytest.approx(6.0)
    assert hausdorff(a, a) == 0.0
    assert math.isinf(hausdorff(a, np.zeros_like(a)))
