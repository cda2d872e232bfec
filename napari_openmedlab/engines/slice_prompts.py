"""Between a volume and its slices for the 2D engine: prompts in, Predictions out.

* :func:`slice_prompt`: the one slice a ``predict`` call's prompts are on, and the prompts in
  that slice's (row, column) voxels (the rules are in
  :mod:`napari_openmedlab.engines.sam2d`'s docstring);
* :func:`slice_prediction`: a :class:`~napari_openmedlab.engines.slice2d.SliceResult` as a 3D
  :class:`~napari_openmedlab.engines.base.Prediction` (one slice thick);
* :func:`seeds_from_prompts`, :func:`seeds_from_predictions`: the annotated slices that 3D
  propagation starts from, and :func:`propagate_seeds`, which carries them through the volume
  with :func:`napari_openmedlab.engines.propagation.propagate`.

Functions take the volume's ``shape`` and a ``segment_slice`` callable (the engine's method of
that name) rather than the engine itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .base import CancelFlag, Cancelled, PartialCallback, Prediction, ProgressCallback, PromptError, Prompts
from .propagation import PropagationOptions, PropagationResult, SlicePrompt, propagate
from .slice2d import SliceResult, box_rc, mask_slices, other_axes, slice_of

SegmentSlice = Callable[..., SliceResult]
"""``segment_slice(axis, index, points_rc, labels, box, mask=..., mask_logits=...)``."""


# ------------------------------------------------------------------ prompts -> one slice


def check_mask(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """``mask`` as bool; PromptError unless it has the volume's ``shape``."""
    m = np.asarray(mask, dtype=bool)
    if m.shape != shape:
        raise PromptError(f"mask prompt of shape {m.shape} does not match the volume {shape}")
    return m


def mask_only_slice(mask: np.ndarray | None, axis: int, shape: tuple[int, ...]) -> int:
    """The one slice of ``axis`` a mask prompt covers (PromptError for none or several)."""
    m = check_mask(mask, shape)
    other = tuple(a for a in range(3) if a != axis)
    on = np.flatnonzero(m.any(axis=other))
    if len(on) != 1:
        raise PromptError(
            f"a mask prompt alone must cover exactly one slice of axis {axis} (it covers {len(on)}); "
            "add a click or a box on the slice to refine"
        )
    return int(on[0])


def mask_on_slice(prompts: Prompts, axis: int, index: int, shape: tuple[int, ...]) -> np.ndarray | None:
    """``prompts.mask`` on the slice, or None when absent or empty there."""
    if prompts.mask is None:
        return None
    m = slice_of(check_mask(prompts.mask, shape), axis, index)
    if not m.any():
        return None
    return m


def slice_prompt(prompts: Prompts, slice_axis: int, shape: tuple[int, ...]):
    """``(axis, index, points_rc, labels, box)`` of a one-slice prompt (see the engine's docstring)."""
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
        axis = slice_axis
        index = None
    else:
        axis = slice_axis
        index = mask_only_slice(prompts.mask, axis, shape)
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
    rows, cols = other_axes(axis)
    points_rc = points[:, [rows, cols]] if len(points) else None
    box = box_rc(boxes[-1]) if boxes else None
    return axis, int(index), points_rc, labels, box


# ------------------------------------------------------------------ one slice -> Prediction


def slice_prediction(result: SliceResult, shape: tuple[int, int, int]) -> Prediction:
    """The slice's mask as a one-slice-thick Prediction (state: axis, index, iou, logits)."""
    state = {
        "axis": result.axis,
        "index": result.index,
        "iou": result.iou,
        "multimask": result.multimask,
        "low_res_logits": result.low_res_logits.numpy(),
    }
    return slice_piece(result.axis, result.index, result.mask, shape, state, result.timings)


def slice_piece(
    axis: int, index: int, mask: np.ndarray, shape: tuple[int, int, int], state=None, timings=None
) -> Prediction:
    """A 2D mask on slice ``index`` of ``axis`` as a one-slice-thick Prediction (its bounding box)."""
    state, timings = state or {}, timings or {}
    if not mask.any():
        return Prediction((0, 0, 0, 0, 0, 0), np.zeros((0, 0, 0), bool), shape, state, timings)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    ra, ca = other_axes(axis)
    lo, hi = [0, 0, 0], [0, 0, 0]
    lo[axis], hi[axis] = index, index + 1
    lo[ra], hi[ra], lo[ca], hi[ca] = r0, r1, c0, c1
    patch = np.expand_dims(mask[r0:r1, c0:c1], axis)
    return Prediction((*lo, *hi), patch.copy(), shape, state, timings)


