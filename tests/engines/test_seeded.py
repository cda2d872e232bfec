"""The weight-free seeded-region engine: contract, behaviour on synthetic shapes, real CT quality."""

import time

import numpy as np
import pytest

from napari_openmedlab.engines import Cancelled, PromptError, Prompts, create_engine
from napari_openmedlab.engines.seeded import SeededRegionEngine
from napari_openmedlab.evaluation.clicks import ClickSimulator
from napari_openmedlab.evaluation.metrics import dice
from napari_openmedlab.io import Geometry, Volume, read_volume


def ball(shape, centre, radius, spacing=(1.0, 1.0, 1.0)):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) * s) ** 2 for g, c, s in zip(grids, centre, spacing)) <= radius**2


def noisy_ct(objects, shape=(40, 64, 64), spacing=(2.0, 1.0, 1.0), seed=0):
    """Body at 0 HU in air, objects at 60 HU, Gaussian noise of 12 HU."""
    rng = np.random.default_rng(seed)
    a = np.full(shape, -1000.0)
    a[:, 4:-4, 4:-4] = 0.0
    for obj in objects:
        a[obj] = 60.0
    a += rng.normal(0, 12, shape)
    return Volume(a.astype(np.int16), Geometry(spacing=tuple(spacing[::-1])))


@pytest.fixture
def two_balls():
    """Two equal balls joined by a thin bridge, as two organs of the same density touching."""
    shape, sp = (40, 64, 64), (2.0, 1.0, 1.0)
    a = ball(shape, (20, 32, 20), 11, sp)
    b = ball(shape, (20, 32, 44), 11, sp)
    bridge = np.zeros(shape, bool)
    bridge[18:22, 30:34, 20:45] = True  # 8 mm x 4 mm: cut by the default opening, not by 1 voxel
    return noisy_ct([a, b, bridge], shape, sp), a, b


def test_registry_builds_it_and_contract():
    engine = create_engine("seeded-region")
    assert isinstance(engine, SeededRegionEngine)
    assert engine.name == "seeded-region" and not engine.supports_boxes


def test_one_click_segments_a_ball_and_is_deterministic(two_balls):
    volume, a, _ = two_balls
    engine = SeededRegionEngine()
    engine.set_volume(volume)
    prompts = Prompts([[20, 32, 20]], [1])
    p1 = engine.predict(prompts)
    p2 = engine.predict(prompts)
    assert np.array_equal(p1.to_mask(), p2.to_mask()) and p1.bbox == p2.bbox
    assert p1.shape == volume.shape and p1.patch.shape == tuple(
        p1.bbox[i + 3] - p1.bbox[i] for i in range(3))
    assert dice(a, p1.to_mask()) > 0.9  # the thin bridge is cut by the opening
    assert "total" in p1.timings


def test_negative_click_removes_the_neighbour(two_balls):
    volume, a, b = two_balls
    engine = SeededRegionEngine(open_fraction=0.0, first_reach=100.0)  # let it leak first
    engine.set_volume(volume)
    leaked = engine.predict(Prompts([[20, 32, 20]], [1])).to_mask()
    assert (leaked & b).sum() > 0.5 * b.sum()
    fixed = engine.predict(Prompts([[20, 32, 20], [20, 32, 44]], [1, 0])).to_mask()
    assert (fixed & b).sum() < 0.05 * b.sum()
    assert dice(a, fixed) > 0.9


def test_negative_clicks_alone_give_an_empty_mask(two_balls):
    volume, _, _ = two_balls
    engine = SeededRegionEngine()
    engine.set_volume(volume)
    pred = engine.predict(Prompts([[20, 32, 20]], [0]))
    assert pred.empty and not pred.to_mask().any()


def test_empty_prompts_and_outside_clicks_are_refused(two_balls):
    volume, _, _ = two_balls
    engine = SeededRegionEngine()
    engine.set_volume(volume)
    with pytest.raises(PromptError):
        engine.predict(Prompts())
    with pytest.raises(PromptError):
        engine.predict(Prompts([[20, 32, 500]], [1]))


