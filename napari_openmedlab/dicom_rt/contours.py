"""Voxel masks to closed planar contours and back, with nothing gained or lost.

Why contours along the voxel edges (not marching squares, not polygons through voxel centres):
a polygon through the centres of the boundary voxels cuts half a voxel off all round, which costs a
small organ (chiasm, lens, cochlea) 20% of its area; marching squares at the 0.5 level still loses up
to 4.4% on thin structures of a 3 mm grid. The outline of the voxels' own squares encloses exactly
their area, and its even-odd fill at the voxel centres gives back exactly the same voxels, so an
export -> import round trip is lossless on the grid. The staircase is what the voxels are; a planning
system that smooths contours does so from the true area.

Every contour is a closed loop of voxel-corner points. Outer boundaries run clockwise as seen in the
image (row down, column right: the inside is on the right-hand side) and holes run the other way, so
both the even-odd and the non-zero winding rule fill the same voxels. Holes and separate islands are
separate contours. Where two voxels touch only at a corner, the loop turns towards the inside, so
each 4-connected piece gets its own loop.

Coordinates here are continuous voxel indices of one slice, ``(row, column)`` = ``(y, x)``; a voxel
``(i, j)`` is the square ``[i - 0.5, i + 0.5] x [j - 0.5, j + 0.5]``.
"""

from __future__ import annotations

import numpy as np

# Edge directions (d_row, d_col): east, south, west, north.
_DIRS = np.array([(0, 1), (1, 0), (0, -1), (-1, 0)])


def mask_to_loops(mask: np.ndarray) -> list[np.ndarray]:
    """Closed loops enclosing the ``True`` voxels of a 2D mask.

    Returns a list of ``(N, 2)`` float arrays of ``(row, col)`` corner points in voxel index units
    (half-integers), without repeating the first point at the end and without collinear points.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"a 2D mask is needed, got shape {mask.shape}")
    any_row, any_col = mask.any(axis=1), mask.any(axis=0)
    if not any_row.any():
        return []
    r0, r1 = np.argmax(any_row), mask.shape[0] - np.argmax(any_row[::-1])
    c0, c1 = np.argmax(any_col), mask.shape[1] - np.argmax(any_col[::-1])
    crop = mask[r0:r1, c0:c1]
    loops = _loops_of(crop)
    offset = np.array([r0 - 0.5, c0 - 0.5])
    return [loop + offset for loop in loops]


def _loops_of(mask: np.ndarray) -> list[np.ndarray]:
    h, w = mask.shape
    p = np.zeros((h + 2, w + 2), dtype=bool)
    p[1:-1, 1:-1] = mask
    width = w + 1  # corner grid is (h + 1) x (w + 1); corner id = r * width + c
    starts, ends, dirs = [], [], []
    # Horizontal edges on corner row r between columns c and c + 1: voxel above (r-1, c), below (r, c).
    above, below = p[:-1, 1:-1], p[1:, 1:-1]
    r, c = np.nonzero(below & ~above)  # inside below: walk east
    starts.append(r * width + c), ends.append(r * width + c + 1), dirs.append(np.full(r.size, 0))
    r, c = np.nonzero(above & ~below)  # inside above: walk west
    starts.append(r * width + c + 1), ends.append(r * width + c), dirs.append(np.full(r.size, 2))
    # Vertical edges on corner column c between rows r and r + 1: voxel left (r, c-1), right (r, c).
    left, right = p[1:-1, :-1], p[1:-1, 1:]
    r, c = np.nonzero(left & ~right)  # inside left: walk south
    starts.append(r * width + c), ends.append((r + 1) * width + c), dirs.append(np.full(r.size, 1))
    r, c = np.nonzero(right & ~left)  # inside right: walk north
    starts.append((r + 1) * width + c), ends.append(r * width + c), dirs.append(np.full(r.size, 3))
    start = np.concatenate(starts)
    end = np.concatenate(ends)
    d = np.concatenate(dirs)
    # Successor of each edge: the edge leaving its end corner. Saddle corners have two; take the
    # right turn (towards the inside), so diagonal neighbours get separate loops.
    order = np.argsort(start, kind="stable")
    sorted_start = start[order]
    first = np.searchsorted(sorted_start, end, side="left")
    count = np.searchsorted(sorted_start, end, side="right") - first
    succ = order[first]
    saddle = np.nonzero(count == 2)[0]
    if saddle.size:
        cand_a, cand_b = order[first[saddle]], order[first[saddle] + 1]
        din = _DIRS[d[saddle]]
        da = _DIRS[d[cand_a]]
        right_turn_a = (din[:, 0] * da[:, 1] - din[:, 1] * da[:, 0]) == -1
        succ[saddle] = np.where(right_turn_a, cand_a, cand_b)
    corners_r, corners_c = np.divmod(start, width)
    keep = d != d[_predecessors(succ)]  # a corner where the direction changes
    loops = []
    seen = np.zeros(start.size, dtype=bool)
    succ_list = succ.tolist()
    for e0 in range(start.size):
        if seen[e0]:
            continue
        cycle = []
        e = e0
        while not seen[e]:
            seen[e] = True
            cycle.append(e)
            e = succ_list[e]
        idx = np.array(cycle)
        idx = idx[keep[idx]]
        loops.append(np.stack([corners_r[idx], corners_c[idx]], axis=1).astype(float))
    return loops


def _predecessors(succ: np.ndarray) -> np.ndarray:
    pred = np.empty_like(succ)
    pred[succ] = np.arange(succ.size)
    return pred


def signed_area(loop: np.ndarray) -> float:
    """Shoelace area of a ``(row, col)`` loop; positive for our outer (clockwise-on-screen) loops."""
    r, c = loop[:, 0], loop[:, 1]
    return float(0.5 * np.sum(r * np.roll(c, -1) - np.roll(r, -1) * c)) * -1.0


def fill_even_odd(loops: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Voxels of a 2D grid whose centres are inside ``loops`` by the even-odd rule.

    ``loops``: ``(N, 2)`` arrays of ``(row, col)`` continuous indices (any orientation, any
    number of points >= 3). A centre exactly on an edge counts as inside when it is on a left or
    top edge (scanline convention), so touching squares are not counted twice.
    """
    out = np.zeros(shape, dtype=bool)
    for loop in loops:
        if len(loop) >= 3:
            out ^= _fill_one(np.asarray(loop, dtype=float), shape)
    return out


