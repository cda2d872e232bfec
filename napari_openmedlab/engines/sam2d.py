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

**Embeddings** are computed on demand and kept in an LRU cache bounded in bytes
(:class:`~napari_openmedlab.engines.slice_cache.SliceCache`). ``prefetch=n`` encodes, after each
slice the user segments (a box drawn, a click), the ``n`` slices on either side in a background
thread, in the order a propagation from that slice walks (below it first, then above), so that
*Propagate* finds them ready; the user's own slices always come first (a click waits at most for
the one slice being encoded). The widget turns it on (:data:`INTERACTIVE_PREFETCH`); scripts
and evaluations, which would not use the extra slices, keep the default 0. A propagation
encodes the slices it walks into ``batch`` at a time (one batch through the network).

**3D.** :meth:`Sam2DEngine.propagate` carries segmented slices through the volume
(:mod:`napari_openmedlab.engines.propagation` has the rules).

**Layout.** This module holds the engine; :mod:`.slice2d` the slice geometry, intensity window,
stretch transform and network inputs; :mod:`.slice_prompts` the prompt-to-slice rules, the
slice-to-Prediction step and the seeds of propagation.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..io.volume import Volume
from ..models.registry import ModelSpec
from ..models.sam_med2d import preprocess as pp
from ..models.threads import ThreadSetting
from .base import (
    CancelFlag,
    Engine,
    EngineError,
    PartialCallback,
    Prediction,
    ProgressCallback,
    PromptError,
    Prompts,
)
from .propagation import PropagationOptions, walk_order
from .slice2d import (
    MRI,
    SliceEmbedding,
    SliceResult,
    check_window,
    encoder_batch,
    looks_like_ct,
    mask_digest,
    prompt_tensors,
    slice_of,
    window_bounds,
)
from .slice_cache import DEFAULT_MAX_BYTES, INTERACTIVE_PREFETCH, SliceCache
from .slice_prompts import (
    mask_on_slice,
    propagate_seeds,
    seeds_from_predictions,
    seeds_from_prompts,
    slice_prediction,
    slice_prompt,
)

__all__ = [
    "INTERACTIVE_PREFETCH",
    "MRI",
    "PREPROCESS_KIND",
    "Sam2DEngine",
    "SliceEmbedding",
    "SliceResult",
    "default_propagation_options",
    "slice_of",
]

PREPROCESS_KIND = {"sam-med2d": "sam-med2d", "sam-vit-b": "sam", "medsam": "medsam"}
"""Registry name -> preprocessing of :func:`preprocess.prepare_slice`."""

DEFAULT_BATCH = 4
"""Slices per encoder call when a propagation encodes ahead of its walk (measured in
``benchmarks/bench_sam_med2d_propagation.py``)."""


def default_propagation_options(kind: str) -> PropagationOptions:
    """MedSAM is trained on boxes only: no point in its prompts; the others get box + point."""
    return PropagationOptions(use_point=kind != "medsam")


log = logging.getLogger(__name__)

CONVERT_ENV = "OPENMEDLAB_CONVERT_CHECKPOINTS"
"""``1``: keep a safetensors copy of each 2D checkpoint in the weights cache (faster later loads)."""


def _announce_copy(source, folder) -> None:
    """Say where a converted copy goes and how to stop it, before it is written (never silently)."""
    from ..models.sam_med2d.checkpoint import converted_paths

    copy, _ = converted_paths(source, folder)
    if not copy.is_file():
        log.warning(
            "writing a safetensors copy of %s to %s (about a third of the checkpoint's %.0f MB: the "
            "network without the optimizer state); unset %s to read checkpoints in place instead",
            Path(source).name, copy, Path(source).stat().st_size / 1e6, CONVERT_ENV,
        )


