"""The ``Volume``: a 3D array (z, y, x) plus its geometry. The only thing engines accept."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .geometry import Geometry


@dataclass
class Volume:
    """A 3D image or label map on a physical voxel grid.

    Attributes:
        array: voxel values indexed ``(z, y, x)`` (HU for CT, label ids for label maps).
        geometry: where the grid sits in physical LPS space.
        metadata: free-form provenance (source path, DICOM series uid, ...); JSON-serialisable.
    """

    array: np.ndarray
    geometry: Geometry = field(default_factory=Geometry)
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"a Volume is 3D (z, y, x); got an array of shape {self.array.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)  # type: ignore[return-value]

    def with_array(self, array: np.ndarray, **metadata) -> Volume:
        """A new Volume on the same grid holding ``array`` (same shape)."""
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} differs from the grid {self.array.shape}")
        return replace(self, array=array, metadata={**self.metadata, **metadata})

    def to_sitk(self):
        """This volume as a ``SimpleITK.Image`` with its exact geometry."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        self.geometry.apply_to_sitk(image)
        return image

    @classmethod
    def from_sitk(cls, image, **metadata) -> Volume:
        import SimpleITK as sitk

        return cls(sitk.GetArrayFromImage(image), Geometry.from_sitk(image), dict(metadata))

    def napari_kwargs(self) -> dict:
        """Layer keyword arguments that place this volume in physical mm (world = LPS z, y, x).

        Scale carries the spacing; the affine carries the direction cosines and the origin, so
        that world = direction @ (spacing * index) + origin, as SimpleITK defines it.
        """
        affine = self.geometry.index_to_physical_matrix()
        spacing = self.geometry.spacing_zyx
        rotation = np.eye(4)
        rotation[:3, :3] = affine[:3, :3] / spacing[None, :]
        rotation[:3, 3] = affine[:3, 3]
        return {"scale": tuple(spacing), "affine": rotation}
