"""The canonical 1.5 mm grid and its crops: official geometry, exact round trips."""

from __future__ import annotations

import numpy as np
import pytest

from napari_openmedlab.engines.crop3d import CROP, CanonicalGrid, nearest_ras_axes
from napari_openmedlab.io import Geometry


def _rotation(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i] = r[j, j] = c
    r[i, j], r[j, i] = -s, s
    return r


PERMUTED = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], float)  # voxel axes swapped and flipped
OBLIQUE = _rotation(0, 0.3) @ _rotation(2, -0.2) @ np.array([[0, 1, 0], [0, 0, -1], [-1, 0, 0]], float)

GEOMETRIES = {
    "identity": Geometry((0.8, 1.1, 2.5), (10.0, -20.0, 5.0)),
    "ct-lps": Geometry((3.0, 3.0, 3.0), (177.9, -11.3, 94.3), (-1, 0, 0, 0, -1, 0, 0, 0, 1)),
    "permuted": Geometry((0.7, 0.9, 2.0), (1.0, 2.0, 3.0), tuple(PERMUTED.ravel())),
    "oblique": Geometry((0.7, 0.9, 2.0), (1.0, 2.0, 3.0), tuple(OBLIQUE.ravel())),
}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_nearest_ras_axes_of_lps_identity_flips_x_and_y():
    world, sign = nearest_ras_axes(np.eye(3))
    assert list(world) == [0, 1, 2]
    assert list(sign) == [-1, -1, 1]


def test_nearest_ras_axes_of_permuted_frame():
    world, sign = nearest_ras_axes(PERMUTED)
    # voxel x runs along LPS y (-> RAS A, flipped), voxel y along -z (S, flipped), voxel z along x
    assert list(world) == [1, 2, 0]
    assert list(sign) == [-1, -1, -1]


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_points_round_trip(name):
    grid = CanonicalGrid.from_geometry(GEOMETRIES[name], (23, 41, 37))
    pts = np.array([[0, 0, 0], [22, 40, 36], [5.5, 7.25, 9.0]])
    np.testing.assert_allclose(grid.to_volume(grid.to_grid(pts)), pts, atol=1e-9)


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_grid_points_are_the_physical_points(name):
    """A grid voxel and the volume voxel mapped to it are the same physical point."""
    geometry = GEOMETRIES[name]
    grid = CanonicalGrid.from_geometry(geometry, (23, 41, 37))
    pts = np.array([[3, 4, 5], [20, 1, 30.5]])
    u = grid.to_grid(pts)
    physical_grid = grid.origin + (grid.direction @ (grid.spacing * u.T)).T
    np.testing.assert_allclose(physical_grid, geometry.index_to_physical(pts), atol=1e-6)


def test_crop_start_centres_a_click_at_64():
    grid = CanonicalGrid.from_geometry(GEOMETRIES["ct-lps"], (30, 101, 122))
    g = grid.grid_voxel([[10, 50, 60]])[0]
    start = grid.crop_start(g, g + 1)
    assert tuple(g - np.asarray(start)) == (64, 64, 64)


def test_crop_start_follows_cropOrPad_rule_for_even_and_odd_boxes():
    assert CanonicalGrid.crop_start([10, 10, 10], [12, 13, 11]) == (-53, -53, -54)


def test_extract_pads_outside_the_grid_with_zeros():
    geometry = GEOMETRIES["identity"]
    array = np.full((10, 12, 14), 7, np.int16)
    grid = CanonicalGrid.from_geometry(geometry, array.shape)
    crop = grid.extract(array, geometry, (-64, -64, -64))
    assert crop.dtype == np.float32 and crop.shape == (CROP,) * 3
    inner = crop[64:64 + grid.shape[0], 64:64 + grid.shape[1], 64:64 + grid.shape[2]]
    assert np.all(inner == 7)
    assert crop.sum() == 7 * inner.size


def _sphere(shape, geometry, centre_zyx, radius_mm):
    zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    idx = np.stack([zz, yy, xx], -1).reshape(-1, 3)
    phys = geometry.index_to_physical(idx)
    centre = geometry.index_to_physical(np.asarray(centre_zyx, float))
    return (np.linalg.norm(phys - centre, axis=1) <= radius_mm).reshape(shape)


@pytest.mark.parametrize("name", ["permuted", "oblique", "ct-lps"])
def test_sphere_goes_into_a_crop_and_back_to_where_it_was(name):
    geometry = GEOMETRIES[name]
    shape = (40, 90, 80)
    centre = (20, 45, 40)
    sphere = _sphere(shape, geometry, centre, 25.0)
    grid = CanonicalGrid.from_geometry(geometry, shape)
    g = grid.grid_voxel([centre])[0]
    start = grid.crop_start(g, g + 1)
    # image path: linear resampling of the mask as an image, then threshold
    crop = grid.extract(sphere.astype(np.uint8) * 100, geometry, start) > 50
    bbox, patch = grid.paste(crop, start)
    back = np.zeros(shape, bool)
    back[bbox[0]:bbox[3], bbox[1]:bbox[4], bbox[2]:bbox[5]] = patch
    assert _dice(back, sphere) >= 0.95
    # the crop holds the sphere around its centre voxel 64
    assert crop[64, 64, 64]
    # mask path: nearest sampling and back
    crop2 = grid.sample_mask(sphere, start)
    bbox2, patch2 = grid.paste(crop2, start)
    back2 = np.zeros(shape, bool)
    back2[bbox2[0]:bbox2[3], bbox2[1]:bbox2[4], bbox2[2]:bbox2[5]] = patch2
    assert _dice(back2, sphere) >= 0.95


def test_paste_of_a_crop_outside_the_volume_is_none():
    grid = CanonicalGrid.from_geometry(GEOMETRIES["identity"], (10, 10, 10))
    assert grid.paste(np.ones((CROP,) * 3, bool), (500, 0, 0)) is None


@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_grid_and_crop_equal_torchio_resample_canonical(name, tmp_path):
    """Our grid = TorchIO's Resample(1.5) + ToCanonical, and a crop = the same voxels, exactly."""
    tio = pytest.importorskip("torchio")
    import SimpleITK as sitk

    geometry = GEOMETRIES[name]
    shape = (23, 41, 37)
    array = (np.random.default_rng(0).random(shape) * 1000 - 200).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    geometry.apply_to_sitk(image)
    path = tmp_path / "x.nii.gz"
    sitk.WriteImage(image, str(path))
    geometry = Geometry.from_sitk(sitk.ReadImage(str(path)))  # as stored (float32 header)

    subject = tio.ToCanonical()(tio.Resample(1.5)(tio.Subject(image=tio.ScalarImage(path))))
    grid = CanonicalGrid.from_geometry(geometry, shape)
    assert tuple(subject.image.spatial_shape) == grid.shape
    ours = np.eye(4)
    ours[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ grid.direction * grid.spacing
    ours[:3, 3] = np.diag([-1.0, -1.0, 1.0]) @ grid.origin
    np.testing.assert_allclose(ours, subject.image.affine, atol=1e-6)

    data = subject.image.data[0].numpy()
    start = (-5, -3, -2)
    crop = grid.extract(array, geometry, start, size=40)
    expected = np.zeros((40, 40, 40), np.float32)
    block = data[:35, :37, :38]
    expected[5:5 + block.shape[0], 3:3 + block.shape[1], 2:2 + block.shape[2]] = block
    np.testing.assert_array_equal(crop, expected)
