"""The interactive segmentation dock widget.

Layout, top to bottom: image and target layer, model (weights, device, 2D window), prompts, label
classes, commit/undo/redo/save, a restore banner when unsaved work is found, and a status line.
All engine work runs on a worker thread (``worker.py``); the state lives in ``session.py``.

The public methods (``set_image_layer``, ``set_model``, ``add_point``, ``wait_for_prediction``,
``propagate``, ``commit``, ``undo``, ``redo``, ``save``, ``restore_autosave`` ...) are what the
buttons call, so tests and scripts drive the widget exactly as a user does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QWidget

from ..engines import create_engine
from ..engines.base import Box, Cancelled, PromptError
from ..models.registry import MODELS, get_spec
from ..models.weights import WeightsError
from . import layer_tools as lt
from .dicom_panel import DicomPanel
from .files import FilesMixin
from .interaction import ViewerInteraction, pick_3d, slice_axis
from .layout import NEW_TARGET, build_ui
from .prompt_tools import PromptToolsMixin
from .session import Session
from .worker import EngineRunner

if TYPE_CHECKING:
    import napari


class SegmentationWidget(PromptToolsMixin, FilesMixin, QWidget):
    """The dock widget; napari creates it with the viewer (see napari.yaml)."""

    def __init__(self, viewer: napari.viewer.Viewer, parent=None, engine_factory=None) -> None:
        super().__init__(parent)
        # napari hands plugins a PublicOnlyProxy; the widget compares layers by identity, so it
        # keeps the viewer itself (and only ever uses its public API)
        viewer = getattr(viewer, "__wrapped__", viewer)
        self.viewer = viewer
        self.session = Session(viewer)
        self.runner = EngineRunner(self)
        self.engine_factory = engine_factory or create_engine
        self.negative_mode = False
        self.click_enabled = True
        self.last_seconds: float | None = None
        self._commit_when_ready = False
        self._building = False
        build_ui(self)
        self.dicom = DicomPanel(self)  # Export / Import RTSTRUCT and SEG, above the status line
        self.banner.parentWidget().layout().insertWidget(self.banner.parentWidget().layout().indexOf(self.banner), self.dicom)
        self.runner.loaded.connect(self._on_loaded)
        self.runner.predicted.connect(self._on_predicted)
        self.runner.failed.connect(self._on_failed)
        self.runner.progress.connect(self._on_progress)
        self.interaction = ViewerInteraction(self, viewer)
        viewer.layers.events.inserted.connect(self._refresh_combos)
        viewer.layers.events.removed.connect(self._on_layer_removed)
        default = next(
            (n for n in ("sam-med3d-turbo", "seeded-region") if self.models.weights_present(n)), None
        )
        self.models.set_model(default or next(iter(MODELS)))
        self._refresh_combos()  # takes the newest 3D image, if there is one

    def _refresh_combos(self, *_) -> None:
        images = [x.name for x in self.viewer.layers if lt.is_volume_image(x)]
        session = self.session
        helpers = session.helper_layers()
        targets = [
            x.name
            for x in self.viewer.layers
            if session.volume is not None and x not in helpers and session._fits(x)
        ]
        for combo, names, current in (
            (self.image_combo, images, session.image_layer),
            (self.target_combo, [NEW_TARGET, *targets], session.labels_layer),
        ):
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(names)
            if current is not None and current.name in names:
                combo.setCurrentText(current.name)
            combo.blockSignals(False)
        if session.image_layer is None and images and not self._building:
            self.set_image_layer(images[-1])

    def _on_layer_removed(self, event) -> None:
        session = self.session
        if event.value is session.image_layer:
            self.runner.cancel()
            session.autosaver.wait(30)
            QTimer.singleShot(0, lambda: session.remove_helpers())  # not while napari removes a layer
            self.session = Session(self.viewer)  # the old image is gone; start clean
            self.session.set_classes(self.classes.classes())
            self.session.overlap = self.classes.overlap
            self.show_status("The image was closed; choose an image layer.")
        elif event.value is session.labels_layer and session.image_layer is not None:
            QTimer.singleShot(0, lambda: self._replace_deleted_target(session, event.value))
        self._refresh_combos()

    def _replace_deleted_target(self, session, old) -> None:
        """A new empty target when the user deleted the target but kept the image."""
        alive = session is self.session and session.image_layer in self.viewer.layers
        if alive and session.labels_layer is old and old not in self.viewer.layers:
            try:
                self.set_target_layer(None)
                self.show_status("The target labels layer was deleted; committing into a new one.")
            except RuntimeError:  # the widget went away meanwhile (viewer closing)
                pass

    def show_status(self, text: str) -> None:
        error = self.session.autosaver.last_error
        if error is not None:
            text += f"\nAutosave failed: {error}"
        self.status_label.setText(text)

    @property
    def status_text(self) -> str:
        return self.status_label.text()

    # --- image, target, model -------------------------------------------------------------------
    def set_image_layer(self, layer, target=None) -> None:
        """Annotate ``layer`` (a layer or its name); offers to restore autosaved work for it."""
        if isinstance(layer, str):
            layer = self.viewer.layers[layer]
        if isinstance(target, str):
            target = self.viewer.layers[target]
        self.runner.cancel()
        self._building = True
        try:
            self.session.set_image_layer(layer, target)
        finally:
            self._building = False
        self.classes.set_classes(self.session.classes, emit=False)
        self.session.set_classes(self.classes.classes())
        self.interaction.watch(self.session.points_layer, self.session.boxes_layer)
        self.viewer.layers.selection.active = self.session.points_layer
        self._refresh_combos()
        if self.runner.engine is not None:
            self.runner.set_volume(self.session.volume)
        else:
            self.models.request_load()
        self._offer_restore()

    def set_target_layer(self, layer=None) -> None:
        """Commit into ``layer`` (a Labels layer on the image grid, or its name); None: a new one."""
        if isinstance(layer, str):
            layer = self.viewer.layers[layer]
        self.session.set_target_layer(layer)
        self.classes.set_classes(self.session.classes, emit=False)
        self._refresh_combos()

    def _on_target_chosen(self) -> None:
        name = self.target_combo.currentText()
        self.set_target_layer(None if name == NEW_TARGET else name)

    def set_model(self, name: str, checkpoint=None, device: str | None = None) -> bool:
        """Choose a model; True when its weights are there and loading started (in the background).

        Missing weights never raise: the model panel shows the download button and the file chooser.
        """
        return self.models.set_model(name, checkpoint, device)

    def _load_model(self, name: str, checkpoint, device: str) -> None:
        self.box_button.setEnabled(get_spec(name).family == "2d")
        self.box_button.setToolTip("" if self.box_button.isEnabled() else "This model takes clicks only.")
        self.propagate_button.setEnabled(False)  # until the engine is loaded
        if self.session.volume is None:
            return
        self.runner.settings["window"] = self.models.window
        self.runner.load(self.engine_factory, name, checkpoint, device, self.session.volume)
        self.show_status(f"Loading {name} on {device}…")

    def _on_weights_missing(self, name: str) -> None:
        self.runner.unload()
        self._engine_ready(None)
        self.show_status(f"{name} needs its weights: download them or choose a checkpoint file.")

    def _set_window(self, window) -> None:
        """A 2D window preset: the engine gets it; the image shows it (CT presets)."""
        self.runner.settings["window"] = window
        limits = self.models.window_display
        if limits is not None and self.session.image_layer is not None:
            self.session.image_layer.contrast_limits = limits

    # --- prompts ----------------------------------------------------------------------------------
    def click(self, position, positive: bool = True, view_direction=None, dims_displayed=None) -> bool:
        """A canvas click at world ``position``; in the 3D view the voxel is picked along the ray."""
        if self.viewer.dims.ndisplay == 3 and view_direction is not None:
            voxel, problem = pick_3d(self.session, position, view_direction, dims_displayed)
            if voxel is None:
                self.show_status(problem)
                return False
            return self.add_point_voxel(voxel, positive)
        return self.add_point(position, positive)

    def add_point(self, world_zyx, positive: bool | None = None) -> bool:
        """Add a click at napari world coordinates (physical mm, z y x) and run the engine.

        ``positive=None`` follows the negative-clicks toggle. False when the click is refused.
        """
        positive = not self.negative_mode if positive is None else positive
        return self._prompt(lambda: self.session.add_point(world_zyx, positive))

    def add_point_voxel(self, zyx, positive: bool | None = None) -> bool:
        """Add a click at voxel ``(z, y, x)`` of the image and run the engine."""
        positive = not self.negative_mode if positive is None else positive
        return self._prompt(lambda: self.session.add_point_voxel(zyx, positive))

    def add_box(self, box: Box) -> bool:
        engine = self.runner.engine
        if (engine is not None and not engine.supports_boxes) or get_spec(self.models.name).family == "3d":
            self.show_status(f"{self.models.name} does not take boxes: use positive and negative clicks.")
            return False
        return self._prompt(lambda: self.session.add_box(box))

    def _prompt(self, make_request) -> bool:
        try:
            request = make_request()
        except PromptError as err:
            self.show_status(str(err))
            return False
        self._submit(request)
        return True

    def _submit(self, request) -> None:
        if request is None:
            return
        axis = self.slice_axis()
        if axis is not None:  # the 2D models segment the slice the user looks at
            self.runner.settings["slice_axis"] = axis
        self.runner.predict(request.generation, request.prompts, request.reset)
        n = len(request.prompts.points) + len(request.prompts.boxes)
        if self.runner.engine is None and not self.runner.loading:
            self.show_status("No model is loaded: choose a model with its weights present.")
        else:
            self.show_status(f"Predicting with {self.models.name} ({n} prompt{'s' if n != 1 else ''})…")

    def slice_axis(self) -> int | None:
        """The image axis normal to the slice shown in the 2D view (None in the 3D view)."""
        return slice_axis(self.viewer.dims)

    def wait_for_prediction(self, timeout: float = 30.0) -> bool:
        """Process events until no load or prediction runs or waits; False on timeout."""
        return self.runner.wait_idle(timeout)

    # --- engine answers ---------------------------------------------------------------------------
    def _on_loaded(self, outcome) -> None:
        engine = outcome.value
        self.session.model_info = {**outcome.info}
        self._engine_ready(engine)
        self.show_status(
            f"{outcome.info['name']} ready on {outcome.info['device']} ({outcome.seconds:.1f} s)."
        )
        if self.session.state.has_prompts:  # a new model: run the current object's prompts again
            self._submit(self.session.request(reset=True))

    def _on_predicted(self, outcome) -> None:
        try:
            if not self.session.set_prediction(outcome.generation, outcome.value):
                return
        except ValueError as err:  # an engine answered on another grid
            self.show_status(f"Prediction failed: {err}")
            return
        self.last_seconds = outcome.seconds
        pred = outcome.value
        steps = ", ".join(f"{k} {v:.2f} s" for k, v in (pred.timings or {}).items())
        self.show_status(
            f"Preview: {int(pred.patch.sum())} voxels in {outcome.seconds:.2f} s"
            + (f" ({steps})" if steps else "")
            + "."
        )
        if self._commit_when_ready and self.runner.idle:
            self._commit_when_ready = False
            self.commit()

    def _on_failed(self, outcome) -> None:
        err = outcome.error
        if isinstance(err, Cancelled):
            if outcome.kind == "propagate":
                self._propagation_stopped(outcome)
            return
        if outcome.kind == "load":
            self.models.refresh()
            what = "missing weights" if isinstance(err, WeightsError) else type(err).__name__
            self.show_status(f"Could not load {outcome.info.get('name')} ({what}): {err}")
        elif outcome.generation == self.session.generation:
            self.show_status(
                f"{'Propagation' if outcome.kind == 'propagate' else 'Prediction'} failed: {err}"
            )
        self._commit_when_ready = False

    def _on_progress(self, fraction: float, message: str) -> None:
        self.show_status(f"{message} ({100 * fraction:.0f} %)" if message else f"{100 * fraction:.0f} %")

    # --- labels -----------------------------------------------------------------------------------
    def select_class(self, label_id: int) -> None:
        """The id the next commit writes (added to the table if new)."""
        self.session.class_id = int(label_id)
        if self.classes.selected_id() != label_id:
            self.classes.select_id(int(label_id))
        self.session.set_preview_color()

    def set_overlap(self, rule: str) -> None:
        self.classes.set_overlap(rule)
        self.session.overlap = rule

    def load_preset(self, name: str) -> None:
        self.classes.load_preset(name)

    def commit(self) -> dict | None:
        """Write the current object with the selected class id (after a running prediction ends)."""
        running = self.runner.busy and self.runner.running_generation == self.session.generation
        will_run = self.runner.waiting and (self.runner.engine is not None or self.runner.loading)
        if running or will_run:
            self._commit_when_ready = True
            self.show_status("Committing when the running prediction ends…")
            return None
        if self.session.state.has_prompts and not self.session.state.fresh:
            self.show_status(
                "The preview does not show the last prompt (its prediction failed or was "
                "cancelled): undo that prompt, or click again."
            )
            return None
        try:
            record = self.session.commit()
        except (PromptError, ValueError) as err:
            self.show_status(f"Cannot commit: {err}")
            return None
        if record is None:
            self.show_status("Nothing to commit: click the structure first.")
        else:
            self.show_status(
                f"Committed {record['class_name']} (id {record['class_id']}): "
                f"{record['voxels_changed']} voxels changed; autosaved."
            )
        return record

    def undo(self) -> None:
        self._replay(self.session.undo(), "Undid")

    def redo(self) -> None:
        self._replay(self.session.redo(), "Redid")

    def _replay(self, step, verb: str) -> None:
        self.runner.cancel()
        if step is None:
            self.show_status(f"Nothing to {verb[:-1].lower()}.")
            return
        state = self.session.state
        if state.has_prompts and (state.preview is None or not state.fresh):  # never answered
            self._submit(self.session.request())
        self.show_status(f"{verb} {step.description}.")

    def clear_object(self) -> None:
        self.runner.cancel()
        if self.session.clear_object():
            self.show_status("Cleared the current object (undo brings it back).")

    def refine(self, label_id: int) -> bool:
        """Make label ``label_id`` the current object; clicks refine it, commit replaces it."""
        try:
            self.session.start_refine(label_id)
        except (PromptError, ValueError) as err:
            self.show_status(str(err))
            return False
        self.select_class(label_id)
        self.show_status(f"Refining label {label_id}: click to add or remove, then commit.")
        return True

    # --- teardown ---------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        self.cleanup()
        super().closeEvent(event)

    def cleanup(self) -> None:
        """Detach from the viewer, stop waiting work and flush the autosave."""
        self.runner.cancel()
        self.interaction.detach()
        for emitter, slot in (
            (self.viewer.layers.events.inserted, self._refresh_combos),
            (self.viewer.layers.events.removed, self._on_layer_removed),
        ):
            emitter.disconnect(slot)
        self.session.autosaver.wait(30)
