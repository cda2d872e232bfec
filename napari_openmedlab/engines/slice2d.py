"""One slice of a volume as a 2D SAM-family network sees it: geometry, intensities, transforms.

Used by :class:`~napari_openmedlab.engines.sam2d.Sam2DEngine` (its module docstring describes
the behaviour); nothing here holds state.

* **Geometry**: :func:`slice_of` cuts slice ``index`` normal to ``axis``; its rows and columns
  are the two remaining array axes in order (:func:`other_axes`).
* **Intensities**: :func:`window_bounds` maps a CT window (preset name or ``(width, level)``) or
  ``"mri"`` (percentiles of the non-zero voxels) to the values shown as 0 and 255;
  :func:`looks_like_ct` drives the automatic choice.
* **Anisotropic slices**: for SAM ViT-B (aspect-keeping) a slice with non-square physical
  pixels is stretched first (:func:`stretched_size`); :class:`StretchedTransform` maps prompts
  and logits through that stretch around the model's own
  :class:`~napari_openmedlab.models.sam_med2d.preprocess.SliceTransform`.
* **Network input**: :func:`encoder_input` turns a slice into the image encoder's tensor,
  :func:`prompt_tensors` turns a slice's clicks, box and mask into the prompt encoder's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..io.volume import Volume
from ..models.sam_med2d import preprocess as pp
from .base import PromptError

MRI = "mri"
ASPECT_TOLERANCE = 1.2
"""Stretch a slice for SAM only when its pixels are this far from square."""
MASK_LOGIT = 8.0
"""Logit magnitude of a binary mask fed as a mask prompt."""


# ------------------------------------------------------------------ geometry


def slice_of(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The 2D slice ``index`` normal to ``axis`` (rows, columns = the other axes in order)."""
    sl: list[Any] = [slice(None)] * 3
    sl[axis] = index
    return array[tuple(sl)]


def other_axes(axis: int) -> tuple[int, int]:
    """The (row, column) array axes of a slice normal to ``axis``."""
    rows, cols = (a for a in range(3) if a != axis)
    return rows, cols


def box_rc(box) -> tuple[float, float, float, float]:
    """A :class:`~napari_openmedlab.engines.base.Box` as ordered ``(r0, c0, r1, c1)`` on its slice."""
    return (min(box.r0, box.r1), min(box.c0, box.c1), max(box.r0, box.r1), max(box.c0, box.c1))


def mask_slices(mask: np.ndarray, axis: int) -> dict[int, np.ndarray]:
    """The non-empty slices of a 3D ``mask`` along ``axis``, by index (copies)."""
    other = tuple(a for a in range(3) if a != axis)
    return {int(i): slice_of(mask, axis, int(i)).copy() for i in np.flatnonzero(mask.any(axis=other))}


def mask_digest(mask: np.ndarray) -> str:
    """A short hash of a 2D mask (to recognise the engine's own previous mask)."""
    m = np.ascontiguousarray(mask, dtype=bool)
    return hashlib.blake2b(np.packbits(m).tobytes() + str(m.shape).encode(), digest_size=16).hexdigest()


# ------------------------------------------------------------------ intensities


def check_window(window) -> None:
    """Raise ValueError unless ``window`` is None, ``"mri"``, a CT preset or a ``(width, level)``."""
    if window is None or (isinstance(window, str) and window.lower() == MRI):
        return
    pp.ct_window_bounds(window)  # raises ValueError for an unknown preset or a bad pair


def looks_like_ct(volume: Volume) -> bool:
    """CT by its ``modality`` metadata, or (none given) by a minimum below -500."""
    modality = str(volume.metadata.get("modality", "")).upper()
    if modality:
        return modality == "CT"
    return float(np.min(volume.array)) < -500