class Sam2DEngine(ThreadSetting, Engine):
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
        prefetch: after a slice is segmented for the user, encode this many slices on either side
            in a background thread, in propagation order (0: off; the widget: 32).
        batch: slices per encoder call when a propagation encodes ahead of its walk.
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
        batch: int = DEFAULT_BATCH,
        multimask: str | bool = "auto",
        propagation: PropagationOptions | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        from ..models.threads import ThreadPolicy

        self.spec = spec
        self.name = spec.name
        kind = getattr(getattr(network, "config", None), "preprocess", None) or PREPROCESS_KIND.get(spec.name)
        if kind not in pp.PREPROCESS_KINDS:
            raise EngineError(f"{spec.name} is not a 2D SAM-family model ({', '.join(PREPROCESS_KIND)})")
        #: the slice preparation (``"sam-med2d"``, ``"sam"``, ``"medsam"``), from the network's
        #: config when it has one, else from the registry name
        self.kind = kind
        self.device = torch.device(device)
        #: torch threads on the CPU, chosen before each prediction (None/0: the free cores)
        self.thread_policy = ThreadPolicy(threads)
        self.network = network.to(self.device).eval()
        self.model_size = int(network.image_encoder.img_size)
        self.low_res_size = int(network.prompt_encoder.mask_input_size[0])
        if multimask not in ("auto", True, False):
            raise ValueError("multimask is 'auto', True or False")
        self.multimask = multimask
        self._cache = SliceCache(self._compute_embedding, cache_bytes, compute_many=self._compute_embeddings)
        self.slice_axis = slice_axis
        self.prefetch = prefetch
        if int(batch) < 1:
            raise ValueError(f"batch is at least 1; got {batch}")
        self.batch = int(batch)
        self.propagation_options = propagation or default_propagation_options(self.kind)
        self._window = window
        check_window(window)
        self._bounds: tuple[float, float] | None = None
        self._keep_zero = False
        self._last_logits: dict[tuple[int, int], tuple[str, torch.Tensor]] = {}
        #: slices through the image encoder (cache misses and prefetches), for tests and status
        self.encoder_calls = 0
        #: encoder calls (a batch of slices counts once)
        self.encoder_batches = 0

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_checkpoint(
        cls,
        spec: ModelSpec,
        path: str | os.PathLike,
        device: str = "auto",
        *,
        config=None,
        convert_cache: str | os.PathLike | None | bool = None,
        **kwargs,
    ) -> Sam2DEngine:
        """Build ``spec``'s network, load the checkpoint at ``path``, wrap it in an engine.

        The checkpoint is read without running pickled code (official ``.pth`` training
        checkpoints included) by :func:`~napari_openmedlab.models.sam_med2d.build_sam2d`, in
        place: only the network's tensors are read out of the file, nothing is written. A
        safetensors copy (about a third of the official 1.1 GB training checkpoint: the optimizer
        state is left out) loads faster the next time but costs disk space, so it is made only on
        request: ``convert_cache`` a folder, or True for the ``safetensors`` folder of the weights
        cache; None (default) asks ``$OPENMEDLAB_CONVERT_CHECKPOINTS`` (``1``: the weights cache).
        Where a copy is written, its path and size are logged at WARNING level.

        Args:
            device: ``auto``, ``cuda``, ``mps`` or ``cpu``.
            config: a :class:`~napari_openmedlab.models.sam_med2d.Sam2DConfig` instead of the
                registry model's (tests use ``small_config``).
            kwargs: passed on to the constructor (``window``, ``slice_axis``, ``prefetch``, ...).
        """
        from ..models.device import resolve_device
        from ..models.sam_med2d import build_sam2d

        dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
        if convert_cache is None:
            convert_cache = os.environ.get(CONVERT_ENV, "").strip().lower() in ("1", "true", "yes")
        if convert_cache is True:
            from ..models.weights import cache_dir

            convert_cache = cache_dir() / "safetensors"
        if not convert_cache or str(path).endswith(".safetensors"):
            convert_cache = None
        else:
            _announce_copy(path, convert_cache)
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
        if getattr(self, "_slice_axis", axis) != axis:
            self._cache.cancel_prefetch()  # the slices queued for the old axis are not wanted now
        self._slice_axis = int(axis)

    @property
    def prefetch(self) -> int:
        """Slices on either side of a user's slice encoded in the background (0: off)."""
        return self._prefetch

    @prefetch.setter
    def prefetch(self, n: int) -> None:
        if int(n) < 0:
            raise ValueError(f"prefetch is 0 (off) or a number of slices; got {n}")
        self._prefetch = int(n)
        if not self._prefetch:
            self._cache.cancel_prefetch()

    @property
    def window(self) -> str | tuple[float, float] | None:
        """The intensity mapping asked for (None: automatic); see :attr:`intensity_bounds`."""
        return self._window

    @window.setter
    def window(self, window: str | tuple[float, float] | None) -> None:
        check_window(window)
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
    def looks_like_ct(volume: Volume) -> bool:
        return looks_like_ct(volume)

    def _resolve_bounds(self, volume: Volume) -> tuple[tuple[float, float], bool]:
        window = self._window
        if window is None:
            window = "soft_tissue" if self.looks_like_ct(volume) else MRI
        return window_bounds(window, volume)

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

    def cancel_background(self) -> None:
        """Drop the slices queued for background encoding (thread-safe; the running one ends)."""
        self._cache.cancel_prefetch()

    def _predict(
        self, prompts: Prompts, progress: ProgressCallback | None, cancel: CancelFlag | None
    ) -> Prediction:
        if self.device.type == "cpu":
            self.thread_policy.apply()
        shape = self.volume.shape
        default_axis = self.slice_axis if prompts.slice_axis is None else prompts.slice_axis
        axis, index, points_rc, labels, box = slice_prompt(prompts, default_axis, shape)
        mask2d = mask_on_slice(prompts, axis, index, shape)
        if progress is not None:
            progress(0.0, f"segmenting slice {index} (axis {axis})")
        logits = None
        if mask2d is not None:
            last = self._last_logits.get((axis, index))
            if last is not None and last[0] == mask_digest(mask2d):
                logits = last[1]  # our own previous mask on this slice: feed back its logits
        result = self.segment_slice(
            axis, index, points_rc, labels, box, mask=mask2d, mask_logits=logits, user=True
        )
        if progress is not None:
            progress(1.0, "done")
        return slice_prediction(result, shape)

    # ------------------------------------------------------------------ slices

    def embedding(self, axis: int, index: int, prefetch: bool = True) -> SliceEmbedding:
        """The (cached) embedding of slice ``index`` normal to ``axis``.

        With ``prefetch`` and :attr:`prefetch` > 0, the neighbours are then queued for encoding
        in the background, in the order a propagation from this slice walks.
        """
        volume = self.volume
        if axis not in (0, 1, 2) or not 0 <= index < volume.shape[axis]:
            raise PromptError(f"slice {index} of axis {axis} is outside the volume {volume.shape}")
        emb = self._cache.get((int(axis), int(index)))
        if prefetch and self.prefetch > 0:
            order = walk_order(int(index), volume.shape[axis], self.prefetch)
            # within the cache's bound, with room for the user's slice and one more: prefetched
            # slices must not push out what the user works on
            room = self._cache.max_bytes // max(1, self._cache.size_of(emb)) - 2
            # one slice at a time: a click on another slice waits for at most one encoding
            self._cache.prefetch([(axis, i) for i in order[: max(0, room)]], batch=1)
        return emb

    def _compute_embedding(self, key: tuple[int, int]) -> SliceEmbedding:
        return self._compute_embeddings([key])[0]

    def _compute_embeddings(self, keys: Sequence[tuple[int, int]]) -> list[SliceEmbedding]:
        """The embeddings of slices ``keys`` (``(axis, index)``), in one encoder call."""
        volume = self.volume
        bounds = self._bounds
        if bounds is None:
            raise EngineError("no intensity bounds: set_volume first")
        t0 = time.perf_counter()
        batch, transforms = encoder_batch(
            volume.array, volume.geometry.spacing_zyx, keys, bounds, self._keep_zero, self.kind, self.model_size
        )
        with torch.no_grad():
            features = self.network.image_encoder(batch.to(self.device))
        self.encoder_calls += len(keys)
        self.encoder_batches += 1
        seconds = (time.perf_counter() - t0) / len(keys)
        if len(keys) == 1:
            return [SliceEmbedding(features, transforms[0], seconds)]
        # copies: a view would keep the whole batch alive until its last slice leaves the cache
        return [SliceEmbedding(features[i : i + 1].clone(), tf, seconds) for i, tf in enumerate(transforms)]

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
        points, boxes, masks_in, n_points = prompt_tensors(
            tf, points_rc, labels, box, mask, mask_logits, self.low_res_size, self.device
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
            self._last_logits[(result.axis, result.index)] = (mask_digest(mask_out), result.low_res_logits)
        return result

    # ------------------------------------------------------------------ 3D

    def propagate(
        self,
        source: Prompts | Prediction | Sequence[Prediction],
        progress: ProgressCallback | None = None,
        cancel: CancelFlag | None = None,
        axis: int | None = None,
        options: PropagationOptions | None = None,
        partial: PartialCallback | None = None,
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

        ``partial`` gets each annotated slice, then each slice as soon as the walk accepts it,
        as a one-slice Prediction; their union is the answer.

        From the CLI: ``engine.propagate(prompts)``; from the widget, after a slice was
        segmented: ``engine.propagate(prediction, progress, cancel, partial=show)``.
        Returns a Prediction whose ``state`` holds ``axis``, ``annotated`` (slice indices) and
        ``stops`` (where and why each direction ended). Raises ``Cancelled``.
        """
        if self.device.type == "cpu":
            self.thread_policy.apply()
        shape = self.volume.shape
        t0 = time.perf_counter()
        if isinstance(source, Prompts):
            default_axis = self.slice_axis if source.slice_axis is None else source.slice_axis
            axis, seeds = seeds_from_prompts(
                source, axis, default_axis, shape, self.segment_slice, progress, cancel
            )
        else:
            axis, seeds = seeds_from_predictions(source, axis, self.slice_axis, shape)
        if not any(m.any() for m in seeds.values()):
            raise PromptError("nothing to propagate: the annotated slices are empty")
        # the walk encodes what it needs itself, in batches; what the background has ready stays
        self._cache.cancel_prefetch()
        sizes = iter([1, 2])  # the first slices alone: the first one is on screen sooner

        def encode_ahead(index: int, step: int, last: int) -> None:
            if (axis, index) in self._cache:
                return
            k = min(self.batch, next(sizes, self.batch))
            self._cache.get_many([(axis, i) for i in range(index, last + step, step)][:k])

        opts = options or self.propagation_options
        return propagate_seeds(
            self.segment_slice, axis, seeds, shape, opts, progress, cancel, encode_ahead, t0, partial
        )
