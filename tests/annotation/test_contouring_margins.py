"""Margins against a brute-force reading of the definition, on anisotropic, flipped, permuted grids.

The brute force below is written from the issue's words only: every pair of voxel centres, their
difference in patient LPS millimetres, the radius of the side the difference points to.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_openmedlab.annotation.contouring import ContouringError, Margin, margin, ring
from napari_openmedlab.annotation.masks import SparseMask
from napari_openmedlab.io import Geometry

RADII = {"R": 0, "L": 1, "A": 2, "P": 3, "S": 4, "I": 5}


def brute_reached_by(src: np.ndarray, geometry: Geometry, radii, toward_source: bool) -> np.ndarray:
    """For every voxel v: is there a voxel s of ``src`` with v within the ellipsoid around s?

    ``toward_source`` False: d = centre(v) - centre(s) (expansion). True: d = centre(s) - centre(v)
    (shrinking: s is an outside voxel and d points from the structure voxel to it).
    """
    shape = src.shape
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    centres = geometry.index_to_physical(idx)  # LPS mm, (x, y, z)
    sources = centres[src.reshape(-1)]
    out = np.zeros(len(idx), bool)
    for i, c in enumerate(centres):
        d = (sources - c) if toward_source else (c - sources)
        total = np.zeros(len(d))
        for axis, (neg, pos) in enumerate((("R", "L"), ("A", "P"), ("I", "S"))):
            comp = d[:, axis]
            r = np.where(comp > 0, radii[RADII[pos]], radii[RADII[neg]])
            step = np.abs(comp) > 1e-6
            with np.errstate(divide="ignore", invalid="ignore"):
                term = np.where(step, np.where(r > 0, (comp / np.where(r > 0, r, 1)) ** 2, np.inf), 0.0)
            total += term
        out[i] = np.any(total <= 1 + 1e-6)  # the definition's tolerance for ties
    return out.reshape(shape)


def grids():
    # anisotropic spacing, flipped x and z (as NIfTI RAS files are read), and a permuted one
    flipped = Geometry((0.8, 1.1, 2.5), (10.0, -4.0, 3.0), (-1, 0, 0, 0, 1, 0, 0, 0, -1))
    permuted = Geometry((1.3, 0.7, 2.0), (0.0, 0.0, 0.0), (0, 0, 1, -1, 0, 0, 0, -1, 0))
    return [flipped, permuted]


def random_structure(rng, shape) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[3:6, 4:9, 3:7] = rng.random((3, 5, 4)) < 0.7
    mask[4, 6, 5] = True
    mask[1, 2, 9] = True  # a lone voxel near the border
    return mask


MARGINS = [
    ("isotropic", (3.0,) * 6),
    ("anisotropic", (2.2, 2.2, 3.5, 3.5, 5.0, 5.0)),
    ("asymmetric", (3.0, 1.0, 0.0, 4.0, 5.0, 2.5)),
    ("exact ties", (1.6, 1.6, 2.2, 2.2, 5.0, 5.0)),  # 2 x 0.8, 2 x 1.1, 2 x 2.5 hit the surface
]


@pytest.mark.parametrize("grid", range(2))
@pytest.mark.parametrize("name,radii", MARGINS, ids=[m[0] for m in MARGINS])
def test_expansion_matches_brute_force(grid, name, radii):
    geometry = grids()[grid]
    rng = np.random.default_rng(7)
    shape = (8, 12, 12)
    src = random_structure(rng, shape)
    got = margin(src, geometry, Margin.sides(*radii)).dense()
    want = brute_reached_by(src, geometry, radii, toward_source=False)
    assert got.sum() > src.sum()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("grid", range(2))
@pytest.mark.parametrize("name,radii", MARGINS, ids=[m[0] for m in MARGINS])
def test_shrinking_matches_brute_force(grid, name, radii):
    geometry = grids()[grid]
    shape = (8, 12, 12)
    src = np.zeros(shape, bool)
    src[1:8, 2:11, 1:10] = True  # touches the last z slice: the grid edge is not "outside"
    src[4, 5:7, 4:6] = False  # a cavity shrinks the structure from inside too
    got = margin(src, geometry, Margin.sides(*[-r for r in radii])).dense()
    outside_near = brute_reached_by(~src, geometry, radii, toward_source=True)
    want = src & ~outside_near
    assert got.sum() < src.sum()
    assert want.any() or name != "isotropic"
    np.testing.assert_array_equal(got, want)


def test_asymmetric_sides_follow_the_patient_not_the_voxel_order():
    # x index runs to the patient's right here (flipped): a left-only margin grows to lower x index
    geometry = Geometry((1.0, 1.0, 1.0), (0, 0, 0), (-1, 0, 0, 0, 1, 0, 0, 0, 1))
    src = np.zeros((5, 5, 9), bool)
    src[2, 2, 4] = True
    out = margin(src, geometry, Margin.sides(0, 2, 0, 0, 0, 0)).dense()
    assert np.flatnonzero(out[2, 2]).tolist() == [2, 3, 4]


def test_margin_works_on_the_box_only_and_keeps_the_grid():
    geometry = Geometry((0.98, 0.98, 2.5))
    mask = SparseMask((300, 512, 512), (150, 200, 200, 152, 204, 203), np.ones((2, 4, 3), bool))
    out = margin(mask, geometry, Margin.isotropic(5.0))
    assert out.shape == mask.shape
    assert out.bbox == (148, 195, 195, 154, 209, 208)


def test_ring_is_the_outer_margin_minus_the_inner():
    geometry = Geometry((1.0, 1.0, 2.0))
    src = np.zeros((10, 20, 20), bool)
    src[4:6, 8:12, 8:12] = True
    shell = ring(src, geometry, 2.0, 4.0).dense()
    outer = margin(src, geometry, Margin.isotropic(4.0)).dense()
    inner = margin(src, geometry, Margin.isotropic(2.0)).dense()
    np.testing.assert_array_equal(shell, outer & ~inner)
    assert not (shell & src).any()


def oblique() -> Geometry:
    """Rotated about z by 0.3 rad and about x by 0.2 rad, anisotropic, a flipped axis."""
    cz, sz, cx, sx = np.cos(0.3), np.sin(0.3), np.cos(0.2), np.sin(0.2)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    m = rz @ rx @ np.diag([1, -1, 1])
    return Geometry((0.9, 1.3, 2.0), (3.0, 1.0, -2.0), tuple(m.ravel()))


@pytest.mark.parametrize("name,radii", MARGINS, ids=[m[0] for m in MARGINS])
def test_margins_on_an_oblique_grid_match_brute_force(name, radii):
    geometry = oblique()
    rng = np.random.default_rng(11)
    shape = (8, 12, 12)
    src = random_structure(rng, shape)
    got = margin(src, geometry, Margin.sides(*radii)).dense()
    np.testing.assert_array_equal(got, brute_reached_by(src, geometry, radii, toward_source=False))
    solid = np.zeros(shape, bool)
    solid[1:8, 2:11, 1:10] = True
    solid[4, 5:7, 4:6] = False
    got = margin(solid, geometry, Margin.sides(*[-r for r in radii])).dense()
    np.testing.assert_array_equal(got, solid & ~brute_reached_by(~solid, geometry, radii, toward_source=True))


def test_isotropic_margin_on_an_oblique_grid_uses_the_fast_passes():
    c, s = np.cos(0.3), np.sin(0.3)
    geometry = Geometry((1, 1, 1), (0, 0, 0), (c, -s, 0, s, c, 0, 0, 0, 1))
    src = np.zeros((5, 5, 5), bool)
    src[2, 2, 2] = True
    assert margin(src, geometry, Margin.isotropic(1.0)).count == 7  # rotation invariant
    with pytest.raises(ContouringError, match="orthonormal"):
        margin(src, Geometry((1, 1, 1), (0, 0, 0), (1, 0.5, 0, 0, 1, 0, 0, 0, 1)), Margin.per_axis(1, 2, 3))


def test_mixed_signs_are_refused():
    with pytest.raises(ContouringError, match="expands"):
        Margin.sides(1, -1, 0, 0, 0, 0)


def test_stamping_falls_back_to_every_voxel_when_the_offsets_are_not_face_walkable():
    from napari_openmedlab.annotation.contouring._kernel import face_walkable, stamp

    offsets = np.array([[0, 0, 0], [0, 2, 1]])  # a knight's jump: no face step stays in the set
    reach = np.array([0, 2, 2])
    assert not face_walkable(offsets, reach)
    src = np.zeros((5, 9, 9), bool)
    src[1:4, 2:5, 2:5] = True  # (2, 5, 4) is reached only from the inner voxel (2, 3, 3)
    want = src.copy()
    want[1:4, 4:7, 3:6] = True
    np.testing.assert_array_equal(stamp(src, offsets, reach), want)
