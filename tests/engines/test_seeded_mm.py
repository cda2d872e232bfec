"""The weight-free engine in millimetres: the same object on any grid, no leaks, no whole-volume arrays."""

import tracemalloc

import numpy as np
import pytest
from scipy import ndimage

from napari_openmedlab.engines import Prompts
from napari_openmedlab.engines.seeded import SeededRegionEngine
from napari_openmedlab.engines.seeded_grid import block_factors, linear_upsample
from napari_openmedlab.evaluation.metrics import dice
from napari_openmedlab.io import Geometry, Volume


def phantom(spacing_mm: float, extent_mm=(40.0, 64.0, 80.0), seed=0):
    """Two 11 mm balls 28 mm apart joined by an 8 x 4 mm bridge 6 mm long, at 60 HU in 0 HU tissue, noise 12 HU.

    Built in physical millimetres, sampled on an isotropic grid of ``spacing_mm``.
    """
    shape = tuple(int(round(e / spacing_mm)) for e in extent_mm)
    z, y, x = (((np.arange(n) + 0.5) * spacing_mm)[tuple(slice(None) if i == a else None
                                                        for i in range(3))]
               for a, n in enumerate(shape))
    a = (z - 20) ** 2 + (y - 32) ** 2 + (x - 26) ** 2 <= 11**2
    b = (z - 20) ** 2 + (y - 32) ** 2 + (x - 54) ** 2 <= 11**2
    bridge = (np.abs(z - 20) <= 4) & (np.abs(y - 32) <= 2) & (x >= 26) & (x <= 54)
    rng = np.random.default_rng(seed)
    img = np.zeros(shape, np.float32)
    img[a | b | bridge] = 60.0
    img += rng.normal(0, 12, shape).astype(np.float32)
    volume = Volume(img.astype(np.int16), Geometry(spacing=(spacing_mm,) * 3))
    click = tuple(int(v / spacing_mm) for v in (20, 32, 26))
    return volume, a, b, click


@pytest.mark.parametrize("spacing_mm", [0.5, 2.0])
def test_radii_are_millimetres_the_same_object_on_a_fine_and_a_coarse_grid(spacing_mm):
    """One click in a ball on a 0.5 mm and on a 2 mm grid: the same ball (in mm^3), bridge cut on both."""
    volume, a, b, click = phantom(spacing_mm)
    engine = SeededRegionEngine()
    engine.set_volume(volume)
    mask = engine.predict(Prompts([click], [1])).to_mask()
    voxel_mm3 = spacing_mm**3
    assert dice(a, mask) > 0.85
    assert (mask & b).sum() < 0.05 * b.sum()  # the bridge (a fixed 8 x 4 mm) is cut on both grids
    volume_mm3 = mask.sum() * voxel_mm3
    assert abs(volume_mm3 - 4 / 3 * np.pi * 11**3) < 0.2 * 4 / 3 * np.pi * 11**3


def test_the_same_object_gives_a_similar_mask_on_both_grids():
    fine, a_fine, _, click_fine = phantom(0.5)
    coarse, _, _, click_coarse = phantom(2.0)
    masks = []
    for volume, click in ((fine, click_fine), (coarse, click_coarse)):
        engine = SeededRegionEngine()
        engine.set_volume(volume)
        masks.append(engine.predict(Prompts([click], [1])).to_mask())
    # the coarse mask seen on the fine grid (each 2 mm voxel is 4 x 4 x 4 fine ones)
    coarse_on_fine = masks[1].repeat(4, 0).repeat(4, 1).repeat(4, 2)[tuple(slice(0, n) for n in a_fine.shape)]
    assert dice(masks[0], coarse_on_fine) > 0.85


