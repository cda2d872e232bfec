"""The working grid of the weight-free engine: the volume block-averaged once, masks brought back.

The seeded-region engine grows regions on a grid of at most about ``max_voxels`` voxels per
working box, whatever the scan's resolution: a 512 x 512 x 300 CT is averaged over blocks of
a few voxels per axis (the finest axes first, so the working voxels are as cubic as the scan
allows). The block means and their Gaussian-smoothed copy depend only on the volume, so they
are computed once in ``set_volume`` (the engine's "embedding") and every click slices them; a
click never touches an array of the full volume's size. Memory: two float32 arrays of
``volume.size / prod(factors)`` voxels (only the smoothed one when the factors are all 1: the
block means are then the volume itself).

Masks come back to the volume's grid as a bounding box plus a patch (:func:`upsample_patch`),
never as a whole-volume array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SLAB = 8
"""Working-grid slices interpolated at a time when a mask goes back to the volume's grid."""

__all__ = ["WorkingGrid", "bbox_of", "block_factors", "block_mean", "upsample_patch"]


def bbox_of(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Half-open bounds ``(lo, hi)`` of the True voxels of a 3D mask, None when it is empty.

    Reduces one axis pair at a time, so no temporary as large as ``mask`` is made.
    """
    lo, hi = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        nz = np.flatnonzero(np.any(mask, axis=other))
        if len(nz) == 0:
            return None
        lo.append(int(nz[0]))
        hi.append(int(nz[-1]) + 1)
    return np.array(lo), np.array(hi)


def block_factors(size, spacing, max_voxels: int) -> np.ndarray:
    """Integer block sizes per axis so that a box of ``size`` voxels has at most ``max_voxels``.

    The axis with the finest (already blocked) spacing is coarsened first, so blocks on a
    0.7 x 0.7 x 2 mm scan become about 2 mm cubes before any axis goes coarser than that;
    axes of the same spacing are coarsened together, so square pixels stay square.
    """
    size = np.asarray(size, float)
    spacing = np.asarray(spacing, float)
    factors = np.ones(3, int)
    while np.prod(np.ceil(size / factors)) > max_voxels:
        eff = np.where(size / factors > 1, spacing * factors, np.inf)
        if not np.isfinite(eff).any():
            break
        # every axis as fine as the finest one (x and y of an axial scan) is coarsened together
        factors[eff <= eff.min() * 1.001] += 1
    return factors


def block_mean(a: np.ndarray, factors) -> np.ndarray:
    """Average over blocks of ``factors`` voxels (float32); a partial edge block repeats its last voxels.

    Works one block-slab along axis 0 at a time, so the temporary memory is one slab, not a
    padded copy of ``a``.
    """
    f = [int(v) for v in factors]
    if f == [1, 1, 1]:
        return np.asarray(a, dtype=np.float32)
    out_shape = [-(-n // k) for n, k in zip(a.shape, f)]
    out = np.empty(out_shape, np.float32)
    pad_yx = [(0, 0), (0, out_shape[1] * f[1] - a.shape[1]), (0, out_shape[2] * f[2] - a.shape[2])]
    for i in range(out_shape[0]):
        slab = np.asarray(a[i * f[0]: (i + 1) * f[0]])
        if slab.shape[0] < f[0] or pad_yx[1][1] or pad_yx[2][1]:
            slab = np.pad(slab, [(0, f[0] - slab.shape[0]), *pad_yx[1:]], mode="edge")
        blocks = slab.reshape(f[0], out_shape[1], f[1], out_shape[2], f[2])
        out[i] = blocks.mean(axis=(0, 2, 4), dtype=np.float32)
    return out


@dataclass
class WorkingGrid:
    """The volume on the working grid.

    Attributes:
        factors: block size per axis ``(z, y, x)``, voxels of the volume per working voxel.
        spacing: working voxel size ``(z, y, x)`` in mm.
        raw: block means (the volume itself when ``factors`` are all 1), shape ``ceil(shape / factors)``.
        smooth: ``raw`` smoothed by a Gaussian of ``sigma_mm`` (float32).
        shape: the volume's shape.
    """

    factors: np.ndarray
    spacing: np.ndarray
    raw: np.ndarray
    smooth: np.ndarray
    shape: tuple[int, int, int]

    @classmethod
    def build(cls, array: np.ndarray, spacing_zyx, box_mm: float, max_voxels: int,
              sigma_mm: float) -> WorkingGrid:
        """Block-average ``array`` so a box of ``box_mm`` a side has at most ``max_voxels`` voxels."""
        spacing = np.asarray(spacing_zyx, float)
        box = np.minimum(np.ceil(box_mm / spacing) + 1, array.shape)
        factors = block_factors(box, spacing, max_voxels)
        raw = array if np.all(factors == 1) else block_mean(array, factors)
        work_spacing = spacing * factors
        smooth = ndimage.gaussian_filter(
            np.asarray(raw, dtype=np.float32), np.maximum(sigma_mm / work_spacing, 0.5)
        )
        return cls(factors, work_spacing, raw, smooth, tuple(int(n) for n in array.shape))

    @property
    def work_shape(self) -> np.ndarray:
        return np.asarray(self.smooth.shape)

    def to_work(self, zyx) -> np.ndarray:
        """Working-grid index of a volume voxel index."""
        return np.minimum(np.asarray(zyx, int) // self.factors, self.work_shape - 1)

    def mask_to_work(self, mask: np.ndarray, box_lo: np.ndarray, box_hi: np.ndarray) -> np.ndarray:
        """A volume-grid boolean mask on the working box ``[box_lo, box_hi)`` (majority per block).

        Reads only the part of ``mask`` under the box.
        """
        f = self.factors
        lo_v = box_lo * f
        hi_v = np.minimum(box_hi * f, self.shape)
        sub = mask[tuple(slice(int(a), int(b)) for a, b in zip(lo_v, hi_v))]
        return block_mean(sub.view(np.uint8), f) >= 0.5


def linear_upsample(a: np.ndarray, factors) -> np.ndarray:
    """``a`` (float32) enlarged ``factors`` times per axis by linear interpolation.

    The same samples as ``scipy.ndimage.zoom(a, factors, order=1, mode="nearest",
    grid_mode=True)`` (block centres, edges held). With an integer factor ``f`` the output
    voxels of one phase ``r`` (every ``f``-th one) all sit at the same fraction between the same
    two neighbours, so each phase is one weighted sum of two shifted views: no gathering.
    """
    order = np.argsort(factors, kind="stable")  # small factors first: smaller temporaries
    for axis in order:
        f = int(factors[axis])
        if f == 1:
            continue
        n = a.shape[axis]
        # edges held: one copy of the first and the last slice on each side
        padded = np.concatenate([np.take(a, [0], axis=axis), a, np.take(a, [n - 1], axis=axis)],
                                axis=axis)
        out_shape = list(a.shape)
        out_shape[axis] = n * f
        out = np.empty(out_shape, np.float32)
        for r in range(f):
            x = (r + 0.5) / f - 0.5  # position of phase r relative to its block centre
            i0 = int(np.floor(x))  # -1 or 0
            w = np.float32(x - i0)
            lower = [slice(None)] * 3
            upper = [slice(None)] * 3
            target = [slice(None)] * 3
            lower[axis] = slice(1 + i0, 1 + i0 + n)
            upper[axis] = slice(2 + i0, 2 + i0 + n)
            target[axis] = slice(r, None, f)
            dst = out[tuple(target)]
            np.multiply(padded[tuple(lower)], 1 - w, out=dst)
            dst += padded[tuple(upper)] * w
        a = out
    return a


def upsample_patch(region: np.ndarray, factors, box_lo, shape,
                   decide=None) -> tuple[np.ndarray, np.ndarray]:
    """A working-grid mask back on the volume grid, as ``(lo, patch)``: the patch's corner and itself.

    ``region`` is a boolean mask on the working box whose first voxel is ``box_lo`` (working
    grid). Only the region's bounding box (plus one working voxel) is interpolated (linearly,
    thresholded at 0.5), so the result is the size of the object, not of the box or the volume.
    ``decide(band, start)``, when given, settles the voxels where the interpolation is unsure
    (``band``: between 0.25 and 0.75, a boolean array of the patch's shape; ``start``: the
    patch's corner on the volume grid) and returns their verdict, one bool per band voxel.
    """
    factors = np.asarray(factors, int)
    bounds = bbox_of(region)
    if bounds is None:
        return np.zeros(3, int), np.zeros((0, 0, 0), bool)
    lo, hi = bounds
    if np.all(factors == 1):
        sub = region[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))]
        return np.asarray(box_lo) + lo, sub.copy()
    lo = np.maximum(lo - 1, 0)
    hi = np.minimum(hi + 1, region.shape)
    sub = region[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))]
    start = (np.asarray(box_lo) + lo) * factors
    stop = np.minimum(start + np.asarray(sub.shape) * factors, shape)
    patch = np.zeros(tuple(int(b - a) for a, b in zip(start, stop)), bool)
    f0 = int(factors[0])
    # a few working slices at a time (with one slice of context on each side, which is all
    # linear interpolation reads): the float temporaries stay a slab, not the object's box
    for c0 in range(0, sub.shape[0], SLAB):
        c1 = min(c0 + SLAB, sub.shape[0])
        h0, h1 = max(c0 - 1, 0), min(c1 + 1, sub.shape[0])
        up = linear_upsample(sub[h0:h1].astype(np.float32), factors)
        rows = slice((c0 - h0) * f0, (c1 - h0) * f0)
        out0 = c0 * f0
        out1 = min(c1 * f0, patch.shape[0])
        if out1 <= out0:
            break
        up = up[rows][: out1 - out0, : patch.shape[1], : patch.shape[2]]
        slab = up >= 0.5
        if decide is not None:
            band = (up > 0.25) & (up < 0.75)
            if band.any():
                slab[band] = decide(band, start + np.array([out0, 0, 0]))
        patch[out0:out1] = slab
    return start, patch
