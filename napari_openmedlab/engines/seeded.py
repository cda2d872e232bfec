"""A weight-free 3D engine: adaptive-threshold region growing from clicks, split by negative clicks.

It needs no model file, runs on the CPU in a fraction of a second per click, and is the baseline
the foundation models are compared against (see ``docs/results.md``).

How a prediction is made from all the clicks of the current object (nothing is remembered
between calls: the same prompts always give the same mask):

1. **Working region.** A box around the positive clicks (and around ``prompts.mask``) with a
   ``margin_mm`` border. When that box holds more than ``max_voxels`` voxels it is block-averaged
   by integer factors (finest axes first), so a 512 x 512 x 300 CT costs about as much as a small
   one; the mask is brought back to the full grid by linear interpolation at the end.
2. **Intensity window per positive click.** The image is smoothed (Gaussian, ``sigma_mm``);
   the median ``m`` of the smoothed voxels within ``stats_radius_mm`` of the click and the robust
   spread ``s`` of the unsmoothed ones there (1.4826 x MAD, at least ``s_floor``) give the
   window ``m +- k s`` on the smoothed image. A negative click
   whose intensity is clearly outside that (``> neg_separation`` x ``s`` from ``m``) narrows the
   window on its side to half-way between the two. ``s_floor`` defaults to 0.8 % of the volume's
   1..99 percentile range: 10 HU on CT, a comparable fraction on MRI.
3. **Growing with leak guards.** The click's 6-connected component inside its window is opened
   by a radius ``open_fraction`` x its local depth (at least one voxel) to cut thin bridges into
   neighbouring tissue, re-grown by one voxel, and limited to a ball around the click of radius
   ``first_reach`` x depth for the first positive click, ``next_reach`` x depth (depth of the
   not-yet-segmented part) for later ones, never under ``min_reach_mm``. Holes are filled.
4. **Negative clicks inside the object** split it: a marker watershed on the inverted distance
   map of the object, with balls of ``seed_radius_mm`` around the clicks as markers, cuts at the
   narrowest necks between positive and negative clicks; the parts holding positive clicks stay.

``prompts.mask`` (an existing segmentation to refine) is the starting object: positive clicks
grow it as in step 3, negative clicks split it as in step 4 (the mask's voxels far from every
negative click serve as positive markers). Negative clicks alone, without a mask, give an empty
prediction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..io.volume import Volume
from .base import CancelFlag, Cancelled, Engine, Prediction, ProgressCallback, Prompts

__all__ = ["SeededParams", "SeededRegionEngine"]

_FACES = ndimage.generate_binary_structure(3, 1)


@dataclass
class SeededParams:
    """Tuning of :class:`SeededRegionEngine`; the defaults were chosen on abdominal CT organs."""

    margin_mm: float = 120.0
    max_voxels: int = 2_000_000
    sigma_mm: float = 1.5
    stats_radius_mm: float = 4.0
    k: float = 2.5
    s_floor: float | None = None  # None: 0.8 % of the volume's robust intensity range
    neg_separation: float = 1.5
    open_fraction: float = 0.5
    first_reach: float = 6.0
    next_reach: float = 3.0
    min_reach_mm: float = 10.0
    seed_radius_mm: float = 4.0
    fill_holes: bool = True


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


def _robust_stats(smooth: np.ndarray, raw: np.ndarray, floor: float) -> tuple[float, float]:
    """Centre: median of the smoothed values; spread: 1.4826 x MAD of the unsmoothed ones.

    The spread is the image noise, not the (smaller) noise left after smoothing, so the window
    keeps the boundary voxels that the smoothing blurred.
    """
    m = float(np.median(smooth))
    raw = np.asarray(raw, dtype=np.float32)
    spread = 1.4826 * float(np.median(np.abs(raw - np.median(raw))))
    return m, max(spread, floor)


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
        for i, q in enumerate(wpos):
            step(0.1 + 0.6 * i / max(len(wpos), 1), "growing")
            if region[tuple(q)]:
                continue
            first = not region.any()
            patch = _around(wshape, q, stats_offsets)
            m, s = _robust_stats(work[patch], unsmoothed[patch], self._s_floor)
            low, high = m - p.k * s, m + p.k * s
            for v in neg_values:
                if v > m + p.neg_separation * s:
                    high = min(high, max((m + v) / 2, m + s))
                elif v < m - p.neg_separation * s:
                    low = max(low, min((m + v) / 2, m - s))
            window = (work >= low) & (work <= high)
            window[tuple(q)] = True
            comp = _components_at(window if first else window & ~region, [q])
            depth = float(ndimage.distance_transform_edt(comp, sampling=spacing)[tuple(q)])
            opened = _open(comp, max(p.open_fraction * depth, spacing.min()), spacing)
            if opened[tuple(q)]:
                comp = ndimage.binary_dilation(_components_at(opened, [q]), _FACES) & comp
            reach = max((p.first_reach if first else p.next_reach) * depth, p.min_reach_mm)
            dist2 = sum(((g - c) * h) ** 2 for g, c, h in zip(grid, q, spacing))
            comp = _components_at(comp & (dist2 <= reach * reach), [q])
            region |= comp
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
        from skimage.segmentation import watershed

        p = self.params
        seed = _ball_offsets(p.seed_radius_mm, spacing)
        markers = np.zeros(region.shape, np.int32)
        if not wpos:  # refining a mask: its voxels far from every negative click are "object"
            far = np.ones(region.shape, bool)
            far[tuple(np.asarray(wneg).T)] = False
            dist = ndimage.distance_transform_edt(far, sampling=spacing)
            depth = ndimage.distance_transform_edt(region, sampling=spacing)
            reach = max(max(2 * depth[tuple(q)] for q in wneg), p.min_reach_mm)
            markers[region & (dist > reach)] = 1
        for q in wneg:
            markers[_around(region.shape, q, seed)] = 2
        for q in wpos:
            markers[_around(region.shape, q, seed)] = 1
        markers[~region] = 0
        if not (markers == 1).any():
            return np.zeros_like(region)
        elevation = -ndimage.distance_transform_edt(region, sampling=spacing)
        kept = watershed(elevation, markers, mask=region) == 1
        if wpos:
            kept = _components_at(kept, [q for q in wpos if kept[tuple(q)]])
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
