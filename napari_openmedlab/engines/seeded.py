"""A weight-free 3D engine: adaptive-threshold region growing from clicks, split by negative clicks.

It needs no model file, runs on the CPU in a fraction of a second per click, and is the baseline
the foundation models are compared against (see ``docs/results.md``).

Every size is in millimetres, so the same object gives the same mask on a 0.5 mm and a 3 mm
grid; the only voxel count is ``max_voxels``, the working grid's budget.

``set_volume`` block-averages the volume once onto the **working grid** (at most about
``max_voxels`` voxels in a box of ``2 x margin_mm``; the finest axes are coarsened first and
square pixels stay square) and smooths it (Gaussian, ``sigma_mm``): see
:mod:`.seeded_grid`. Every click then slices those arrays; nothing on the click path is as
large as the volume, and the answer is a :class:`~.base.Prediction` the size of the object.

How a prediction is made from all the clicks of the current object (nothing is remembered
between calls: the same prompts always give the same mask):

1. **Working box.** The working grid within ``margin_mm`` of the positive clicks (and of
   ``prompts.mask``).
2. **Intensity window per positive click.** The median ``m`` of the smoothed voxels within
   ``stats_radius_mm`` of the click and their robust spread ``s`` (1.4826 x MAD; at least half
   that of the unsmoothed voxels, so that low-noise images keep the boundary voxels the
   smoothing blurred; at least ``s_floor``, at most ``max_spread x s_floor`` so that a click
   among bone and soft tissue does not open the window to both) give the window ``m +- k s``.
   ``s_floor`` defaults to 0.8 % of the volume's 1..99 percentile range: 10 HU on CT, a
   comparable fraction on MRI. A negative click whose intensity is clearly outside the
   window (``> neg_separation x s`` from ``m``) *and* outside every other positive click's
   narrows the window on its side to half-way between the two; one of an intensity the object
   holds elsewhere (a heterogeneous organ) counts only by its position (step 4).
3. **Growing with leak guards.** The click's 6-connected component inside its window (holes
   filled, so noise does not shrink its depth) is opened by a ball of ``open_fraction`` x its
   depth at the click, in mm, to cut thin bridges (gaps between ribs, a vessel into the arm),
   re-grown by one voxel, and limited to a ball around the click of radius ``first_reach`` x
   depth for the first positive click, ``next_reach`` x depth (depth of the not-yet-segmented
   part) for later ones, never under ``min_reach_mm``. Then rings of one working voxel around
   the grown parts, as many as make ``boundary_mm`` along the coarsest axis, are added where the *unsmoothed* value lies in a click's
   window, widened to the unsmoothed spread (the smoothing had moved the window's edge
   inwards), and holes are filled. A later positive click within ``touch_mm`` of the object
   whose value fits the object's windows (or whose own window overlaps one of them), or whose
   neighbourhood is mixed (spread over
   ``touch_spread x s_floor``: a partial-volume voxel), marks a miss on its surface: it only
   adds the voxels within ``touch_radius_mm`` whose own value fits the earlier windows. One on
   a homogeneous tissue of its own (air in the stomach) grows a new part.
4. **Negative clicks inside the object** split it: each claims at most a ball of radius
   ``max(neg_reach x its depth in the object, min_reach_mm)`` (a whole leaked neighbour when it
   sits deep in one, a bump when it sits near the surface); inside those balls a marker
   watershed on the inverted distance map, from balls of ``seed_radius_mm`` around the clicks
   and from the object outside the balls, cuts at the narrowest necks; the parts holding
   positive clicks stay. Where there is no neck (a vein along an organ of the same density) a
   negative click never takes the voxels within ``split_nearest`` x its distance of a positive
   click. When a mask is refined without positive clicks the balls are smaller (2 x depth).
5. **Back on the volume's grid.** The working-grid mask is interpolated linearly over the
   object's box only; where the interpolation is unsure (0.25..0.75) the voxel's own value
   decides (``refine_edges``), so the coarse grid's blur adds or drops no shell of voxels.
   Positive clicks always belong to the answer.

``prompts.mask`` (an existing segmentation to refine) is the starting object: positive clicks
grow it as in step 3, negative clicks split it as in step 4. Negative clicks alone, without a
mask, give an empty prediction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..io.volume import Volume
from .base import CancelFlag, Cancelled, Engine, EngineError, Prediction, ProgressCallback, Prompts
from .seeded_grid import WorkingGrid, bbox_of, upsample_patch

__all__ = ["SeededParams", "SeededRegionEngine"]

_FACES = ndimage.generate_binary_structure(3, 1)
RAW_SPREAD_WEIGHT = 0.5


@dataclass
class SeededParams:
    """Tuning of :class:`SeededRegionEngine`; the defaults were chosen on abdominal CT organs.

    ``*_mm`` are millimetres; ``*_reach``, ``open_fraction`` and ``split_nearest`` are multiples
    of a distance in mm (a depth in the object, a distance between clicks); ``k``,
    ``neg_separation``, ``touch_spread`` and ``max_spread`` multiples of an intensity spread.
    See the module docstring for what each does.
    """

    margin_mm: float = 120.0
    max_voxels: int = 1_000_000
    sigma_mm: float = 1.0
    stats_radius_mm: float = 4.0
    k: float = 2.5
    s_floor: float | None = None  # None: 0.8 % of the volume's robust intensity range
    neg_separation: float = 1.5
    open_fraction: float = 0.5
    first_reach: float = 6.0
    next_reach: float = 3.0
    min_reach_mm: float = 10.0
    seed_radius_mm: float = 4.0
    neg_reach: float = 8.0
    touch_mm: float = 4.0
    touch_radius_mm: float = 5.0
    touch_spread: float = 3.0
    max_spread: float = 7.0
    fill_holes: bool = True
    boundary_mm: float = 6.0
    split_nearest: float = 0.6
    refine_edges: bool = True


def _ball_offsets(radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Integer offsets ``(n, 3)`` of the voxels within ``radius_mm`` of a voxel (itself included)."""
    reach = np.floor(radius_mm / spacing + 1e-6).astype(int)
    grid = np.mgrid[tuple(slice(-r, r + 1) for r in reach)].reshape(3, -1).T
    return grid[np.sqrt(((grid * spacing) ** 2).sum(1)) <= radius_mm + 1e-6]


