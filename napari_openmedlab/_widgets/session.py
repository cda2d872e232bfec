"""The widget's view of a headless :class:`AnnotationSession`: napari layers in, requests out.

The view owns no annotation state. The structures, the current object, undo and autosave live in
``self.model`` (an :class:`AnnotationSession`); the view turns user actions into requests, hands
them to ``model.handle`` and redraws what the returned :class:`Outcome` says changed.

Layers, bottom to top (all on the image grid):

* ``<image> structures`` (the target): every visible structure filled, the smaller one on top
  where structures overlap (a GTV inside a parotid stays visible);
* ``<image> outlines``: the same structures drawn as outlines, the larger one on top, so the
  whole boundary of a structure that lost the fill to a smaller one stays visible;
* ``selected structure``: the selected structure alone. napari's paint, erase and fill tools act
  on this layer; each stroke becomes one :class:`Edit` request (one undo step) on that structure;
* ``current object`` (the preview), ``prompts`` (points), ``boxes``.

Redraws touch only the box an edit changed (:func:`annotation.flatten.flatten_region`), and
switching the selected structure rewrites only the old and the new structure's boxes.
"""

from __future__ import annotations

import numpy as np

from ..annotation import requests as rq
from ..annotation.flatten import flatten_region
from ..annotation.label_classes import LabelClass, generic_classes
from ..annotation.masks import EMPTY_BBOX, bbox_slices, bbox_union
from ..annotation.session import AnnotationSession, EngineCall, Outcome
from ..annotation.structure_autosave import StructureSetAutosave
from ..annotation.structure_set import StructureSet
from ..engines.base import Box, Prediction, PromptError
from ..io import Volume, resample_labels_to
from ..layers import layer_metadata
from . import layer_tools as lt
from . import session_files
from .brush import on_paint
from .session_files import Saved

PREVIEW_NAME = "current object"
POINTS_NAME = "prompts"
BOXES_NAME = "boxes"
EDIT_NAME = "selected structure"
PREVIEW_ID = 1
EDIT_ID = 1


