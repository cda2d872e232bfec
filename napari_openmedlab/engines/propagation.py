"""Slice-to-slice propagation: from annotated slices to a 3D mask, with any 2D segmenter.

The 2D models see one slice at a time. To get a 3D object the user segments one slice (or a
few), and the object is carried to the neighbouring slices one after another: each new slice is
segmented by a *segmenter* prompted from the mask of the slice before it. This module holds
only that logic; the model is the callable ``segment(prompt) -> 2D boolean mask`` (the
:class:`~napari_openmedlab.engines.sam2d.Sam2DEngine` supplies one, the tests a stand-in).

Rules (see :class:`PropagationOptions` for the numbers):

* **Prompt of a slice** (:func:`derive_prompt`): the bounding box of the previous slice's mask,
  widened by a margin (10 % of its side, at least 2 voxels) so that a growing object still fits,
  plus one positive point at the previous mask's most interior pixel (the maximum of its
  distance transform) that lies inside the object on that slice too when the slices overlap,
  and tells a box holding two structures which one is meant. The previous mask itself is also
  handed over (``prompt.mask``); whether the model uses it as a mask prompt is the segmenter's
  choice (``use_mask_prompt``, off by default: SAM's mask input is trained on its own logits of
  the same image, not on a neighbour's binary mask). MedSAM is trained with boxes only; its
  engine switches the point off.
* **Stop**: a direction ends at the first slice where

  - the mask has fewer than ``min_area`` pixels: the object has vanished (``"vanished"``);
  - less than ``min_overlap`` (0.5) of the smaller of the two masks lies in the other (overlap
    coefficient ``|a & b| / min(|a|, |b|)``): the model jumped to another structure
    (``"jumped"``);
  - the mask *grows* and its Dice with the previous one is below ``min_dice`` (0.3): it leaked
    into the surroundings (``"grew"``);
  - the segmenter returned a score (``(mask, score)``, e.g. the model's predicted IoU) below
    ``min_score`` when that is set (``"score"``).

  That slice is not kept. A plain Dice threshold was not chosen: an organ's tip on a thick slice
  is much smaller than the slice before it although it lies inside it (the sample CT's
  gallbladder ends with 8 and 3 voxels after 60 and 69: Dice 0.24 and 0.08, overlap 1), so
  shrinking inside the previous mask is accepted and only growth is held to the Dice bound.
* **Several annotated slices**: below the lowest and above the highest annotation the object is
  carried outwards until it stops or the volume ends. Each gap between two annotations is filled
  from both ends, meeting in the middle: every slice takes the mask carried from the *nearer*
  annotation (the lower one on a tie). If one side stops early, the other side carries on
  through the rest of the gap (up to its own stop). Each slice is segmented at most once, but
  for the slice where both sides of a gap stop (each side tries it). The annotated slices are
  kept as given.

Progress is reported per segmented slice; ``cancel()`` is checked before each slice and raises
:class:`~napari_openmedlab.engines.base.Cancelled`. ``accepted(index, mask)`` is told each slice
as soon as it is kept (to show it before the walk ends). :func:`walk_order` is the order in
which one annotated slice's neighbours are segmented (to encode them ahead, in that order).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .base import CancelFlag, Cancelled, ProgressCallback


@dataclass(frozen=True)
class PropagationOptions:
    """The numbers of the propagation rules (module docstring).

    Attributes:
        box_margin: fraction of the previous mask's box side added on each side.
        min_box_margin: least margin in voxels.
        use_point: add a positive point at the previous mask's most interior pixel.
        use_mask_prompt: ask the segmenter to use the previous mask as a mask prompt.
        min_area: a slice whose mask has fewer pixels stops the direction (object vanished).
        min_overlap: least overlap coefficient with the previous slice's mask.
        min_dice: least Dice with the previous slice's mask when the mask grows.
        min_score: least score, for segmenters that return ``(mask, score)`` (None: unused).
        max_distance: carry at most this many slices away from an annotation (None: no limit).
    """

    box_margin: float = 0.1
    min_box_margin: int = 2
    use_point: bool = True
    use_mask_prompt: bool = False
    min_area: int = 3
    min_overlap: float = 0.5
    min_dice: float = 0.3
    min_score: float | None = None
    max_distance: int | None = None


@dataclass
class SlicePrompt:
    """What the segmenter gets for one slice, in that slice's (row, column) voxel coordinates.

    Attributes:
        index: the slice to segment.
        source: the slice whose mask the prompt comes from.
        box: ``(r0, c0, r1, c1)``, inclusive voxel bounds (clipped to the slice).
        points: ``(N, 2)`` (row, column) of the clicks.
        labels: ``(N,)`` 1 positive, 0 negative.
        mask: the source slice's mask (boolean, the slice's shape).
        use_mask_prompt: whether the segmenter should feed ``mask`` to the model.
        last: the farthest slice this walk may reach (to encode ahead no farther); None: unknown.
    """

    index: int
    source: int
    box: tuple[float, float, float, float]
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=int))
    mask: np.ndarray | None = None
    use_mask_prompt: bool = False
    last: int | None = None


SliceSegmenter = Callable[[SlicePrompt], "np.ndarray | tuple[np.ndarray, float]"]
"""``segment(prompt) -> mask`` or ``(mask, score)``: the 2D boolean mask of slice ``prompt.index``."""


@dataclass
class Stop:
    """Why a direction ended: at slice ``index`` (not kept), walking ``step`` (+1 / -1)."""

    index: int
    step: int
    reason: str  # "vanished", "jumped", "grew", "score", "distance"
    dice: float | None = None
    overlap: float | None = None
    area: int = 0
    score: float | None = None


@dataclass
class PropagationResult:
    """The masks per slice index (annotations included) and where the walks stopped."""

    masks: dict[int, np.ndarray]
    stops: list[Stop]
    segmented: int = 0

    def to_volume(self, axis: int, shape: tuple[int, int, int]) -> np.ndarray:
        """The 3D boolean mask: each slice's mask put at its index along ``axis``."""
        out = np.zeros(shape, dtype=bool)
        for index, mask in self.masks.items():
            out[_slicer(axis, index)] = mask
        return out