def _around(shape, p, offsets: np.ndarray) -> tuple[np.ndarray, ...]:
    idx = np.asarray(p, int) + offsets
    ok = np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)
    return tuple(idx[ok].T)


def _ball_mask(shape, centre, radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Boolean array of ``shape``: the voxels within ``radius_mm`` of voxel ``centre``."""
    axes = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) * h) ** 2 for g, c, h in zip(axes, centre, spacing)) <= radius_mm**2


def _crop_around(shape, centre, radius_mm: float, spacing: np.ndarray) -> tuple[slice, ...]:
    """The slices of the box that holds the ball of ``radius_mm`` around ``centre``, clipped."""
    reach = np.ceil(radius_mm / spacing).astype(int)
    return tuple(slice(max(int(c - r), 0), min(int(c + r + 1), n))
                 for c, r, n in zip(centre, reach, shape))


def _bbox_slices(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    """The bounding box of ``mask`` grown by ``pad`` voxels, clipped to it (all of it when empty)."""
    bounds = bbox_of(mask)
    if bounds is None:
        return tuple(slice(0, n) for n in mask.shape)
    return tuple(slice(max(int(a) - pad, 0), min(int(b) + pad, n))
                 for a, b, n in zip(*bounds, mask.shape))


def _distance_to(shape, points, spacing: np.ndarray) -> np.ndarray:
    """Distance in mm from every voxel of a grid of ``shape`` to the nearest of ``points``."""
    seeds = np.ones(shape, bool)
    seeds[tuple(np.asarray(points).T)] = False
    return ndimage.distance_transform_edt(seeds, sampling=spacing)


def _components_at(mask: np.ndarray, points) -> np.ndarray:
    """The 6-connected components of ``mask`` that hold any of ``points``."""
    labels, _ = ndimage.label(mask, _FACES)
    ids = {int(labels[tuple(p)]) for p in points} - {0}
    if not ids:
        return np.zeros(mask.shape, bool)
    return np.isin(labels, sorted(ids))


def _robust_stats(smooth: np.ndarray, raw: np.ndarray, floor: float) -> tuple[float, float, float]:
    """Centre (median of the smoothed values), their spread (1.4826 x MAD, floored), raw spread."""
    m = float(np.median(smooth))
    raw = np.asarray(raw, dtype=np.float32)
    spread_raw = 1.4826 * float(np.median(np.abs(raw - np.median(raw))))
    spread_smooth = 1.4826 * float(np.median(np.abs(smooth - m)))
    s = max(spread_smooth, RAW_SPREAD_WEIGHT * spread_raw, floor)
    return m, s, max(s, spread_raw)


def _open(mask: np.ndarray, radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Morphological opening by a ball (at least the 6-neighbourhood cross)."""
    if radius_mm <= spacing.min() * 1.01:
        return ndimage.binary_opening(mask, _FACES)
    core = ndimage.distance_transform_edt(mask, sampling=spacing) > radius_mm
    if not core.any():
        return core
    return ndimage.distance_transform_edt(~core, sampling=spacing) <= radius_mm


class SeededRegionEngine(Engine):
    """Weight-free seeded 3D segmentation from positive/negative clicks (and an optional mask).

    Works on CT and MRI alike: intensity windows come from the clicked voxels, never from fixed
    Hounsfield values. See the module docstring for the method and :class:`SeededParams`.
    """

    name = "seeded-region"
    supports_boxes = False

    def __init__(self, params: SeededParams | None = None, **overrides) -> None:
        super().__init__()
        params = params or SeededParams()
        for key, value in overrides.items():
            if not hasattr(params, key):
                raise TypeError(f"unknown SeededRegionEngine parameter {key!r}")
            setattr(params, key, value)
        self.params = params
        self._spacing = np.ones(3)
        self._s_floor = 1.0
        self._grid: WorkingGrid | None = None

    @property
    def working_grid(self) -> WorkingGrid:
        """The volume block-averaged and smoothed in ``set_volume`` (what every click works on)."""
        if self._grid is None:
            raise EngineError(f"{self.name}: no volume set; call set_volume(volume) before predict")
        return self._grid

    # --- Engine API ---------------------------------------------------------------------------
    def _set_volume(self, volume: Volume, progress: ProgressCallback | None) -> None:
        self._spacing = np.asarray(volume.geometry.spacing_zyx, float)
        a = volume.array
        if self.params.s_floor is not None:
            self._s_floor = float(self.params.s_floor)
        else:
            step = max(1, int(round((a.size / 200_000) ** (1 / 3))))
            sample = np.asarray(a[::step, ::step, ::step], dtype=np.float32)
            lo, hi = np.percentile(sample, [1, 99]) if sample.size else (0.0, 1.0)
            self._s_floor = max(0.008 * float(hi - lo), 1e-6)
        if progress:
            progress(0.1, "averaging onto the working grid")
        p = self.params
        self._grid = WorkingGrid.build(a, self._spacing, 2 * p.margin_mm, p.max_voxels, p.sigma_mm)
        if progress:
            progress(1.0, "ready")

    def _predict(
        self, prompts: Prompts, progress: ProgressCallback | None, cancel: CancelFlag | None
    ) -> Prediction:
        t0 = time.perf_counter()
        grid = self.working_grid
        shape = np.asarray(self.volume.shape)
        points = np.clip(np.round(prompts.points).astype(int), 0, shape - 1)
        pos = points[prompts.labels == 1]
        neg = points[prompts.labels == 0]
        mask, mask_bounds = None, None
        if prompts.mask is not None:
            mask = np.asarray(prompts.mask, dtype=bool)
            if mask.shape != tuple(shape):
                raise ValueError(f"prompts.mask has shape {mask.shape}, the volume {tuple(shape)}")
            mask_bounds = bbox_of(mask)
            if mask_bounds is None:
                mask = None
        if len(pos) == 0 and mask is None:  # negative clicks alone: nothing to segment
            return self._empty(t0)

        def step(fraction: float, what: str) -> None:
            if cancel is not None and cancel():
                raise Cancelled(f"{self.name}: cancelled while {what}")
            if progress is not None:
                progress(fraction, what)

        # 1. working box on the working grid (a view of the arrays made in set_volume)
        step(0.0, "cropping")
        p = self.params
        spacing = grid.spacing
        margin = np.ceil(p.margin_mm / spacing).astype(int)
        anchors = [grid.to_work(pos)] if len(pos) else []
        if mask_bounds is not None:
            anchors.append(np.stack([grid.to_work(mask_bounds[0]), grid.to_work(mask_bounds[1] - 1)]))
        anchors = np.concatenate(anchors)
        lo = np.maximum(anchors.min(0) - margin, 0)
        hi = np.minimum(anchors.max(0) + margin + 1, grid.work_shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        unsmoothed = grid.raw[box]
        work = grid.smooth[box]
        wshape = np.asarray(work.shape)
        wpos = [grid.to_work(q) - lo for q in pos]
        wneg = [grid.to_work(q) - lo for q in neg
                if np.all(grid.to_work(q) >= lo) and np.all(grid.to_work(q) < hi)]
        region = np.zeros(work.shape, bool)
        if mask is not None:
            region = grid.mask_to_work(mask, lo, hi)
        # 2.-3. grow from each positive click
        stats_offsets = _ball_offsets(p.stats_radius_mm, spacing)
        neg_offsets = _ball_offsets(min(p.stats_radius_mm, 3.0), spacing)
        neg_values = [float(np.median(work[_around(wshape, q, neg_offsets)])) for q in wneg]
        stats = []
        for q in wpos:
            patch = _around(wshape, q, stats_offsets)
            m, s, s_raw = _robust_stats(work[patch], unsmoothed[patch], self._s_floor)
            if p.max_spread > 0:  # a mixed neighbourhood (bone and soft tissue): keep to the click's
                cap = p.max_spread * self._s_floor
                s, s_raw = min(s, cap), min(s_raw, max(cap, s))
            stats.append((m, s, s_raw))
        # a negative click of an intensity that another positive click holds (a heterogeneous
        # organ, or a neighbour of the same density) says nothing about intensities: only its
        # position counts (step 4)
        neg_values = [v for v in neg_values
                      if all(abs(v - m) > p.neg_separation * s for m, s, _ in stats)]
        windows: list[tuple[float, float]] = []
        grown = np.zeros(work.shape, bool)
        for i, q in enumerate(wpos):
            step(0.1 + 0.6 * i / max(len(wpos), 1), "growing")
            if region[tuple(q)]:
                continue
            first = not region.any()
            m, s, s_raw = stats[i]
            low, high = m - p.k * s, m + p.k * s
            for v in neg_values:
                if v > m + p.neg_separation * s:
                    high = min(high, max((m + v) / 2, m + s))
                elif v < m - p.neg_separation * s:
                    low = max(low, min((m + v) / 2, m - s))
            value = float(unsmoothed[tuple(q)])
            touching = not first and p.touch_radius_mm > 0 and region[
                _around(wshape, q, _ball_offsets(p.touch_mm, spacing))].any()
            # the click's own value fits the object so far, or its own window overlaps one of the
            # object's (a partial-volume voxel between the object and its surroundings)
            fits = not windows or any(a <= value <= b or (low <= b and a <= high) for a, b in windows)
            if touching and (fits or s > p.touch_spread * self._s_floor):
                # a miss on the object's surface, of the object's own intensity or on an edge
                # (a mixed neighbourhood): patch it locally with voxels near it whose value fits
                # the object's windows so far; a new part grows only from a homogeneous tissue
                # of its own (air in the stomach), never from a partial-volume voxel
                ball = _crop_around(wshape, q, p.touch_radius_mm, spacing)
                sub_u, sub_r = unsmoothed[ball], region[ball]
                if windows:
                    fits = np.zeros(sub_u.shape, bool)
                    for w_low, w_high in windows:
                        fits |= (sub_u >= w_low) & (sub_u <= w_high)
                else:
                    fits = (work[ball] >= low) & (work[ball] <= high)
                lq = tuple(int(c - sl.start) for c, sl in zip(q, ball))
                fits[lq] = True
                in_ball = _ball_mask(fits.shape, lq, p.touch_radius_mm, spacing)
                comp = _components_at(fits & in_ball | sub_r, [lq]) & ~sub_r
                region[ball] |= comp
                grown[ball] |= comp
                continue
            window = (work >= low) & (work <= high)
            window[tuple(q)] = True
            if not first:
                window &= ~region
            comp = _components_at(window, [q])
            # the rest works on the component's bounding box only
            crop = _bbox_slices(comp, pad=1)
            sub = comp[crop]
            if p.fill_holes:  # noise holes would make the depth, hence every radius, too small
                sub = ndimage.binary_fill_holes(sub) & (window[crop] | ~region[crop])
            lq = tuple(int(c - sl.start) for c, sl in zip(q, crop))
            depth = float(ndimage.distance_transform_edt(sub, sampling=spacing)[lq])
            opened = _open(sub, max(p.open_fraction * depth, spacing.min()), spacing)
            if opened[lq]:
                sub = ndimage.binary_dilation(_components_at(opened, [lq]), _FACES) & sub
            reach = max((p.first_reach if first else p.next_reach) * depth, p.min_reach_mm)
            sub = _components_at(sub & _ball_mask(sub.shape, lq, reach, spacing), [lq])
            region[crop] |= sub
            grown[crop] |= sub
            widen = p.k * (s_raw - s)  # unsmoothed values scatter more
            windows.append((low - widen, high + widen))
        rings = int(np.ceil(p.boundary_mm / spacing.max() - 1e-6))
        if windows and rings > 0:
            # the smoothing moves a window's edge inside the object: take back the outer rings of
            # voxels whose own (unsmoothed) value lies in a click's window, up to boundary_mm
            crop = _bbox_slices(grown, pad=rings)
            g_sub, r_sub, u_sub = grown[crop], region[crop], unsmoothed[crop]
            for _ in range(rings):
                ring = ndimage.binary_dilation(g_sub, _FACES) & ~r_sub
                values = u_sub[ring]
                ok = np.zeros(values.shape, bool)
                for low, high in windows:
                    ok |= (values >= low) & (values <= high)
                if not ok.any():
                    break
                r_sub[ring] = ok
                g_sub[ring] = ok
        if p.fill_holes and region.any():
            crop = _bbox_slices(region, pad=0)
            region[crop] = ndimage.binary_fill_holes(region[crop])

        # 4. negative clicks inside the object split it
        inside = [q for q in wneg if region[tuple(q)]]
        if inside:
            step(0.75, "splitting")
            region = self._split(region, wpos, inside, spacing)
            if p.fill_holes and region.any():
                crop = _bbox_slices(region, pad=0)
                region[crop] = ndimage.binary_fill_holes(region[crop])

        # back to the volume's grid: a patch the size of the object
        step(0.9, "resampling")
        decide = None
        if windows and p.refine_edges:
            def decide(band: np.ndarray, start: np.ndarray) -> np.ndarray:
                # near the working grid's boundary the voxel's own value decides, on the volume's
                # grid: the coarse voxels' blur would otherwise add or drop a whole shell
                sl = tuple(slice(int(a), int(a) + n) for a, n in zip(start, band.shape))
                values = self.volume.array[sl][band]
                ok = np.zeros(values.shape, bool)
                for w_low, w_high in windows:
                    ok |= (values >= w_low) & (values <= w_high)
                return ok
        patch_lo, patch = upsample_patch(region, grid.factors, lo, tuple(shape), decide)
        return self._prediction(patch, patch_lo, pos, t0)

    # --- helpers ------------------------------------------------------------------------------
    def _split(self, region, wpos, wneg, spacing) -> np.ndarray:
        """Cut the parts of ``region`` that the negative clicks ``wneg`` (all inside it) claim.

        A negative click claims at most a ball of radius ``max(neg_reach x its depth in the
        object, min_reach_mm)``: deep in a leaked neighbour that covers the neighbour, near the
        surface it trims a bump. Inside those balls a watershed on the inverted distance map, from the
        clicks (and the object beyond the balls), cuts at the narrowest necks.
        """
        from skimage.segmentation import watershed

        p = self.params
        sl = _bbox_slices(region, pad=0)
        lo = np.array([s.start for s in sl])
        sub = region[sl]
        inside = lambda q: bool(np.all(q >= 0) and np.all(q < sub.shape))  # noqa: E731
        pos = [q for q in (np.asarray(q) - lo for q in wpos) if inside(q)]
        neg = [np.asarray(q) - lo for q in wneg]
        depth = ndimage.distance_transform_edt(np.pad(sub, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
        grid = np.ogrid[tuple(slice(0, n) for n in sub.shape)]
        claimed = np.zeros(sub.shape, bool)
        factor = p.neg_reach if pos else 2.0  # refining a mask alone: keep most of it
        for q in neg:
            reach = max(factor * float(depth[tuple(q)]), p.min_reach_mm)
            claimed |= sum(((g - c) * h) ** 2 for g, c, h in zip(grid, q, spacing)) <= reach**2
        seed = _ball_offsets(p.seed_radius_mm, spacing)
        markers = np.zeros(sub.shape, np.int32)
        markers[sub & ~claimed] = 1
        for q in neg:
            markers[_around(sub.shape, q, seed)] = 2
        for q in pos:
            markers[_around(sub.shape, q, seed)] = 1
        markers[~sub] = 0
        if not (markers == 1).any():
            return np.zeros_like(region)
        kept_sub = watershed(-depth, markers, mask=sub) == 1
        if pos and p.split_nearest > 0:
            # where the object has no neck (a vessel along an organ of the same density), the
            # negative click's basin swallows the positive ones' part too: it only takes the
            # voxels nearer (in mm) to a negative click than to every positive one
            to_neg = _distance_to(sub.shape, neg, spacing)
            to_pos = _distance_to(sub.shape, pos, spacing)
            kept_sub |= sub & (to_pos <= p.split_nearest * to_neg)
        if pos:
            kept_sub = _components_at(kept_sub, [q for q in pos if kept_sub[tuple(q)]])
        kept = np.zeros_like(region)
        kept[sl] = kept_sub
        return kept

    def _empty(self, t0: float) -> Prediction:
        return Prediction(
            (0, 0, 0, 0, 0, 0), np.zeros((0, 0, 0), bool), self.volume.shape,
            timings={"total": time.perf_counter() - t0},
        )

    def _prediction(self, patch: np.ndarray, lo: np.ndarray, pos: np.ndarray, t0: float) -> Prediction:
        """Trim ``patch`` (corner ``lo`` on the volume grid) to its object; positive clicks belong to it."""
        shape = np.asarray(self.volume.shape)
        if len(pos):  # a positive click is always part of the answer: widen the patch to hold them
            new_lo = np.minimum(lo, pos.min(0)) if patch.size else pos.min(0)
            new_hi = np.maximum(lo + patch.shape, pos.max(0) + 1) if patch.size else pos.max(0) + 1
            if np.any(new_lo < lo) or np.any(new_hi > lo + patch.shape) or not patch.size:
                grown = np.zeros(tuple(int(v) for v in new_hi - new_lo), bool)
                if patch.size:
                    off = lo - new_lo
                    grown[tuple(slice(int(o), int(o + n)) for o, n in zip(off, patch.shape))] = patch
                patch, lo = grown, new_lo
            patch[tuple((pos - lo).T)] = True
        bounds = bbox_of(patch) if patch.size else None
        if bounds is None:
            return self._empty(t0)
        b_lo, b_hi = bounds
        sub = patch[tuple(slice(int(x), int(y)) for x, y in zip(b_lo, b_hi))]
        start = lo + b_lo
        bbox = tuple(int(v) for v in start) + tuple(int(v) for v in np.minimum(start + sub.shape, shape))
        if sub is not patch:
            sub = sub.copy()
        return Prediction(bbox, sub, self.volume.shape, timings={"total": time.perf_counter() - t0})
