"""The headless annotation session: image + structure set + engine + current object + undo + autosave.

Every user action is a request (:mod:`.requests`) given to :meth:`AnnotationSession.handle`, so the
widget, the CLI, the tests and a future server drive the same code. ``handle`` returns an
:class:`Outcome` that says what changed (structure names, the grid region, the current object);
a view redraws from it. Nothing here knows about napari: the widget reads the session and sends
requests, the session never calls back.

Rules kept here, whoever sends the request:

* a locked structure is never changed (commit, edit, remove, undo all refuse with
  :class:`LockedStructureError`, and nothing changes);
* with ``exclude_locked`` (on by default) the voxels of locked structures are removed from the
  preview and from what a commit writes, so a parotid commit cannot eat the finished mandible;
* undo/redo are per request, with bounding-box diffs, across structures (:mod:`.changes`);
* with an autosave, the whole structure set is written after every change of a structure, before
  ``handle`` returns, so killing the process loses at most the object not yet committed.

The engine may run elsewhere (the widget runs it on a worker thread): :meth:`pending` says which
prompts to run and :meth:`set_prediction` takes the answer back. With ``auto_predict`` (default
when an engine is given) a point or a box runs the engine before ``handle`` returns.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field, replace

import numpy as np

from ..engines.base import Box as EngineBox
from ..engines.base import Engine, Prediction, PromptError, Prompts
from ..io.volume import Volume
from . import requests as rq
from .changes import (
    LockChanged,
    MaskChange,
    PromptLogged,
    Renamed,
    SessionStep,
    StructureAdded,
    StructureRemoved,
)
from .importing import import_structures
from .masks import EMPTY_BBOX, SparseMask, bbox_union
from .prompt_log import commit_record
from .structure_set import LockedStructureError, StructureSet, StructureSetError
from .undo import DEFAULT_MAX_BYTES, History, ObjectState

logger = logging.getLogger(__name__)


class SessionError(StructureSetError):
    """A request that is valid in itself but not now (nothing to commit, nothing to refine, ...)."""


@dataclass
class EngineCall:
    """What the engine should run now: all prompts of the current object.

    ``generation`` identifies the object's state; an answer for an older generation is ignored.
    ``reset`` asks the engine to forget its object state first (after undo, a new object, ...).
    """

    generation: int
    prompts: Prompts
    reset: bool


@dataclass
class Outcome:
    """What one request changed.

    Attributes:
        request: the request handled.
        structures: names of the structures whose mask or attributes changed (new names after a
            rename; removed ones too, so a view can drop them).
        bbox: the region of the grid whose masks changed (half-open z0, y0, x0, z1, y1, x1), or None.
        object_changed: the current object (prompts or preview) changed.
        order_changed: structures were added, removed or renamed.
        message: one line for a status bar.
        record: the prompt-log record of a commit.
    """

    request: rq.Request
    structures: list = field(default_factory=list)
    bbox: tuple | None = None
    object_changed: bool = False
    order_changed: bool = False
    message: str = ""
    record: dict | None = None


def _same_grid(ss: StructureSet, volume: Volume) -> bool:
    g, h = ss.geometry, volume.geometry
    return (
        tuple(ss.shape or volume.shape) == tuple(volume.shape)
        and np.allclose(g.spacing, h.spacing, rtol=0, atol=1e-4)
        and np.allclose(g.origin, h.origin, rtol=0, atol=1e-3)
        and np.allclose(g.direction, h.direction, rtol=0, atol=1e-5)
    )


class AnnotationSession:
    """One image being annotated into a structure set.

    Args:
        volume: the image.
        structure_set: the structures (on the image's grid); a new empty set when None. Structures
            without a label id get the next free ones, so ids stay stable while you work.
        engine: an :class:`Engine`; given the volume here unless it already has it. None: the
            caller runs the engine (see :meth:`pending`).
        autosave: a :class:`~.structure_autosave.StructureSetAutosave` (or anything with
            ``save(structure_set)``), or None.
        exclude_locked: remove locked structures' voxels from previews and commits.
        auto_predict: run the engine inside ``handle`` for points and boxes (needs an engine).
        model_info: ``name``, ``checkpoint``, ``checkpoint_sha256``, ``device`` for the prompt log.
    """

    def __init__(
        self,
        volume: Volume,
        structure_set: StructureSet | None = None,
        engine: Engine | None = None,
        *,
        autosave=None,
        exclude_locked: bool = True,
        auto_predict: bool | None = None,
        max_undo_bytes: int = DEFAULT_MAX_BYTES,
        model_info: dict | None = None,
    ) -> None:
        if not isinstance(volume, Volume):
            raise SessionError("an AnnotationSession needs an io.Volume")
        self.volume = volume
        if structure_set is None:
            structure_set = StructureSet(volume.geometry, volume.shape)
        elif not _same_grid(structure_set, volume):
            raise SessionError(
                f"the structure set's grid (shape {structure_set.shape}) is not the image's "
                f"(shape {volume.shape}); resample it onto the image first"
            )
        if structure_set.shape is None:
            structure_set.shape = tuple(volume.shape)
        self.structures = structure_set
        for name, label_id in structure_set.label_ids().items():
            structure_set.structure(name).label_id = label_id  # stable ids from now on
        self.engine = engine
        if engine is not None and engine._volume is not volume:
            engine.set_volume(volume)
        self.auto_predict = engine is not None if auto_predict is None else bool(auto_predict)
        self.autosave = autosave
        self.exclude_locked = bool(exclude_locked)
        self.history = History(max_undo_bytes)
        self.object = ObjectState()
        self.generation = 0
        self.model_info = dict(model_info or {"name": getattr(engine, "name", None)})
        self.last_autosave_error: BaseException | None = None
        self._needs_reset = True
        self._handlers = {
            rq.AddPoint: self._point,
            rq.AddBox: self._box,
            rq.ClearObject: self._clear,
            rq.Refine: self._refine,
            rq.Commit: self._commit,
            rq.Edit: self._edit,
            rq.AddStructure: self._add_structure,
            rq.RemoveStructure: self._remove_structure,
            rq.Rename: self._rename,
            rq.Lock: self._lock,
            rq.SetVisible: self._visible,
            rq.Contour: self._contour,

            rq.ImportStructures: lambda r: import_structures(self, r),
            rq.Undo: self._undo,
            rq.Redo: self._redo,
        }

    # --- the one entry point ------------------------------------------------------------------
    def handle(self, request: rq.Request | dict) -> Outcome:
        """Carry out one request (or its JSON dict); raises a typed error and changes nothing when
        the request cannot be done now."""
        if isinstance(request, dict):
            request = rq.request_from_dict(request)
        handler = self._handlers.get(type(request))
        if handler is None:
            raise rq.RequestError(f"the session does not handle {type(request).__name__}")
        return handler(request)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.volume.shape)  # type: ignore[return-value]

    # --- the current object -------------------------------------------------------------------
    def pending(self, reset: bool = False) -> EngineCall | None:
        """The prompts the engine should run for the current object, or None (nothing to run)."""
        if not self.object.has_prompts:
            return None
        reset, self._needs_reset = reset or self._needs_reset, False
        return EngineCall(self.generation, self.object.prompts(), reset)

    def predict(self, progress=None, cancel=None) -> Prediction | None:
        """Run the session's engine on the current object now (in this thread)."""
        if self.engine is None:
            raise SessionError("this session has no engine; run pending() prompts yourself")
        call = self.pending()
        if call is None:
            return None
        if call.reset:
            self.engine.reset()
        prediction = self.engine.predict(call.prompts, progress, cancel)
        self.set_prediction(call.generation, prediction)
        return prediction

    def set_prediction(self, generation: int, prediction: Prediction) -> bool:
        """Take an engine answer; False (ignored) when newer prompts superseded it."""
        if generation != self.generation:
            return False
        self._check_grid(prediction)
        self.object.preview = prediction
        self.object.fresh = True
        self.history.pack_previews(shown=prediction)
        return True

    def set_propagation(self, generation: int, prediction: Prediction) -> bool:
        """A 3D propagation of the current object, as an undo step (undo shows the slice again)."""
        if generation != self.generation:
            return False
        self._check_grid(prediction)
        new = replace(self.object, preview=prediction, fresh=True)
        self._push_object(SessionStep("propagation", before=self.object, after=new), new, reset=False)
        self.history.pack_previews(shown=prediction)
        return True

    def preview(self) -> Prediction | None:
        """The current object as it would be committed: the engine's answer minus locked structures
        (with ``exclude_locked``; the structure being refined is kept)."""
        return self._without_locked(self.object.preview, keep=self._refine_name())

    def preview_piece(self, generation: int, piece: Prediction) -> Prediction | None:
        """A piece an engine streamed while answering (``partial``) as the preview would show it
        (minus locked structures), or None when newer prompts superseded it. The session keeps
        nothing of it: the final answer (:meth:`set_prediction`, :meth:`set_propagation`) counts."""
        if generation != self.generation:
            return None
        self._check_grid(piece)
        return self._without_locked(piece, keep=self._refine_name())

    def _check_grid(self, prediction: Prediction) -> None:
        if tuple(prediction.shape) != self.shape:
            raise SessionError(f"prediction grid {tuple(prediction.shape)} differs from the image {self.shape}")

    def _refine_name(self) -> str | None:
        if self.object.refine_id is None:
            return None
        return next((s.name for s in self.structures if s.label_id == self.object.refine_id), None)

    def _without_locked(self, pred: Prediction | None, keep: str | None) -> Prediction | None:
        if pred is None or pred.empty or not self.exclude_locked:
            return pred
        patch = None
        for s in self.structures:
            if not s.locked or s.name == keep or s.mask.empty:
                continue
            inside = s.mask.crop(pred.bbox)
            if inside.any():
                patch = (pred.patch if patch is None else patch) & ~inside
        if patch is None:
            return pred
        return Prediction(pred.bbox, patch, pred.shape, pred.state, pred.timings)

    def _push_object(self, step: SessionStep, new: ObjectState, reset: bool = True) -> None:
        self.history.push(step)
        self._set_object(new, reset)

    def _set_object(self, state: ObjectState, reset: bool = True) -> None:
        self.object = state
        self.generation += 1
        self._needs_reset = self._needs_reset or reset

    def _run_if_auto(self) -> None:
        if self.auto_predict and self.engine is not None:
            self.predict()

    def _point(self, r: rq.AddPoint) -> Outcome:
        zyx = np.round(np.asarray(r.zyx, dtype=float))
        Prompts(zyx[None], [1]).check_inside(self.shape)
        new = self.object.with_point(zyx, r.positive)
        if r.slice_axis is not None:
            new = replace(new, slice_axis=r.slice_axis)
        self._push_object(SessionStep("click", before=self.object, after=new), new, reset=False)
        self._run_if_auto()
        return Outcome(r, object_changed=True, message=f"{'positive' if r.positive else 'negative'} click")

    def _box(self, r: rq.AddBox) -> Outcome:
        box = EngineBox(r.axis, r.index, r.r0, r.c0, r.r1, r.c1)
        Prompts(boxes=[box]).check_inside(self.shape)
        if self.engine is not None and not self.engine.supports_boxes:
            raise PromptError(f"{self.engine.name} does not take boxes; use positive/negative clicks")
        new = self.object.with_box(box)
        self._push_object(SessionStep("box", before=self.object, after=new), new, reset=False)
        self._run_if_auto()
        return Outcome(r, object_changed=True, message="box")

    def _clear(self, r: rq.ClearObject) -> Outcome:
        if self.object.empty and self.object.preview is None:
            return Outcome(r, message="nothing to clear")
        self._push_object(SessionStep("clear", before=self.object, after=ObjectState()), ObjectState())
        return Outcome(r, object_changed=True, message="cleared the current object")

    def _refine(self, r: rq.Refine) -> Outcome:
        s = self.structures.structure(r.structure)
        if s.mask.empty:
            raise SessionError(f"{s.name!r} has no voxels to refine")
        pred = Prediction(s.mask.bbox, s.mask.patch(), self.shape)
        new = ObjectState(mask=pred, preview=pred, refine_id=s.label_id)
        self._push_object(SessionStep(f"refine {s.name}", before=self.object, after=new), new)
        return Outcome(r, object_changed=True, message=f"refining {s.name}")

    # --- writing into structures --------------------------------------------------------------
    def _commit(self, r: rq.Commit) -> Outcome:
        ss = self.structures
        if r.structure in ss and ss.is_locked(r.structure):
            raise LockedStructureError(f"{r.structure!r} is locked; unlock it before committing into it")
        raw = self.object.preview
        refining = self.object.refine_id is not None
        if raw is None or (raw.empty and not refining):
            raise SessionError("nothing to commit: click the structure first")
        obj = self._without_locked(raw, keep=r.structure)
        changes: list = []
        if r.structure not in ss:
            changes.append(self._added(ss.add(r.structure, label_id=self._free_id())))
        s = ss.structure(r.structure)
        old = s.mask
        if obj.empty:
            new = SparseMask(self.shape) if r.mode == "replace" else old
        elif r.mode == "replace":
            new = SparseMask(self.shape, obj.bbox, obj.patch)
        elif r.mode == "add":
            new = old.with_region(obj.bbox, old.crop(obj.bbox) | obj.patch)
        else:
            new = old.with_region(obj.bbox, old.crop(obj.bbox) & ~obj.patch)
        diff = MaskChange.between(s.name, old, new)
        if diff is not None:
            ss.set_mask(s.name, new)
            changes.append(diff)
        record = commit_record(
            self.object.prompts(),
            self.volume.geometry,
            model=self.model_info,
            class_id=s.label_id,
            class_name=s.name,
            overlap=r.mode,
            refined_id=self.object.refine_id,
            voxels_changed=diff.voxels_changed if diff else 0,
            bbox=diff.bbox if diff else None,
        )
        record.update(structure=s.name, mode=r.mode)
        s.prompts.append(record)
        changes.append(PromptLogged(s.name, record))
        step = SessionStep(f"commit {s.name}", changes, before=self.object, after=ObjectState())
        self._push_object(step, ObjectState())
        self._autosave()
        n = diff.voxels_changed if diff else 0
        return Outcome(
            r,
            [s.name],
            diff.bbox if diff else None,
            object_changed=True,
            order_changed=isinstance(changes[0], StructureAdded),
            message=f"committed {s.name} ({r.mode}): {n} voxels changed",
            record=record,
        )

    def _edit(self, r: rq.Edit) -> Outcome:
        ss = self.structures
        s = ss.structure(r.structure)
        if s.locked:
            raise LockedStructureError(f"{s.name!r} is locked; unlock it before painting on it")
        if any(r.bbox[i + 3] > self.shape[i] for i in range(3)):
            raise SessionError(f"edit box {r.bbox} reaches outside the image of shape {self.shape}")
        patch = r.patch()
        region = s.mask.crop(r.bbox)
        region = region | patch if r.mode == "paint" else region & ~patch
        new = s.mask.with_region(r.bbox, region)
        diff = MaskChange.between(s.name, s.mask, new)
        if diff is None:
            return Outcome(r, message=f"{r.mode}: nothing changed in {s.name}")
        ss.set_mask(s.name, new)
        self.history.push(SessionStep(f"{r.mode} {s.name}", [diff]))
        self._autosave()
        return Outcome(r, [s.name], diff.bbox, message=f"{r.mode} {s.name}: {diff.voxels_changed} voxels")

    # --- the structure set --------------------------------------------------------------------
    def _free_id(self) -> int:
        used = set(self.structures.label_ids().values())
        return next(i for i in range(1, len(used) + 2) if i not in used)

    def _added(self, structure) -> StructureAdded:
        return StructureAdded(copy.deepcopy(structure), self.structures.index(structure.name))

    def _add_structure(self, r: rq.AddStructure) -> Outcome:
        label_id = r.label_id if r.label_id is not None else self._free_id()
        s = self.structures.add(r.name, None, r.color, label_id=label_id, codes=r.codes)
        self._structure_step(f"add {s.name}", [self._added(s)])
        return Outcome(r, [s.name], order_changed=True, message=f"added {s.name}")

    def _remove_structure(self, r: rq.RemoveStructure) -> Outcome:
        index = self.structures.index(r.name)
        s = self.structures.remove(r.name)
        self._structure_step(f"remove {s.name}", [StructureRemoved(s, index)])
        box = None if s.mask.empty else s.mask.bbox
        return Outcome(r, [s.name], box, order_changed=True, message=f"removed {s.name}")

    def _rename(self, r: rq.Rename) -> Outcome:
        if r.old == r.new:
            return Outcome(r, message="same name")
        self.structures.rename(r.old, r.new)
        self._structure_step(f"rename {r.old}", [Renamed(r.old, r.new)])
        return Outcome(r, [r.old, r.new], order_changed=True, message=f"renamed {r.old} to {r.new}")

    def _lock(self, r: rq.Lock) -> Outcome:
        if self.structures.is_locked(r.name) == r.locked:
            return Outcome(r, message=f"{r.name} already {'locked' if r.locked else 'unlocked'}")
        (self.structures.lock if r.locked else self.structures.unlock)(r.name)
        self._structure_step(f"{'lock' if r.locked else 'unlock'} {r.name}", [LockChanged(r.name, r.locked)])
        return Outcome(
            r, [r.name], object_changed=self.object.preview is not None, message=f"{'locked' if r.locked else 'unlocked'} {r.name}"
        )

    def _visible(self, r: rq.SetVisible) -> Outcome:
        self.structures.set_visible(r.name, r.visible)
        return Outcome(r, [r.name], message=f"{r.name} {'shown' if r.visible else 'hidden'}")

    def _contour(self, r: rq.Contour) -> Outcome:
        from .session_contouring import handle_contour  # scipy-backed: loaded on first use

        return handle_contour(self, r)

    def _structure_step(self, description: str, changes: list) -> None:
        self.history.push(SessionStep(description, changes))
        self._autosave()

    # --- undo / redo --------------------------------------------------------------------------
    def _undo(self, r: rq.Undo) -> Outcome:
        return self._replay(r, backwards=True)

    def _redo(self, r: rq.Redo) -> Outcome:
        return self._replay(r, backwards=False)

    def _replay(self, r: rq.Request, backwards: bool) -> Outcome:
        step = self.history.undo() if backwards else self.history.redo()
        verb = "undo" if backwards else "redo"
        if step is None:
            return Outcome(r, message=f"nothing to {verb}")
        locked = [c.name for c in step.mask_changes() if c.name in self.structures and self.structures.is_locked(c.name)]
        if locked:
            self.history.redo() if backwards else self.history.undo()  # put the step back
            raise LockedStructureError(f"cannot {verb} {step.description}: {', '.join(locked)} is locked")
        box = None
        if isinstance(step, SessionStep):
            (step.undo if backwards else step.redo)(self.structures)
            for c in step.mask_changes():
                box = bbox_union(box or EMPTY_BBOX, c.bbox)
            structure_changes = bool(step.changes)
        else:
            structure_changes = False
        state = step.before if backwards else step.after
        if state is not None:
            self._set_object(state)
        if structure_changes:
            self._autosave()
        touched = step.touched() if isinstance(step, SessionStep) else []
        return Outcome(
            r,
            touched,
            box if box not in (None, EMPTY_BBOX) else None,
            object_changed=state is not None,
            order_changed=any(not isinstance(c, (MaskChange, PromptLogged, LockChanged)) for c in getattr(step, "changes", [])),
            message=f"{'undid' if backwards else 'redid'} {step.description}",
        )

    @property
    def can_undo(self) -> bool:
        return self.history.can_undo

    @property
    def can_redo(self) -> bool:
        return self.history.can_redo

    # --- saving -------------------------------------------------------------------------------
    def _autosave(self) -> None:
        if self.autosave is None:
            return
        try:
            self.autosave.save(self.structures)
            self.last_autosave_error = None
        except Exception as err:  # a full disk must not lose the edit itself; the view shows it
            logger.warning("autosave failed: %s", err)
            self.last_autosave_error = err

    @property
    def autosave_warning(self) -> str | None:
        """``"autosave failed: <cause>; your work is only in memory"`` while the last autosave
        failed (a view shows it until one succeeds), else None."""
        err = self.last_autosave_error
        if err is None:
            return None
        reason = getattr(err, "reason", None) or (str(err).splitlines()[0] if str(err) else type(err).__name__)
        return f"autosave failed: {reason}; your work is only in memory"
