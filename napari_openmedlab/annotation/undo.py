"""Undo and redo for an annotation session, bounded in bytes.

Two kinds of change are undone:

* edits of the target label map, kept as a :class:`LabelDiff`: the voxels before and after inside
  the smallest box that holds every changed voxel (never a whole volume);
* changes of the current object (its prompts, refine mask and preview), kept as
  :class:`ObjectState` snapshots, which are small: points, boxes and bounding-box patches.

A :class:`Step` may hold both: a commit writes labels *and* clears the current object, and undoing
it brings both back. Undoing a label edit only restores voxels that still hold the value the edit
wrote, so strokes made later with napari's own brush or eraser survive an undo of an older commit.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..engines.base import Box, Prediction, Prompts
from .masks import EMPTY_BBOX, bbox_slices, bounding_box

Bbox = tuple[int, int, int, int, int, int]
"""Half-open voxel bounds ``(z0, y0, x0, z1, y1, x1)``."""

DEFAULT_MAX_BYTES = 256 * 2**20


def mask_bbox(mask: np.ndarray) -> Bbox | None:
    """The half-open bounding box of the True voxels of a 3D mask, or None when there are none
    (:func:`.masks.bounding_box`, the project's one helper, with None for empty)."""
    box = bounding_box(mask)
    return None if box == EMPTY_BBOX else box


@dataclass
class LabelDiff:
    """One edit of a label map: ``before`` and ``after`` voxels inside ``bbox``."""

    bbox: Bbox
    before: np.ndarray
    after: np.ndarray

    @classmethod
    def between(cls, before: np.ndarray, after: np.ndarray, origin=(0, 0, 0)) -> LabelDiff | None:
        """The diff of two same-shape regions whose corner sits at voxel ``origin``; None if equal."""
        changed = before != after
        box = mask_bbox(changed)
        if box is None:
            return None
        sl = bbox_slices(box)
        oz, oy, ox = (int(v) for v in origin)
        z0, y0, x0, z1, y1, x1 = box
        return cls(
            (z0 + oz, y0 + oy, x0 + ox, z1 + oz, y1 + oy, x1 + ox), before[sl].copy(), after[sl].copy()
        )

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return bbox_slices(self.bbox)

    @property
    def nbytes(self) -> int:
        return int(self.before.nbytes + self.after.nbytes)

    @property
    def changed_voxels(self) -> int:
        return int(np.count_nonzero(self.before != self.after))

    def undo(self, labels: np.ndarray) -> None:
        """Put back ``before`` where ``labels`` still holds what this edit wrote (in place)."""
        region = labels[self.slices]
        mine = region == self.after
        region[mine] = self.before[mine]

    def redo(self, labels: np.ndarray) -> None:
        """Write ``after`` again where ``labels`` still holds what was there before (in place)."""
        region = labels[self.slices]
        mine = region == self.before
        region[mine] = self.after[mine]


class PackedPreview(Prediction):
    """A preview that only undo steps still hold, its patch bit-packed (8x smaller).

    Why: a live preview is the engine's answer, often in memory the engine reuses once no one
    holds it (SAM-Med3D's merge buffers). Kept as it is by the undo steps, every click on a
    whole-volume mask would pin a new 78 MB array (the engine then writes each answer into fresh
    memory: 0.2-0.3 s of page faults per click here) and the byte bound would keep 3 steps. The
    patch is unpacked when it is read again (undo, redo, drawing), which is rare.
    """

    def __init__(self, preview: Prediction) -> None:  # noqa: D107 - no dataclass __init__
        self.bbox = preview.bbox
        self.shape = preview.shape
        self.state = preview.state
        self.timings = preview.timings
        self._size = tuple(preview.patch.shape)
        self._bits = np.packbits(preview.patch, axis=None)

    @property
    def patch(self) -> np.ndarray:  # type: ignore[override]
        count = int(np.prod(self._size))
        return np.unpackbits(self._bits, count=count).view(bool).reshape(self._size)

    @property
    def nbytes(self) -> int:
        return int(self._bits.nbytes)


def _prediction_bytes(p: Prediction | None) -> int:
    if p is None:
        return 0
    return p.nbytes if isinstance(p, PackedPreview) else int(p.patch.nbytes)


@dataclass
class ObjectState:
    """The current object: its prompts, the mask being refined (if any) and its latest preview.

    Attributes:
        points: ``(N, 3)`` voxel ``(z, y, x)``; ``labels``: ``(N,)`` 1 positive, 0 negative.
        boxes: box prompts (2D models).
        mask: the mask prompt when an existing label is refined, as a bbox + patch.
        preview: the latest preview; until the engine answers these prompts, the previous one.
        refine_id: the label id being refined, whose voxels a commit replaces.
        fresh: whether ``preview`` is the engine's answer to exactly these prompts.
    """

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=int))
    boxes: tuple[Box, ...] = ()
    mask: Prediction | None = None
    preview: Prediction | None = None
    refine_id: int | None = None
    fresh: bool = True
    slice_axis: int | None = None

    @property
    def empty(self) -> bool:
        return len(self.points) == 0 and not self.boxes and self.mask is None

    @property
    def has_prompts(self) -> bool:
        """Whether there is a click or a box to run the engine on (a mask alone is not run)."""
        return len(self.points) > 0 or bool(self.boxes)

    @property
    def nbytes(self) -> int:
        return (
            int(self.points.nbytes + self.labels.nbytes)
            + _prediction_bytes(self.mask)
            + (0 if self.preview is self.mask else _prediction_bytes(self.preview))
        )

    def with_point(self, zyx, positive: bool) -> ObjectState:
        """A new state with one more click; the old preview stays shown until the new one arrives."""
        return ObjectState(
            np.vstack([self.points, np.asarray(zyx, dtype=float).reshape(1, 3)]),
            np.append(self.labels, int(bool(positive))),
            self.boxes,
            self.mask,
            self.preview,
            self.refine_id,
            fresh=False,
            slice_axis=self.slice_axis,
        )

    def with_box(self, box: Box) -> ObjectState:
        return ObjectState(
            self.points,
            self.labels,
            (*self.boxes, box),
            self.mask,
            self.preview,
            self.refine_id,
            fresh=False,
            slice_axis=self.slice_axis,
        )

    def prompts(self) -> Prompts:
        """The engine's :class:`Prompts` (the refine mask rebuilt on the full grid)."""
        mask = self.mask.to_mask() if self.mask is not None else None
        return Prompts(self.points.copy(), self.labels.copy(), list(self.boxes), mask, self.slice_axis)


