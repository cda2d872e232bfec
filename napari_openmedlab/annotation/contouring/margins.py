"""Margins in millimetres: isotropic, anisotropic and asymmetric expansion and shrinking, exact.

Definition (the one the tests check against brute force). With ``d = centre(v) - centre(s)`` in
patient coordinates (LPS mm), voxel ``v`` is reached from voxel ``s`` when

    sum over the patient axes a of (d_a / r_a)^2 <= 1  (+ 1e-6, so ties count as inside),

``r_a`` being the radius of the side ``d`` points to along ``a`` (right or left, anterior or
posterior, superior or inferior); a zero radius allows no step to that side.

* **expansion**: the voxels reached from any voxel of the structure;
* **shrinking**: the voxels of the structure that no voxel outside it (a grid voxel) reaches with
  the mirrored radii, i.e. a 5 mm shrink on the right removes what lies within 5 mm left of an
  outside voxel on the right. Beyond the grid is not "outside": a structure cut by the image edge
  does not shrink away from that edge.

How it stays exact and fast: on a grid whose direction matrix is a signed permutation (any voxel
order, flips included) each voxel axis runs along one patient axis, so the condition is a sum of
one term per voxel axis, ``f_j(k_j) = (k_j * spacing_j / r)^2`` with the radius of the side the
step points to. The minimum over structure voxels of that sum is separable: three 1D min-plus
passes (one per axis, over at most ``r / spacing`` voxels each side) give it for every voxel of the
bounding box plus the margin, never of the whole volume. The passes run in float32 in slabs that
fit the cache; voxels whose float32 value lies within 1e-4 of the threshold are decided again
exactly, in float64, against the few kernel offsets that lie that close to the ellipsoid's
surface. An isotropic margin is rotation invariant, so the same passes are exact on oblique grids
too; per-axis and per-side margins on an oblique grid stamp the exact set of voxel offsets the
definition allows from the structure's surface (:mod:`._kernel`): exact, slower on large structures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...io.geometry import Geometry
from ..masks import SparseMask
from ._common import ContouringError, as_sparse, from_patch, grow_box

SIDES = ("R", "L", "A", "P", "S", "I")
_OPPOSITE = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}
# physical LPS axis -> (side of a negative step, side of a positive step)
_AXIS_SIDES = (("R", "L"), ("A", "P"), ("I", "S"))

# ties (a voxel centre on the ellipsoid) count as inside, also when the file stored the spacing in
# float32 (NIfTI): 1.2 mm read back as 1.2000000477 must still reach 6 mm in 5 steps
EPS = 1e-6
_TAU = 1e-4  # float32 values this close to the threshold are decided again in float64
_BIG = np.float32(4.0)  # "far": any value above 1 behaves the same
_SLAB = 16  # output slices per slab along array axis 0
_TILE = 40  # output rows and columns per tile across axes 1 and 2
# direction cosines this close to 0 or +-1 count as axis-aligned; anything else (a DICOM direction
# with 1e-6 noise included) takes the exact oblique route, so noise never decides a tie
_ALIGNED_TOL = 1e-9


@dataclass(frozen=True)
class Margin:
    """Six radii in mm (patient sides R, L, A, P, S, I) and whether the margin shrinks.

    Build one with :meth:`isotropic`, :meth:`per_axis` or :meth:`sides`; a negative distance means
    shrinking (all distances of one margin share a sign).
    """

    radii: tuple[float, float, float, float, float, float]
    shrink: bool = False

    @classmethod
    def isotropic(cls, mm: float) -> Margin:
        return cls.sides(*([mm] * 6))

    @classmethod
    def per_axis(cls, x_mm: float, y_mm: float, z_mm: float) -> Margin:
        """One distance per patient axis: x (right-left), y (anterior-posterior), z (sup.-inf.)."""
        return cls.sides(x_mm, x_mm, y_mm, y_mm, z_mm, z_mm)

    @classmethod
    def sides(cls, right: float, left: float, anterior: float, posterior: float,
              superior: float, inferior: float) -> Margin:
        values = [float(v) for v in (right, left, anterior, posterior, superior, inferior)]
        if not all(np.isfinite(values)):
            raise ContouringError(f"margin distances must be finite numbers, got {values}")
        if any(v > 0 for v in values) and any(v < 0 for v in values):
            raise ContouringError(
                "a margin either expands (all distances >= 0) or shrinks (all <= 0); "
                "apply two margins for a mix"
            )
        shrink = any(v < 0 for v in values)
        return cls(tuple(abs(v) for v in values), shrink)  # type: ignore[arg-type]

    @property
    def isotropic_mm(self) -> float | None:
        return self.radii[0] if len(set(self.radii)) == 1 else None

    @property
    def is_zero(self) -> bool:
        return max(self.radii) == 0

    def radius(self, side: str) -> float:
        return self.radii[SIDES.index(side)]

    def mirrored(self) -> Margin:
        return Margin(tuple(self.radius(_OPPOSITE[s]) for s in SIDES), self.shrink)  # type: ignore[arg-type]

    def describe(self) -> str:
        verb = "shrink" if self.shrink else "expand"
        if self.isotropic_mm is not None:
            return f"{verb} {self.isotropic_mm:g} mm"
        return f"{verb} " + " ".join(f"{s}{r:g}" for s, r in zip(SIDES, self.radii)) + " mm"


def parse_side_values(text: str, default: float = 0.0) -> list[float]:
    """Six mm (R, L, A, P, S, I) from text: ``5,5,10,3,7,2`` in that order, or named sides in any
    order (``R5,L5,A10,P3,S7,I2``; a side left out gets ``default`` mm)."""
    parts = [p for p in str(text).replace(" ", "").split(",") if p]
    if parts and all(p[:1].upper() in SIDES for p in parts):
        values = dict.fromkeys(SIDES, float(default))
        for p in parts:
            try:
                values[p[0].upper()] = float(p[1:].lstrip("=:"))
            except ValueError:
                raise ContouringError(f"{p!r}: write a side letter and mm, like R5") from None
        return [values[s] for s in SIDES]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) != 6:
        raise ContouringError(f"{text!r}: six distances in mm in the order R,L,A,P,S,I, or named like R5,L5,A10")
    return numbers


def parse_sides(text: str) -> Margin:
    """A :class:`Margin` from the text :func:`parse_side_values` reads."""
    return Margin.sides(*parse_side_values(text))


def _axis_kernels(geometry: Geometry, margin: Margin):
    """Per array axis (z, y, x): (f for steps k = 1.. to +, f for steps k = 1.. to -), float64.

    ``f[k - 1]`` is the term ``(k * spacing / r)^2`` of a step of ``k`` voxels; steps whose term
    exceeds 1 are left out (they never reach), so the lists' lengths are the reach in voxels.
    """
    m = geometry.direction_matrix  # physical xyz <- index xyz
    iso = margin.isotropic_mm
    if not _aligned(geometry) and iso is None:
        raise ContouringError("per-axis and per-side margins on an oblique grid go through _kernel")
    kernels = []
    for j in range(3):  # array axis j is SimpleITK index axis 2 - j
        col = m[:, 2 - j]
        a = int(np.argmax(np.abs(col)))
        neg_side, pos_side = _AXIS_SIDES[a]
        if col[a] < 0:
            neg_side, pos_side = pos_side, neg_side
        if iso is not None:
            r_pos = r_neg = iso
        else:
            r_pos, r_neg = margin.radius(pos_side), margin.radius(neg_side)
        spacing = geometry.spacing[2 - j]
        kernels.append((_terms(spacing, r_pos), _terms(spacing, r_neg)))
    return kernels


def _aligned(geometry: Geometry) -> bool:
    """Whether each voxel axis runs along one patient axis (a signed permutation); checks orthonormality."""
    m = geometry.direction_matrix
    if not np.allclose(m.T @ m, np.eye(3), atol=1e-6):
        raise ContouringError("the image's direction matrix is not orthonormal; resample it first")
    return bool(np.all((np.abs(m) < _ALIGNED_TOL) | (np.abs(np.abs(m) - 1) < _ALIGNED_TOL)))


def _terms(spacing: float, radius: float) -> np.ndarray:
    if radius <= 0:
        return np.zeros(0)
    k = np.arange(1, int(radius / spacing) + 2, dtype=float)
    f = (k * spacing / radius) ** 2
    return f[f <= 1 + EPS]


def _min_plus(d: np.ndarray, axis: int, f_pos: np.ndarray, f_neg: np.ndarray) -> np.ndarray:
    """``out[i] = min(d[i], d[i - k] + f_pos[k-1], d[i + k] + f_neg[k-1])`` along ``axis``."""
    out = d.copy()
    n = d.shape[axis]

    def at(sl):
        index = [slice(None)] * d.ndim
        index[axis] = sl
        return tuple(index)

    for k, f in enumerate(f_pos, 1):  # the source lies k voxels before: a step of +k
        if k >= n:
            break
        view = out[at(slice(k, n))]
        np.minimum(view, d[at(slice(0, n - k))] + np.float32(f), out=view)
    for k, f in enumerate(f_neg, 1):
        if k >= n:
            break
        view = out[at(slice(0, n - k))]
        np.minimum(view, d[at(slice(k, n))] + np.float32(f), out=view)
    return out


def _reached(src: np.ndarray, kernels) -> np.ndarray:
    """Voxels of ``src``'s box reached from a True voxel of ``src`` (the definition above).

    The box is cut into slabs along axis 0 and tiles across axes 1 and 2, each read with the
    halo the kernel needs; a tile whose halo holds only True (or only False) voxels is copied, so
    the passes run only near the structure's surface and on pieces that fit the CPU cache.
    """
    out = np.zeros(src.shape, dtype=bool)
    (fz_pos, fz_neg), (fy_pos, fy_neg), (fx_pos, fx_neg) = kernels
    n0, n1, n2 = src.shape
    # a tile at least a few halos wide, so large margins do not spend their time on halos
    tile = max(_TILE, 3 * max(len(fy_pos) + len(fy_neg), len(fx_pos) + len(fx_neg)))
    band = []
    for c0 in range(0, n0, _SLAB):
        c1 = min(n0, c0 + _SLAB)
        a0, a1 = max(0, c0 - len(fz_pos)), min(n0, c1 + len(fz_neg))
        slab = src[a0:a1]
        seen, full = slab.any(axis=0), slab.all(axis=0)
        if not seen.any():
            continue
        for t1 in range(0, n1, tile):
            u1 = min(n1, t1 + tile)
            b1, e1 = max(0, t1 - len(fy_pos)), min(n1, u1 + len(fy_neg))
            for t2 in range(0, n2, tile):
                u2 = min(n2, t2 + tile)
                b2, e2 = max(0, t2 - len(fx_pos)), min(n2, u2 + len(fx_neg))
                if not seen[b1:e1, b2:e2].any():
                    continue
                if full[b1:e1, b2:e2].all():
                    out[c0:c1, t1:u1, t2:u2] = True
                    continue
                d = np.where(slab[:, b1:e1, b2:e2], np.float32(0), _BIG)
                # each pass drops the halo it consumed, so the next one runs on less
                d = _min_plus(d, 2, fx_pos, fx_neg)[:, :, t2 - b2 : u2 - b2]
                d = _min_plus(d, 1, fy_pos, fy_neg)[:, t1 - b1 : u1 - b1]
                d = _min_plus(d, 0, fz_pos, fz_neg)[c0 - a0 : c1 - a0]
                out[c0:c1, t1:u1, t2:u2] = d <= 1 - _TAU
                near = (d > 1 - _TAU) & (d <= 1 + _TAU)
                if near.any():
                    band.append(np.argwhere(near) + np.array([c0, t1, t2]))
    if band:
        _decide_exactly(out, src, np.concatenate(band), kernels)
    return out


def _decide_exactly(out: np.ndarray, src: np.ndarray, idx: np.ndarray, kernels) -> None:
    """Settle the voxels ``idx`` whose float32 value was too close to 1 to trust, in float64."""
    axes = []
    for f_pos, f_neg in kernels:
        steps = np.concatenate([-np.arange(len(f_neg), 0, -1), [0], np.arange(1, len(f_pos) + 1)])
        terms = np.concatenate([f_neg[::-1], [0.0], f_pos])
        axes.append((steps, terms))
    kz, ky, kx = np.meshgrid(axes[0][0], axes[1][0], axes[2][0], indexing="ij")
    tz, ty, tx = np.meshgrid(axes[0][1], axes[1][1], axes[2][1], indexing="ij")
    total = tz + ty + tx
    # only offsets this close to the surface can decide a voxel whose value is within _TAU of 1
    close = (total >= 1 - 4 * _TAU) & (total <= 1 + EPS)
    offsets = np.stack([kz[close], ky[close], kx[close]], axis=1)
    hit = np.zeros(len(idx), dtype=bool)
    shape = np.array(src.shape)
    for off in offsets:
        s = idx - off  # the source voxel a step of `off` comes from
        ok = np.all((s >= 0) & (s < shape), axis=1) & ~hit
        if ok.any():
            sel = np.flatnonzero(ok)
            hit[sel] = src[s[sel, 0], s[sel, 1], s[sel, 2]]
    out[idx[:, 0], idx[:, 1], idx[:, 2]] = hit


def _reach(kernels) -> tuple[list[int], list[int]]:
    return [len(k[1]) for k in kernels], [len(k[0]) for k in kernels]


def margin(mask, geometry: Geometry, spec: Margin) -> SparseMask:
    """Expand or shrink ``mask`` by ``spec`` (see the module docstring for the exact definition).

    ``mask``: SparseMask or boolean ``(z, y, x)`` array on the grid of ``geometry``.
    """
    mask = as_sparse(mask)
    if mask.empty or spec.is_zero:
        return mask
    shape = mask.shape
    if spec.isotropic_mm is None and not _aligned(geometry):
        return _oblique_margin(mask, geometry, spec)
    if not spec.shrink:
        kernels = _axis_kernels(geometry, spec)
        lo, hi = _reach(kernels)  # a step of +k moves up to k voxels towards higher indices
        box = grow_box(mask.bbox, lo, hi, shape)
        return from_patch(shape, box, _reached(mask.crop(box), kernels))
    # shrinking: the structure minus what the outside reaches with the mirrored radii
    kernels = _axis_kernels(geometry, spec.mirrored())
    reach = [max(a, b) for a, b in zip(*_reach(kernels))]
    box = grow_box(mask.bbox, reach, reach, shape)
    inside = mask.crop(box)
    if inside.all():
        return mask
    return from_patch(shape, box, inside & ~_reached(~inside, kernels))


def _oblique_margin(mask: SparseMask, geometry: Geometry, spec: Margin) -> SparseMask:
    """Per-axis or per-side margins on an oblique grid: stamping the exact offset set (``_kernel``)."""
    from ._kernel import kernel_offsets, stamp

    radii = spec.mirrored().radii if spec.shrink else spec.radii
    offsets, reach = kernel_offsets(geometry, radii, EPS)
    box = grow_box(mask.bbox, reach, reach, mask.shape)
    inside = mask.crop(box)
    if not spec.shrink:
        return from_patch(mask.shape, box, stamp(inside, offsets, reach))
    if inside.all():
        return mask
    return from_patch(mask.shape, box, inside & ~stamp(~inside, offsets, reach))


def expand(mask, geometry: Geometry, mm: float) -> SparseMask:
    """Isotropic expansion by ``mm`` (shrinking when negative)."""
    return margin(mask, geometry, Margin.isotropic(mm))


def ring(mask, geometry: Geometry, inner: Margin | float, outer: Margin | float) -> SparseMask:
    """The shell between two margins: ``margin(outer) - margin(inner)`` (e.g. 5 to 15 mm).

    ``inner`` may be 0 (the ring touches the structure) or negative (a hollow inside it).
    """
    inner = inner if isinstance(inner, Margin) else Margin.isotropic(inner)
    outer = outer if isinstance(outer, Margin) else Margin.isotropic(outer)
    big, small = margin(mask, geometry, outer), margin(mask, geometry, inner)
    if big.empty:
        return big
    box = big.bbox
    return from_patch(big.shape, box, big.crop(box) & ~small.crop(box))


def reach_voxels(geometry: Geometry, spec: Margin) -> tuple[list[int], list[int]]:
    """How far (voxels towards lower, higher indices per array axis) ``spec`` can move a surface."""
    if spec.isotropic_mm is None and not _aligned(geometry):
        from ._kernel import kernel_offsets

        reach = kernel_offsets(geometry, spec.radii, EPS)[1].tolist()
        return reach, reach
    kernels = _axis_kernels(geometry, spec.mirrored() if spec.shrink else spec)
    return _reach(kernels)


__all__ = ["EPS", "SIDES", "Margin", "expand", "margin", "parse_side_values", "parse_sides", "reach_voxels", "ring"]