# ------------------------------------------------------------------ 3D propagation


def seeds_from_predictions(
    source: Prediction | Sequence[Prediction], axis: int | None, slice_axis: int, shape: tuple[int, ...]
) -> tuple[int, dict[int, np.ndarray]]:
    """``(axis, seeds)``: the non-empty slices of one or several predictions (later ones win)."""
    predictions = [source] if isinstance(source, Prediction) else list(source)
    if not predictions:
        raise PromptError("nothing to propagate")
    if axis is None:
        axes = {p.state.get("axis") for p in predictions} - {None}
        axis = axes.pop() if len(axes) == 1 else slice_axis
    seeds = {}
    for p in predictions:
        if tuple(p.shape) != shape:
            raise PromptError(f"prediction of shape {p.shape} is not on this volume {shape}")
        seeds.update(mask_slices(p.to_mask(), axis))
    return axis, seeds


def seeds_from_prompts(
    prompts: Prompts,
    axis: int | None,
    slice_axis: int,
    shape: tuple[int, ...],
    segment_slice: SegmentSlice,
    progress: ProgressCallback | None,
    cancel: CancelFlag | None,
) -> tuple[int, dict[int, np.ndarray]]:
    """``(axis, seeds)``: each slice with clicks or a box segmented, plus the mask's other slices."""
    prompts.check_inside(shape)
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
    axis = slice_axis if axis is None else axis
    groups: dict[int, Prompts] = {}
    for b in prompts.boxes:
        groups[b.index] = Prompts(boxes=[b])
    if len(prompts.points):
        on = np.rint(prompts.points[:, axis]).astype(int)
        for index in np.unique(on):
            sel = on == index
            g = groups.get(int(index), Prompts())
            groups[int(index)] = Prompts(prompts.points[sel], prompts.labels[sel], g.boxes)
    mask = None if prompts.mask is None else check_mask(prompts.mask, shape)
    seeds = {} if mask is None else mask_slices(mask, axis)
    for n, (index, g) in enumerate(sorted(groups.items())):
        if cancel is not None and cancel():
            raise Cancelled("propagation cancelled")
        if progress is not None:
            progress(0.0, f"segmenting annotated slice {index} ({n + 1}/{len(groups)})")
        rows, cols = other_axes(axis)
        points_rc = g.points[:, [rows, cols]] if len(g.points) else None
        box = box_rc(g.boxes[-1]) if g.boxes else None
        m2 = seeds.get(index)
        res = segment_slice(
            axis, index, points_rc, g.labels, box, mask=m2 if m2 is not None and m2.any() else None
        )
        seeds[index] = res.mask
    return axis, seeds


def propagate_seeds(
    segment_slice: SegmentSlice,
    axis: int,
    seeds: dict[int, np.ndarray],
    shape: tuple[int, int, int],
    options: PropagationOptions,
    progress: ProgressCallback | None,
    cancel: CancelFlag | None,
    ahead: Callable[[int, int, int], None] | None = None,
    t0: float | None = None,
    partial: PartialCallback | None = None,
) -> Prediction:
    """The 3D Prediction carried from ``seeds`` along ``axis`` (state: axis, annotated, stops).

    ``ahead(index, step, last)`` is called before slice ``index`` is segmented, walking
    ``step`` (+1/-1) at most to slice ``last``, to encode it and the slices after it; ``t0`` (``time.perf_counter()``) is when the
    work started, for the ``propagation`` timing. ``partial`` gets each non-empty seed slice,
    then each slice the walk keeps, as a one-slice Prediction.
    """
    t0 = time.perf_counter() if t0 is None else t0
    previous_logits: dict[int, torch.Tensor] = {}

    def segment(prompt: SlicePrompt) -> tuple[np.ndarray, float]:
        step = 1 if prompt.index > prompt.source else -1
        if ahead is not None:
            ahead(prompt.index, step, prompt.index if prompt.last is None else prompt.last)
        logits = previous_logits.get(prompt.source) if prompt.use_mask_prompt else None
        result = segment_slice(
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
        return result.mask, result.iou  # the predicted IoU serves options.min_score

    accepted = None
    if partial is not None:
        for index in sorted(seeds):
            if seeds[index].any():
                partial(slice_piece(axis, index, seeds[index], shape))

        def accepted(index: int, mask: np.ndarray) -> None:
            partial(slice_piece(axis, index, mask, shape))

    result: PropagationResult = propagate(seeds, shape[axis], segment, options, progress, cancel, accepted)
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
        result.to_volume(axis, shape),
        state=state,
        timings={"propagation": time.perf_counter() - t0, "slices": result.segmented},
    )
