"""Resampling in physical space (SimpleITK), so grids that differ still line up in mm."""

from __future__ import annotations

import numpy as np

from .geometry import Geometry
from .volume import Volume


def resample_labels_to(labels: Volume, geometry: Geometry, shape: tuple[int, int, int]) -> Volume:
    """Nearest-neighbour resample a label map onto another grid (``shape`` is ``(z, y, x)``).

    Every target voxel takes the label found at its physical centre in ``labels``; voxels that
    fall outside ``labels`` get 0. Ids are preserved exactly (no interpolation between ids).
    """
    import SimpleITK as sitk

    if labels.geometry.same_grid(geometry) and labels.shape == tuple(shape):
        return labels
    reference = sitk.Image([int(s) for s in shape[::-1]], sitk.sitkUInt8)
    geometry.apply_to_sitk(reference)
    moving = labels.to_sitk()
    out = sitk.Resample(moving, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, moving.GetPixelID())
    meta = {**labels.metadata, "resampled_from": labels.geometry.to_dict(), "geometry": geometry.to_dict()}
    return Volume(sitk.GetArrayFromImage(out), geometry, meta)


def resample_to_spacing(
    volume: Volume, spacing_xyz: tuple[float, float, float], *, linear: bool = True
) -> Volume:
    """Resample onto a grid with the same origin and direction and a new spacing (x, y, z) mm.

    The new grid covers the same physical extent (size rounded to the nearest voxel), as
    TorchIO's ``Resample`` does.
    """
    import SimpleITK as sitk

    image = volume.to_sitk()
    old_spacing = np.array(volume.geometry.spacing)
    old_size = np.array(image.GetSize())
    new_spacing = np.array(spacing_xyz, dtype=float)
    new_size = np.maximum(1, np.round(old_size * old_spacing / new_spacing)).astype(int)
    interp = sitk.sitkLinear if linear else sitk.sitkNearestNeighbor
    out = sitk.Resample(
        image,
        [int(s) for s in new_size],
        sitk.Transform(),
        interp,
        volume.geometry.origin,
        tuple(new_spacing),
        volume.geometry.direction,
        0,
        sitk.sitkFloat32 if linear else image.GetPixelID(),
    )
    return Volume.from_sitk(out, **volume.metadata)
