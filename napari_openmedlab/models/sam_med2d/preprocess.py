"""Per-model slice preparation for the 2D models, following each model's official predictor.

Two stages:

1. **Intensity to 0..255** (``uint8``), chosen by the caller for the volume, not per slice:

   * CT: a window ``(width, level)``; values are clipped to ``[level - width/2, level + width/2]``
     and scaled linearly to 0..255 (MedSAM's ``pre_CT_MR.py`` does this with W400/L40).
     Presets in :data:`CT_WINDOWS`.
   * MR (and anything without Hounsfield units): the 0.5 and 99.5 percentiles of the volume's
     non-zero voxels (MedSAM's ``pre_CT_MR.py``), zero voxels stay 0.

   Compute the bounds once per volume with :func:`intensity_bounds` and apply them to every
   slice with :func:`to_uint8`, so neighbouring slices are scaled alike.

2. **Model input** with :func:`prepare_slice` (returns the tensor and a :class:`SliceTransform`
   that maps prompts in and logits out):

   * ``"sam-med2d"`` (``SammedPredictor``): resize straight to 256x256 with nearest-neighbour
     (OpenCV ``INTER_NEAREST``; torch's ``"nearest"`` is the same rule), no padding, then
     ``(x - mean) / std`` with SAM's pixel mean/std, 3 identical channels.
   * ``"sam"`` (``SamPredictor``): long side to 1024 (``int(side * 1024 / long + 0.5)``),
     bilinear with antialiasing (torchvision's PIL resize; reproduced with torch's antialiased
     bilinear, result rounded to uint8 as PIL does), ``(x - mean) / std``, zero-pad
     bottom/right to 1024x1024.
   * ``"medsam"`` (``MedSAM_Inference.py`` / ``gui.py``): resize straight to 1024x1024 with
     scikit-image ``resize(order=3, preserve_range=True, anti_aliasing=True)`` cast to uint8
     (torch bicubic when scikit-image is missing), then min-max to 0..1 over the image; no
     mean/std and no padding.

Logits go back as the official postprocessing does: SAM and SAM-Med2D upsample the low-res
logits bilinearly to the model input size, crop the padding, and resize bilinearly to the
slice; MedSAM resizes the low-res output bilinearly straight to the slice.

Coordinates follow SAM: a point is ``(x, y) = (column, row)`` in slice pixels, a box is
``(x0, y0, x1, y1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)

PREPROCESS_KINDS = ("sam-med2d", "sam", "medsam")

CT_WINDOWS: dict[str, tuple[float, float]] = {
    # name: (width, level) in Hounsfield units
    "soft_tissue": (400.0, 40.0),  # abdomen / general; MedSAM's CT default
    "mediastinum": (350.0, 50.0),
    "head_neck": (350.0, 40.0),
    "liver": (150.0, 30.0),
    "brain": (80.0, 40.0),
    "lung": (1500.0, -600.0),
    "bone": (1800.0, 400.0),
}
"""CT window presets, ``name -> (width, level)`` in HU (common radiology values)."""

MRI_PERCENTILES = (0.5, 99.5)
"""MedSAM's MR bounds: these percentiles of the non-zero voxels."""


# ---------------------------------------------------------------- intensity to 0..255


def ct_window_bounds(window: str | tuple[float, float]) -> tuple[float, float]:
    """``(low, high)`` HU for a preset name or a ``(width, level)`` pair."""
    if isinstance(window, str):
        try:
            width, level = CT_WINDOWS[window]
        except KeyError:
            raise ValueError(f"unknown CT window {window!r}; presets: {', '.join(CT_WINDOWS)}") from None
    else:
        width, level = (float(v) for v in window)
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width}")
    return level - width / 2.0, level + width / 2.0


def percentile_bounds(
    volume: np.ndarray,
    low: float = MRI_PERCENTILES[0],
    high: float = MRI_PERCENTILES[1],
    nonzero: bool = True,
) -> tuple[float, float]:
    """Percentile bounds of ``volume`` (of its non-zero voxels when ``nonzero``)."""
    values = np.asarray(volume)
    if nonzero:
        values = values[values != 0]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [low, high])
    return float(lo), float(hi)


def intensity_bounds(
    volume: np.ndarray,
    modality: str = "CT",
    window: str | tuple[float, float] = "soft_tissue",
    percentiles: tuple[float, float] = MRI_PERCENTILES,
) -> tuple[float, float]:
    """The 0..255 mapping bounds for a volume: a CT window, else non-zero percentiles."""
    if modality.upper() == "CT":
        return ct_window_bounds(window)
    return percentile_bounds(volume, *percentiles, nonzero=True)


def to_uint8(image: np.ndarray, bounds: tuple[float, float], keep_zero: bool = False) -> np.ndarray:
    """Clip ``image`` to ``bounds`` and scale linearly to ``uint8`` 0..255 (truncating, as MedSAM).

    ``keep_zero`` leaves voxels that were exactly 0 at 0 (MedSAM does this for MR).
    """
    lo, hi = float(bounds[0]), float(bounds[1])
    x = np.asarray(image, dtype=np.float32)
    scale = 255.0 / max(hi - lo, 1e-8)
    out = ((np.clip(x, lo, hi) - lo) * scale).astype(np.uint8)
    if keep_zero:
        out[x == 0] = 0
    return out


# ---------------------------------------------------------------- model input


def preprocess_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """SAM's resize target: the long side becomes ``long_side``, rounding half up."""
    scale = long_side * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


