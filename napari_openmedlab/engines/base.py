"""The engine contract shared by every model, the widget, the CLI and the evaluation.

An engine holds one loaded model and one volume: ``set_volume`` once, then ``predict`` many
times with the accumulated prompts of one object, ``reset`` to forget that object. Coordinates
are voxel indices ``(z, y, x)`` of the volume's own grid.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..io.volume import Volume

ProgressCallback = Callable[[float, str], None]
"""Called with (fraction done in [0, 1], what runs now)."""

CancelFlag = Callable[[], bool]
"""Returns True once the caller wants the running step abandoned."""

PartialCallback = Callable[["Prediction"], None]
"""Called, from the engine's thread, with a piece of the answer as soon as it is ready: its voxels
are added to what the preview showed before the request (the final answer replaces them all)."""


class EngineError(RuntimeError):
    """An engine was used wrongly (no volume set, unsupported prompt, ...)."""


class PromptError(ValueError):
    """A prompt is invalid for this volume (e.g. a click outside it)."""


class Cancelled(RuntimeError):
    """The caller's cancel flag stopped a long step."""


@dataclass(frozen=True)
class Box:
    """A box on one slice, for the 2D models.

    ``axis`` is the array axis normal to the slice (0: axial z, 1: coronal y, 2: sagittal x) and
    ``index`` the slice. ``(r0, c0, r1, c1)`` are inclusive row/column voxel bounds in the slice,
    rows and columns being the two remaining axes in array order (axial: rows y, columns x).
    """

    axis: int
    index: int
    r0: float
    c0: float
    r1: float
    c1: float


@dataclass
class Prompts:
    """The user's input for one object; it accumulates until the object is committed.

    Attributes:
        points: ``(N, 3)`` voxel coordinates ``(z, y, x)``, in click order.
        labels: ``(N,)`` 1 for a positive click, 0 for a negative one.
        boxes: boxes on slices (2D models only).
        mask: an existing mask to refine, boolean on the volume's grid, or None.
        slice_axis: the array axis normal to the slice the clicks were made on (0 axial, 1 coronal,
            2 sagittal), for the 2D models; None: the engine's own default.
    """

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=int))
    boxes: list[Box] = field(default_factory=list)
    mask: np.ndarray | None = None
    slice_axis: int | None = None

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=float).reshape(-1, 3)
        self.labels = np.asarray(self.labels, dtype=int).reshape(-1)
        if len(self.points) != len(self.labels):
            raise PromptError(f"{len(self.points)} points but {len(self.labels)} labels")
        if len(self.labels) and not np.isin(self.labels, (0, 1)).all():
            raise PromptError("point labels are 1 (positive) or 0 (negative)")
        if self.slice_axis is not None and self.slice_axis not in (0, 1, 2):
            raise PromptError(f"slice_axis is 0, 1 or 2 (or None); got {self.slice_axis!r}")

    def add_point(self, zyx, positive: bool = True) -> Prompts:
        """A new Prompts with one more click."""
        return Prompts(
            np.vstack([self.points, np.asarray(zyx, float).reshape(1, 3)]),
            np.append(self.labels, int(positive)),
            list(self.boxes),
            self.mask,
            self.slice_axis,
        )

    @property
    def empty(self) -> bool:
        return len(self.points) == 0 and not self.boxes and self.mask is None

    def check_inside(self, shape: tuple[int, int, int]) -> None:
        """Raise :class:`PromptError` for a click that lies outside a grid of ``shape``."""
        for p in self.points:
            if not np.all(np.isfinite(p)):
                raise PromptError(f"click at voxel (z, y, x) = {_plain(p)} is not a finite position")
            if np.any(p < -0.5) or np.any(p > np.asarray(shape) - 0.5):
                raise PromptError(
                    f"click at voxel (z, y, x) = {_plain(p)} lies outside the volume of shape "
                    f"{_plain(shape)} (valid: 0..{int(shape[0]) - 1}, 0..{int(shape[1]) - 1}, "
                    f"0..{int(shape[2]) - 1})"
                )
        for b in self.boxes:
            if b.axis not in (0, 1, 2):
                raise PromptError(f"box axis {b.axis}: 0 (axial), 1 (coronal) or 2 (sagittal)")
            if not 0 <= b.index < shape[b.axis]:
                raise PromptError(f"box on slice {b.index} of axis {b.axis}: outside 0..{shape[b.axis] - 1}")
            rows, cols = (shape[a] for a in range(3) if a != b.axis)
            corners = (b.r0, b.c0, b.r1, b.c1)
            if not all(np.isfinite(corners)):
                raise PromptError(f"box {corners} on slice {b.index}: not a finite position")
            if b.r1 < -0.5 or b.r0 > rows - 0.5 or b.c1 < -0.5 or b.c0 > cols - 0.5:
                raise PromptError(
                    f"box (rows {b.r0:g}..{b.r1:g}, columns {b.c0:g}..{b.c1:g}) on slice {b.index} lies "
                    f"wholly outside the slice of {rows} x {cols} voxels"
                )

    def check_values(self, array: np.ndarray) -> None:
        """Raise :class:`PromptError` for a click on a voxel whose value is NaN or infinite."""
        if not np.issubdtype(array.dtype, np.floating):
            return
        for p in self.points:
            zyx = tuple(int(round(v)) for v in np.clip(p, 0, np.asarray(array.shape) - 1))
            if not np.isfinite(array[zyx]):
                raise PromptError(
                    f"click at voxel (z, y, x) = {zyx} lands on a voxel with no value ({array[zyx]}); "
                    "click inside the image"
                )


