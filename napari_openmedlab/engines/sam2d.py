"""The 2D engine: SAM-Med2D, MedSAM and SAM ViT-B on any slice of a volume, plus 3D propagation.

One engine serves the three 2D models; they differ only in their network and in how a slice
is put into the network's input (:mod:`napari_openmedlab.models.sam_med2d.preprocess`).

**Which slice.** A box names its slice (``Box.axis``, ``Box.index``). Clicks are on the slice
of axis :attr:`Sam2DEngine.slice_axis` (0 axial, 1 coronal, 2 sagittal) holding them; with a box,
the clicks must lie in the box's slice. All prompts of one ``predict`` must be on one slice,
else :class:`PromptError`. Several boxes on that slice: the last one counts (a redrawn box
replaces the earlier one). A mask prompt alone (no click, no box) must cover exactly one slice of
``slice_axis``. Rows and columns of a slice are the two remaining array axes in order (axial:
y, x; coronal: z, x; sagittal: z, y), as in :class:`~napari_openmedlab.engines.base.Box`.

**Intensities.** Mapped to 0..255 once per volume: a CT window (presets in
``preprocess.CT_WINDOWS``: ``soft_tissue`` W400/L40, ``bone``, ``lung``, ``brain``,
``head_neck``, ...; or a ``(width, level)`` pair), or ``"mri"``: the 0.5-99.5 percentiles of the
non-zero voxels. Default (``window=None``): ``soft_tissue`` when the volume looks like CT
(``metadata["modality"] == "CT"``, or no modality given and a minimum below -500), else ``"mri"``.

**Anisotropic slices.** SAM ViT-B keeps the aspect ratio of its input, so a coronal or
sagittal slice of a thick-slice scan is first stretched to square physical pixels (its long
side kept); prompts and logits are mapped through that stretch. SAM-Med2D and MedSAM resize any
slice to a square anyway, so they see the slice as is.

**Mask prompt.** ``prompts.mask`` restricted to the slice becomes the decoder's low-res mask
input (``prompt_encoder.mask_input_size``: 256x256 for SAM/MedSAM, 64x64 for SAM-Med2D). When
it equals this engine's previous mask on that slice, that prediction's own low-res logits are
fed back (what SAM's predictor does between clicks); otherwise the binary mask is mapped like
the image and turned into +/-8 logits.

**One mask or three.** ``multimask="auto"`` (default) asks the decoder for its three masks and
keeps the one with the highest predicted IoU when the prompt is a single click (ambiguous:
part, organ, region), and for its single mask otherwise (several clicks, a box, a mask prompt),
as SAM's predictor recommends. ``True``/``False`` force one way (SAM-Med2D's own predictor
always takes the best of three).

**Embeddings** are computed on demand, one slice at a time, and kept in an LRU cache bounded
in bytes (:class:`~napari_openmedlab.engines.slice_cache.SliceCache`); ``prefetch=n`` encodes
the ``n`` slices on either side in a background thread after each slice the user visits.

**3D.** :meth:`Sam2DEngine.propagate` carries segmented slices through the volume
(:mod:`napari_openmedlab.engines.propagation` has the rules).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..io.volume import Volume
from ..models.registry import ModelSpec
from ..models.sam_med2d import preprocess as pp
from .base import (
    CancelFlag,
    Cancelled,
    Engine,
    EngineError,
    Prediction,
    ProgressCallback,
    PromptError,
    Prompts,
)
from .propagation import PropagationOptions, PropagationResult, SlicePrompt, propagate
from .slice_cache import DEFAULT_MAX_BYTES, SliceCache

PREPROCESS_KIND = {"sam-med2d": "sam-med2d", "sam-vit-b": "sam", "medsam": "medsam"}
"""Registry name -> preprocessing of :func:`preprocess.prepare_slice`."""

MRI = "mri"
_ASPECT_TOLERANCE = 1.2  # stretch a slice for SAM only when its pixels are this far from square
_MASK_LOGIT = 8.0


def default_propagation_options(kind: str) -> PropagationOptions:
    """MedSAM is trained on boxes only: no point in its prompts; the others get box + point."""
    return PropagationOptions(use_point=kind != "medsam")


def slice_of(array: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The 2D slice ``index`` normal to ``axis`` (rows, columns = the other axes in order)."""
    sl: list[Any] = [slice(None)] * 3
    sl[axis] = index
    return array[tuple(sl)]