def _fill_one(loop: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Even-odd fill of one polygon at voxel centres, by crossings along each row (vectorised).

    For each row of centres the edge crossings are sorted and paired; each pair ``[a, b)`` marks
    the centres ``ceil(a) .. ceil(b) - 1`` through a difference array, so there is no Python loop
    over rows.
    """
    h, w = shape
    out = np.zeros(shape, dtype=bool)
    r0, c0 = loop[:, 0], loop[:, 1]
    r1, c1 = np.roll(r0, -1), np.roll(c0, -1)
    lo = max(0, int(np.ceil(min(r0.min(), r1.min()))))
    hi = min(h - 1, int(np.floor(max(r0.max(), r1.max()))))
    if hi < lo:
        return out
    ys = np.arange(lo, hi + 1, dtype=float)[:, None]
    # Half-open rule: an edge counts for rows y with min(r0, r1) <= y < max(r0, r1).
    crosses = ((r0 <= ys) & (ys < r1)) | ((r1 <= ys) & (ys < r0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (ys - r0) / (r1 - r0)
    xs = np.sort(np.where(crosses, c0 + t * (c1 - c0), np.inf), axis=1)  # crossings first, inf last
    n = crosses.sum(axis=1)
    width = int(n.max()) if n.size else 0
    if width < 2:
        return out
    xs = xs[:, : width - width % 2]
    starts, stops = xs[:, 0::2], xs[:, 1::2]
    valid = np.isfinite(stops)
    rows = np.broadcast_to(np.arange(lo, hi + 1)[:, None], starts.shape)[valid]
    # only the polygon's bounding box is touched: a small organ on a 512 x 512 slice stays cheap
    c_lo = max(0, int(np.floor(min(c0.min(), c1.min()))))
    c_hi = min(w, int(np.ceil(max(c0.max(), c1.max()))) + 1)
    if c_hi <= c_lo:
        return out
    j0 = np.clip(np.ceil(starts[valid]), c_lo, c_hi).astype(np.int64) - c_lo
    j1 = np.clip(np.ceil(stops[valid]), c_lo, c_hi).astype(np.int64) - c_lo
    diff = np.zeros((hi - lo + 1, c_hi - c_lo + 1), dtype=np.int32)
    np.add.at(diff, (rows - lo, j0), 1)
    np.add.at(diff, (rows - lo, j1), -1)
    out[lo : hi + 1, c_lo:c_hi] = np.cumsum(diff[:, :-1], axis=1) > 0
    return out
