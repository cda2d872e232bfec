"""The 1.5 mm canonical grid SAM-Med3D sees, and the 128^3 crops taken from it and put back.

How the official inference (SAM-Med3D ``utils/infer_utils.py``, TorchIO) prepares a volume, and
how this module reproduces it without resampling the whole volume:

1. ``tio.Resample(1.5)``: same direction, size ``floor(n * s / 1.5)`` per axis (1 stays 1), the
   new grid centred on the old one (the midpoint between the first and the last voxel centre is
   kept), linear interpolation, the result stored in the input's voxel type (int16 CT stays int16).
   This is TorchIO's symmetric resampling (TorchIO PR #1310, mid 2025; tested with 1.2.1); older
   TorchIO releases aligned the new grid at the first voxel instead, a sub-voxel shift.
2. ``tio.ToCanonical()``: the voxel axes are permuted and flipped to the nearest RAS+ order
   (nibabel's ``io_orientation``: axis 0 towards the patient's Right, 1 Anterior, 2 Superior).
   Only axes are reordered; an oblique volume stays oblique.
3. ``tio.CropOrPad(128)`` around the object, zero padding where the crop leaves the grid.
4. ``tio.ZNormalization(masking_method=x > 0)`` over the crop (padding included, so padded
   zeros are excluded from the statistics like any other voxel <= 0).

:class:`CanonicalGrid` holds the grid of steps 1-2 (never computed as an array). Because its axes
are the volume's own axes permuted and flipped, the map from volume voxels to grid voxels is
separable (one 1D affine map per axis), so a crop is resampled on its own (linear, through
SimpleITK, from just the block of the volume it covers, giving the same values the whole-volume
resampling would), and a mask is put back by nearest-neighbour index gathering, as TorchIO's
``Resample(..., 'nearest')`` back onto the original grid does (round half up; a voxel centre maps
into the crop when its continuous crop index lies in ``[-0.5, 127.5)``).

Crop centring (the rule TorchIO's ``CropOrPad(mask_name=...)`` applies to a bounding box
``[lo, hi)`` in grid voxels): ``start = floor((lo + hi) / 2) - 64``. A click is the one-voxel box
of the grid voxel holding it, so the click sits at crop index 64 on every axis.

Coordinates: volume voxels are ``(z, y, x)`` array indices; grid/crop voxels are in the grid's
axis order ``(c0, c1, c2)`` = (R, A, S), the order of the network's input tensor and of its point
prompts (the official code takes points with ``torch.argwhere`` on that tensor).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.geometry import Geometry

CROP = 128
SPACING = 1.5
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def nearest_ras_axes(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each voxel axis (x, y, z order) of an LPS direction matrix, its RAS+ axis and sign.

    The rule of nibabel's ``io_orientation`` (used by TorchIO's ``ToCanonical``): take the
    closest rotation to the direction cosines, then, strongest axis first, give each voxel axis
    the world axis it moves along most, removing that world axis from further choice.
    """
    ras = _LPS_TO_RAS @ np.asarray(direction, float).reshape(3, 3)
    norms = np.linalg.norm(ras, axis=0)
    norms[norms == 0] = 1.0
    u, s, vt = np.linalg.svd(ras / norms)
    keep = s > s.max() * 3 * np.finfo(float).eps
    rot = u[:, keep] @ vt[keep]
    world = np.full(3, -1)
    sign = np.ones(3)
    for axis in np.argsort(-np.max(rot**2, axis=0), kind="stable"):
        column = rot[:, axis]
        out = int(np.argmax(np.abs(column)))
        world[axis] = out
        sign[axis] = -1.0 if column[out] < 0 else 1.0
        rot[out, :] = 0.0
    if sorted(world) != [0, 1, 2]:
        raise ValueError(f"degenerate direction matrix {direction}")
    return world, sign


