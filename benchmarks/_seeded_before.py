"""FROZEN BASELINE, not used by the plugin: the seeded-region engine as it was before the mm/speed rework.

Kept only so that benchmarks/bench_weight_free.py and benchmarks/eval_real_data.py can measure
the old and the new engine side by side in one run. The engine itself is
napari_openmedlab/engines/seeded.py.

A weight-free 3D engine: adaptive-threshold region growing from clicks, split by negative clicks.

It needs no model file, runs on the CPU in a fraction of a second per click, and is the baseline
the foundation models are compared against (see ``docs/results.md``).

How a prediction is made from all the clicks of the current object (nothing is remembered
between calls: the same prompts always give the same mask):

1. **Working region.** A box around the positive clicks (and around ``prompts.mask``) with a
   ``margin_mm`` border. When that box holds more than ``max_voxels`` voxels it is block-averaged
   by integer factors (finest axes first), so a 512 x 512 x 300 CT costs about as much as a small
   one; the mask is brought back to the full grid by linear interpolation at the end.
2. **Intensity window per positive click.** The image is smoothed (Gaussian, ``sigma_mm``);
   the median ``m`` of the smoothed voxels within ``stats_radius_mm`` of the click and their
   robust spread ``s`` (1.4826 x MAD; at least half that of the unsmoothed voxels, so that
   low-noise images keep the boundary voxels the smoothing blurred; at least ``s_floor``) give
   the window ``m +- k s``. A negative click whose intensity is clearly outside that
   (``> neg_separation`` x ``s`` from ``m``) narrows the window on its side to half-way between
   the two. ``s_floor`` defaults to 0.8 % of the volume's
   1..99 percentile range: 10 HU on CT, a comparable fraction on MRI.
3. **Growing with leak guards.** The click's 6-connected component inside its window is opened
   by a radius ``open_fraction`` x its local depth (at least one voxel) to cut thin bridges into
   neighbouring tissue, re-grown by one voxel, and limited to a ball around the click of radius
   ``first_reach`` x depth for the first positive click, ``next_reach`` x depth (depth of the
   not-yet-segmented part) for later ones, never under ``min_reach_mm``. Then up to
   ``boundary_rings`` one-voxel rings around the grown parts are added where the *unsmoothed*
   value lies in a click's window, widened to the unsmoothed spread (the smoothing had moved the
   window's edge inwards), and holes are filled. A later positive click within ``touch_mm`` of
   the object marks a miss on its surface: it only adds the voxels within ``touch_radius_mm``
   whose own value fits the windows of the earlier clicks (no new part is grown from a
   partial-volume voxel).
4. **Negative clicks inside the object** split it: each claims at most a ball of radius
   ``max(neg_reach x its depth in the object, min_reach_mm)`` (a whole leaked neighbour when it
   sits deep in one, a bump when it sits near the surface); inside those balls a marker
   watershed on the inverted distance map, from balls of ``seed_radius_mm`` around the clicks and from the object
   outside the balls, cuts at the narrowest necks; the parts holding positive clicks stay.
   When a mask is refined without positive clicks the balls are smaller (2 x depth).

``prompts.mask`` (an existing segmentation to refine) is the starting object: positive clicks
grow it as in step 3, negative clicks split it as in step 4. Negative clicks alone, without a
mask, give an empty prediction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_openmedlab.engines.base import (
    CancelFlag,
    Cancelled,
    Engine,
    Prediction,
    ProgressCallback,
    Prompts,
)
from napari_openmedlab.io.volume import Volume

__all__ = ["SeededParams", "SeededRegionEngine"]

_FACES = ndimage.generate_binary_structure(3, 1)
RAW_SPREAD_WEIGHT = 0.5


@dataclass
class SeededParams:
    """Tuning of :class:`SeededRegionEngine`; the defaults were chosen on abdominal CT organs."""

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
    fill_holes: bool = True
    boundary_rings: int = 3


def _ball_offsets(radius_mm: float, spacing: np.ndarray) -> np.ndarray:
    """Integer offsets ``(n, 3)`` of the voxels within ``radius_mm`` of a voxel (itself included)."""
    reach = np.floor(radius_mm / spacing + 1e-6).astype(int)
    grid = np.mgrid[tuple(slice(-r, r + 1) for r in reach)].reshape(3, -1).T
    return grid[np.sqrt(((grid * spacing) ** 2).sum(1)) <= radius_mm + 1e-6]


def _around(shape, p, offsets: np.ndarray) -> tuple[np.ndarray, ...]:
    idx = np.asarray(p, int) + offsets
    ok = np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)
    return tuple(idx[ok].T)


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

    # --- Engine API ---------------------------------------------------------------------------
    def _set_volume(self, volume: Volume, progress: ProgressCallback | None) -> None:
        self._spacing = np.asarray(volume.geometry.spacing_zyx, float)
        if self.params.s_floor is not None:
            self._s_floor = float(self.params.s_floor)
        else:
            a = volume.array
            step = max(1, int(round((a.size / 200_000) ** (1 / 3))))
            sample = np.asarray(a[::step, ::step, ::step], dtype=np.float32)
            lo, hi = np.percentile(sample, [1, 99]) if sample.size else (0.0, 1.0)
            self._s_floor = max(0.008 * float(hi - lo), 1e-6)
        if progress:
            progress(1.0, "ready")

    def _predict(
        self, prompts: Prompts, progress: ProgressCallback | None, cancel: CancelFlag | None
    ) -> Prediction:
        t0 = time.perf_counter()
        shape = np.asarray(self.volume.shape)
        points = np.clip(np.round(prompts.points).astype(int), 0, shape - 1)
        pos = points[prompts.labels == 1]
        neg = points[prompts.labels == 0]
        mask = None
        if prompts.mask is not None:
            mask = np.asarray(prompts.mask, dtype=bool)
            if mask.shape != tuple(shape):
                raise ValueError(f"prompts.mask has shape {mask.shape}, the volume {tuple(shape)}")
            if not mask.any():
                mask = None
        if len(pos) == 0 and mask is None:  # negative clicks alone: nothing to segment
            return self._empty(t0)

        def step(fraction: float, what: str) -> None:
            if cancel is not None and cancel():
                raise Cancelled(f"{self.name}: cancelled while {what}")
            if progress is not None:
                progress(fraction, what)

        # 1. working box, possibly coarsened
        step(0.0, "cropping")
        p = self.params
        margin = np.ceil(p.margin_mm / self._spacing).astype(int)
        anchors = [pos] if len(pos) else []
        if mask is not None:
            mb = ndimage.find_objects(mask.astype(np.uint8))[0]
            anchors.append(np.array([[s.start for s in mb], [s.stop - 1 for s in mb]]))
        anchors = np.concatenate(anchors)
        lo = np.maximum(anchors.min(0) - margin, 0)
        hi = np.minimum(anchors.max(0) + margin + 1, shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        factors = self._factors(hi - lo)
        spacing = self._spacing * factors
        raw = self.volume.array[box]
        unsmoothed = _block_mean(raw, factors)
        work = ndimage.gaussian_filter(unsmoothed, np.maximum(p.sigma_mm / spacing, 0.5))
        wshape = np.asarray(work.shape)
        to_work = lambda q: np.minimum((np.asarray(q) - lo) // factors, wshape - 1)  # noqa: E731
        wpos = [to_work(q) for q in pos]
        wneg = [to_work(q) for q in neg if np.all(q >= lo) and np.all(q < hi)]
        region = np.zeros(work.shape, bool)
        if mask is not None:
            region = _block_mean(mask[box], factors) >= 0.5

        # 2.-3. grow from each positive click
        stats_offsets = _ball_offsets(p.stats_radius_mm, spacing)
        neg_offsets = _ball_offsets(min(p.stats_radius_mm, 3.0), spacing)
        neg_values = [float(np.median(work[_around(wshape, q, neg_offsets)])) for q in wneg]
        grid = np.ogrid[tuple(slice(0, n) for n in wshape)]
        windows: list[tuple[float, float]] = []
        grown = np.zeros(work.shape, bool)
        for i, q in enumerate(wpos):
            step(0.1 + 0.6 * i / max(len(wpos), 1), "growing")
            if region[tuple(q)]:
                continue
            first = not region.any()
            patch = _around(wshape, q, stats_offsets)
            m, s, s_raw = _robust_stats(work[patch], unsmoothed[patch], self._s_floor)
            low, high = m - p.k * s, m + p.k * s
            for v in neg_values:
                if v > m + p.neg_separation * s:
                    high = min(high, max((m + v) / 2, m + s))
                elif v < m - p.neg_separation * s:
                    low = max(low, min((m + v) / 2, m - s))
            window = (work >= low) & (work <= high)
            window[tuple(q)] = True
            if not first and p.touch_radius_mm > 0:
                near = ndimage.distance_transform_edt(~region, sampling=spacing)[tuple(q)]
                if near <= p.touch_mm:
                    # a miss on the object's surface: patch it locally, do not grow a new part
                    # (voxels near it whose own value fits the object's windows so far)
                    fits = window.copy() if not windows else np.zeros(wshape, bool)
                    for w_low, w_high in windows:
                        fits |= (unsmoothed >= w_low) & (unsmoothed <= w_high)
                    fits[tuple(q)] = True
                    ball = np.zeros(wshape, bool)
                    ball[_around(wshape, q, _ball_offsets(p.touch_radius_mm, spacing))] = True
                    comp = _components_at(fits & ball | region, [q]) & ~region
                    region |= comp
                    grown |= comp
                    continue
            comp = _components_at(window if first else window & ~region, [q])
            depth = float(ndimage.distance_transform_edt(comp, sampling=spacing)[tuple(q)])
            opened = _open(comp, max(p.open_fraction * depth, spacing.min()), spacing)
            if opened[tuple(q)]:
                comp = ndimage.binary_dilation(_components_at(opened, [q]), _FACES) & comp
            reach = max((p.first_reach if first else p.next_reach) * depth, p.min_reach_mm)
            dist2 = sum(((g - c) * h) ** 2 for g, c, h in zip(grid, q, spacing))
            comp = _components_at(comp & (dist2 <= reach * reach), [q])
            region |= comp
            grown |= comp
            widen = p.k * (s_raw - s)  # unsmoothed values scatter more
            windows.append((low - widen, high + widen))
        for _ in range(p.boundary_rings if windows else 0):
            # the smoothing moves a window's edge inside the object: take back the outer rings of
            # voxels whose own (unsmoothed) value lies in a click's window
            ring = ndimage.binary_dilation(grown, _FACES) & ~region
            values = unsmoothed[ring]
            ok = np.zeros(values.shape, bool)
            for low, high in windows:
                ok |= (values >= low) & (values <= high)
            if not ok.any():
                break
            region[ring] = ok
            grown[ring] = ok
        if p.fill_holes:
            region = ndimage.binary_fill_holes(region)

        # 4. negative clicks inside the object split it
        inside = [q for q in wneg if region[tuple(q)]]
        if inside:
            step(0.75, "splitting")
            region = self._split(region, wpos, inside, spacing)
            if p.fill_holes:
                region = ndimage.binary_fill_holes(region)

        # back to the full grid
        step(0.9, "resampling")
        if np.any(factors > 1):
            region = _upsample(region, factors, raw.shape)
        for q in pos:  # a positive click is always part of the answer
            region[tuple(q - lo)] = True
        return self._prediction(region, lo, t0)

    # --- helpers ------------------------------------------------------------------------------
    def _factors(self, size: np.ndarray) -> np.ndarray:
        """Integer block sizes per axis so that the working box has at most ``max_voxels``."""
        factors = np.ones(3, int)
        while np.prod(np.ceil(size / factors)) > self.params.max_voxels:
            eff = self._spacing * factors
            axis = int(np.argmin(np.where(size / factors > 1, eff, np.inf)))
            factors[axis] += 1
        return factors

    def _split(self, region, wpos, wneg, spacing) -> np.ndarray:
        """Cut the parts of ``region`` that the negative clicks ``wneg`` (all inside it) claim.

        A negative click claims at most a ball of radius ``max(neg_reach x its depth in the
        object, min_reach_mm)``: deep in a leaked neighbour that covers the neighbour, near the
        surface it trims a bump. Inside those balls a watershed on the inverted distance map, from the
        clicks (and the object beyond the balls), cuts at the narrowest necks.
        """
        from skimage.segmentation import watershed

        p = self.params
        sl = ndimage.find_objects(region.astype(np.uint8))[0]
        lo = np.array([s.start for s in sl])
        sub = region[sl]
        pos = [np.asarray(q) - lo for q in wpos]
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

    def _prediction(self, region: np.ndarray, lo: np.ndarray, t0: float) -> Prediction:
        if not region.any():
            return self._empty(t0)
        sl = ndimage.find_objects(region.astype(np.uint8))[0]
        bbox = tuple(int(s.start + o) for s, o in zip(sl, lo)) + tuple(
            int(s.stop + o) for s, o in zip(sl, lo)
        )
        return Prediction(
            bbox, region[sl].copy(), self.volume.shape, timings={"total": time.perf_counter() - t0}
        )


def _block_mean(a: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Average over blocks of ``factors`` voxels; a partial edge block repeats its last voxels."""
    a = np.asarray(a)
    if np.all(factors == 1):
        return a.astype(np.float32, copy=False)
    f = [int(v) for v in factors]
    need = [-(-n // k) * k for n, k in zip(a.shape, f)]
    if list(a.shape) != need:
        a = np.pad(a, [(0, m - n) for n, m in zip(a.shape, need)], mode="edge")
    blocks = a.reshape(need[0] // f[0], f[0], need[1] // f[1], f[1], need[2] // f[2], f[2])
    return blocks.mean(axis=(1, 3, 5), dtype=np.float32)


def _upsample(mask: np.ndarray, factors: np.ndarray, shape) -> np.ndarray:
    """Linear interpolation of a coarse mask onto the full-resolution box, thresholded at 0.5.

    Only the mask's bounding box (plus one coarse voxel) is interpolated, so a big box stays cheap.
    """
    out = np.zeros(shape, bool)
    if not mask.any():
        return out
    sl = ndimage.find_objects(mask.astype(np.uint8))[0]
    lo = [max(s.start - 1, 0) for s in sl]
    hi = [min(s.stop + 1, n) for s, n in zip(sl, mask.shape)]
    sub = mask[tuple(slice(a, b) for a, b in zip(lo, hi))].astype(np.float32)
    up = ndimage.zoom(sub, [float(f) for f in factors], order=1, mode="nearest", grid_mode=True)
    start = [a * int(f) for a, f in zip(lo, factors)]
    stop = [min(s0 + u, n) for s0, u, n in zip(start, up.shape, shape)]
    out[tuple(slice(a, b) for a, b in zip(start, stop))] = up[
        tuple(slice(0, b - a) for a, b in zip(start, stop))
    ] >= 0.5
    return out