def window_bounds(window: str | tuple[float, float], volume: Volume) -> tuple[tuple[float, float], bool]:
    """``(bounds, keep_zero)`` of a window that is not None (``"mri"``: percentiles, zeros kept)."""
    if isinstance(window, str) and window.lower() == MRI:
        values = volume.array
        step = max(1, values.size // 4_000_000)  # percentiles of a subsample of big volumes
        sample = values.reshape(-1)[::step]
        return pp.percentile_bounds(sample, *pp.MRI_PERCENTILES, nonzero=True), True
    return pp.ct_window_bounds(window), False


# ------------------------------------------------------------------ anisotropic slices


def stretched_size(kind: str, spacing_zyx, axis: int, shape: tuple[int, int]) -> tuple[int, int] | None:
    """For SAM (aspect-keeping): the slice size with square physical pixels, or None."""
    if kind != "sam":
        return None
    rows, cols = other_axes(axis)
    sr, sc = float(spacing_zyx[rows]), float(spacing_zyx[cols])
    if max(sr, sc) / min(sr, sc) < ASPECT_TOLERANCE:
        return None
    h, w = shape
    scale = max(h, w) / max(h * sr, w * sc)
    return max(1, int(round(h * sr * scale))), max(1, int(round(w * sc * scale)))


class StretchedTransform:
    """A slice stretched to ``stretched_size`` before the model's own transform ``inner``."""

    def __init__(
        self, inner: pp.SliceTransform, original_size: tuple[int, int], stretched_size: tuple[int, int]
    ):
        self.inner = inner
        self.original_size = original_size
        self.stretched_size = stretched_size
        self.kind = inner.kind
        self.model_size = inner.model_size
        self.input_size = inner.input_size

    def coords_to_input(self, coords_xy) -> np.ndarray:
        c = np.array(coords_xy, dtype=float, copy=True)
        (oh, ow), (sh, sw) = self.original_size, self.stretched_size
        c[..., 0] *= sw / ow
        c[..., 1] *= sh / oh
        return self.inner.coords_to_input(c)

    def boxes_to_input(self, boxes_xyxy) -> np.ndarray:
        b = np.asarray(boxes_xyxy, dtype=float).reshape(-1, 2, 2)
        return self.coords_to_input(b).reshape(-1, 4)

    def logits_to_slice(self, low_res: torch.Tensor) -> torch.Tensor:
        x = self.inner.logits_to_slice(low_res)
        return F.interpolate(x, self.original_size, mode="bilinear", align_corners=False)

    def mask_to_prompt(self, mask: np.ndarray, low_res_size: int, logit: float = MASK_LOGIT) -> torch.Tensor:
        m = torch.as_tensor(np.asarray(mask, dtype=np.float32))[None, None]
        m = F.interpolate(m, self.stretched_size, mode="bilinear", align_corners=False)[0, 0]
        return self.inner.mask_to_prompt((m > 0.5).numpy(), low_res_size, logit)


# ------------------------------------------------------------------ network input


def encoder_batch(
    volume_array: np.ndarray,
    spacing_zyx,
    keys,
    bounds: tuple[float, float],
    keep_zero: bool,
    kind: str,
    model_size: int,
) -> tuple[torch.Tensor, list[Any]]:
    """The network input of slices ``keys`` (``(axis, index)``), one batch ``(len(keys), 3, S, S)``,
    and each slice's transform."""
    tensors, transforms = [], []
    for axis, index in keys:
        image = pp.to_uint8(slice_of(volume_array, axis, index), bounds, keep_zero=keep_zero)
        tensor, transform = encoder_input(
            image, kind, model_size, stretched_size(kind, spacing_zyx, axis, image.shape)
        )
        tensors.append(tensor)
        transforms.append(transform)
    return torch.cat(tensors), transforms


def encoder_input(
    image: np.ndarray, kind: str, model_size: int, stretched: tuple[int, int] | None
) -> tuple[torch.Tensor, Any]:
    """``(input tensor, transform)`` of a uint8 slice, stretched first when ``stretched`` is given."""
    original = image.shape
    if stretched is not None:
        t = torch.from_numpy(image.astype(np.float32))[None, None]
        t = F.interpolate(t, stretched, mode="bilinear", align_corners=False)
        image = t[0, 0].round().clamp(0, 255).numpy().astype(np.uint8)
    tensor, transform = pp.prepare_slice(image, kind, model_size)
    if stretched is not None:
        transform = StretchedTransform(transform, original, stretched)
    return tensor, transform


def prompt_tensors(
    tf,
    points_rc: np.ndarray | None,
    labels: np.ndarray | None,
    box: tuple[float, float, float, float] | None,
    mask: np.ndarray | None,
    mask_logits: torch.Tensor | None,
    low_res_size: int,
    device: torch.device,
):
    """``(points, boxes, masks, n_points)`` for the prompt encoder, through the slice transform ``tf``.

    ``points_rc`` are (row, column) clicks, ``box`` is ``(r0, c0, r1, c1)``; ``mask`` (slice
    grid) is used only when ``mask_logits`` is None. Raises PromptError for a mismatch of points
    and labels; each of the three may be None.
    """
    points = None
    n_points = 0
    if points_rc is not None and len(points_rc):
        pts = np.asarray(points_rc, dtype=float).reshape(-1, 2)
        lab = np.asarray(labels, dtype=int).reshape(-1)
        if len(lab) != len(pts):
            raise PromptError(f"{len(pts)} points but {len(lab)} labels")
        coords = tf.coords_to_input(pts[:, ::-1])  # (row, col) -> (x, y)
        points = (
            torch.as_tensor(coords, dtype=torch.float32, device=device)[None],
            torch.as_tensor(lab, dtype=torch.int64, device=device)[None],
        )
        n_points = len(pts)
    boxes = None
    if box is not None:
        r0, c0, r1, c1 = (float(v) for v in box)
        boxes = torch.as_tensor(tf.boxes_to_input([c0, r0, c1, r1]), dtype=torch.float32, device=device)
    if mask_logits is None and mask is not None:
        mask_logits = tf.mask_to_prompt(np.asarray(mask, dtype=bool), low_res_size, MASK_LOGIT)
    masks_in = (
        None
        if mask_logits is None
        else mask_logits.to(device, torch.float32).reshape(1, 1, low_res_size, low_res_size)
    )
    return points, boxes, masks_in, n_points


# ------------------------------------------------------------------ records


@dataclass
class SliceEmbedding:
    """A slice's image embedding and the transform that maps its prompts and logits."""

    features: torch.Tensor  # (1, C, h, w) on the engine's device
    transform: Any  # preprocess.SliceTransform or StretchedTransform
    seconds: float = 0.0


@dataclass
class SliceResult:
    """One slice's answer: the mask on the slice grid and what produced it."""

    axis: int
    index: int
    mask: np.ndarray  # (rows, cols) bool
    low_res_logits: torch.Tensor  # (1, 1, L, L), on the CPU
    iou: float
    multimask: bool
    timings: dict = field(default_factory=dict)
