"""Which voxel a click in the 3D view means: the ray through the volume, sampled like the renderer."""

from __future__ import annotations

import numpy as np

RENDERING_PICK = {
    "iso": "first",
    "minip": "min",
}
"""napari rendering mode -> how the clicked voxel is chosen along the ray (default: the maximum,
which is what MIP, attenuated MIP, translucent and additive renderings show brightest)."""


def pick_along_ray(
    array: np.ndarray,
    start,
    end,
    mode: str = "max",
    threshold: float | None = None,
) -> np.ndarray | None:
    """The voxel ``(z, y, x)`` along the segment ``start`` -> ``end`` (voxel coordinates, near to far).

    Args:
        array: the volume ``(z, y, x)``.
        start, end: where the view ray enters and leaves the volume, as continuous voxel indices.
        mode: ``"max"`` (brightest voxel), ``"min"`` (darkest), or ``"first"`` (first voxel whose
            value reaches ``threshold``, as an iso-surface rendering shows it).

    Returns:
        Integer voxel indices as floats, or None when the ray misses the volume (or, for
        ``"first"``, never reaches the threshold).
    """
    start = np.asarray(start, dtype=float)[-3:]
    end = np.asarray(end, dtype=float)[-3:]
    length = float(np.linalg.norm(end - start))
    n = max(2, int(np.ceil(length * 2)) + 1)  # two samples per voxel
    t = np.linspace(0.0, 1.0, n)[:, None]
    idx = np.round(start + t * (end - start)).astype(int)
    inside = np.all((idx >= 0) & (idx < np.asarray(array.shape)), axis=1)
    idx = idx[inside]
    if len(idx) == 0:
        return None
    values = np.asarray(array[tuple(idx.T)], dtype=float)
    if mode == "first":
        if threshold is None:
            raise ValueError("mode 'first' needs a threshold")
        hits = np.flatnonzero(values >= threshold)
        if hits.size == 0:
            return None
        k = int(hits[0])
    elif mode == "min":
        k = int(np.argmin(values))
    elif mode == "max":
        k = int(np.argmax(values))
    else:
        raise ValueError(f"mode must be 'max', 'min' or 'first'; got {mode!r}")
    return idx[k].astype(float)