def test_no_leak_through_the_gaps_of_a_thin_bright_wall():
    """An organ against a rib wall (bone, 3 mm) with soft-tissue gaps, an arm of muscle behind it.

    The organ's own window holds the gap and the arm tissue: only the shape stops the leak.
    """
    sp = 0.8
    shape = (60, 100, 110)
    z, y, x = ((np.arange(n) * sp)[tuple(slice(None) if i == a else None for i in range(3))]
               for a, n in enumerate(shape))
    img = np.full(shape, -100.0, np.float32)  # fat
    organ = (z - 24) ** 2 + (y - 40) ** 2 + (x - 30) ** 2 <= 18**2
    wall = (x >= 48) & (x < 51) & (np.abs(y - 40) < 30) & (z >= 0)
    gaps = wall & ((z % 12) < 4)  # intercostal spaces: muscle, 4 mm wide every 12 mm
    arm = (x >= 51) & (x < 80) & (np.abs(y - 40) < 30) & (z >= 0)
    bridge = (x >= 44) & (x < 48) & (np.abs(y - 40) < 12)  # the organ lies against the wall
    img[organ | (bridge & ~organ & (img == -100))] = 60.0
    img[wall] = 400.0
    img[gaps] = 55.0
    img[arm] = 50.0
    img += np.random.default_rng(1).normal(0, 12, shape).astype(np.float32)
    volume = Volume(img.astype(np.int16), Geometry(spacing=(sp,) * 3))
    engine = SeededRegionEngine()
    engine.set_volume(volume)
    click = (int(24 / sp), int(40 / sp), int(30 / sp))
    mask = engine.predict(Prompts([click], [1])).to_mask()
    assert (mask & arm).sum() < 0.02 * arm.sum()
    assert dice(organ, mask & ~bridge) > 0.85


def test_a_click_on_a_thin_bright_wall_does_not_leak_into_the_tissue_beside_it():
    """A rib (350 HU, 4 mm thick) against a muscle (50 HU), fat around, on a 0.8 mm grid.

    The click's 4 mm neighbourhood holds bone, muscle and fat: its spread is capped, so the
    window stays on bone (the engine before took 57 % of the muscle).
    """
    sp = 0.8
    shape = (50, 80, 80)
    z, y, x = (((np.arange(n) + 0.5) * sp)[tuple(slice(None) if i == a else None for i in range(3))]
               for a, n in enumerate(shape))
    img = np.full(shape, -100.0, np.float32)
    rib = (np.abs(x - 30) <= 2) & (np.abs(y - 32) <= 6) & (z >= 0)
    muscle = (x > 32) & (x <= 50) & (np.abs(y - 32) <= 20) & (z >= 0)
    img[muscle] = 50.0
    img[rib] = 350.0
    img += np.random.default_rng(3).normal(0, 12, shape).astype(np.float32)
    volume = Volume(img.astype(np.int16), Geometry(spacing=(sp,) * 3))
    engine = SeededRegionEngine()
    engine.set_volume(volume)
    mask = engine.predict(Prompts([(25, 40, 37)], [1])).to_mask()
    assert (mask & muscle).sum() < 0.02 * muscle.sum()
    assert (mask & rib).sum() > 0.15 * rib.sum() and (mask & rib).sum() > 0.7 * mask.sum()


def test_a_negative_click_in_an_organ_of_the_same_density_keeps_the_vessel_beside_it():
    """A vein (8 mm radius) along an organ of the same density, no neck between them (the IVC
    along the liver): the first click leaks into the organ, a negative click deep in the organ
    takes it back and leaves the vein around the positive click whole."""
    shape = (40, 80, 80)
    z, y, x = (((np.arange(n) + 0.5))[tuple(slice(None) if i == a else None for i in range(3))]
               for a, n in enumerate(shape))
    img = np.full(shape, -100.0, np.float32)
    organ = (np.abs(x - 30) <= 18) & (np.abs(y - 40) <= 25) & (z >= 0)
    vessel = ((x - 52) ** 2 + (y - 40) ** 2 <= 8**2) & (z >= 0)
    img[organ | vessel] = 60.0
    img += np.random.default_rng(4).normal(0, 12, shape).astype(np.float32)
    volume = Volume(img.astype(np.int16), Geometry())
    engine = SeededRegionEngine()
    engine.set_volume(volume)
    pos, neg = (20, 40, 52), (20, 40, 28)
    near = vessel & ((z - 20.5) ** 2 + (y - 40.5) ** 2 + (x - 52.5) ** 2 <= 10**2)
    leaked = engine.predict(Prompts([pos], [1])).to_mask()
    assert (leaked & organ & ~vessel).sum() > 0.5 * organ.sum()  # no intensity edge: it leaks
    mask = engine.predict(Prompts([pos, neg], [1, 0])).to_mask()
    assert (mask & near).sum() > 0.95 * near.sum()  # the engine before kept 79 %
    assert (mask & organ & ~vessel).sum() < 0.05 * organ.sum()