def _plain(values) -> str:
    """``(15, 500.5, 40)``: numbers as a user typed them, not numpy reprs like ``np.float64(15.0)``."""
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"


@dataclass
class Prediction:
    """The current object's mask, kept as a bounding box plus a boolean patch.

    Attributes:
        bbox: ``(z0, y0, x0, z1, y1, x1)``, half-open voxel bounds of ``patch`` on the volume grid.
        patch: boolean mask of shape ``(z1 - z0, y1 - y0, x1 - x0)``.
        shape: the volume's shape, so the full mask can be rebuilt.
        state: what the next click needs (e.g. SAM-Med3D's low-res logits); engine-private.
        timings: seconds spent per step (``"encoder"``, ``"decoder"``, ...), for status lines.
    """

    bbox: tuple[int, int, int, int, int, int]
    patch: np.ndarray
    shape: tuple[int, int, int]
    state: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    @classmethod
    def from_mask(cls, mask: np.ndarray, **kwargs) -> Prediction:
        """Wrap a full-volume boolean mask, trimmed to its bounding box."""
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return cls((0, 0, 0, 0, 0, 0), np.zeros((0, 0, 0), bool), mask.shape, **kwargs)
        lo, hi = [], []
        for axis in range(3):
            other = tuple(a for a in range(3) if a != axis)
            nz = np.flatnonzero(mask.any(axis=other))
            lo.append(int(nz[0]))
            hi.append(int(nz[-1]) + 1)
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        return cls((*lo, *hi), mask[sl].copy(), mask.shape, **kwargs)

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        z0, y0, x0, z1, y1, x1 = self.bbox
        return slice(z0, z1), slice(y0, y1), slice(x0, x1)

    def to_mask(self) -> np.ndarray:
        """The full boolean mask on the volume grid."""
        out = np.zeros(self.shape, dtype=bool)
        out[self.slices] = self.patch
        return out

    @property
    def empty(self) -> bool:
        return not self.patch.any()


class Engine(abc.ABC):
    """Base class of all engines. Subclasses implement ``_set_volume`` and ``_predict``."""

    #: registry name of the model (e.g. ``"sam-med3d-turbo"``)
    name: str = "engine"
    #: whether box prompts are understood (the 2D models); SAM-Med3D takes points only
    supports_boxes: bool = False
    #: whether ``_predict`` takes ``partial=`` and streams pieces of its answer
    streams: bool = False

    def __init__(self) -> None:
        self._volume: Volume | None = None

    @property
    def volume(self) -> Volume:
        if self._volume is None:
            raise EngineError(f"{self.name}: no volume set; call set_volume(volume) before predict")
        return self._volume

    def set_volume(self, volume: Volume, progress: ProgressCallback | None = None) -> None:
        """Take a new volume; forgets the current object and any cached embeddings."""
        if not isinstance(volume, Volume):
            raise TypeError("set_volume expects a napari_openmedlab.io.Volume")
        self._volume = volume
        self.reset()
        self._set_volume(volume, progress)

    def predict(
        self,
        prompts: Prompts,
        progress: ProgressCallback | None = None,
        cancel: CancelFlag | None = None,
        partial: PartialCallback | None = None,
    ) -> Prediction:
        """The mask of the current object given all its prompts so far.

        ``partial``, where the engine streams (:attr:`streams`), gets pieces of the answer as
        they are ready (a new SAM-Med3D object: each crop's mask); others ignore it.
        """
        volume = self.volume
        prompts.check_inside(volume.shape)
        prompts.check_values(volume.array)
        if prompts.boxes and not self.supports_boxes:
            raise PromptError(f"{self.name} does not take boxes; use positive/negative clicks")
        if prompts.empty:
            raise PromptError("no prompt given: add at least one click")
        if partial is not None and self.streams:
            return self._predict(prompts, progress, cancel, partial=partial)
        return self._predict(prompts, progress, cancel)

    def reset(self) -> None:
        """Forget the current object (its prompts' state), keep the volume and embeddings."""

    @abc.abstractmethod
    def _set_volume(self, volume: Volume, progress: ProgressCallback | None) -> None: ...

    @abc.abstractmethod
    def _predict(
        self, prompts: Prompts, progress: ProgressCallback | None, cancel: CancelFlag | None
    ) -> Prediction: ...
