"""Statistics of a structure (volume, intensity, extent, centroid).

Positions are physical LPS millimetres ``(x, y, z)`` of voxel centres. The pair metrics (Dice,
HD95, surface Dice) live in :mod:`napari_openmedlab.evaluation.structure_comparison`: evaluation
sits above annotation in the layers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...io.geometry import Geometry
from ._common import ContouringError, as_sparse


@dataclass(frozen=True)
class StructureStats:
    """One structure's figures (NaN or None where the structure is empty or no image is given).

    ``bbox_min_mm``/``bbox_max_mm``: LPS extent of the voxel centres; ``centroid_mm``: LPS mean of
    the voxel centres; ``mean``/``minimum``/``maximum``: image intensity inside (HU for CT).
    """

    name: str
    voxels: int
    volume_cm3: float
    bbox_min_mm: tuple | None
    bbox_max_mm: tuple | None
    centroid_mm: tuple | None
    mean: float | None = None
    minimum: float | None = None
    maximum: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def structure_stats(mask, geometry: Geometry, image: np.ndarray | None = None, name: str = "") -> StructureStats:
    """Figures of one structure; ``image`` (same grid, ``(z, y, x)``) adds intensity statistics."""
    mask = as_sparse(mask)
    voxel_cm3 = float(np.prod(geometry.spacing)) / 1000.0
    if image is not None and tuple(np.shape(image)) != tuple(mask.shape):
        raise ContouringError(f"the image's grid {np.shape(image)} differs from the structure's {mask.shape}")
    if mask.empty:
        return StructureStats(name, 0, 0.0, None, None, None)
    lo = np.array(mask.bbox[:3])
    hi = np.array(mask.bbox[3:]) - 1
    corners = np.array([[c[0], c[1], c[2]] for c in np.stack(np.meshgrid(*zip(lo, hi), indexing="ij"), -1).reshape(-1, 3)])
    physical = geometry.index_to_physical(corners)
    patch = mask.patch()
    centroid_index = np.argwhere(patch).mean(axis=0) + lo
    out = dict(
        name=name,
        voxels=mask.count,
        volume_cm3=mask.count * voxel_cm3,
        bbox_min_mm=tuple(float(v) for v in physical.min(axis=0)),
        bbox_max_mm=tuple(float(v) for v in physical.max(axis=0)),
        centroid_mm=tuple(float(v) for v in geometry.index_to_physical(centroid_index)),
    )
    if image is not None:
        z0, y0, x0, z1, y1, x1 = mask.bbox
        values = np.asarray(image[z0:z1, y0:y1, x0:x1])[patch].astype(np.float64)
        out.update(mean=float(values.mean()), minimum=float(values.min()), maximum=float(values.max()))
    return StructureStats(**out)


__all__ = ["StructureStats", "structure_stats"]