def test_no_whole_volume_array_on_the_click_path():
    """tracemalloc: a click (and a click refining a mask) allocates far less than one boolean volume."""
    shape = (200, 200, 200)
    rng = np.random.default_rng(2)
    img = rng.normal(0, 12, shape).astype(np.float32)
    zz, yy, xx = np.ogrid[:200, :200, :200]
    obj = (zz - 100) ** 2 + (yy - 90) ** 2 + (xx - 110) ** 2 <= 9**2
    img[obj] += 60
    volume = Volume(img.astype(np.int16), Geometry())
    engine = SeededRegionEngine(margin_mm=30.0)
    engine.set_volume(volume)
    mask = np.zeros(shape, bool)
    mask[92:100, 85:95, 105:115] = True  # part of the object; the click adds the rest
    budget = volume.array.size // 2  # half of one boolean array of the volume, in bytes
    for prompts in (Prompts([[100, 90, 110]], [1]),
                    Prompts([[100, 90, 110], [100, 90, 119]], [1, 1]),
                    Prompts([[105, 90, 110]], [1], mask=mask)):
        tracemalloc.start()
        try:
            pred = engine.predict(prompts)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < budget, f"{peak / 1e6:.1f} MB allocated on a click"
        assert pred.patch.size < volume.array.size / 100  # the object's box, not the volume
        assert dice(obj, pred.to_mask()) > 0.85


def test_the_working_grid_is_made_once_per_volume(monkeypatch):
    """The block-averaged, smoothed volume is the engine's embedding: clicks only slice it."""
    volume, _, _, click = phantom(0.5)
    engine = SeededRegionEngine()
    engine.set_volume(volume)
    grid = engine.working_grid
    assert np.all(grid.factors == 2)  # 128 x 128 x 160 voxels > 1 M: averaged 2 x 2 x 2

    def fail(*args, **kwargs):
        raise AssertionError("the working grid was recomputed on a click")

    monkeypatch.setattr(ndimage, "gaussian_filter", fail)
    monkeypatch.setattr("napari_openmedlab.engines.seeded_grid.block_mean", fail)
    engine.predict(Prompts([click], [1]))
    engine.predict(Prompts([click, (click[0], click[1], click[2] + 10)], [1, 1]))
    assert engine.working_grid is grid


def test_block_factors_and_linear_upsampling():
    f = block_factors((300, 512, 512), (1.0, 0.7, 0.7), 1_000_000)
    assert np.prod(np.ceil(np.array([300, 512, 512]) / f)) <= 1_000_000 and f[1] == f[2]
    eff = f * np.array([1.0, 0.7, 0.7])
    assert eff.max() / eff.min() < 1.4  # working voxels about cubic
    assert list(block_factors((20, 247, 247), (2.0, 0.977, 0.977), 1_000_000)) == [1, 2, 2]
    assert list(block_factors((20, 64, 64), (2.0, 1.0, 1.0), 1_000_000)) == [1, 1, 1]
    rng = np.random.default_rng(0)
    a = rng.random((5, 7, 6)).astype(np.float32)
    for factors in ((3, 4, 4), (1, 2, 2), (2, 1, 3)):
        expected = ndimage.zoom(a, [float(f) for f in factors], order=1, mode="nearest", grid_mode=True)
        np.testing.assert_allclose(linear_upsample(a, np.array(factors)), expected, atol=1e-6)
