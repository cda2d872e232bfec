"""The official SAM-Med3D validation protocol: label-centred 128^3 crop and random error clicks.

This re-implements, with SimpleITK and NumPy only, what ``validate_paired_img_gt`` in
``utils/infer_utils.py`` of uni-medical/SAM-Med3D does for each class of a case:

1. ``tio.Resample(1.5)``: image (linear) and label map (nearest) go onto a grid of 1.5 mm voxels
   with the same direction and the same centre; the new size is ``floor(size * spacing / 1.5)``;
   the voxel type is kept (an int16 CT stays int16 after linear interpolation);
2. ``tio.ToCanonical()``: axes permuted and flipped to RAS+ (array ``(x, y, z)`` order there);
3. ``tio.CropOrPad(128, mask_name="label")``: a 128^3 box centred on the bounding box of the
   class (TorchIO's half-voxel rounding included), padded with 0 where it leaves the image;
4. clicks: the global NumPy generator is seeded once per case with 233 (``np.random.seed``);
   for each class in increasing id order, each click is ``np.random.randint(len(points))`` into
   ``argwhere`` of the error region (false negatives | false positives of the previous
   prediction, thresholded at 0.5), enumerated in TorchIO's ``(i, j, k)`` = ``(x, y, z)`` voxel
   order of the canonical crop; before the first prediction the error region is the whole object;
   the click is positive exactly when it falls in a false negative; if no error is left, a voxel
   of the object is drawn (positive). A class whose crop holds no object voxel gets no click and
   an empty prediction;
5. the crop's prediction goes back to the original grid by nearest-neighbour resampling.

Here a seeded ``np.random.RandomState(233)`` stands for the global generator (the same stream).
A test checks steps 1-3 against TorchIO itself when it is installed.

Differences that remain (and why):

* **Random stream across classes and engines.** The official stream is consumed by every class
  in order; each draw's range depends on the model's previous prediction. The clicks are the
  official ones only for the same engine outputs and the same classes: ``--classes`` with a
  subset, or another engine, gives other (still deterministic) clicks.
* **Label grid.** The official code resamples the image and the label map each from its own
  grid; here the label map is first put on the image grid (``io.resample_labels_to``) when the
  two differ, so cases like the flipped DICOM segmentation work at all.
* **None in the masks.** The protocol hands the engine the 128^3 crop as its volume (in the
  image's own units, padded with 0 as TorchIO pads it) and makes it the engine's one crop
  (``first_crop_box``, no extension); the engine z-normalises it and thresholds
  ``sigmoid(logits) > 0.5`` in float32 as the official code does. With ``encoder="reference"``
  every click's crop mask equals the official pipeline's voxel for voxel and the Dice equals the
  official Dice to 1e-6 (``tests/evaluation/test_official_exactness.py`` runs the official steps
  with TorchIO and medim side by side). With the default ``fast`` encoder the embedding differs
  by float32 rounding (~1e-6), which can move a voxel whose logit is within ~1e-6 of 0: a few
  voxels at most on the first click, after which the random clicks may land elsewhere.
* **Metrics** are computed per class on that class's own prediction on the original grid, after
  each click; the official script writes one label map in which a later class overwrites an
  earlier one where they overlap, and scores only after the last click.
* **Oblique directions** are mapped to the nearest axes, like ``tio.ToCanonical``; with strongly
  oblique directions nibabel's axis assignment may differ from this nearest-axis rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.geometry import Geometry
from ..io.resample import resample_labels_to
from ..io.volume import Volume
from .clicks import Click, error_regions

__all__ = [
    "CROP_SIZE",
    "SEED",
    "SPACING_MM",
    "RoiCase",
    "SamMed3DClicks",
    "canonical",
    "crop_or_pad_around",
    "prepare_roi",
    "resample_like_torchio",
]

SEED = 233
CROP_SIZE = 128
SPACING_MM = 1.5
_RAS_SIGN_LPS = np.array([-1.0, -1.0, 1.0])  # RAS+ axes written in LPS physical coordinates


# --- step 1: resampling ----------------------------------------------------------------------

def _reference_grid(geometry: Geometry, shape_zyx, spacing_mm: float) -> tuple[Geometry, tuple]:
    """TorchIO's ``Resample.get_reference_image``: same centre and direction, floor'ed size."""
    old_spacing = np.asarray(geometry.spacing, float)
    new_spacing = np.full(3, float(spacing_mm))
    old_size = np.asarray(shape_zyx[::-1], float)  # x, y, z
    direction = geometry.direction_matrix
    origin = np.asarray(geometry.origin, float)
    last = origin + direction @ ((old_size - 1) * old_spacing)
    centre = (origin + last) / 2
    new_size = np.floor(old_size * old_spacing / new_spacing)
    new_size[old_size == 1] = 1
    new_origin = centre - direction @ ((new_size - 1) / 2 * new_spacing)
    ref = Geometry(tuple(new_spacing), tuple(new_origin), geometry.direction)
    return ref, tuple(int(n) for n in new_size[::-1])


def resample_like_torchio(volume: Volume, spacing_mm: float = SPACING_MM, *, label: bool) -> Volume:
    """``tio.Resample(spacing_mm)`` of one image: linear (or nearest for labels), type kept, fill 0."""
    import SimpleITK as sitk

    geometry, shape = _reference_grid(volume.geometry, volume.shape, spacing_mm)
    image = volume.to_sitk()
    reference = sitk.Image([int(s) for s in shape[::-1]], image.GetPixelID())
    geometry.apply_to_sitk(reference)
    interp = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
    out = sitk.Resample(image, reference, sitk.Transform(), interp, 0.0, image.GetPixelID())
    return Volume(sitk.GetArrayFromImage(out), geometry, dict(volume.metadata))


# --- step 2: canonical orientation ------------------------------------------------------------

def _axis_map(geometry: Geometry) -> tuple[list[int], list[bool]]:
    """For each RAS output axis (x, y, z): the input index axis feeding it and whether it flips."""
    d = geometry.direction_matrix  # column j: physical direction of index axis j
    used: set[int] = set()
    source, flip = [0, 0, 0], [False, False, False]
    # assign the most clearly aligned index axes first, as an orientation code would
    for j in np.argsort(-np.abs(d).max(axis=0)):
        order = np.argsort(-np.abs(d[:, j]))
        a = int(next(a for a in order if a not in used))
        used.add(a)
        source[a] = int(j)
        flip[a] = bool(np.sign(d[a, j]) != _RAS_SIGN_LPS[a])
    return source, flip


def canonical(volume: Volume) -> Volume:
    """``tio.ToCanonical``: permute and flip the voxel axes so that x, y, z run to R, A, S."""
    g = volume.geometry
    source, flip = _axis_map(g)
    arr = volume.array
    # array axes are (z, y, x): index axis j lives at array axis 2 - j
    arr = np.transpose(arr, [2 - source[2], 2 - source[1], 2 - source[0]])
    size_xyz = np.asarray(volume.shape[::-1])
    for a in range(3):
        if flip[a]:
            arr = np.flip(arr, axis=2 - a)
    d = g.direction_matrix
    spacing = np.asarray(g.spacing)
    new_dir = np.zeros((3, 3))
    new_spacing = np.zeros(3)
    corner = np.zeros(3)  # old continuous index (x, y, z) of the new index (0, 0, 0)
    for a in range(3):
        j = source[a]
        new_dir[:, a] = d[:, j] * (-1 if flip[a] else 1)
        new_spacing[a] = spacing[j]
        corner[j] = size_xyz[j] - 1 if flip[a] else 0
    origin = np.asarray(g.origin) + d @ (corner * spacing)
    geometry = Geometry(tuple(new_spacing), tuple(origin), tuple(new_dir.ravel()))
    return Volume(np.ascontiguousarray(arr), geometry, dict(volume.metadata))


# --- step 3: crop or pad around the label -----------------------------------------------------

def _crop_pad_bounds(mask_xyz_bbox, shape_xyz, target: int) -> list[tuple[int, int]]:
    """TorchIO's ``_compute_mask_center_crop_or_pad``: first index and pad-before per axis.

    Returns, per axis (x, y, z), ``(start, stop)`` of the output window in input indices
    (``start`` may be negative and ``stop`` past the end: the rest is padding).
    """
    (bb_min, bb_max) = mask_xyz_bbox
    out = []
    for dim in range(3):
        centre = (bb_min[dim] + bb_max[dim]) / 2
        centre_on_index = not (centre % 1)
        target_even = not (target % 2)
        if target_even ^ centre_on_index:
            centre -= 0.5
        begin = centre - target / 2
        end = centre + target / 2
        # TorchIO keeps floats and casts each crop/pad amount with int() (toward zero)
        crop_ini, pad_ini = (begin, 0.0) if begin >= 0 else (0.0, -begin)
        crop_fin, pad_fin = (shape_xyz[dim] - end, 0.0) if end <= shape_xyz[dim] else (0.0, end - shape_xyz[dim])
        start = int(crop_ini) - int(pad_ini)
        stop = shape_xyz[dim] - int(crop_fin) + int(pad_fin)
        out.append((start, stop))
    return out


def crop_or_pad_around(volume: Volume, window_xyz: list[tuple[int, int]], fill=0) -> Volume:
    """The part of ``volume`` in index window ``[(start, stop)]`` (x, y, z), padded with ``fill``."""
    starts = np.array([w[0] for w in window_xyz])
    stops = np.array([w[1] for w in window_xyz])
    size = stops - starts
    out = np.full(tuple(size[::-1]), fill, dtype=volume.array.dtype)
    shape_xyz = np.asarray(volume.shape[::-1])
    src_lo = np.maximum(starts, 0)
    src_hi = np.minimum(stops, shape_xyz)
    if np.all(src_hi > src_lo):
        dst_lo = src_lo - starts
        dst_hi = dst_lo + (src_hi - src_lo)
        src = tuple(slice(int(a), int(b)) for a, b in zip(src_lo[::-1], src_hi[::-1]))
        dst = tuple(slice(int(a), int(b)) for a, b in zip(dst_lo[::-1], dst_hi[::-1]))
        out[dst] = volume.array[src]
    g = volume.geometry
    origin = np.asarray(g.origin) + g.direction_matrix @ (starts * np.asarray(g.spacing))
    return Volume(out, Geometry(g.spacing, tuple(origin), g.direction), dict(volume.metadata))


# --- the whole preparation --------------------------------------------------------------------

@dataclass
class RoiCase:
    """One class of one case, prepared as the official validation prepares it.

    Attributes:
        image: the 128^3 crop at 1.5 mm in RAS+ voxel order, in the image's own units.
        label: boolean object mask on the crop's grid.
        class_id: the label id.
        source_geometry, source_shape: the original image grid, for :meth:`to_source`.
    """

    image: Volume
    label: np.ndarray
    class_id: int
    source_geometry: Geometry
    source_shape: tuple[int, int, int]

    @property
    def empty(self) -> bool:
        return not self.label.any()

    def to_source(self, mask: np.ndarray) -> np.ndarray:
        """A boolean mask on the crop's grid, nearest-neighbour resampled onto the original grid."""
        roi = Volume(np.asarray(mask, dtype=np.uint8), self.image.geometry)
        return resample_labels_to(roi, self.source_geometry, self.source_shape).array.astype(bool)


