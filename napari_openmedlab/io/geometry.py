"""Voxel grid geometry and the one place where coordinate conventions are converted.

Conventions (see docs/DESIGN.md):

* numpy arrays are indexed ``(z, y, x)``;
* SimpleITK spacing, origin and index arguments are ``(x, y, z)``;
* physical points are LPS millimetres. In napari, world coordinates are the physical point
  written ``(z, y, x)``, i.e. ``(P_S, P_P, P_L)``, so a default axial view shows anterior at the top
  and the patient's right on the left of the screen (radiological convention).

Every other module converts through :class:`Geometry`; a round-trip test guards it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Geometry:
    """Physical placement of a 3D voxel grid, stored exactly as SimpleITK holds it.

    Attributes:
        spacing: voxel size in mm, ``(x, y, z)``.
        origin: physical LPS position of voxel index (0, 0, 0), in mm, ``(x, y, z)``.
        direction: 3x3 direction cosines, row-major, as ``GetDirection()`` returns them:
            column ``j`` is the physical direction of index axis ``j`` (x, y, z).
    """

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = _IDENTITY

    def __post_init__(self) -> None:
        object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))
        object.__setattr__(self, "origin", tuple(float(v) for v in self.origin))
        object.__setattr__(self, "direction", tuple(float(v) for v in np.ravel(self.direction)))
        if len(self.spacing) != 3 or len(self.origin) != 3 or len(self.direction) != 9:
            raise ValueError("Geometry needs 3 spacings, 3 origin values and 9 direction cosines")
        if not all(np.isfinite(self.spacing)) or min(self.spacing) <= 0:
            raise ValueError(f"spacing must be finite and positive, got {self.spacing}")
        if not all(np.isfinite(self.origin)) or not all(np.isfinite(self.direction)):
            raise ValueError(f"origin and direction must be finite, got {self.origin}, {self.direction}")

    # --- constructors -------------------------------------------------------------------------
    @classmethod
    def from_sitk(cls, image) -> Geometry:
        """Geometry of a 3D ``SimpleITK.Image``."""
        return cls(image.GetSpacing(), image.GetOrigin(), image.GetDirection())

    def apply_to_sitk(self, image) -> None:
        """Write this geometry into a ``SimpleITK.Image`` in place."""
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)

    # --- zyx views ----------------------------------------------------------------------------
    @property
    def spacing_zyx(self) -> np.ndarray:
        """Voxel size in mm along array axes ``(z, y, x)``."""
        return np.array(self.spacing[::-1])

    @property
    def direction_matrix(self) -> np.ndarray:
        """3x3 direction matrix in SimpleITK order (physical xyz <- index xyz)."""
        return np.array(self.direction).reshape(3, 3)

    def index_to_physical_matrix(self) -> np.ndarray:
        """4x4 affine mapping homogeneous voxel ``(z, y, x)`` to physical LPS ``(z, y, x)`` mm.

        This is the affine napari uses for a layer: world = physical point written z, y, x.
        """
        m_xyz = self.direction_matrix @ np.diag(self.spacing)
        flip = np.eye(3)[::-1]  # reverses (x, y, z) <-> (z, y, x)
        affine = np.eye(4)
        affine[:3, :3] = flip @ m_xyz @ flip
        affine[:3, 3] = np.array(self.origin)[::-1]
        return affine

    def index_to_physical(self, index_zyx) -> np.ndarray:
        """Voxel indices ``(..., 3)`` in ``(z, y, x)`` to physical LPS mm in ``(x, y, z)``."""
        affine = self.index_to_physical_matrix()
        world_zyx = np.asarray(index_zyx, dtype=float) @ affine[:3, :3].T + affine[:3, 3]
        return world_zyx[..., ::-1]

    def physical_to_index(self, point_xyz) -> np.ndarray:
        """Physical LPS mm ``(..., 3)`` in ``(x, y, z)`` to continuous voxel ``(z, y, x)``."""
        return self.world_to_index(np.asarray(point_xyz, dtype=float)[..., ::-1])

    def index_to_world(self, index_zyx) -> np.ndarray:
        """Voxel ``(z, y, x)`` to napari world coordinates (physical mm written ``(z, y, x)``)."""
        return np.asarray(self.index_to_physical(index_zyx))[..., ::-1]

    def world_to_index(self, world_zyx) -> np.ndarray:
        """napari world coordinates ``(z, y, x)`` mm to continuous voxel ``(z, y, x)``."""
        affine = self.index_to_physical_matrix()
        w = np.asarray(world_zyx, dtype=float) - affine[:3, 3]
        return w @ np.linalg.inv(affine[:3, :3]).T

    def same_grid(self, other: Geometry, tol: float = 1e-4) -> bool:
        """Whether two geometries place voxels at the same physical points (within ``tol``)."""
        return (
            np.allclose(self.spacing, other.spacing, atol=tol)
            and np.allclose(self.origin, other.origin, atol=tol)
            and np.allclose(self.direction, other.direction, atol=tol)
        )

    def to_dict(self) -> dict:
        return {"spacing": list(self.spacing), "origin": list(self.origin), "direction": list(self.direction)}

    @classmethod
    def from_dict(cls, d: dict) -> Geometry:
        return cls(tuple(d["spacing"]), tuple(d["origin"]), tuple(d["direction"]))
