"""Exact margins on oblique grids: dilation by the set of voxel offsets the definition allows.

On a grid whose direction is not a signed permutation, the patient-axis condition of
:mod:`.margins` is not a sum of one term per voxel axis, so the separable passes do not apply. Here
the offsets ``k`` (voxels, ``v - s``) that satisfy the condition are listed exactly (in float64,
from the physical step ``direction @ (spacing * k)``), and each structure voxel stamps them.

Only the structure's surface voxels (a face neighbour outside) need to stamp, when the offset set
is "face-walkable": every non-zero offset has a face step towards the origin that stays in the set.
Then a voxel reached from deep inside is also reached from a surface voxel (walk the source towards
the target one face step at a time: the last source inside is on the surface). The property is
checked on the computed set; when it fails, every structure voxel stamps (slower, still exact).
"""

from __future__ import annotations

import numpy as np

from ...io.geometry import Geometry
from ._common import ContouringError

_AXIS_SIDES = (("R", "L"), ("A", "P"), ("I", "S"))
_SIDE_INDEX = {"R": 0, "L": 1, "A": 2, "P": 3, "S": 4, "I": 5}
_MAX_STAMPS = 400_000_000  # about a minute of stamping: beyond it, refuse instead of freezing


def kernel_offsets(geometry: Geometry, radii, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Offsets ``(n, 3)`` (array order z, y, x) with ``sum (d_a / r_side)^2 <= 1 + eps``, and the reach.

    ``radii``: six mm in the order R, L, A, P, S, I.
    """
    spacing = np.array(geometry.spacing)  # x, y, z
    # |step| <= the largest radius (the file's direction is orthonormal), so no index step goes further
    reach = np.floor(max(radii) / spacing[::-1] * (1 + 2 * eps)).astype(int)  # z, y, x
    axes = [np.arange(-r, r + 1) for r in reach]
    kz, ky, kx = np.meshgrid(*axes, indexing="ij")
    k_xyz = np.stack([kx.ravel(), ky.ravel(), kz.ravel()], axis=1).astype(float)
    d = (k_xyz * spacing) @ geometry.direction_matrix.T  # LPS mm of each step
    total = np.zeros(len(d))
    for a, (neg, pos) in enumerate(_AXIS_SIDES):
        comp = d[:, a]
        r = np.where(comp > 0, radii[_SIDE_INDEX[pos]], radii[_SIDE_INDEX[neg]])
        moving = np.abs(comp) > 1e-9
        with np.errstate(divide="ignore"):
            term = np.where(r > 0, (comp / np.where(r > 0, r, 1.0)) ** 2, np.inf)
        total += np.where(moving, term, 0.0)
    keep = total <= 1 + eps
    offsets = np.stack([kz.ravel()[keep], ky.ravel()[keep], kx.ravel()[keep]], axis=1)
    return offsets, reach


def face_walkable(offsets: np.ndarray, reach: np.ndarray) -> bool:
    """Whether every non-zero offset has a face step towards the origin that stays in the set."""
    grid = np.zeros(tuple(2 * reach + 1), bool)
    grid[tuple((offsets + reach).T)] = True
    ok = np.all(offsets == 0, axis=1)
    for j in range(3):
        step = np.zeros(3, int)
        step[j] = 1
        moved = offsets - np.sign(offsets[:, j])[:, None] * step
        inside = grid[tuple((moved + reach).T)]
        ok |= (offsets[:, j] != 0) & inside
    return bool(ok.all())


def stamp(src: np.ndarray, offsets: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Voxels of ``src``'s box reached from a True voxel of ``src`` by one of ``offsets``."""
    if face_walkable(offsets, reach):
        inner = np.pad(src, 1)  # outside the box counts as outside: box-edge voxels are surface
        full = inner[1:-1, 1:-1, 1:-1].copy()
        for axis in range(3):
            for shift in (-1, 1):
                full &= np.roll(inner, shift, axis=axis)[1:-1, 1:-1, 1:-1]
        sources = np.argwhere(src & ~full)
    else:
        if int(src.sum()) * len(offsets) > _MAX_STAMPS:
            raise ContouringError(
                "this margin on this oblique grid would stamp every voxel (its offsets cannot be "
                "walked by face steps); resample the image to an axis-aligned grid first"
            )
        sources = np.argwhere(src)
    padded = np.zeros(tuple(np.array(src.shape) + 2 * reach), bool)
    flat = padded.reshape(-1)
    strides = np.array([padded.shape[1] * padded.shape[2], padded.shape[2], 1])
    base = (sources + reach) @ strides
    for k in offsets @ strides:
        flat[base + k] = True
    r = reach
    return padded[r[0] : r[0] + src.shape[0], r[1] : r[1] + src.shape[1], r[2] : r[2] + src.shape[2]] | src


__all__ = ["face_walkable", "kernel_offsets", "stamp"]