def _slicer(axis: int, index: int) -> tuple:
    sl: list = [slice(None)] * 3
    sl[axis] = index
    return tuple(sl)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient of two boolean masks (1.0 for two empty masks)."""
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / total


def overlap_coefficient(a: np.ndarray, b: np.ndarray) -> float:
    """``|a & b| / min(|a|, |b|)``: 1 when one mask lies inside the other (0 if one is empty)."""
    smaller = min(int(a.sum()), int(b.sum()))
    if smaller == 0:
        return 0.0
    return int(np.logical_and(a, b).sum()) / smaller


def interior_point(mask: np.ndarray) -> tuple[int, int]:
    """The (row, column) of ``mask`` farthest from its border.

    Among equally deep pixels (a band, a rectangle) the one nearest to their centroid is taken,
    so that the point sits in the middle of the object rather than at one end.
    """
    from scipy import ndimage

    if not mask.any():
        raise ValueError("empty mask has no interior point")
    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    deepest = np.argwhere(distance >= distance.max() - 1e-6)
    centre = deepest.mean(axis=0)
    r, c = deepest[int(np.argmin(((deepest - centre) ** 2).sum(axis=1)))]
    return int(r), int(c)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Inclusive ``(r0, c0, r1, c1)`` bounds of a non-empty 2D mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        raise ValueError("empty mask has no box")
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


def derive_prompt(
    previous: np.ndarray, index: int, source: int, options: PropagationOptions = PropagationOptions()
) -> SlicePrompt:
    """The prompt for slice ``index`` from the mask of slice ``source`` (module docstring)."""
    r0, c0, r1, c1 = mask_box(previous)
    h, w = previous.shape
    mr = max(options.min_box_margin, options.box_margin * (r1 - r0 + 1))
    mc = max(options.min_box_margin, options.box_margin * (c1 - c0 + 1))
    box = (
        float(max(0.0, r0 - mr)),
        float(max(0.0, c0 - mc)),
        float(min(h - 1.0, r1 + mr)),
        float(min(w - 1.0, c1 + mc)),
    )
    if options.use_point:
        points = np.asarray([interior_point(previous)], dtype=float)
        labels = np.ones(1, dtype=int)
    else:
        points, labels = np.zeros((0, 2)), np.zeros((0,), dtype=int)
    return SlicePrompt(index, source, box, points, labels, previous, options.use_mask_prompt)


class _Walker:
    """Carries masks from slice to slice; shared bookkeeping of one propagation call."""

    def __init__(self, n_slices, segment, options, progress, cancel, total, accepted=None) -> None:
        self.n = n_slices
        self.accepted = accepted
        self.segment = segment
        self.options = options
        self.progress = progress
        self.cancel = cancel
        self.total = max(1, total)
        self.masks: dict[int, np.ndarray] = {}
        self.stops: list[Stop] = []
        self.done = 0

    def walk(self, start: int, mask: np.ndarray, step: int, last: int, origin: int) -> tuple[int, bool]:
        """Carry ``mask`` of slice ``start`` one slice at a time up to ``last`` (inclusive).

        ``origin`` is the annotation the walk comes from (for ``max_distance``). Returns the last
        slice filled (``start`` if none) and whether the walk stopped before ``last``.
        """
        previous, current = mask, start
        bound = last
        if self.options.max_distance is not None:
            near = origin + step * self.options.max_distance
            bound = min(last, near) if step > 0 else max(last, near)
        for index in range(start + step, last + step, step):
            if self.options.max_distance is not None and abs(index - origin) > self.options.max_distance:
                self.stops.append(Stop(index, step, "distance"))
                return current, True
            if self.cancel is not None and self.cancel():
                raise Cancelled("propagation cancelled")
            prompt = derive_prompt(previous, index, current, self.options)
            prompt.last = bound
            answer = self.segment(prompt)
            score = None
            if isinstance(answer, tuple):
                answer, score = answer
            new = np.asarray(answer, dtype=bool)
            if new.shape != previous.shape:
                raise ValueError(
                    f"segmenter returned shape {new.shape} for slice {index}, expected {previous.shape}"
                )
            self.done += 1
            if self.progress is not None:
                self.progress(min(1.0, self.done / self.total), f"propagating: slice {index}")
            reason = stop_reason(previous, new, score, self.options)
            if reason is not None:
                reason.index, reason.step = index, step
                self.stops.append(reason)
                return current, True
            self.masks[index] = new
            if self.accepted is not None:
                self.accepted(index, new)
            previous, current = new, index
        return current, False


def stop_reason(
    previous: np.ndarray, new: np.ndarray, score: float | None, options: PropagationOptions
) -> Stop | None:
    """Why ``new`` should not follow ``previous`` (module docstring), or None to keep it."""
    area, before = int(new.sum()), int(previous.sum())
    if area < options.min_area:
        return Stop(-1, 0, "vanished", area=area, score=score)
    ov, d = overlap_coefficient(previous, new), dice(previous, new)
    if ov < options.min_overlap:
        return Stop(-1, 0, "jumped", d, ov, area, score)
    if area > before and d < options.min_dice:
        return Stop(-1, 0, "grew", d, ov, area, score)
    if options.min_score is not None and score is not None and score < options.min_score:
        return Stop(-1, 0, "score", d, ov, area, score)
    return None


def propagate(
    seeds: Mapping[int, np.ndarray],
    n_slices: int,
    segment: SliceSegmenter,
    options: PropagationOptions | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelFlag | None = None,
    accepted: Callable[[int, np.ndarray], None] | None = None,
) -> PropagationResult:
    """Carry the annotated slices ``seeds`` (index -> 2D boolean mask) through ``n_slices``.

    Empty seed masks are ignored; at least one must be non-empty. See the module docstring for
    the rules. ``accepted(index, mask)`` is called for each slice kept, when it is kept (not for
    the seeds). Raises :class:`Cancelled` when ``cancel()`` turns true.
    """
    options = options or PropagationOptions()
    annotated = {int(i): np.asarray(m, dtype=bool) for i, m in seeds.items() if np.asarray(m).any()}
    if not annotated:
        raise ValueError("propagation needs at least one non-empty annotated slice")
    for i in annotated:
        if not 0 <= i < n_slices:
            raise ValueError(f"annotated slice {i} outside 0..{n_slices - 1}")
    order = sorted(annotated)
    # every non-annotated slice is segmented about once: that is the progress total (capped at 1)
    total = n_slices - len(order)
    walker = _Walker(n_slices, segment, options, progress, cancel, total, accepted)
    walker.masks.update(annotated)
    if progress is not None:
        progress(0.0, "propagating")

    for a, b in zip(order[:-1], order[1:]):
        if b - a <= 1:
            continue
        mid = (a + b) // 2  # the lower annotation takes the middle slice on a tie
        last_f, stopped_f = walker.walk(a, annotated[a], +1, mid, a)
        if stopped_f:
            walker.walk(b, annotated[b], -1, last_f + 1, b)
            continue
        last_b, stopped_b = walker.walk(b, annotated[b], -1, mid + 1, b)
        if stopped_b and last_b - 1 > mid:
            walker.walk(mid, walker.masks[mid], +1, last_b - 1, a)
    walker.walk(order[0], annotated[order[0]], -1, 0, order[0])
    walker.walk(order[-1], annotated[order[-1]], +1, n_slices - 1, order[-1])
    if progress is not None:
        progress(1.0, "propagation done")
    return PropagationResult(walker.masks, walker.stops, walker.done)


def walk_order(index: int, n_slices: int, reach: int) -> list[int]:
    """The slices a propagation from the one annotated slice ``index`` segments, in its order,
    up to ``reach`` slices on either side: below it down to 0, then above it (:func:`propagate`
    walks down first, then up)."""
    below = range(index - 1, max(-1, index - 1 - reach), -1)
    above = range(index + 1, min(n_slices, index + 1 + reach))
    return [*below, *above]
