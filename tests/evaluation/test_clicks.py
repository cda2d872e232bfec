"""The largest-error click simulator: where clicks land, their sign, determinism."""

import numpy as np
import pytest
from scipy import ndimage

from napari_openmedlab.evaluation.clicks import ClickSimulator, error_regions, interior_point

FACES = ndimage.generate_binary_structure(3, 1)


def ball(shape, centre, radius):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum((g - c) ** 2 for g, c in zip(grids, centre)) <= radius**2


def test_first_click_is_positive_at_the_centre_of_a_ball():
    gt = ball((21, 21, 21), (10, 10, 10), 6)
    click = ClickSimulator().next_click(gt)
    assert click.positive and click.label == 1 and click.zyx == (10, 10, 10)


def test_no_error_no_click_and_empty_object_refused():
    gt = ball((15, 15, 15), (7, 7, 7), 4)
    assert ClickSimulator().next_click(gt, gt.copy()) is None
    with pytest.raises(ValueError):
        ClickSimulator().next_click(np.zeros((5, 5, 5), bool))


def test_negative_click_in_a_false_positive_blob():
    gt = ball((20, 30, 30), (10, 10, 10), 5)
    pred = gt | ball((20, 30, 30), (10, 20, 22), 4)  # a spurious blob, larger than any miss
    click = ClickSimulator().next_click(gt, pred)
    assert not click.positive and click.zyx == (10, 20, 22)


def test_the_largest_component_wins_and_ties_go_to_false_negatives():
    gt = np.zeros((10, 30, 30), bool)
    gt[2:8, 2:8, 2:8] = True  # 216 voxels, predicted
    gt[2:8, 20:24, 20:24] = True  # 96 voxels missed
    pred = gt.copy()
    pred[2:8, 20:24, 20:24] = False
    pred[2:8, 12:16, 2:6] = True  # 96 voxels too many: a tie
    click = ClickSimulator().next_click(gt, pred)
    assert click.positive and 20 <= click.zyx[1] < 24
    pred[2:8, 12:17, 2:6] = True  # now the false positive is larger
    click = ClickSimulator().next_click(gt, pred)
    assert not click.positive and 12 <= click.zyx[1] < 17


def test_depth_is_measured_in_millimetres():
    """Two parts joined: a flat wide plate and a narrow tall column; the spacing decides."""
    region = np.zeros((12, 24, 40), bool)
    region[1:3, 2:21, 2:21] = True  # plate: 2 voxels thick (z), 19 wide
    region[1:11, 8:13, 28:33] = True  # column: 10 tall (z), 5 wide
    region[1:3, 10:11, 20:29] = True  # a thin bridge between them
    unit = interior_point(region, (1, 1, 1))
    assert 28 <= unit[2] < 33  # voxel units: the column is deeper (2.5 vs 1)
    thick_z = interior_point(region, (10, 1, 1))
    assert 2 <= thick_z[2] < 21  # 10 mm slices: the plate is 10 mm deep, the column 2.5 mm


def test_same_seed_same_clicks_and_seed_breaks_ties():
    gt = np.zeros((8, 8, 8), bool)
    gt[2:6, 2:6, 2:6] = True  # even size: 8 equally deep centre voxels
    picks = {ClickSimulator(seed=s).next_click(gt).zyx for s in range(40)}
    assert len(picks) > 1 and all(all(v in (3, 4) for v in p) for p in picks)
    assert all(ClickSimulator(seed=7).next_click(gt) == ClickSimulator(seed=7).next_click(gt)
               for _ in range(3))


def random_blobs(rng, shape, n):
    noise = ndimage.gaussian_filter(rng.random(shape), 1.5)
    return noise > np.quantile(noise, 1 - n)


@pytest.mark.parametrize("seed", range(25))
def test_randomised_click_lies_in_the_error_it_claims(seed):
    """Property: the click is in fn | fp, positive iff in fn, inside the largest component."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(8, 24, 3))
    gt = random_blobs(rng, shape, rng.uniform(0.1, 0.4))
    if not gt.any():
        gt[tuple(s // 2 for s in shape)] = True
    pred = None if seed % 5 == 0 else random_blobs(rng, shape, rng.uniform(0.05, 0.4))
    spacing = tuple(rng.uniform(0.5, 4.0, 3))
    sim = ClickSimulator(spacing, seed=seed)
    click = sim.next_click(gt, pred)
    fn, fp = error_regions(gt, pred)
    if not (fn | fp).any():
        assert click is None
        return
    assert click.positive == bool(fn[click.zyx])
    assert fn[click.zyx] or fp[click.zyx]
    side = fn if click.positive else fp
    labels, _ = ndimage.label(side, FACES)
    sizes = np.bincount(labels.ravel())[1:]
    other = fp if click.positive else fn
    other_max = np.bincount(ndimage.label(other, FACES)[0].ravel())[1:].max(initial=0)
    assert sizes[labels[click.zyx] - 1] == sizes.max() >= other_max
    # deterministic: the same seed gives the same click
    assert ClickSimulator(spacing, seed=seed).next_click(gt, pred) == click


def test_clicks_converge_on_a_simple_loop():
    """Feeding back 'prediction = previous prediction fixed around the click' ends the errors."""
    gt = ball((20, 20, 20), (10, 10, 10), 6)
    pred = np.zeros_like(gt)
    sim = ClickSimulator()
    for _ in range(50):
        click = sim.next_click(gt, pred)
        if click is None:
            break
        # an oracle engine that fixes the whole error component under the click
        fn, fp = error_regions(gt, pred)
        side = fn if click.positive else fp
        labels, _ = ndimage.label(side, FACES)
        pred = pred ^ (labels == labels[click.zyx])
    assert np.array_equal(pred, gt)
