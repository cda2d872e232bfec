"""Voxel-edge contours: exact even-odd fill, holes and islands, enclosed area per slice."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import polygon as draw_polygon

from napari_openmedlab.dicom_rt.contours import fill_even_odd, mask_to_loops, signed_area


def test_random_masks_round_trip_exactly():
    rng = np.random.default_rng(1)
    for _ in range(150):
        shape = tuple(int(v) for v in rng.integers(1, 25, size=2))
        mask = rng.random(shape) < rng.random()
        loops = mask_to_loops(mask)
        assert np.array_equal(fill_even_odd(loops, shape), mask)
        assert sum(signed_area(loop) for loop in loops) == pytest.approx(mask.sum())


def test_hole_and_island_are_separate_contours():
    mask = np.zeros((12, 12), bool)
    mask[1:8, 1:8] = True
    mask[3:6, 3:6] = False  # a hole
    mask[4, 4] = True  # an island inside the hole
    mask[10, 10] = True  # a separate one-voxel island
    loops = mask_to_loops(mask)
    assert len(loops) == 4
    areas = sorted(signed_area(loop) for loop in loops)
    assert areas == [-9.0, 1.0, 1.0, 49.0]  # the hole runs the other way
    assert np.array_equal(fill_even_odd(loops, mask.shape), mask)


def test_diagonal_neighbours_get_their_own_loops():
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = mask[2, 2] = True
    loops = mask_to_loops(mask)
    assert len(loops) == 2 and all(len(loop) == 4 for loop in loops)


def _even_odd_area(loops_mm: list[np.ndarray], pixel: float = 0.05) -> float:
    """Area enclosed by the even-odd rule, measured independently on a fine raster."""
    allp = np.concatenate(loops_mm)
    lo = allp.min(axis=0) - 1
    hi = allp.max(axis=0) + 1
    shape = tuple(int(v) for v in np.ceil((hi - lo) / pixel))
    canvas = np.zeros(shape, bool)
    for loop in loops_mm:
        # + 0.5: voxel corners fall between the fine raster's pixel centres, never on them
        rr, cc = draw_polygon((loop[:, 0] - lo[0]) / pixel + 0.5, (loop[:, 1] - lo[1]) / pixel + 0.5, shape)
        part = np.zeros(shape, bool)
        part[rr, cc] = True
        canvas ^= part
    return canvas.sum() * pixel * pixel


@pytest.mark.parametrize("spacing", [(3.0, 3.0), (0.977, 0.977), (1.2, 3.0)])
def test_enclosed_area_matches_voxel_area(spacing):
    """Point 2: on every slice with >= 50 voxels, even-odd area within 2% of the voxel area."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:60, 0:60]
    shapes = {
        "thin line": (abs(yy - 0.4 * xx - 10) < 0.8) & (xx > 5) & (xx < 55),
        "ring": ((yy - 30) ** 2 + (xx - 30) ** 2 < 15**2) & ((yy - 30) ** 2 + (xx - 30) ** 2 > 6**2),
        "blobs": rng.random((60, 60)) < 0.35,
        "two islands": ((yy - 12) ** 2 + (xx - 12) ** 2 < 25) | ((yy - 45) ** 2 + (xx - 40) ** 2 < 36),
    }
    for name, mask in shapes.items():
        assert mask.sum() >= 50, name
        loops_mm = [loop * np.array(spacing) for loop in mask_to_loops(mask)]
        voxel_area = mask.sum() * spacing[0] * spacing[1]
        area = _even_odd_area(loops_mm, pixel=min(spacing) / 8)
        assert abs(area - voxel_area) <= 0.02 * voxel_area, (name, area, voxel_area)