@dataclass
class Step:
    """One undoable action: a label edit, an object change, or both (a commit)."""

    description: str
    labels: LabelDiff | None = None
    before: ObjectState | None = None
    after: ObjectState | None = None
    record: dict | None = None

    @property
    def nbytes(self) -> int:
        total = self.labels.nbytes if self.labels is not None else 0
        for state in (self.before, self.after):
            total += state.nbytes if state is not None else 0
        return total


class History:
    """Undo and redo stacks whose steps together stay under ``max_bytes``.

    When a push (or a step that grew, see :meth:`touch`) goes over the bound, the oldest undo steps
    are forgotten first, then the farthest redo steps; the newest step is always kept.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_bytes = int(max_bytes)
        self._undo: deque[Step] = deque()
        self._redo: deque[Step] = deque()

    def push(self, step: Step) -> None:
        self._undo.append(step)
        self._redo.clear()
        self._trim()

    def undo(self) -> Step | None:
        if not self._undo:
            return None
        step = self._undo.pop()
        self._redo.append(step)
        return step

    def redo(self) -> Step | None:
        if not self._redo:
            return None
        step = self._redo.pop()
        self._undo.append(step)
        return step

    def touch(self) -> None:
        """A step grew (a preview arrived for it): apply the bound again."""
        self._trim()

    def pack_previews(self, shown: Prediction | None) -> None:
        """Bit-pack every preview the steps hold but ``shown`` (the current object's), so the
        history keeps no engine answer alive (:class:`PackedPreview`); then apply the bound."""
        packed: dict[int, PackedPreview] = {}
        for step in (*self._undo, *self._redo):
            for state in (step.before, step.after):
                p = None if state is None else state.preview
                if p is None or p is shown or p is state.mask or isinstance(p, PackedPreview):
                    continue
                if id(p) not in packed:
                    packed[id(p)] = PackedPreview(p)
                state.preview = packed[id(p)]
        self._trim()

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def nbytes(self) -> int:
        """Bytes held: each step's label diff, and each object state and each preview or refine
        mask once (a step's ``before`` is the previous step's ``after``, and a new click's state
        shares its preview until the answer comes: counted per step, one 78 MB preview counted
        three times made the bound keep a single undo step on a large object)."""
        total = 0
        seen: set[int] = set()
        for step in (*self._undo, *self._redo):
            states = [st for st in (step.before, step.after) if st is not None]
            total += step.nbytes - sum(st.nbytes for st in states)  # its label or structure diffs
            for state in states:
                if id(state) in seen:
                    continue
                seen.add(id(state))
                total += int(state.points.nbytes + state.labels.nbytes)
                for p in (state.mask, state.preview):
                    if p is not None and id(p) not in seen:
                        seen.add(id(p))
                        total += _prediction_bytes(p)
        return total

    def __len__(self) -> int:
        return len(self._undo) + len(self._redo)

    @property
    def undo_descriptions(self) -> list[str]:
        return [s.description for s in self._undo]

    def _trim(self) -> None:
        while self.nbytes > self.max_bytes:  # recounted: steps share states and previews
            if len(self._undo) > 1:
                self._undo.popleft()  # the oldest undo step
            elif len(self._redo) > (0 if self._undo else 1):
                self._redo.popleft()  # the farthest redo step
            else:
                break