def _other_axes(axis: int) -> tuple[int, int]:
    rows, cols = (a for a in range(3) if a != axis)
    return rows, cols


class _StretchedTransform:
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

    def mask_to_prompt(self, mask: np.ndarray, low_res_size: int, logit: float = _MASK_LOGIT) -> torch.Tensor:
        m = torch.as_tensor(np.asarray(mask, dtype=np.float32))[None, None]
        m = F.interpolate(m, self.stretched_size, mode="bilinear", align_corners=False)[0, 0]
        return self.inner.mask_to_prompt((m > 0.5).numpy(), low_res_size, logit)


@dataclass
class SliceEmbedding:
    """A slice's image embedding and the transform that maps its prompts and logits."""

    features: torch.Tensor  # (1, C, h, w) on the engine's device
    transform: Any  # preprocess.SliceTransform or _StretchedTransform
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


def _digest(mask: np.ndarray) -> str:
    m = np.ascontiguousarray(mask, dtype=bool)
    return hashlib.blake2b(np.packbits(m).tobytes() + str(m.shape).encode(), digest_size=16).hexdigest()


class Sam2DEngine(Engine):
    """A SAM-family 2D network on the slices of one volume.

    Args:
        network: an object with ``image_encoder`` (with ``img_size``), ``prompt_encoder`` (with
            ``mask_input_size`` and ``get_dense_pe()``) and ``mask_decoder``, called like
            segment-anything's ``Sam`` modules.
        spec: the registry record; its name picks the preprocessing (:data:`PREPROCESS_KIND`).
        device: torch device (string or ``torch.device``) for the network and the embeddings.
        window: CT preset name, ``(width, level)``, ``"mri"``, or None for the automatic choice.
        slice_axis: the axis whose slices clicks are on (0 axial, 1 coronal, 2 sagittal).
        cache_bytes: bound of the embedding cache.
        prefetch: after a slice is encoded for the user, encode this many slices on either side
            in a background thread (0: off).
        multimask: ``"auto"``, True or False (module docstring).
        propagation: rules for :meth:`propagate` (default :func:`default_propagation_options`).
    """

    supports_boxes = True

    def __init__(
        self,
        network: torch.nn.Module,
        spec: ModelSpec,
        device: str | torch.device = "cpu",
        window: str | tuple[float, float] | None = None,
        slice_axis: int = 0,
        cache_bytes: int = DEFAULT_MAX_BYTES,
        prefetch: int = 0,
        multimask: str | bool = "auto",
        propagation: PropagationOptions | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.name = spec.name
        kind = getattr(getattr(network, "config", None), "preprocess", None) or PREPROCESS_KIND.get(spec.name)
        if kind not in pp.PREPROCESS_KINDS:
            raise EngineError(f"{spec.name} is not a 2D SAM-family model ({', '.join(PREPROCESS_KIND)})")
        #: the slice preparation (``"sam-med2d"``, ``"sam"``, ``"medsam"``), from the network's
        #: config when it has one, else from the registry name
        self.kind = kind
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.model_size = int(network.image_encoder.img_size)
        self.low_res_size = int(network.prompt_encoder.mask_input_size[0])
        if multimask not in ("auto", True, False):
            raise ValueError("multimask is 'auto', True or False")
        self.multimask = multimask
        self.slice_axis = slice_axis
        self.prefetch = int(prefetch)
        self.propagation_options = propagation or default_propagation_options(self.kind)
        self._window = window
        self._check_window(window)
        self._bounds: tuple[float, float] | None = None
        self._keep_zero = False
        self._cache = SliceCache(self._compute_embedding, cache_bytes)
        self._last_logits: dict[tuple[int, int], tuple[str, torch.Tensor]] = {}
        #: number of image-encoder runs (cache misses and prefetches), for tests and status
        self.encoder_calls = 0

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_checkpoint(
        cls,
        spec: ModelSpec,
        path: str | os.PathLike,
        device: str = "auto",
        *,
        config=None,
        convert_cache: str | os.PathLike | None | bool = True,
        **kwargs,
    ) -> Sam2DEngine:
        """Build ``spec``'s network, load the checkpoint at ``path``, wrap it in an engine.

        The checkpoint is read without running pickled code (official ``.pth`` training
        checkpoints included) by :func:`~napari_openmedlab.models.sam_med2d.build_sam2d`; a
        ``.pth`` is converted once to a safetensors copy kept in ``convert_cache`` (True: the
        ``safetensors`` folder of the weights cache; None/False: read the file every time).

        Args:
            device: ``auto``, ``cuda``, ``mps`` or ``cpu``.
            config: a :class:`~napari_openmedlab.models.sam_med2d.Sam2DConfig` instead of the
                registry model's (tests use ``small_config``).
            kwargs: passed on to the constructor (``window``, ``slice_axis``, ``prefetch``, ...).
        """
        from ..models.device import resolve_device
        from ..models.sam_med2d import build_sam2d

        dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
        if convert_cache is True:
            from ..models.weights import cache_dir

            convert_cache = cache_dir() / "safetensors"
        if not convert_cache or str(path).endswith(".safetensors"):
            convert_cache = None
        network = build_sam2d(
            config if config is not None else spec.name,
            path,
            cache_dir=convert_cache,
            expected_sha256=spec.sha256,
            device=dev,
        )
        return cls(network, spec, device=dev, **kwargs)

    # ------------------------------------------------------------------ settings

    @property
    def slice_axis(self) -> int:
        return self._slice_axis

    @slice_axis.setter
    def slice_axis(self, axis: int) -> None:
        if axis not in (0, 1, 2):
            raise ValueError(f"slice_axis is 0 (axial), 1 (coronal) or 2 (sagittal); got {axis!r}")
        self._slice_axis = int(axis)

    @property
    def window(self) -> str | tuple[float, float] | None:
        """The intensity mapping asked for (None: automatic); see :attr:`intensity_bounds`."""
        return self._window

    @window.setter
    def window(self, window: str | tuple[float, float] | None) -> None:
        self._check_window(window)
        self._window = window
        self._cache.clear()
        self._last_logits.clear()
        if self._volume is not None:
            self._bounds, self._keep_zero = self._resolve_bounds(self._volume)

    @property
    def intensity_bounds(self) -> tuple[float, float] | None:
        """The values mapped to 0 and 255 for the current volume."""
        return self._bounds

    @property
    def cache(self) -> SliceCache:
        return self._cache

    @staticmethod
    def _check_window(window) -> None:
        if window is None or (isinstance(window, str) and window.lower() == MRI):
            return
        pp.ct_window_bounds(window)  # raises ValueError for an unknown preset or a bad pair

    @staticmethod
    def looks_like_ct(volume: Volume) -> bool:
        modality = str(volume.metadata.get("modality", "")).upper()
        if modality:
            return modality == "CT"
        return float(np.min(volume.array)) < -500

    def _resolve_bounds(self, volume: Volume) -> tuple[tuple[float, float], bool]:
        window = self._window
        if window is None:
            window = "soft_tissue" if self.looks_like_ct(volume) else MRI
        if isinstance(window, str) and window.lower() == MRI:
            values = volume.array
            step = max(1, values.size // 4_000_000)  # percentiles of a subsample of big volumes
            sample = values.reshape(-1)[::step]
            return pp.percentile_bounds(sample, *pp.MRI_PERCENTILES, nonzero=True), True
        return pp.ct_window_bounds(window), False

    # ------------------------------------------------------------------ engine contract

    def _set_volume(self, volume: Volume, progress: ProgressCallback | None) -> None:
        self._cache.clear()
        self._bounds, self._keep_zero = self._resolve_bounds(volume)
        if progress is not None:
            progress(1.0, "volume set (slices are encoded when first used)")

    def reset(self) -> None:
        self._last_logits.clear()

    def close(self) -> None:
        """Stop the prefetch thread and drop the embeddings."""
        self._cache.close()

    def _predict(
        self, prompts: Prompts, progress: ProgressCallback | None, cancel: CancelFlag | None
    ) -> Prediction:
        axis, index, points_rc, labels, box = self._slice_prompt(prompts)
        mask2d = self._mask_on_slice(prompts, axis, index)
        if progress is not None:
            progress(0.0, f"segmenting slice {index} (axis {axis})")
        logits = None
        if mask2d is not None:
            last = self._last_logits.get((axis, index))
            if last is not None and last[0] == _digest(mask2d):
                logits = last[1]  # our own previous mask on this slice: feed back its logits
        result = self.segment_slice(
            axis, index, points_rc, labels, box, mask=mask2d, mask_logits=logits, user=True
        )
        if progress is not None:
            progress(1.0, "done")
        return self._slice_prediction(result)

    # ------------------------------------------------------------------ slices

    def embedding(self, axis: int, index: int, prefetch: bool = True) -> SliceEmbedding:
        """The (cached) embedding of slice ``index`` normal to ``axis``.

        With ``prefetch`` and :attr:`prefetch` > 0, the neighbours are queued for encoding.
        """
        volume = self.volume
        if axis not in (0, 1, 2) or not 0 <= index < volume.shape[axis]:
            raise PromptError(f"slice {index} of axis {axis} is outside the volume {volume.shape}")
        emb = self._cache.get((int(axis), int(index)))
        if prefetch and self.prefetch > 0:
            n = volume.shape[axis]
            near = []
            for d in range(1, self.prefetch + 1):
                near += [i for i in (index + d, index - d) if 0 <= i < n]
            self._cache.prefetch([(axis, i) for i in near])
        return emb

    def _compute_embedding(self, key: tuple[int, int]) -> SliceEmbedding:
        axis, index = key
        volume = self.volume
        bounds = self._bounds
        if bounds is None:
            raise EngineError("no intensity bounds: set_volume first")
        t0 = time.perf_counter()
        image = pp.to_uint8(slice_of(volume.array, axis, index), bounds, keep_zero=self._keep_zero)
        original = image.shape
        stretched = self._stretched_size(axis, original)
        if stretched is not None:
            t = torch.from_numpy(image.astype(np.float32))[None, None]
            t = F.interpolate(t, stretched, mode="bilinear", align_corners=False)
            image = t[0, 0].round().clamp(0, 255).numpy().astype(np.uint8)
        tensor, transform = pp.prepare_slice(image, self.kind, self.model_size)
        if stretched is not None:
            transform = _StretchedTransform(transform, original, stretched)
        with torch.no_grad():
            features = self.network.image_encoder(tensor.to(self.device))
        self.encoder_calls += 1
        return SliceEmbedding(features, transform, time.perf_counter() - t0)

    def _stretched_size(self, axis: int, shape: tuple[int, int]) -> tuple[int, int] | None:
        """For SAM (aspect-keeping): the slice size with square physical pixels, or None."""
        if self.kind != "sam":
            return None
        rows, cols = _other_axes(axis)
        spacing = self.volume.geometry.spacing_zyx
        sr, sc = float(spacing[rows]), float(spacing[cols])
        if max(sr, sc) / min(sr, sc) < _ASPECT_TOLERANCE:
            return None
        h, w = shape
        scale = max(h, w) / max(h * sr, w * sc)
        return max(1, int(round(h * sr * scale))), max(1, int(round(w * sc * scale)))

    def segment_slice(
        self,
        axis: int,
        index: int,
        points_rc: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: tuple[float, float, float, float] | None = None,
        mask: np.ndarray | None = None,
        mask_logits: torch.Tensor | None = None,
        multimask: bool | str | None = None,
        user: bool = False,
    ) -> SliceResult:
        """Segment slice ``index`` of ``axis`` from prompts in its (row, column) voxels.

        Args:
            points_rc: ``(N, 2)`` clicks; labels ``(N,)`` 1 positive / 0 negative.
            box: inclusive ``(r0, c0, r1, c1)``.
            mask: a mask prompt on the slice grid (used when ``mask_logits`` is None).
            mask_logits: ``(1, 1, L, L)`` low-res logits to feed as the mask prompt.
            multimask: overrides :attr:`multimask` for this call.
            user: prefetch the neighbours (a slice the user looks at), remember the logits.
        """
        t0 = time.perf_counter()
        hit = (axis, index) in self._cache
        emb = self.embedding(axis, index, prefetch=user)
        t_enc = 0.0 if hit else time.perf_counter() - t0
        tf = emb.transform
        dev = self.device
        points = None
        n_points = 0
        if points_rc is not None and len(points_rc):
            pts = np.asarray(points_rc, dtype=float).reshape(-1, 2)
            lab = np.asarray(labels, dtype=int).reshape(-1)
            if len(lab) != len(pts):
                raise PromptError(f"{len(pts)} points but {len(lab)} labels")
            coords = tf.coords_to_input(pts[:, ::-1])  # (row, col) -> (x, y)
            points = (
                torch.as_tensor(coords, dtype=torch.float32, device=dev)[None],
                torch.as_tensor(lab, dtype=torch.int64, device=dev)[None],
            )
            n_points = len(pts)
        boxes = None
        if box is not None:
            r0, c0, r1, c1 = (float(v) for v in box)
            boxes = torch.as_tensor(tf.boxes_to_input([c0, r0, c1, r1]), dtype=torch.float32, device=dev)
        if mask_logits is None and mask is not None:
            mask_logits = tf.mask_to_prompt(np.asarray(mask, dtype=bool), self.low_res_size, _MASK_LOGIT)
        masks_in = (
            None
            if mask_logits is None
            else mask_logits.to(dev, torch.float32).reshape(1, 1, self.low_res_size, self.low_res_size)
        )
        if points is None and boxes is None and masks_in is None:
            raise PromptError("no prompt for the slice: add a click or a box")

        mm = self.multimask if multimask is None else multimask
        if mm == "auto":
            mm = n_points == 1 and boxes is None and masks_in is None
        t1 = time.perf_counter()
        pe = self.network.prompt_encoder
        with torch.no_grad():
            sparse, dense = pe(points=points, boxes=boxes, masks=masks_in)
            low_res, iou = self.network.mask_decoder(
                image_embeddings=emb.features,
                image_pe=pe.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=bool(mm),
            )
            best = int(torch.argmax(iou[0])) if mm else 0
            low_res = low_res[:, best : best + 1].float()
            logits = tf.logits_to_slice(low_res)
        mask_out = (logits[0, 0] > 0.0).cpu().numpy()
        result = SliceResult(
            int(axis),
            int(index),
            mask_out,
            low_res.cpu(),
            float(iou[0, best]),
            bool(mm),
            {"encoder": t_enc, "decoder": time.perf_counter() - t1},
        )
        if user:
            self._last_logits[(result.axis, result.index)] = (_digest(mask_out), result.low_res_logits)
        return result

    # ------------------------------------------------------------------ prompts -> slice

    def _slice_prompt(self, prompts: Prompts):
        """``(axis, index, points_rc, labels, box)`` of a one-slice prompt (module docstring)."""
        points, labels, boxes = prompts.points, prompts.labels, prompts.boxes
        if boxes:
            places = {(b.axis, b.index) for b in boxes}
            if len(places) > 1:
                raise PromptError(
                    "boxes on different slices: "
                    + ", ".join(f"axis {a} slice {i}" for a, i in sorted(places))
                    + "; one prediction is one slice (use propagate for several)"
                )
            ((axis, index),) = places
        elif len(points):
            axis = self.slice_axis
            index = None
        else:
            axis = self.slice_axis
            index = self._mask_only_slice(prompts.mask, axis)
        if len(points):
            on = np.rint(points[:, axis]).astype(int)
            if index is None:
                index = int(on[0])
            if np.any(on != index):
                raise PromptError(
                    f"the clicks lie on different slices of axis {axis} ({sorted(set(on.tolist()))}"
                    + (f", box on slice {index}" if boxes else "")
                    + "); a 2D model segments one slice at a time: click on one slice, or use propagate"
                )
        rows, cols = _other_axes(axis)
        points_rc = points[:, [rows, cols]] if len(points) else None
        box = None
        if boxes:
            b = boxes[-1]
            box = (min(b.r0, b.r1), min(b.c0, b.c1), max(b.r0, b.r1), max(b.c0, b.c1))
        return axis, int(index), points_rc, labels, box

    def _mask_only_slice(self, mask: np.ndarray | None, axis: int) -> int:
        m = self._check_mask(mask)
        other = tuple(a for a in range(3) if a != axis)
        on = np.flatnonzero(m.any(axis=other))
        if len(on) != 1:
            raise PromptError(
                f"a mask prompt alone must cover exactly one slice of axis {axis} (it covers {len(on)}); "
                "add a click or a box on the slice to refine"
            )
        return int(on[0])

    def _check_mask(self, mask: np.ndarray | None) -> np.ndarray:
        m = np.asarray(mask, dtype=bool)
        if m.shape != self.volume.shape:
            raise PromptError(f"mask prompt of shape {m.shape} does not match the volume {self.volume.shape}")
        return m

    def _mask_on_slice(self, prompts: Prompts, axis: int, index: int) -> np.ndarray | None:
        """``prompts.mask`` on the slice, or None when absent or empty there."""
        if prompts.mask is None:
            return None
        m = slice_of(self._check_mask(prompts.mask), axis, index)
        if not m.any():
            return None
        return m

    def _slice_prediction(self, result: SliceResult) -> Prediction:
        shape = self.volume.shape
        state = {
            "axis": result.axis,
            "index": result.index,
            "iou": result.iou,
            "multimask": result.multimask,
            "low_res_logits": result.low_res_logits.numpy(),
        }
        if not result.mask.any():
            return Prediction((0, 0, 0, 0, 0, 0), np.zeros((0, 0, 0), bool), shape, state, result.timings)
        rows = np.flatnonzero(result.mask.any(axis=1))
        cols = np.flatnonzero(result.mask.any(axis=0))
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        ra, ca = _other_axes(result.axis)
        lo, hi = [0, 0, 0], [0, 0, 0]
        lo[result.axis], hi[result.axis] = result.index, result.index + 1
        lo[ra], hi[ra], lo[ca], hi[ca] = r0, r1, c0, c1
        patch = np.expand_dims(result.mask[r0:r1, c0:c1], result.axis)
        return Prediction((*lo, *hi), patch.copy(), shape, state, result.timings)

    # ------------------------------------------------------------------ 3D

    def propagate(
        self,
        source: Prompts | Prediction | Sequence[Prediction],
        progress: ProgressCallback | None = None,
        cancel: CancelFlag | None = None,
        axis: int | None = None,
        options: PropagationOptions | None = None,
    ) -> Prediction:
        """The 3D mask carried from annotated slices through the volume along ``axis``.

        ``source`` is:

        * ``Prompts``: every slice holding clicks or a box is segmented first (the clicks of a
          slice with its box, the last box of a slice counting), plus the slices of
          ``prompts.mask`` that have no click or box (taken as they are); boxes fix the axis,
          clicks are on ``axis`` (default :attr:`slice_axis`);
        * a ``Prediction`` (e.g. from :meth:`predict`) or several: their non-empty slices along
          ``axis`` (default: the prediction's own slice axis, else :attr:`slice_axis`) are the
          annotations; a later prediction replaces an earlier one on the same slice.

        From the CLI: ``engine.propagate(prompts)``; from the widget, after a slice was
        segmented: ``engine.propagate(prediction, progress, cancel)``.
        Returns a Prediction whose ``state`` holds ``axis``, ``annotated`` (slice indices) and
        ``stops`` (where and why each direction ended). Raises ``Cancelled``.
        """
        volume = self.volume
        t0 = time.perf_counter()
        if isinstance(source, Prompts):
            axis, seeds = self._seeds_from_prompts(source, axis, progress, cancel)
        else:
            predictions = [source] if isinstance(source, Prediction) else list(source)
            if not predictions:
                raise PromptError("nothing to propagate")
            if axis is None:
                axes = {p.state.get("axis") for p in predictions} - {None}
                axis = axes.pop() if len(axes) == 1 else self.slice_axis
            seeds = {}
            for p in predictions:
                if tuple(p.shape) != volume.shape:
                    raise PromptError(f"prediction of shape {p.shape} is not on this volume {volume.shape}")
                seeds.update(self._mask_slices(p.to_mask(), axis))
        if not any(m.any() for m in seeds.values()):
            raise PromptError("nothing to propagate: the annotated slices are empty")
        opts = options or self.propagation_options
        previous_logits: dict[int, torch.Tensor] = {}

        def segment(prompt: SlicePrompt) -> tuple[np.ndarray, float]:
            step = 1 if prompt.index > prompt.source else -1
            logits = previous_logits.get(prompt.source) if prompt.use_mask_prompt else None
            result = self.segment_slice(
                axis,
                prompt.index,
                prompt.points,
                prompt.labels,
                prompt.box,
                mask=prompt.mask if prompt.use_mask_prompt else None,
                mask_logits=logits,
            )
            if prompt.use_mask_prompt:
                previous_logits[prompt.index] = result.low_res_logits
            nxt = prompt.index + step
            if self.prefetch > 0 and 0 <= nxt < volume.shape[axis]:
                self._cache.prefetch([(axis, nxt)])
            return result.mask, result.iou  # the predicted IoU serves options.min_score

        result: PropagationResult = propagate(seeds, volume.shape[axis], segment, opts, progress, cancel)
        stops = [
            {
                "index": s.index,
                "step": s.step,
                "reason": s.reason,
                "dice": s.dice,
                "overlap": s.overlap,
                "area": s.area,
                "score": s.score,
            }
            for s in result.stops
        ]
        state = {"axis": axis, "annotated": sorted(i for i, m in seeds.items() if m.any()), "stops": stops}
        return Prediction.from_mask(
            result.to_volume(axis, volume.shape),
            state=state,
            timings={"propagation": time.perf_counter() - t0, "slices": result.segmented},
        )

    @staticmethod
    def _mask_slices(mask: np.ndarray, axis: int) -> dict[int, np.ndarray]:
        other = tuple(a for a in range(3) if a != axis)
        return {int(i): slice_of(mask, axis, int(i)).copy() for i in np.flatnonzero(mask.any(axis=other))}

    def _seeds_from_prompts(self, prompts: Prompts, axis, progress, cancel):
        volume = self.volume
        prompts.check_inside(volume.shape)
        if prompts.empty:
            raise PromptError("no prompt given: add at least one click or box")
        if prompts.boxes:
            axes = {b.axis for b in prompts.boxes}
            if len(axes) > 1:
                raise PromptError("boxes on several axes: propagation runs along one axis")
            box_axis = axes.pop()
            if axis is not None and axis != box_axis:
                raise PromptError(f"boxes are on axis {box_axis}, propagation asked along axis {axis}")
            axis = box_axis
        axis = self.slice_axis if axis is None else axis
        groups: dict[int, Prompts] = {}
        for b in prompts.boxes:
            groups[b.index] = Prompts(boxes=[b])
        if len(prompts.points):
            on = np.rint(prompts.points[:, axis]).astype(int)
            for index in np.unique(on):
                sel = on == index
                g = groups.get(int(index), Prompts())
                groups[int(index)] = Prompts(prompts.points[sel], prompts.labels[sel], g.boxes)
        mask = None if prompts.mask is None else self._check_mask(prompts.mask)
        seeds = {} if mask is None else self._mask_slices(mask, axis)
        for n, (index, g) in enumerate(sorted(groups.items())):
            if cancel is not None and cancel():
                raise Cancelled("propagation cancelled")
            if progress is not None:
                progress(0.0, f"segmenting annotated slice {index} ({n + 1}/{len(groups)})")
            rows, cols = _other_axes(axis)
            points_rc = g.points[:, [rows, cols]] if len(g.points) else None
            box = None
            if g.boxes:
                b = g.boxes[-1]
                box = (min(b.r0, b.r1), min(b.c0, b.c1), max(b.r0, b.r1), max(b.c0, b.c1))
            m2 = seeds.get(index)
            res = self.segment_slice(
                axis, index, points_rc, g.labels, box, mask=m2 if m2 is not None and m2.any() else None
            )
            seeds[index] = res.mask
        return axis, seeds
