"""SAM-Med3D engine: clicks on a volume -> a 3D mask on the volume's own grid.

Pipeline per object (as the official inference, ``utils/infer_utils.py`` of SAM-Med3D):

* Preprocessing: the 1.5 mm RAS+ canonical grid and 128^3 crops of :mod:`.crop3d` (resampled
  crop by crop, never the whole volume), z-score over the crop's voxels > 0. Orientation is
  TorchIO's ``ToCanonical``: the voxel axes are permuted/flipped to the nearest RAS+ order, so
  any direction matrix is handled and an oblique volume keeps its obliquity, exactly as in the
  official pipeline (no rotation onto scanner axes, hence no extra interpolation).
* Crop centring: on the grid voxel holding the FIRST click (it lands at crop index 64), or, when
  ``prompts.mask`` (an existing mask to refine) is given, on that mask's bounding box, with
  TorchIO ``CropOrPad``'s rule ``start = floor((lo + hi) / 2) - 64``. The crop stays fixed for the
  object; later clicks do not move it.
* Points: every click is the grid voxel holding it (round half up), in crop voxels along the
  crop tensor's axes 2, 3, 4, all clicks so far with labels 1/0.
* Iteration: the mask prompt is the previous low-res logits (1, 1, 32, 32, 32) of the same crop;
  on the first click it is all zeros (official ``sam_model_infer``). With ``prompts.mask`` the
  first mask prompt is that mask sampled into the crop, average-pooled to 32^3 and mapped to
  logits ``MASK_LOGIT * (2 * fraction - 1)`` (an own choice: the official code has no mask input).
  Output: logits trilinearly upsampled to 128^3, ``sigmoid(x) > 0.5`` in float32 exactly as the
  official code (:func:`official_threshold`; not ``x > 0``, which differs for 0 < x <= ~6e-8),
  put back on the volume grid by nearest neighbour.
* History: the engine remembers the logits after each ``predict`` (last 64 calls of the object,
  cleared by ``reset``/``set_volume``); a call whose clicks extend a remembered click list
  continues from that state (one decoder pass per crop), and a call that repeats a remembered
  list (e.g. after undo) rebuilds the remembered mask from its logits without running the
  network. So the mask depends only on the click sequence.

Streaming: the first click of a new object hands each crop's mask to ``partial`` as soon as it
is decoded (``Engine.predict(..., partial=...)``): the first crop is on screen after one encoder
run, the extension crops follow as their encoder batches finish. The merged answer is written
into arrays the engine reuses once nobody else holds them
(:class:`~.sam_med3d_crops.MergeBuffers`): a fresh array the size of a large object's box costs
its page faults on every click.

Embedding cache: image embeddings are kept per crop (LRU, ``cache_size`` crops, default 64 =
50 MB, never fewer than the 1 + ``max_extra_crops`` crops one click can use); a click in an
already encoded region runs only the prompt encoder and the decoder. New crops of one
breadth-first level are encoded together (``encoder_batch``).

Next clicks: a crop whose own prompts (its clicks, and its automatic point) are the same as in
the state the click continues from keeps that state's logits and mask: no decoder pass. An
extension crop's automatic point stays where it was as long as the parent crop's mask still
holds it. So a click in one region re-runs the decoder for the crops holding it (and for
neighbours whose automatic point had to move), not for every crop of the object.

Multi-crop extension (objects larger than one crop, 192 mm):

* Crops lie on a lattice: the first crop plus multiples of ``stride = 128 - OVERLAP`` (96 voxels,
  OVERLAP = 32 voxels = 48 mm) along each axis.
* When a crop's mask has at least ``MIN_FACE_VOXELS`` voxels on one of its six faces, and the
  grid continues beyond that face (it is not the volume's border), the neighbouring lattice crop
  on that side is run too.
* A neighbouring crop gets the clicks that fall inside it. If none of them is positive, it gets
  one automatic positive point: in the overlap slab, on the plane ``OVERLAP // 2`` voxels inside
  the shared face (the nearest plane of the slab holding mask voxels when that plane holds none),
  at the mask voxel of that plane farthest from the section's outline (2D distance transform).
* A positive click outside the first crop adds the lattice crop that holds it (the click lies
  at least 16 voxels inside it).
* A new object's first crop moves when its mask meets crop faces on one side only along an
  axis: toward those faces by the free room on the other side (at most 48 voxels, so the click
  stays inside; :func:`~.sam_med3d_crops.recentred_start`). An object clicked off its centre then
  needs fewer lattice crops (a liver-sized ellipsoid clicked 5 cm off centre: 3 instead of 8),
  for one more encoder run. The official single-crop flow (``max_extra_crops=0``, or
  ``first_crop_box``) never moves.
* At most ``max_extra_crops`` (8) crops are added to the first one (click crops first, then
  extensions, breadth first); the masks of all crops are merged by union (equivalently,
  per-voxel max of the thresholded logits). Each crop keeps its own low-res logits as its next mask
  prompt; a crop run for the first time starts from the all-zero mask prompt.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict

import numpy as np

from ..io.volume import Volume
from ..models.threads import ThreadSetting
from .base import (
    CancelFlag,
    Cancelled,
    Engine,
    EngineError,
    PartialCallback,
    Prediction,
    ProgressCallback,
    Prompts,
)
from .crop3d import CROP, SPACING, CanonicalGrid
from .sam_med3d_crops import (
    OVERLAP,
    MergeBuffers,
    kept_seed,
    merge_pieces,
    recentred_start,
    seed_near_face,
    touched_faces,
)
from .sam_med3d_history import ClickHistory, same_prompt
from .sam_med3d_history import mask_key as fingerprint

#: default number of cached crop embeddings (0.79 MB each: 50 MB)
CACHE_SIZE = 64
#: image encoder choices: ``fast`` (default) and ``reference`` (the official computation)
ENCODERS = ("fast", "reference")
MASK_LOGIT = 8.0


class SamMed3DEngine(ThreadSetting, Engine):
    """Interactive SAM-Med3D on one volume.

    Args:
        model: a network with ``image_encoder``, ``prompt_encoder`` and ``mask_decoder`` called as
            the official SAM-Med3D calls them (our :class:`~napari_openmedlab.models.sam_med3d.Sam3D`
            or medim's ``SAM-Med3D``).
        device: ``auto`` (CUDA, then MPS, then CPU), ``cuda``, ``mps``, ``cpu`` or a torch.device.
        amp: float16 autocast on CUDA (off by default; ignored elsewhere).
        cache_size: number of crop embeddings kept (at least every crop one click can use,
            ``1 + max_extra_crops``); one embedding is 384 x 8^3 float32 = 0.79 MB, so the
            default 64 bounds the cache at 50 MB.
        max_extra_crops: crops added to the first one for large objects (0 disables extension).
        encoder: ``"fast"`` (default: the exact padding-free attention, equal to the official
            encoder to float32 rounding, ~1e-6) or ``"reference"`` (the official computation, op
            for op: every mask equals the official pipeline's voxel for voxel). Only our
            :class:`~napari_openmedlab.models.sam_med3d.Sam3D` has both; another network is
            run as it is.
        encoder_batch: new crops encoded together in one encoder call (the extension crops
            of one breadth-first level; a click's first crop is alone in its level).
        threads: torch threads for a click; ``None``/0 = the cores other processes leave free,
            looked at before each click (:class:`~napari_openmedlab.models.threads.ThreadPolicy`).
    """

    name = "sam-med3d-turbo"
    supports_boxes = False
    streams = True

    def __init__(self, model, device="auto", *, amp: bool = False, cache_size: int = CACHE_SIZE,
                 max_extra_crops: int = 8, encoder: str = "fast", threads: int | None = None,
                 encoder_batch: int = 4) -> None:
        super().__init__()
        import torch

        from ..models.device import resolve_device
        from ..models.threads import ThreadPolicy

        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.model = model.to(self.device).eval()
        self._cache: OrderedDict = OrderedDict()
        self._history = ClickHistory()
        self.encoder = encoder
        self.thread_policy = ThreadPolicy(threads)
        self.amp = bool(amp) and self.device.type == "cuda"
        self.max_extra_crops = max(0, int(max_extra_crops))
        self.cache_size = int(cache_size)
        #: volume-voxel box ``(lo, hi)`` the first crop is centred on instead of the first click
        #: (the official validation centres on the label's bounding box); None = the first click.
        self.first_crop_box: tuple | None = None
        #: crops encoded together (one encoder call) when a click extends to several new crops
        self.encoder_batch = int(encoder_batch)
        self.encoder_calls = 0
        self.encoder_batches = 0
        self._grid: CanonicalGrid | None = None
        #: the last prediction's crops: start -> (logits, 128^3 mask, piece on the volume grid)
        self._last_masks: dict[tuple, tuple] = {}
        self._buffers = MergeBuffers()

    @property
    def encoder(self) -> str:
        """``"fast"`` or ``"reference"``; changing it drops the cached embeddings and history."""
        return self._encoder

    @encoder.setter
    def encoder(self, value: str) -> None:
        if value not in ENCODERS:
            raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}; got {value!r}")
        if getattr(self, "_encoder", value) != value:
            self._cache.clear()
            self._history.clear()
        self._encoder = value
        if hasattr(self.model, "fast_encoder"):
            self.model.fast_encoder = value == "fast"

    @property
    def cache_size(self) -> int:
        """Crop embeddings kept; never fewer than the crops one click may use."""
        return max(self._cache_size, 1 + self.max_extra_crops)

    @cache_size.setter
    def cache_size(self, value: int) -> None:
        self._cache_size = max(1, int(value))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device="auto", **kwargs) -> SamMed3DEngine:
        """Load ``sam_med3d_turbo.pth`` (or any SAM-Med3D checkpoint) onto ``device``."""
        from ..models.device import resolve_device
        from ..models.sam_med3d import load_sam_med3d

        dev = resolve_device(device) if isinstance(device, str) else device
        return cls(load_sam_med3d(path, dev), dev, **kwargs)

    # --- engine contract ----------------------------------------------------------------------
    def _set_volume(self, volume: Volume, progress: ProgressCallback | None) -> None:
        self._grid = CanonicalGrid.from_geometry(volume.geometry, volume.shape, SPACING)
        self._cache.clear()
        self._last_masks = {}
        self._buffers.clear()
        if progress is not None:
            progress(1.0, "volume ready")

    def reset(self) -> None:
        self._history.clear()

    @property
    def grid(self) -> CanonicalGrid:
        if self._grid is None:
            raise EngineError(f"{self.name}: no volume set; call set_volume(volume) before predict")
        return self._grid

    def _predict(self, prompts: Prompts, progress: ProgressCallback | None,
                 cancel: CancelFlag | None, partial: PartialCallback | None = None) -> Prediction:
        t_start = time.perf_counter()
        if self.device.type == "cpu":
            self.thread_policy.apply()
        timings = {"preprocess": 0.0, "encoder": 0.0, "decoder": 0.0, "postprocess": 0.0}
        grid = self.grid
        points = grid.grid_voxel(prompts.points) if len(prompts.points) else np.zeros((0, 3), int)
        labels = prompts.labels

        mask_key = fingerprint(prompts.mask)
        base, exact = self._history.recall(prompts, mask_key)
        if exact is not None:  # e.g. after an undo: the remembered logits, no network call
            results = {start: (lg, self._crop_mask(start, lg)) for start, lg in exact["logits"].items()}
            return self._finish(results, exact["first"], None, timings, t_start, progress)
        if base is not None:
            first = base["first"]
        elif prompts.mask is not None:
            lo, hi = _mask_box(prompts.mask)
            first = grid.crop_start(*grid.box_of_volume_box(lo, hi))
        elif self.first_crop_box is not None:
            first = grid.crop_start(*grid.box_of_volume_box(*self.first_crop_box))
        else:
            first = grid.crop_start(points[0], points[0] + 1)
        previous = base["logits"] if base is not None else {}
        previous_prompts = base["crop_prompts"] if base is not None else {}
        # a new object's crops only add voxels: each is shown as soon as it is decoded (the first
        # crop within a second, the extension crops as their encoder batches finish)
        stream = partial if base is None and prompts.mask is None else None
        pasted: dict[tuple, tuple | None] = {}
        if base is None and prompts.mask is None and self.first_crop_box is None and self.max_extra_crops:
            first, previous, previous_prompts, pasted = self._recentre(first, points, labels,
                                                                       timings, cancel, stream)

        stride = CROP - OVERLAP
        queue: list[tuple[tuple, tuple | None]] = [(first, None)]
        origin = np.asarray(first)
        for p in points[labels == 1]:
            if np.any((p < origin) | (p >= origin + CROP)):  # lattice crop holding the click
                k = np.round((p - CROP // 2 - origin) / stride).astype(int)
                queue.append((tuple(int(v) for v in origin + k * stride), None))
        results: dict[tuple, tuple] = {}
        crop_prompts: dict[tuple, tuple] = {}
        budget = 1 + self.max_extra_crops
        level = queue  # breadth first: a level's crops only need the previous levels' masks
        while level and len(results) < budget:
            _check(cancel)
            todo: dict[tuple, tuple] = {}  # start -> (points, labels) in crop voxels
            for start, parent in level:
                if start in results or start in todo:
                    continue
                inside = np.all((points >= start) & (points < np.asarray(start) + CROP), axis=1)
                crop_pts = points[inside] - np.asarray(start)
                crop_labels = labels[inside]
                if parent is not None and not (crop_labels == 1).any():
                    # the automatic point stays where it was while the parent's mask still holds
                    # it, so a click elsewhere does not move it (nor re-run this crop)
                    seed = kept_seed(previous_prompts.get(start), start, parent, results[parent[0]][1])
                    if seed is None:
                        seed = seed_near_face(results[parent[0]][1], parent[1], parent[2])
                        if seed is None:
                            continue
                        seed = seed + np.asarray(parent[0]) - np.asarray(start)
                    crop_pts = np.vstack([crop_pts, seed[None]])
                    crop_labels = np.append(crop_labels, 1)
                todo[start] = (crop_pts, crop_labels)
            todo = dict(list(todo.items())[: budget - len(results)])
            # a crop whose own clicks did not change keeps its mask: no decoder run, no drift
            # (a repeated decoder pass with the same clicks would still move the mask a little)
            kept = {start for start, prompt in todo.items()
                    if start in previous and same_prompt(previous_prompts.get(start), prompt)}
            done = len(results)
            which = f"crop {done + 1}" if len(todo) == 1 else f"crops {done + 1}-{done + len(todo)}"
            _report(progress, done / (done + len(todo) + 1e-9), f"{which}: image")
            embeddings = self._embeddings([t for t in todo if t not in kept], timings, cancel)
            _check(cancel)
            level = []
            for start, (crop_pts, crop_labels) in todo.items():
                crop_prompts[start] = (crop_pts, crop_labels)
                if start in kept:
                    results[start] = (previous[start], self._crop_mask(start, previous[start]))
                else:
                    mask_prompt = previous.get(start)
                    if mask_prompt is None and prompts.mask is not None:
                        mask_prompt = self._mask_prompt(prompts.mask, start)
                    results[start] = self._decode(embeddings[start], crop_pts, crop_labels,
                                                  mask_prompt, timings)
                hi = results[start][1]
                if stream is not None and start not in pasted:
                    pasted[start] = self._show(stream, hi, start, timings)
                for axis, direction in touched_faces(hi, start, grid.shape):
                    neighbour = list(start)
                    neighbour[axis] += direction * stride
                    level.append((tuple(neighbour), (start, axis, direction)))

        return self._finish(results, first, (prompts, mask_key, crop_prompts), timings, t_start,
                            progress, pasted)

    def _finish(self, results, first, remember, timings, t_start, progress,
                pasted: dict | None = None) -> Prediction:
        t0 = time.perf_counter()
        last, self._last_masks = self._last_masks, {}
        pasted = pasted or {}
        for start, (logits, hi) in results.items():  # a crop mask already on the grid is reused
            known = last.get(start)
            if start in pasted:
                piece = pasted[start]
            elif known is not None and known[0] is logits:
                piece = known[2]
            else:
                piece = self.grid.paste(hi, start) if hi.any() else None
            self._last_masks[start] = (logits, hi, piece)
        pieces = [v[2] for v in self._last_masks.values() if v[2] is not None]
        prediction = merge_pieces(pieces, self.volume.shape, self._buffers)
        timings["postprocess"] += time.perf_counter() - t0
        logits_by_crop = {start: logits for start, (logits, _) in results.items()}
        prediction.state = {
            "low_res_logits": logits_by_crop[first],
            "logits_by_crop": logits_by_crop,
            "first_crop": first,
            "crops": list(results),
        }
        timings["total"] = time.perf_counter() - t_start
        prediction.timings = timings
        if remember is not None:
            self._history.remember(*remember, first, logits_by_crop)
        _report(progress, 1.0, "done")
        return prediction

    def _recentre(self, first, points, labels, timings, cancel, stream) -> tuple:
        """Run the first crop of a new object; when its mask shows the object off centre, move
        the crop (:func:`~.sam_med3d_crops.recentred_start`). Returns the first crop's start and
        what the crop loop continues from (logits, prompts, streamed pieces): the decoded crop
        when it stays, nothing when it moved.
        """
        inside = np.all((points >= first) & (points < np.asarray(first) + CROP), axis=1)
        prompt = (points[inside] - np.asarray(first), labels[inside])
        embedding = self._embeddings([first], timings, cancel)[first]
        _check(cancel)
        logits, hi = self._decode(embedding, *prompt, None, timings)
        # seen within a second, even if the crop then moves
        piece = self._show(stream, hi, first, timings) if stream is not None else None
        moved = recentred_start(hi, first, self.grid.shape)
        if moved is None:  # the loop keeps this crop as decoded (same prompt) and its piece
            return first, {first: logits}, {first: prompt}, ({first: piece} if stream else {})
        return moved, {}, {}, {}

    def _show(self, stream: PartialCallback, hi: np.ndarray, start: tuple, timings: dict):
        """Paste a decoded crop mask onto the volume grid and hand it to ``stream``; returns the
        ``(bbox, patch)`` piece (None when empty), which the answer's merge reuses."""
        t0 = time.perf_counter()
        piece = self.grid.paste(hi, start) if hi.any() else None
        timings["postprocess"] += time.perf_counter() - t0
        if piece is not None:
            stream(Prediction(piece[0], piece[1], self.volume.shape))
        return piece

    # --- steps --------------------------------------------------------------------------------
    def _crop_mask(self, start: tuple, logits) -> np.ndarray:
        """The 128^3 mask of ``logits``; the one of the last prediction when it is the same."""
        known = self._last_masks.get(start)
        if known is not None and known[0] is logits:
            return known[1]
        return self._upsample(logits)

    def _embeddings(self, starts: list, timings: dict, cancel: CancelFlag | None) -> dict:
        """The embeddings of the crops at ``starts``: cached ones reused, the others encoded in
        batches of :attr:`encoder_batch` (one encoder call per batch; each crop's embedding
        is the one it gets alone, batching changes no bit). All of them stay in the cache."""
        import torch

        out = {}
        missing = []
        for start in starts:
            if start in self._cache:
                self._cache.move_to_end(start)
                out[start] = self._cache[start]
            else:
                missing.append(start)
        for i in range(0, len(missing), max(1, self.encoder_batch)):
            batch = missing[i:i + max(1, self.encoder_batch)]
            t0 = time.perf_counter()
            crops = [zscore_positive(torch.from_numpy(
                self.grid.extract(self.volume.array, self.volume.geometry, start)).to(self.device))
                for start in batch]
            tensor = torch.stack(crops)[:, None]
            timings["preprocess"] += time.perf_counter() - t0
            _check(cancel)
            t0 = time.perf_counter()
            with torch.inference_mode(), self._autocast():
                embedding = self.model.image_encoder(tensor).float()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            timings["encoder"] += time.perf_counter() - t0
            self.encoder_calls += len(batch)
            self.encoder_batches += 1
            for k, start in enumerate(batch):
                out[start] = self._cache[start] = embedding[k:k + 1]
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    def _decode(self, embedding, points, labels, mask_prompt, timings):
        import torch

        t0 = time.perf_counter()
        dev = self.device
        side = embedding.shape[-1] * 4
        coords = torch.as_tensor(np.asarray(points, np.float32).reshape(1, -1, 3), device=dev)
        labs = torch.as_tensor(np.asarray(labels, np.int64).reshape(1, -1), device=dev)
        if mask_prompt is None:
            mask_prompt = torch.zeros((1, 1, side, side, side), device=dev)
        with torch.inference_mode(), self._autocast():
            sparse, dense = self.model.prompt_encoder(
                points=[coords, labs], boxes=None, masks=mask_prompt.to(dev)
            )
            logits, _ = self.model.mask_decoder(
                image_embeddings=embedding,
                image_pe=self.model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
            )
            logits = logits.float().clone()
        hi = self._upsample(logits)
        timings["decoder"] += time.perf_counter() - t0
        return logits, hi

    @staticmethod
    def _upsample(logits) -> np.ndarray:
        """Low-res logits -> the 128^3 crop mask: trilinear, then ``sigmoid(x) > 0.5`` in float32."""
        import torch
        import torch.nn.functional as F

        with torch.inference_mode():
            up = F.interpolate(logits.float(), size=(CROP,) * 3, mode="trilinear",
                               align_corners=False)
            return official_threshold(up)[0, 0].cpu().numpy()

    def _mask_prompt(self, mask: np.ndarray, start: tuple):
        import torch
        import torch.nn.functional as F

        crop = self.grid.sample_mask(np.asarray(mask, bool), start)
        fraction = F.avg_pool3d(torch.from_numpy(crop.astype(np.float32))[None, None], 4)
        return MASK_LOGIT * (2 * fraction - 1)

    def _autocast(self):
        import contextlib

        import torch

        if self.amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()


def official_threshold(logits):
    """The official SAM-Med3D mask rule: ``torch.sigmoid(logits) > 0.5`` on float32 logits.

    Not the same as ``logits > 0``: for 0 < x <= ~6e-8 the float32 sigmoid rounds to exactly
    0.5, so the official code leaves such a voxel out. One voxel decides where the next simulated
    click lands, so every mask taken from SAM-Med3D logits goes through this function.
    """
    import torch

    return torch.sigmoid(logits.float()) > 0.5


def zscore_positive(tensor):
    """TorchIO ``ZNormalization(masking_method=lambda x: x > 0)`` on a float tensor.

    Mean and (unbiased) standard deviation over the voxels > 0. Where the official transform
    fails (no voxel > 0, or a zero standard deviation) this falls back to all voxels, and to
    mean subtraction alone when even those are constant.
    """
    values = tensor[tensor > 0]
    if values.numel() < 2 or float(values.std()) == 0.0:
        values = tensor.reshape(-1)
    mean, std = values.mean(), values.std()
    out = tensor - mean
    return out / std if float(std) > 0 else out


def _mask_box(mask: np.ndarray) -> tuple[list[int], list[int]]:
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise EngineError("the mask to refine is empty; click on the object instead")
    lo, hi = [], []
    for axis in range(3):
        nz = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        lo.append(int(nz[0]))
        hi.append(int(nz[-1]) + 1)
    return lo, hi


def _check(cancel: CancelFlag | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled("SAM-Med3D prediction cancelled")


def _report(progress: ProgressCallback | None, fraction: float, what: str) -> None:
    if progress is not None:
        progress(float(min(max(fraction, 0.0), 1.0)), what)