def test_mask_refinement_negative_splits_and_positive_grows(two_balls):
    volume, a, b = two_balls
    engine = SeededRegionEngine()
    engine.set_volume(volume)
    # a mask covering both balls: a negative click in the second removes it, the first stays
    both = a | b
    out = engine.predict(Prompts([[20, 32, 44]], [0], mask=both)).to_mask()
    assert dice(a, out) > 0.9 and (out & b).sum() < 0.05 * b.sum()
    # a mask of the first ball only: a positive click in the second adds it, the first stays
    out = engine.predict(Prompts([[20, 32, 44]], [1], mask=a)).to_mask()
    assert dice(a | b, out) > 0.85 and (out & a).sum() == a.sum()
    # a mask alone is returned as it is (holes filled)
    out = engine.predict(Prompts(mask=a)).to_mask()
    assert np.array_equal(out, a)
    with pytest.raises(ValueError):
        engine.predict(Prompts([[20, 32, 20]], [1], mask=np.ones((3, 3, 3), bool)))


def test_progress_and_cancel(two_balls):
    volume, _, _ = two_balls
    engine = SeededRegionEngine()
    engine.set_volume(volume)
    seen = []
    engine.predict(Prompts([[20, 32, 20]], [1]), progress=lambda f, w: seen.append((f, w)))
    assert seen and all(0 <= f <= 1 for f, _ in seen)
    with pytest.raises(Cancelled):
        engine.predict(Prompts([[20, 32, 20]], [1]), cancel=lambda: True)


def test_large_volume_is_worked_on_a_coarser_grid():
    """A big box is block-averaged to ``max_voxels``; the mask comes back on the full grid."""
    shape, sp = (60, 160, 160), (1.0, 0.7, 0.7)
    obj = ball(shape, (30, 80, 70), 20, sp)
    volume = noisy_ct([obj], shape, sp)
    engine = SeededRegionEngine(max_voxels=40_000)
    engine.set_volume(volume)
    factors = engine.working_grid.factors
    assert np.prod(np.ceil(np.asarray(shape) / factors)) <= 40_000 and factors.max() > 1
    assert factors[1] == factors[2]  # square pixels stay square
    pred = engine.predict(Prompts([[30, 80, 70]], [1]))
    assert pred.shape == shape
    assert dice(obj, pred.to_mask()) > 0.9


def test_mri_like_intensities_work_without_hounsfield_defaults():
    """Arbitrary units: the window comes from the clicked voxels, the noise floor from the range."""
    shape = (30, 48, 48)
    rng = np.random.default_rng(3)
    obj = ball(shape, (15, 24, 24), 9)
    a = 300 + rng.normal(0, 8, shape)
    a[obj] = 420 + rng.normal(0, 8, obj.sum())
    volume = Volume(a.astype(np.float32), Geometry())
    engine = SeededRegionEngine()
    engine.set_volume(volume)
    assert dice(obj, engine.predict(Prompts([[15, 24, 24]], [1])).to_mask()) > 0.9


@pytest.mark.parametrize("organ, clicks, minimum", [(1, 3, 0.85), (5, 3, 0.8), (3, 1, 0.85)])
def test_sample_ct_organs_with_simulated_clicks(shared_data, organ, clicks, minimum):
    """Spleen, liver, left kidney of the sample CT (3 mm): the baseline stays decent and fast."""
    ct = read_volume(shared_data / "totalseg-ct" / "ct.nii.gz")
    gt = read_volume(shared_data / "totalseg-ct" / "seg.nii.gz").array == organ
    engine = SeededRegionEngine()
    engine.set_volume(ct)
    sim = ClickSimulator(ct.geometry.spacing_zyx, seed=0)
    prompts, pred, slowest = Prompts(), None, 0.0
    for _ in range(clicks):
        click = sim.next_click(gt, pred)
        prompts = prompts.add_point(click.zyx, click.positive)
        t0 = time.perf_counter()
        pred = engine.predict(prompts).to_mask()
        slowest = max(slowest, time.perf_counter() - t0)
    assert dice(gt, pred) > minimum
    assert slowest < 2.0  # typically 0.05-0.3 s on 2 CPU cores