@dataclass(frozen=True)
class CanonicalGrid:
    """The official 1.5 mm RAS+ grid of a volume, and the separable map to it.

    Attributes:
        shape: grid size along the canonical axes (c0, c1, c2).
        spacing: mm, isotropic.
        origin: LPS position (x, y, z) of grid voxel (0, 0, 0).
        direction: 3x3 LPS matrix, column ``c`` the direction of grid axis ``c`` (SimpleITK style).
        src_axis: for grid axis ``c``, the volume array axis (0 z, 1 y, 2 x) it runs along.
        scale, offset: grid index ``u_c = scale[c] * i + offset[c]`` for volume index ``i`` on
            array axis ``src_axis[c]``.
        volume_shape: the volume's array shape (z, y, x).
    """

    shape: tuple[int, int, int]
    spacing: float
    origin: np.ndarray
    direction: np.ndarray
    src_axis: tuple[int, int, int]
    scale: np.ndarray
    offset: np.ndarray
    volume_shape: tuple[int, int, int]

    @classmethod
    def from_geometry(cls, geometry: Geometry, shape_zyx, spacing: float = SPACING) -> CanonicalGrid:
        n = np.array(shape_zyx[::-1], dtype=float)  # sizes in x, y, z order
        s = np.array(geometry.spacing, float)
        o = np.array(geometry.origin, float)
        d = geometry.direction_matrix
        # step 1, tio.Resample(spacing): centred grid of floor(n * s / spacing) voxels
        m = np.floor(n * s / spacing)
        m[n == 1] = 1
        centre = (o + (o + d @ (s * (n - 1)))) / 2
        o1 = centre - d @ ((m - 1) / 2 * spacing)
        # step 2, tio.ToCanonical: permute/flip the voxel axes to the nearest RAS+
        world, sign = nearest_ras_axes(d)
        shape = [0, 0, 0]
        direction = np.zeros((3, 3))
        origin = o1.copy()
        src_axis = [0, 0, 0]
        scale = np.zeros(3)
        offset = np.zeros(3)
        for j in range(3):  # voxel axis j in x, y, z order
            c = int(world[j])
            shape[c] = int(m[j])
            direction[:, c] = sign[j] * d[:, j]
            if sign[j] < 0:
                origin = origin + d[:, j] * spacing * (m[j] - 1)
            src_axis[c] = 2 - j
        for j in range(3):
            c = int(world[j])
            # u_c = sign * (d_j . (o - origin) + s_j * i) / spacing  (orthonormal directions)
            scale[c] = sign[j] * s[j] / spacing
            offset[c] = sign[j] * float(d[:, j] @ (o - origin)) / spacing
        return cls(
            tuple(shape), float(spacing), origin, direction, tuple(src_axis), scale, offset,
            tuple(int(v) for v in shape_zyx),
        )

    # --- points -------------------------------------------------------------------------------
    def to_grid(self, points_zyx) -> np.ndarray:
        """Volume voxels ``(N, 3)`` (z, y, x) to continuous grid voxels ``(N, 3)`` (c0, c1, c2)."""
        p = np.asarray(points_zyx, float).reshape(-1, 3)
        return p[:, list(self.src_axis)] * self.scale + self.offset

    def to_volume(self, grid_points) -> np.ndarray:
        """Continuous grid voxels ``(N, 3)`` back to volume voxels ``(N, 3)`` (z, y, x)."""
        u = np.asarray(grid_points, float).reshape(-1, 3)
        out = np.empty_like(u)
        out[:, list(self.src_axis)] = (u - self.offset) / self.scale
        return out

    def grid_voxel(self, points_zyx) -> np.ndarray:
        """The grid voxel (integer, round half up) holding each volume point."""
        return np.floor(self.to_grid(points_zyx) + 0.5).astype(int)

    # --- crops --------------------------------------------------------------------------------
    @staticmethod
    def crop_start(lo, hi, size: int = CROP) -> tuple[int, int, int]:
        """Start of the crop centred on the grid box ``[lo, hi)`` (TorchIO CropOrPad's rule)."""
        lo, hi = np.asarray(lo, int), np.asarray(hi, int)
        return tuple(int(v) for v in (lo + hi) // 2 - size // 2)

    def box_of_volume_box(self, lo_zyx, hi_zyx) -> tuple[np.ndarray, np.ndarray]:
        """Grid box ``[lo, hi)`` of the grid voxels holding the voxels of a volume box."""
        corners = np.array(
            [[z, y, x] for z in (lo_zyx[0], hi_zyx[0] - 1) for y in (lo_zyx[1], hi_zyx[1] - 1)
             for x in (lo_zyx[2], hi_zyx[2] - 1)], float
        )
        g = self.grid_voxel(corners)
        return g.min(axis=0), g.max(axis=0) + 1

    def crop_geometry(self, start) -> Geometry:
        """SimpleITK geometry of the crop at ``start`` (crop axes = grid axes, x/y/z in ITK)."""
        origin = self.origin + self.direction @ (self.spacing * np.asarray(start, float))
        return Geometry((self.spacing,) * 3, tuple(origin), tuple(self.direction.ravel()))

    def _volume_indices(self, c: int, start: int, size: int) -> np.ndarray:
        """Continuous volume index on ``src_axis[c]`` of grid voxels ``start .. start+size-1``."""
        return (np.arange(start, start + size, dtype=float) - self.offset[c]) / self.scale[c]

    def extract(self, array: np.ndarray, geometry: Geometry, start, size: int = CROP) -> np.ndarray:
        """The crop at ``start``, linearly resampled, float32, indexed (c0, c1, c2).

        Voxels outside the grid are 0 (TorchIO pads with 0). Only the block of ``array`` that
        the crop covers (plus one voxel for interpolation) is handed to SimpleITK, so the values
        equal those of resampling the whole volume.
        """
        import SimpleITK as sitk

        lo, hi = [0, 0, 0], [0, 0, 0]
        for c in range(3):
            a = self.src_axis[c]
            idx = self._volume_indices(c, start[c], size)
            lo[a] = max(0, int(np.floor(idx.min())) - 1)
            hi[a] = min(array.shape[a], int(np.floor(idx.max())) + 3)
        out = np.zeros((size,) * 3, np.float32)
        if any(b <= a for a, b in zip(lo, hi)):
            return out
        block = array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        if block.dtype == bool:
            block = block.view(np.uint8)
        elif block.dtype == np.float16:
            block = block.astype(np.float32)
        image = sitk.GetImageFromArray(np.ascontiguousarray(block))
        image.SetSpacing(tuple(float(v) for v in np.array(geometry.spacing)))
        image.SetDirection(geometry.direction)
        image.SetOrigin(tuple(float(v) for v in geometry.index_to_physical(lo)))
        reference = sitk.Image([size] * 3, image.GetPixelID())
        self.crop_geometry(start).apply_to_sitk(reference)
        resampled = sitk.Resample(
            image, reference, sitk.Transform(), sitk.sitkLinear, 0, image.GetPixelID()
        )
        # ITK array is (c2, c1, c0); the network wants (c0, c1, c2)
        out[...] = sitk.GetArrayViewFromImage(resampled).transpose(2, 1, 0)
        for c in range(3):  # outside the canonical grid: zero padding, as CropOrPad does
            inside = np.arange(start[c], start[c] + size)
            bad = (inside < 0) | (inside >= self.shape[c])
            if bad.any():
                index = [slice(None)] * 3
                index[c] = bad
                out[tuple(index)] = 0
        return out

    def sample_mask(self, mask: np.ndarray, start, size: int = CROP) -> np.ndarray:
        """Nearest-neighbour crop of a volume-grid boolean ``mask`` (outside the volume: False)."""
        idx = []
        for c in range(3):
            a = self.src_axis[c]
            i = np.floor(self._volume_indices(c, start[c], size) + 0.5)
            ok = (i >= 0) & (i < mask.shape[a])
            idx.append(np.where(ok, i, 0).astype(np.intp))
            if not ok.any():
                return np.zeros((size,) * 3, bool)
            idx[-1] = (idx[-1], ok)
        out = mask.transpose(self.src_axis)
        for c, (i, _) in enumerate(idx):  # one axis at a time: much faster than np.ix_
            out = out.take(i, axis=c)
        (_, ok0), (_, ok1), (_, ok2) = idx
        return out & ok0[:, None, None] & ok1[None, :, None] & ok2[None, None, :]

    def paste(self, crop_mask: np.ndarray, start) -> tuple[tuple[int, ...], np.ndarray] | None:
        """Map a crop mask (c0, c1, c2) back onto the volume grid by nearest neighbour.

        Returns ``(bbox, patch)``: half-open volume bounds ``(z0, y0, x0, z1, y1, x1)`` of the
        volume voxels whose nearest crop voxel lies in the bounding box of ``crop_mask``, and the
        mask there (every other voxel maps to a False crop voxel or outside the crop); None if
        the mask is empty or no voxel maps into it.
        """
        lo, hi, gather = [0, 0, 0], [0, 0, 0], [None, None, None]
        for c in range(3):
            a = self.src_axis[c]
            nz = np.flatnonzero(crop_mask.any(axis=tuple(k for k in range(3) if k != c)))
            if nz.size == 0:
                return None
            u = self.scale[c] * np.arange(self.volume_shape[a]) + self.offset[c] - start[c]
            inside = np.flatnonzero((u >= nz[0] - 0.5) & (u < nz[-1] + 0.5))
            if inside.size == 0:
                return None
            lo[a], hi[a] = int(inside[0]), int(inside[-1]) + 1
            gather[a] = np.floor(u[lo[a]:hi[a]] + 0.5).astype(np.intp)
        # crop axes in volume order: volume axis a is crop axis c with src_axis[c] == a
        order = [self.src_axis.index(a) for a in range(3)]
        patch = crop_mask.transpose(order)
        for a in range(3):  # one axis at a time: much faster than np.ix_
            patch = patch.take(gather[a], axis=a)
        return (*lo, *hi), patch
