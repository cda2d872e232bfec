"""Resampling in physical space (SimpleITK), so grids that differ still line up in mm."""

from __future__ import annotations

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

