import numpy as np
import pytest
import SimpleITK as sitk

from napari_openmedlab.io import Geometry, Volume

ROTATED = Geometry(
    spacing=(0.8, 1.3, 2.5),
    origin=(-120.0, 35.5, 410.0),
    direction=tuple(
        sitk.VersorTransform((0.3, -0.5, 0.8), 0.7).GetMatrix()  # a proper rotation
    ),
)
FLIPPED = Geometry(spacing=(3.0, 3.0, 3.0), origin=(10, 20, 30), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))


@pytest.mark.parametrize("geometry", [ROTATED, FLIPPED, Geometry()])
def test_index_to_physical_matches_simpleitk(geometry):
    image = sitk.Image(7, 6, 5, sitk.sitkUInt8)
    geometry.apply_to_sitk(image)
    rng = np.random.default_rng(0)
    for zyx in rng.integers(0, 5, size=(10, 3)):
        expected = image.TransformIndexToPhysicalPoint([int(v) for v in zyx[::-1]])
        np.testing.assert_allclose(geometry.index_to_physical(zyx), expected, atol=1e-9)


@pytest.mark.parametrize("geometry", [ROTATED, FLIPPED])
def test_world_round_trip(geometry):
    zyx = np.array([[1.5, 2.0, 3.25], [0, 0, 0], [4, 5, 6]])
    world = geometry.index_to_world(zyx)
    np.testing.assert_allclose(geometry.world_to_index(world), zyx, atol=1e-9)
    np.testing.assert_allclose(geometry.physical_to_index(geometry.index_to_physical(zyx)), zyx, atol=1e-9)


def test_napari_kwargs_reproduce_the_physical_affine():
    volume = Volume(np.zeros((5, 6, 7), np.int16), ROTATED)
    kw = volume.napari_kwargs()
    full = kw["affine"] @ np.diag([*kw["scale"], 1.0])  # napari: world = affine(scale(data))
    np.testing.assert_allclose(full, ROTATED.index_to_physical_matrix(), atol=1e-12)


def test_flipped_ct_shows_anterior_up():
    # direction diag(-1,-1,1): array row 0 is posterior; in LPS world its y is the largest.
    world_row0 = FLIPPED.index_to_world([0, 0, 0])[1]
    world_row9 = FLIPPED.index_to_world([0, 9, 0])[1]
    assert world_row0 > world_row9  # anterior (small P) has the smaller world y: drawn at the top


def test_geometry_dict_round_trip():
    assert Geometry.from_dict(ROTATED.to_dict()) == ROTATED