def prepare_roi(
    image: Volume,
    labels: Volume,
    class_id: int,
    crop_size: int = CROP_SIZE,
    spacing_mm: float = SPACING_MM,
) -> RoiCase:
    """Resample, canonicalise and crop ``image`` and the class's mask as the official code does."""
    if labels.shape != image.shape or not labels.geometry.same_grid(image.geometry):
        labels = resample_labels_to(labels, image.geometry, image.shape)
    binary = Volume((np.asarray(labels.array) == class_id).astype(np.uint8), labels.geometry)
    img = canonical(resample_like_torchio(image, spacing_mm, label=False))
    lab = canonical(resample_like_torchio(binary, spacing_mm, label=True))
    mask_xyz = lab.array.transpose(2, 1, 0) > 0
    shape_xyz = mask_xyz.shape
    if mask_xyz.any():
        nz = [np.flatnonzero(mask_xyz.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
        bbox = (np.array([n[0] for n in nz]), np.array([n[-1] + 1 for n in nz]))
        window = _crop_pad_bounds(bbox, shape_xyz, crop_size)
    else:  # TorchIO falls back to the volume centre
        window = []
        for n in shape_xyz:
            diff = crop_size - n
            if diff >= 0:  # pad: ceil(diff/2) before
                window.append((-int(np.ceil(diff / 2)), n + int(np.floor(diff / 2))))
            else:  # crop: ceil(-diff/2) before
                window.append((int(np.ceil(-diff / 2)), n - int(np.floor(-diff / 2))))
    roi_image = crop_or_pad_around(img, window, fill=0)
    roi_label = crop_or_pad_around(lab, window, fill=0).array > 0
    roi_image.metadata.update({"protocol": "sam-med3d", "class_id": int(class_id)})
    return RoiCase(roi_image, roi_label, int(class_id), image.geometry, image.shape)


# --- step 4: clicks ---------------------------------------------------------------------------

class SamMed3DClicks:
    """The official random click drawing; create one per case (the stream runs across classes)."""

    name = "sam-med3d"

    def __init__(self, seed: int = SEED) -> None:
        self.seed = seed
        self.rng = np.random.RandomState(seed)

    def next_click(self, gt: np.ndarray, pred: np.ndarray | None = None) -> Click:
        """One click on the crop's grid ``(z, y, x)``; ``pred`` is the previous binary prediction."""
        gt = np.asarray(gt, dtype=bool)
        if not gt.any():
            raise ValueError("Cannot find true value in the ground-truth!")
        fn, fp = error_regions(gt, pred)
        region = fn | fp
        positive_only = not region.any()
        pool = gt if positive_only else region
        points = np.argwhere(pool.transpose(2, 1, 0))  # TorchIO (i, j, k) = (x, y, z) order
        i, j, k = points[self.rng.randint(len(points))]
        zyx = (int(k), int(j), int(i))
        return Click(zyx, True if positive_only else bool(fn[zyx]))