class SessionView:
    """One image being annotated. Create it with the viewer; call :meth:`set_image_layer` first."""

    def __init__(self, viewer, recovery_root=None) -> None:
        self.viewer = viewer
        self.image_layer = None
        self.labels_layer = None
        self.outline_layer = None
        self.edit_layer = None
        self.preview_layer = None
        self.points_layer = None
        self.boxes_layer = None
        self.model: AnnotationSession | None = None
        self.source: str | None = None
        self.selected: str | None = None
        self.mode = "add"
        self.class_table: list[LabelClass] = generic_classes()
        self._model_info: dict = {"name": None, "checkpoint": None, "checkpoint_sha256": None, "device": None}
        self.recovery_root = recovery_root
        self.autosave: StructureSetAutosave | None = None
        self.on_message = None  # set by the widget: called with one line when a napari edit is refused
        self.handler = None  # None: requests go to self.model.handle; a data-set case counts effort (case_list)
        self.syncing = False
        self._preview_bbox = None
        self._preview_color = None
        self._edit_bbox = EMPTY_BBOX

    # --- what the widget reads ----------------------------------------------------------------
    @property
    def model_info(self) -> dict:
        """The loaded model, as the prompt log records it (the widget sets it when a model loads)."""
        return self._model_info

    @model_info.setter
    def model_info(self, info: dict) -> None:
        self._model_info = dict(info)
        if self.model is not None:
            self.model.model_info = self._model_info

    @property
    def volume(self) -> Volume | None:
        return self.model.volume if self.model is not None else None

    @property
    def geometry(self):
        return self.volume.geometry if self.model is not None else None

    @property
    def structures(self) -> StructureSet | None:
        return self.model.structures if self.model is not None else None

    @property
    def state(self):
        return self.model.object

    @property
    def generation(self) -> int:
        return self.model.generation if self.model is not None else -1

    @property
    def history(self):
        return self.model.history

    @property
    def autosave_error(self):
        return self.model.last_autosave_error if self.model is not None else None

    @property
    def autosave_warning(self) -> str | None:
        """The persistent "autosave failed: ...; your work is only in memory" line, or None."""
        return self.model.autosave_warning if self.model is not None else None

    def _fits(self, layer) -> bool:
        """A 3D Labels layer that can give the structures (on any grid: it is resampled)."""
        from napari.layers import Labels

        return isinstance(layer, Labels) and self.model is not None and layer.ndim == 3

    # --- image and target ---------------------------------------------------------------------
    def set_image_layer(self, layer, target=None) -> None:
        """Annotate ``layer`` (3D, single channel); ``target``: a Labels layer whose labels become
        the structures (one per label id, named by its class table), or None (a new, empty set)."""
        if not lt.is_volume_image(layer):
            raise ValueError(f"{layer.name!r} is not a single-channel 3D image layer")
        self.remove_helpers()
        self.image_layer = layer
        self.source = lt.source_of_layer(layer)
        volume = Volume(np.asarray(layer.data), lt.geometry_for_layer(layer), {"source": self.source})
        self.autosave = StructureSetAutosave.for_image(self.source, volume.shape, layer.name, self.recovery_root)
        self.model = AnnotationSession(volume, autosave=self.autosave, model_info=self.model_info)
        self.labels_layer = None
        self.set_target_layer(target)

    def adopt(self, layer, session: AnnotationSession) -> None:
        """Show ``session`` (built elsewhere, e.g. by a data-set project) over image ``layer``."""
        self.remove_helpers()
        self.image_layer = layer
        self.source = session.volume.metadata.get("source") or lt.source_of_layer(layer)
        self.autosave = session.autosave
        session.model_info = self.model_info
        self.model = session
        names = session.structures.names()
        self.selected = names[0] if names else None
        self.labels_layer = None
        self._ensure_display(None)
        self._ensure_helpers()
        self.redraw()

    def set_target_layer(self, layer=None):
        """Show the structures in ``layer`` (its labels become the structures), or in a new layer."""
        volume = self.volume
        if layer is not None and not self._fits(layer):
            raise ValueError(f"{layer.name!r} is not a 3D Labels layer")
        if layer is None:
            structures = StructureSet(volume.geometry, volume.shape)
        else:
            classes = lt.classes_from_layer(layer)
            if classes:
                self.class_table = classes
            labels = Volume(np.asarray(layer.data), lt.geometry_for_layer(layer))
            on_grid = resample_labels_to(labels, volume.geometry, volume.shape)  # itself when on the grid
            structures = StructureSet.from_label_map(on_grid.array, volume.geometry, self.class_table)
            if on_grid is not labels:  # another grid: the structures get their own layer on the image's
                layer = None
        self._new_model(structures)
        self._ensure_display(layer)
        self._ensure_helpers()
        self.redraw()
        return self.labels_layer

    def recreate_display(self) -> None:
        """A new structures layer (the user deleted it): the structures live in the session."""
        self._ensure_display(None)
        self._ensure_helpers()
        self.redraw()

    def replace_structures(self, structures: StructureSet) -> None:
        """Annotate ``structures`` from now on (a restored autosave, a loaded file); undo restarts."""
        self._new_model(structures)
        self.redraw()

    def _new_model(self, structures: StructureSet) -> None:
        old = self.model
        self.model = AnnotationSession(
            old.volume, structures, autosave=self.autosave, exclude_locked=old.exclude_locked, model_info=self.model_info
        )
        self.model.last_autosave_error = old.last_autosave_error  # the warning stays until a save succeeds
        names = structures.names()
        self.selected = self.selected if self.selected in names else (names[0] if names else None)

    def _ensure_display(self, target) -> None:
        where, shape = self.image_layer, self.volume.shape
        if target is None:
            meta = layer_metadata(self.volume.with_array(np.zeros(shape, np.uint8)))
            meta["openmedlab"]["target_of"] = where.name
            target = self.viewer.add_labels(
                np.zeros(shape, np.uint8), name=f"{where.name} structures", metadata=meta, **lt.placement(where)
            )
        elif not isinstance(target.data, np.ndarray) or not target.data.flags.writeable:
            target.data = np.array(target.data)
        self.labels_layer = target
        layers = self.viewer.layers
        if self.outline_layer is None or self.outline_layer not in layers:
            self.outline_layer = self.viewer.add_labels(
                np.zeros(shape, np.uint8), name=f"{where.name} outlines", opacity=0.9, **lt.placement(where)
            )
            self.outline_layer.contour = 1
        if self.edit_layer is None or self.edit_layer not in layers:
            self.edit_layer = self.viewer.add_labels(
                np.zeros(shape, np.uint8), name=EDIT_NAME, opacity=0.6, **lt.placement(where)
            )
            self.edit_layer.events.paint.connect(self._on_paint)
            self._edit_bbox = EMPTY_BBOX

    def _ensure_helpers(self) -> None:
        """(Re)create the preview and points layers on the image grid, above the structures."""
        layers, where = self.viewer.layers, self.image_layer
        if self.preview_layer is None or self.preview_layer not in layers:
            self.preview_layer = self.viewer.add_labels(
                np.zeros(self.volume.shape, np.uint8), name=PREVIEW_NAME, opacity=0.6, **lt.placement(where)
            )
            self._preview_bbox = None
            self._preview_color = None
            self._draw_preview()
        if self.points_layer is None or self.points_layer not in layers:
            size = max(3.0, 8.0 / float(np.mean(self.volume.geometry.spacing)))  # voxels, about 8 mm
            self.points_layer = self.viewer.add_points(
                np.zeros((0, 3)),
                name=POINTS_NAME,
                ndim=3,
                size=size,
                border_width=0.1,
                border_color="white",
                **lt.placement(where),
            )
            self.sync_points()

    def ensure_boxes_layer(self):
        if self.boxes_layer is None or self.boxes_layer not in self.viewer.layers:
            self.boxes_layer = self.viewer.add_shapes(
                ndim=3,
                name=BOXES_NAME,
                edge_color="yellow",
                face_color="transparent",
                edge_width=1.5,
                **lt.placement(self.image_layer),
            )
            self.sync_boxes()
        return self.boxes_layer

    def remove_helpers(self) -> None:
        """Remove this view's own layers (not the structures layer, which is the user's)."""
        for attr in ("preview_layer", "points_layer", "boxes_layer", "outline_layer", "edit_layer"):
            layer = getattr(self, attr)
            setattr(self, attr, None)
            try:
                if layer is not None and layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)
            except RuntimeError:  # the viewer is closing
                pass

    def helper_layers(self) -> list:
        return [
            x
            for x in (self.preview_layer, self.points_layer, self.boxes_layer, self.outline_layer, self.edit_layer)
            if x is not None
        ]

    # --- sending requests ---------------------------------------------------------------------
    def handle(self, request: rq.Request) -> Outcome:
        """Hand ``request`` to the session and redraw what changed (errors propagate, nothing changed)."""
        self._require_image()
        outcome = (self.handler or self.model.handle)(request)
        self.apply(outcome)
        return outcome

    def apply(self, outcome: Outcome) -> None:
        ss = self.structures
        if isinstance(outcome.request, rq.Rename) and self.selected == outcome.request.old:
            self.selected = outcome.request.new
        if self.selected is not None and self.selected not in ss:
            self.selected = None
        if outcome.order_changed:
            self.redraw()
        elif outcome.structures:
            box = outcome.bbox
            if box is None:  # visibility or lock: the structures' own boxes
                for name in outcome.structures:
                    if name in ss:
                        box = bbox_union(box or EMPTY_BBOX, ss.sparse(name).bbox)
            self.recolor()
            if box is not None and box != EMPTY_BBOX:
                self.redraw_region(box)
        if outcome.object_changed:
            self._object_changed()

    def world_to_voxel(self, world_zyx) -> np.ndarray:
        return self.volume.geometry.world_to_index(np.asarray(world_zyx, dtype=float)[-3:])

    def add_point(self, world_zyx, positive: bool = True, slice_axis: int | None = None) -> EngineCall | None:
        """A click at napari world coordinates (physical mm, z y x)."""
        self._require_image()
        return self.add_point_voxel(self.world_to_voxel(world_zyx), positive, slice_axis)

    def add_point_voxel(self, zyx, positive: bool = True, slice_axis: int | None = None) -> EngineCall | None:
        self._require_image()
        try:
            request = rq.AddPoint(tuple(np.asarray(zyx, dtype=float).reshape(3)), positive, slice_axis)
        except rq.RequestError as err:
            raise PromptError(str(err)) from None
        self.handle(request)
        return self.model.pending()

    def add_box(self, box: Box) -> EngineCall | None:
        self._require_image()
        self.handle(rq.AddBox(box.axis, box.index, box.r0, box.c0, box.r1, box.c1))
        return self.model.pending()

    def request(self, reset: bool = False) -> EngineCall | None:
        return self.model.pending(reset) if self.model is not None else None

    def set_prediction(self, generation: int, prediction: Prediction) -> bool:
        if self.model is None or not self.model.set_prediction(generation, prediction):
            return False
        self._draw_preview()
        return True

    def set_propagation(self, generation: int, prediction: Prediction) -> bool:
        if self.model is None or not self.model.set_propagation(generation, prediction):
            return False
        self._object_changed()
        return True

    def add_preview_piece(self, generation: int, piece: Prediction) -> bool:
        """Add a streamed piece's voxels to the preview layer (napari redraws only their region);
        False when it is stale or empty. The final answer, or :meth:`redraw_preview` after a
        cancelled one, replaces what the pieces drew."""
        layer = self.preview_layer
        if layer is None or self.model is None:
            return False
        piece = self.model.preview_piece(generation, piece)
        if piece is None or piece.empty:
            return False
        lt.paint_patch(layer, piece.bbox, piece.patch, PREVIEW_ID)
        self._preview_bbox = (
            piece.bbox if self._preview_bbox is None else bbox_union(self._preview_bbox, piece.bbox)
        )
        self.set_preview_color()
        return True

    def redraw_preview(self) -> None:
        """Show the session's preview again (drops what streamed pieces added)."""
        self._draw_preview()

    def clear_object(self) -> bool:
        return bool(self.handle(rq.ClearObject()).object_changed)

    def start_refine(self, name: str) -> None:
        self.handle(rq.Refine(name))
        self.select(name)

    def commit(self, name: str | None = None, mode: str | None = None) -> dict | None:
        """Commit the current object into ``name`` (default: the selected structure, else a new one)."""
        self._require_image()
        preview = self.state.preview
        if preview is None or (preview.empty and self.state.refine_id is None):
            return None
        refining = self.model._refine_name()
        name = name or refining or self.selected or self.new_structure_name()
        mode = mode or ("replace" if refining == name else self.mode)
        outcome = self.handle(rq.Commit(name, mode))
        if self.selected is None:
            self.select(name)
        return outcome.record

    def undo(self) -> Outcome:
        return self.handle(rq.Undo())

    def redo(self) -> Outcome:
        return self.handle(rq.Redo())

    # --- structures -----------------------------------------------------------------------------
    def class_for(self, label_id: int) -> LabelClass | None:
        return next((c for c in self.class_table if c.id == label_id), None)

    def new_structure_name(self) -> str:
        label_id = self.model._free_id()
        c = self.class_for(label_id)
        name = c.name if c is not None else f"label_{label_id}"
        return name if name not in self.structures else f"{name}_{label_id}"

    def structure_for_id(self, label_id: int, create: bool = True) -> str | None:
        """The structure with ``label_id``; with ``create``, a new one named by the class table."""
        for s in self.structures:
            if s.label_id == label_id:
                return s.name
        if not create:
            return None
        c = self.class_for(label_id)
        name = c.name if c is not None else f"label_{label_id}"
        if name in self.structures:
            name = f"{name}_{label_id}"
        self.handle(rq.AddStructure(name, c.color if c else None, label_id=int(label_id)))
        return name

    def add_class_structures(self, classes: list[LabelClass]) -> list[str]:
        """One empty structure per class whose id and name are not taken yet (a preset, a table)."""
        self.class_table = list(classes)
        added = []
        taken_ids = {s.label_id for s in self.structures}
        for c in classes:
            if c.id in taken_ids or c.name in self.structures:
                continue
            self.model.handle(rq.AddStructure(c.name, c.color, label_id=c.id))
            added.append(c.name)
        if added:
            self.redraw()
        return added

    def select(self, name: str | None) -> None:
        """Make ``name`` the selected structure: the edit layer shows it; paint acts on it."""
        if name is not None:
            self.structures.structure(name)
        old = self._edit_bbox
        self.selected = name
        new = self.structures.sparse(name).bbox if name is not None else EMPTY_BBOX
        self._draw_edit(old, new)  # two boxes, not their union: far apart structures cost little
        self._edit_bbox = new
        self._color_edit_layer()
        self.set_preview_color()

    def rows(self) -> list[dict]:
        """One row per structure for the structure list."""
        ss = self.structures
        if ss is None:
            return []
        return [
            {
                "name": s.name,
                "label_id": s.label_id,
                "color": s.color,
                "visible": s.visible,
                "locked": s.locked,
                "cm3": ss.volume_cm3(s.name),
            }
            for s in ss
        ]

    # --- drawing --------------------------------------------------------------------------------
    def recolor(self) -> None:
        """The structures' colours on every structure layer (the edit layer holds the selected
        structure's own id, so switching structures never changes a colormap: that is slow)."""
        classes = [LabelClass(s.label_id, s.name, s.color) for s in self.structures]
        for layer in (self.labels_layer, self.outline_layer, self.edit_layer):
            if layer is not None:
                lt.apply_classes(layer, classes)
        self._color_edit_layer()

    def _selected_id(self) -> int:
        return self.structures.structure(self.selected).label_id if self.selected is not None else EDIT_ID

    def _color_edit_layer(self) -> None:
        if self.edit_layer is not None and self.edit_layer.selected_label != self._selected_id():
            self.edit_layer.selected_label = self._selected_id()  # what napari's brush paints

    def redraw(self) -> None:
        """Redraw every structure layer from the session (after an import, a restore, a new order)."""
        if self.labels_layer is None:
            return
        self.recolor()
        self.redraw_region((0, 0, 0, *self.volume.shape))
        self._edit_bbox = self.structures.sparse(self.selected).bbox if self.selected is not None else EMPTY_BBOX

    def redraw_region(self, box) -> None:
        """Redraw the structures, outlines and selected structure inside ``box``."""
        ss, sl = self.structures, bbox_slices(box)
        top = max(ss.label_ids().values(), default=0)
        for layer, smaller in ((self.labels_layer, True), (self.outline_layer, False)):
            if layer is None:
                continue
            if top > np.iinfo(layer.data.dtype).max:
                layer.data = layer.data.astype(np.uint16 if top <= 65535 else np.uint32)
            layer.data[sl] = flatten_region(ss, box, smaller_on_top=smaller, dtype=layer.data.dtype)
            layer.refresh()
        self._draw_edit(box)
        if self.selected is not None:
            self._edit_bbox = bbox_union(self._edit_bbox, ss.sparse(self.selected).bbox)

    def _draw_edit(self, *boxes) -> None:
        """The selected structure alone, inside ``boxes``, on the edit layer (its id: the colours
        of the structures layer)."""
        if self.edit_layer is None:
            return
        top = max(self.structures.label_ids().values(), default=0)
        if top > np.iinfo(self.edit_layer.data.dtype).max:
            self.edit_layer.data = self.edit_layer.data.astype(np.uint16 if top <= 65535 else np.uint32)
        for box in boxes:
            if box == EMPTY_BBOX:
                continue
            region = self.edit_layer.data[bbox_slices(box)]
            region[...] = 0
            if self.selected is not None:
                region[self.structures.sparse(self.selected).crop(box)] = self._selected_id()
        self.edit_layer.refresh()

    def set_preview_color(self) -> None:
        """The preview in the selected structure's colour; set only when it changes and a preview
        is shown (a colormap change costs tens of ms on a large grid)."""
        if self.preview_layer is None or self._preview_bbox is None:
            return
        color = self.structures.color(self.selected) if self.selected is not None else "#ffff00"
        if color != self._preview_color:
            self._preview_color = color
            rgba = LabelClass(PREVIEW_ID, "x", color).rgba
            self.preview_layer.colormap = lt.label_colormap([], {PREVIEW_ID: rgba})

    def _object_changed(self) -> None:
        self.sync_points()
        self.sync_boxes()
        self._draw_preview()

    def _draw_preview(self) -> None:
        layer = self.preview_layer
        if layer is None:
            return
        data = layer.data
        if self._preview_bbox is not None:
            data[bbox_slices(self._preview_bbox)] = 0
            self._preview_bbox = None
        pred = self.model.preview()
        patch = pred.patch if pred is not None else None  # read once: an undo step's is unpacked
        if patch is not None and patch.any():
            # the layer holds only the preview and its box was just cleared, so the whole box is
            # written in one pass: 4x faster than a boolean-index store on a smooth organ's box
            # (5 vs 20 ms on 78 M voxels), 50x on a noisy mask
            np.multiply(patch.view(np.uint8), PREVIEW_ID, out=data[pred.slices], casting="unsafe")
            self._preview_bbox = pred.bbox
            self.set_preview_color()
        layer.refresh()

    def sync_points(self) -> None:
        if self.points_layer is None:
            return
        self.syncing = True
        try:
            self.points_layer.data = self.state.points
            colors = [lt.POSITIVE_RGBA if v else lt.NEGATIVE_RGBA for v in self.state.labels]
            if colors:
                self.points_layer.face_color = np.array(colors)
        finally:
            self.syncing = False

    def sync_boxes(self) -> None:
        if self.boxes_layer is None:
            return
        self.syncing = True
        try:
            self.boxes_layer.data = []
            if self.state.boxes:
                self.boxes_layer.add_rectangles([lt.box_corners(b) for b in self.state.boxes])
        finally:
            self.syncing = False

    # --- napari's own paint, erase and fill -----------------------------------------------------
    def _on_paint(self, event) -> None:
        """A stroke on the edit layer: Edit requests on the selected structure (see brush.py)."""
        on_paint(self, event)

    # --- files (see session_files.py) ------------------------------------------------------------
    def log_document(self) -> dict:
        return session_files.log_document(self)

    def save(self, path) -> Saved:
        """``.omlss``: the structure set; a label map (.nii.gz/.nii/.nrrd/.mha) plus
        ``<name>.prompts.json``, with the structures that lost overlapping voxels in ``lost``."""
        return session_files.save(self, path)

    @property
    def has_autosave(self) -> bool:
        """Autosaved work of another session (not restored yet) exists for this image."""
        return self.autosave is not None and self.autosave.exists(others_only=True)

    def restore_autosave(self) -> str:
        """Load the newest readable autosave of an earlier session of this image (undo restarts;
        that session's generations become this one's); returns what was done."""
        structures, message = self.autosave.restore()
        self.replace_structures(structures)
        return message

    def discard_autosave(self) -> None:
        """Delete the earlier sessions' autosaves that were offered (this session's own stay)."""
        if self.autosave is not None:
            self.autosave.discard(others_only=True)

    def recovery_summary(self) -> str:
        return self.autosave.summary(others_only=True) if self.autosave is not None else ""

    def _require_image(self) -> None:
        if self.model is None or self.labels_layer is None:
            raise PromptError("choose an image layer first")
