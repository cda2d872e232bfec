"""The annotation session: image, target labels, current object, classes, undo, autosave.

No Qt here: the session holds napari layers and the headless state, and every action is a plain
method (``add_point``, ``commit``, ``undo``, ``save`` ...), so it can be driven from a script.
The engine and its threads belong to the widget (see ``worker.py``); the session only says which
prompts to run (:class:`Request`) and takes the answer back (:meth:`Session.set_prediction`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..annotation.autosave import Autosaver, RecoveryStore
from ..annotation.editing import commit_mask, fits_dtype
from ..annotation.label_classes import LabelClass, generic_classes
from ..annotation.prompt_log import commit_record
from ..annotation.undo import DEFAULT_MAX_BYTES, History, ObjectState, Step
from ..engines.base import Box, Prediction, PromptError, Prompts
from ..io import Volume
from ..layers import META_KEY, layer_metadata
from . import layer_tools as lt
from .persistence import PersistenceMixin

PREVIEW_NAME = "current object"
POINTS_NAME = "prompts"
BOXES_NAME = "boxes"
PREVIEW_ID = 1


@dataclass
class Request:
    """What the engine should run now: all prompts of the current object."""

    generation: int
    prompts: Prompts
    reset: bool


class Session(PersistenceMixin):
    """One image being annotated. Create it with the viewer; call :meth:`set_image_layer` first."""

    def __init__(self, viewer, max_undo_bytes: int = DEFAULT_MAX_BYTES, recovery_root=None) -> None:
        self.viewer = viewer
        self.image_layer = None
        self.labels_layer = None
        self.preview_layer = None
        self.points_layer = None
        self.boxes_layer = None
        self.volume: Volume | None = None
        self.source: str | None = None
        self.history = History(max_undo_bytes)
        self.state = ObjectState()
        self.generation = 0
        self.classes: list[LabelClass] = generic_classes()
        self.class_id = 1
        self.overlap = "overwrite"
        self.records: list[dict] = []
        self.model_info: dict = {"name": None, "checkpoint": None, "checkpoint_sha256": None, "device": None}
        self.recovery_root = recovery_root
        self.recovery: RecoveryStore | None = None
        self.autosaver = Autosaver()
        self._needs_reset = True
        self._preview_bbox = None
        self.syncing = False

    # --- image and layers ---------------------------------------------------------------------
    @property
    def geometry(self):
        return self.volume.geometry if self.volume is not None else None

    def set_image_layer(self, layer, target=None) -> None:
        """Annotate ``layer`` (3D, single channel); ``target`` is a Labels layer or None (new)."""
        if not lt.is_volume_image(layer):
            raise ValueError(f"{layer.name!r} is not a single-channel 3D image layer")
        self.remove_helpers()
        self.image_layer = layer
        self.source = lt.source_of_layer(layer)
        self.volume = Volume(np.asarray(layer.data), lt.geometry_for_layer(layer), {"source": self.source})
        self.history.clear()
        self.records = []
        self.state = ObjectState()
        self.generation += 1
        self._needs_reset = True
        self.recovery = RecoveryStore.for_image(
            self.source, self.volume.shape, layer.name, self.recovery_root
        )
        self.set_target_layer(target if target is not None else self._find_target())
        self._ensure_helpers()

    def _find_target(self):
        for layer in self.viewer.layers:
            info = (layer.metadata or {}).get(META_KEY, {})
            if info.get("target_of") == self.image_layer.name and self._fits(layer):
                return layer
        return None

    def _fits(self, layer) -> bool:
        from napari.layers import Labels

        return isinstance(layer, Labels) and tuple(layer.data.shape) == self.volume.shape

    def set_target_layer(self, layer=None):
        """Use an existing Labels layer on the image grid as the target, or create one (None)."""
        if layer is None:
            volume = self.volume.with_array(np.zeros(self.volume.shape, np.uint8))
            meta = layer_metadata(volume)
            meta[META_KEY]["target_of"] = self.image_layer.name
            layer = self.viewer.add_labels(
                volume.array,
                name=f"{self.image_layer.name} labels",
                metadata=meta,
                **lt.placement(self.image_layer),
            )
        elif not self._fits(layer):
            raise ValueError(f"{layer.name!r} is not a Labels layer of shape {self.volume.shape}")
        else:
            if not isinstance(layer.data, np.ndarray) or not layer.data.flags.writeable:
                layer.data = np.array(layer.data)
            classes = lt.classes_from_layer(layer)
            if classes:
                self.classes = classes
        if self.labels_layer is not None and layer is not self.labels_layer:
            self.history.clear()  # its label diffs belong to the previous target
        self.labels_layer = layer
        lt.apply_classes(layer, self.classes)
        return layer

    def _ensure_helpers(self) -> None:
        """(Re)create the preview, points and boxes layers on the image grid, above the target."""
        if self.image_layer is None:
            return
        layers = self.viewer.layers
        where = self.image_layer
        if self.preview_layer is None or self.preview_layer not in layers:
            self.preview_layer = self.viewer.add_labels(
                np.zeros(self.volume.shape, np.uint8), name=PREVIEW_NAME, opacity=0.6, **lt.placement(where)
            )
            self._preview_bbox = None
            self.set_preview_color()
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
        """Remove the preview, points and boxes layers of this session from the viewer."""
        for attr in ("preview_layer", "points_layer", "boxes_layer"):
            layer = getattr(self, attr)
            setattr(self, attr, None)
            try:
                if layer is not None and layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)
            except RuntimeError:  # the viewer is closing
                pass

    def helper_layers(self) -> list:
        return [x for x in (self.preview_layer, self.points_layer, self.boxes_layer) if x is not None]

    # --- prompts --------------------------------------------------------------------------------
    def world_to_voxel(self, world_zyx) -> np.ndarray:
        return self.volume.geometry.world_to_index(np.asarray(world_zyx, dtype=float)[-3:])

    def add_point(self, world_zyx, positive: bool = True) -> Request:
        """A click at napari world coordinates (physical mm, z y x)."""
        return self.add_point_voxel(self.world_to_voxel(world_zyx), positive)

    def add_point_voxel(self, zyx, positive: bool = True) -> Request:
        self._require_image()
        zyx = np.round(np.asarray(zyx, dtype=float)).reshape(3)
        Prompts(zyx[None], [1]).check_inside(self.volume.shape)
        return self._change_object(self.state.with_point(zyx, positive), "click")

    def add_box(self, box: Box) -> Request:
        self._require_image()
        Prompts(boxes=[box]).check_inside(self.volume.shape)
        return self._change_object(self.state.with_box(box), "box")

    def _change_object(self, new: ObjectState, what: str) -> Request:
        self.history.push(Step(what, before=self.state, after=new))
        self._set_state(new, reset=False)
        return self.request()

    def request(self, reset: bool = False) -> Request | None:
        """The prompts to run for the current object, or None when there is nothing to run.

        ``reset`` asks the engine to forget its object state first (always after undo, a new
        model, ...).
        """
        if not self.state.has_prompts:
            return None
        reset, self._needs_reset = reset or self._needs_reset, False
        return Request(self.generation, self.state.prompts(), reset)

    def set_prediction(self, generation: int, prediction: Prediction) -> bool:
        """Show an engine answer; False (and ignored) when newer prompts have superseded it."""
        if generation != self.generation or self.volume is None:
            return False
        self._check_grid(prediction)
        self.state.preview = prediction
        self.state.fresh = True
        self.history.touch()
        self._draw_preview()
        return True

    def set_propagation(self, generation: int, prediction: Prediction) -> bool:
        """Show a 3D propagation of the current object as an undoable step (undo shows the slice
        it started from again); False (and ignored) when newer prompts have superseded it."""
        if generation != self.generation or self.volume is None:
            return False
        self._check_grid(prediction)
        new = replace(self.state, preview=prediction, fresh=True)
        self.history.push(Step("propagation", before=self.state, after=new))
        self._set_state(new, reset=False)
        return True

    def _check_grid(self, prediction: Prediction) -> None:
        if tuple(prediction.shape) != self.volume.shape:
            raise ValueError(f"prediction grid {prediction.shape} differs from the image {self.volume.shape}")

    def clear_object(self) -> bool:
        if self.state.empty and self.state.preview is None:
            return False
        self.history.push(Step("clear", before=self.state, after=ObjectState()))
        self._set_state(ObjectState())
        return True

    def start_refine(self, label_id: int) -> None:
        """Make label ``label_id`` the current object: its mask is shown and sent as mask prompt."""
        self._require_image()
        mask = np.asarray(self.labels_layer.data) == int(label_id)
        if not mask.any():
            raise ValueError(f"no voxel of {self.labels_layer.name!r} has label {label_id}")
        patch = Prediction.from_mask(mask)
        new = ObjectState(mask=patch, preview=patch, refine_id=int(label_id))
        self.history.push(Step(f"refine {label_id}", before=self.state, after=new))
        self.class_id = int(label_id)
        self._set_state(new)

    def _set_state(self, state: ObjectState, reset: bool = True) -> None:
        self.state = state
        self.generation += 1
        self._needs_reset = self._needs_reset or reset
        self.sync_points()
        self.sync_boxes()
        self._draw_preview()

    # --- labels -----------------------------------------------------------------------------------
    def class_name(self, label_id: int) -> str:
        return next((c.name for c in self.classes if c.id == label_id), f"label_{label_id}")

    def set_classes(self, classes: list[LabelClass]) -> None:
        self.classes = list(classes)
        if self.labels_layer is not None:
            lt.apply_classes(self.labels_layer, self.classes)
        self.set_preview_color()

    def commit(self) -> dict | None:
        """Write the current object into the target with the selected class id; clear the prompts.

        Returns the prompt-log record, or None when there is no preview to commit.
        """
        self._require_image()
        preview = self.state.preview
        if preview is None or (preview.empty and self.state.refine_id is None):
            return None
        label_id = int(self.class_id)
        self._make_room_for(label_id)
        data = self.labels_layer.data
        diff = commit_mask(data, preview, label_id, self.overlap, replace_id=self.state.refine_id)
        record = commit_record(
            self.state.prompts(),
            self.volume.geometry,
            model=self.model_info,
            class_id=label_id,
            class_name=self.class_name(label_id),
            overlap=self.overlap,
            refined_id=self.state.refine_id,
            voxels_changed=diff.changed_voxels if diff else 0,
            bbox=diff.bbox if diff else None,
        )
        self.history.push(
            Step(f"commit {label_id}", labels=diff, before=self.state, after=ObjectState(), record=record)
        )
        self.records.append(record)
        self._set_state(ObjectState())
        self.labels_layer.refresh()
        self.autosave()
        return record

    def _make_room_for(self, label_id: int) -> None:
        data = self.labels_layer.data
        if not fits_dtype(label_id, data.dtype):
            self.labels_layer.data = data.astype(np.uint16 if label_id <= 65535 else np.uint32)

    def undo(self) -> Step | None:
        return self._replay(self.history.undo(), backwards=True)

    def redo(self) -> Step | None:
        return self._replay(self.history.redo(), backwards=False)

    def _replay(self, step: Step | None, backwards: bool) -> Step | None:
        if step is None:
            return None
        if step.labels is not None:
            (step.labels.undo if backwards else step.labels.redo)(self.labels_layer.data)
            self.labels_layer.refresh()
        if step.record is not None:
            if backwards:
                self.records = [r for r in self.records if r is not step.record]
            else:
                self.records.append(step.record)
        state = step.before if backwards else step.after
        if state is not None:
            self._set_state(state)
        if step.labels is not None:
            self.autosave()
        return step

    # --- drawing ----------------------------------------------------------------------------------
    def set_preview_color(self) -> None:
        if self.preview_layer is None:
            return
        rgba = next((c.rgba for c in self.classes if c.id == self.class_id), (1.0, 1.0, 0.0, 1.0))
        self.preview_layer.colormap = lt.label_colormap([], {PREVIEW_ID: rgba})

    def _draw_preview(self) -> None:
        layer = self.preview_layer
        if layer is None:
            return
        data = layer.data
        if self._preview_bbox is not None:
            data[tuple(slice(a, b) for a, b in zip(self._preview_bbox[:3], self._preview_bbox[3:]))] = 0
            self._preview_bbox = None
        pred = self.state.preview
        if pred is not None and not pred.empty:
            region = data[pred.slices]
            region[pred.patch] = PREVIEW_ID
            self._preview_bbox = pred.bbox
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

    def _require_image(self) -> None:
        if self.volume is None or self.labels_layer is None:
            raise PromptError("choose an image layer first")