@dataclass(frozen=True)
class SliceTransform:
    """How one slice was put into a model's input frame; maps prompts in and logits out.

    Attributes:
        kind: ``"sam-med2d"``, ``"sam"`` or ``"medsam"``.
        original_size: ``(H, W)`` of the slice.
        input_size: ``(h, w)`` of the resized slice inside the model frame (before padding).
        model_size: edge ``S`` of the square model input.
    """

    kind: str
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    model_size: int

    def coords_to_input(self, coords_xy) -> np.ndarray:
        """``(..., 2)`` slice-pixel ``(x, y)`` -> model-frame ``(x, y)`` (float64)."""
        c = np.array(coords_xy, dtype=float, copy=True)
        (oh, ow), (nh, nw) = self.original_size, self.input_size
        c[..., 0] *= nw / ow
        c[..., 1] *= nh / oh
        return c

    def boxes_to_input(self, boxes_xyxy) -> np.ndarray:
        """``(4,)`` or ``(N, 4)`` slice-pixel boxes -> ``(N, 4)`` model-frame boxes."""
        b = np.asarray(boxes_xyxy, dtype=float).reshape(-1, 2, 2)
        return self.coords_to_input(b).reshape(-1, 4)

    def logits_to_slice(self, low_res: torch.Tensor) -> torch.Tensor:
        """``(B, C, l, l)`` low-res logits -> ``(B, C, H, W)`` logits on the slice grid."""
        x = low_res.float()
        if self.kind != "medsam":
            s = self.model_size
            x = F.interpolate(x, (s, s), mode="bilinear", align_corners=False)
            x = x[..., : self.input_size[0], : self.input_size[1]]
        return F.interpolate(x, self.original_size, mode="bilinear", align_corners=False)

    def mask_to_prompt(self, mask: np.ndarray, low_res_size: int, logit: float = 8.0) -> torch.Tensor:
        """A slice mask -> ``(1, 1, L, L)`` mask-prompt logits (``+logit`` inside, ``-logit`` out).

        Prefer feeding back the previous prediction's ``low_res_logits``; this is for masks that
        came from elsewhere (e.g. a label layer).
        """
        m = torch.as_tensor(np.asarray(mask, dtype=np.float32))[None, None]
        m = F.interpolate(m, self.input_size, mode="bilinear", align_corners=False)
        s = self.model_size
        m = F.pad(m, (0, s - self.input_size[1], 0, s - self.input_size[0]))
        m = F.interpolate(m, (low_res_size, low_res_size), mode="area")
        return (m * 2.0 - 1.0) * logit


def _as_gray_float(slice2d: np.ndarray) -> np.ndarray:
    a = np.asarray(slice2d)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise ValueError(f"a slice is (H, W) or (H, W, 3); got shape {a.shape}")
    return a.astype(np.float32)


def _to_chw(a: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if t.ndim == 2:
        t = t[None].expand(3, -1, -1)
    else:
        t = t.permute(2, 0, 1)
    return t[None].contiguous()  # (1, 3, H, W)


def _normalise(t: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(SAM_PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(SAM_PIXEL_STD).view(1, 3, 1, 1)
    return (t - mean) / std


def _resize_medsam(a: np.ndarray, size: int) -> np.ndarray:
    try:
        from skimage.transform import resize
    except ImportError:  # pragma: no cover - scikit-image comes with napari
        t = _to_chw(a)
        t = F.interpolate(t, (size, size), mode="bicubic", align_corners=False, antialias=True)
        t = t.clamp(0, 255)[0]
        out = t.permute(1, 2, 0).numpy()
        return out if a.ndim == 3 else out[..., 0]
    shape = (size, size) if a.ndim == 2 else (size, size, a.shape[-1])
    return resize(a, shape, order=3, preserve_range=True, anti_aliasing=True)


def prepare_slice(
    slice2d: np.ndarray, kind: str, model_size: int | None = None
) -> tuple[torch.Tensor, SliceTransform]:
    """A 0..255 slice (``(H, W)`` or ``(H, W, 3)``) -> ``(1, 3, S, S)`` float32 model input.

    ``model_size`` defaults to 256 for ``sam-med2d`` and 1024 otherwise (pass the model's
    ``image_encoder.img_size`` for non-standard configs).
    """
    if kind not in PREPROCESS_KINDS:
        raise ValueError(f"unknown preprocessing {kind!r}; one of {', '.join(PREPROCESS_KINDS)}")
    s = int(model_size or (256 if kind == "sam-med2d" else 1024))
    a = _as_gray_float(slice2d)
    h, w = a.shape[:2]
    if h < 1 or w < 1:
        raise ValueError(f"empty slice of shape {a.shape}")

    if kind == "sam-med2d":
        t = F.interpolate(_to_chw(a), (s, s), mode="nearest")
        return _normalise(t), SliceTransform(kind, (h, w), (s, s), s)

    if kind == "sam":
        nh, nw = preprocess_shape(h, w, s)
        t = _to_chw(np.clip(np.round(a), 0, 255))
        if (nh, nw) != (h, w):
            t = F.interpolate(t, (nh, nw), mode="bilinear", align_corners=False, antialias=True)
            t = t.round().clamp(0, 255)
        t = F.pad(_normalise(t), (0, s - nw, 0, s - nh))
        return t, SliceTransform(kind, (h, w), (nh, nw), s)

    # medsam
    r = _resize_medsam(a, s).astype(np.uint8).astype(np.float32)
    r = (r - r.min()) / np.clip(r.max() - r.min(), 1e-8, None)
    return _to_chw(r), SliceTransform(kind, (h, w), (s, s), s)
