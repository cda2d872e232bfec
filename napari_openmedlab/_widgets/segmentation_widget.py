"""The interactive segmentation dock widget.

Layout, top to bottom: image and structures layer, model (weights, device, 2D window), prompts, the
structure list, commit/undo/redo/save, a restore banner when autosaved work is found, and a status
line. All engine work runs on a worker thread (``worker.py``). The widget owns no annotation
state: it is a view of a headless :class:`annotation.AnnotationSession` (``session.py`` mirrors
it into layers) and every action is a request to it.

The public methods (``set_image_layer``, ``set_model``, ``add_point``, ``wait_for_prediction``,
``propagate``, ``select_structure``, ``lock``, ``commit``, ``undo``, ``redo``, ``save``,
``restore_autosave`` ...) are what the
buttons call, so tests and scripts drive the widget exactly as a user does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QWidget

from ..annotation import requests as rq
from ..annotation.label_classes import write_classes
from ..cleanup import remove_stale_temporaries
from ..engines import create_engine
from ..engines.base import Box, Cancelled, PromptError
from ..engines.slice_cache import INTERACTIVE_PREFETCH
from ..models.registry import MODELS, get_spec
from ..models.weights import WeightsError
from . import layer_tools as lt
from .files import FilesMixin
from .interaction import ViewerInteraction, pick_3d, slice_axis
from .layout import BOX_TOOLTIP, NEW_TARGET, build_ui
from .prompt_tools import PromptToolsMixin
from .session import SessionView
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
        remove_stale_temporaries()  # left in the recovery folder / weights cache by a killed run
        self.session = SessionView(viewer)
        self.session.on_message = self.show_status
        self.runner = EngineRunner(self)
        self.engine_factory = engine_factory or create_engine
        self.negative_mode = False
        self.click_enabled = True
        self.last_seconds: float | None = None
        self._commit_when_ready = False
        self._building = False
        build_ui(self)
        self.runner.loaded.connect(self._on_loaded)
        self.runner.predicted.connect(self._on_predicted)
        self.runner.failed.connect(self._on_failed)
        self.runner.progress.connect(self._on_progress)
        self.runner.piece.connect(self._on_piece)
        self.interaction = ViewerInteraction(self, viewer)
        viewer.layers.events.inserted.connect(self._refresh_combos)
        viewer.layers.events.removed.connect(self._on_layer_removed)
        # another slice axis on screen: the slices queued around the old one are not wanted
        viewer.dims.events.order.connect(self._on_axis_changed)
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
            QTimer.singleShot(0, lambda: session.remove_helpers())  # not while napari removes a layer
            self.session = SessionView(self.viewer)  # the old image is gone; start clean
            self.session.on_message = self.show_status
            self.session.mode = self.structure_list.mode
            self.refresh_structures()
            self.show_status("The image was closed; choose an image layer.")
        elif event.value is session.labels_layer and session.image_layer is not None:
            QTimer.singleShot(0, lambda: self._replace_deleted_target(session, event.value))
        self._refresh_combos()

    def _replace_deleted_target(self, session, old) -> None:
        """A new empty target when the user deleted the target but kept the image."""
        alive = session is self.session and session.image_layer in self.viewer.layers
        if alive and session.labels_layer is old and old not in self.viewer.layers:
            try:
                session.recreate_display()
                self.show_status("The structures layer was deleted; the structures are shown in a new one.")
            except RuntimeError:  # the widget went away meanwhile (viewer closing)
                pass

    def show_status(self, text: str) -> None:
        warning = self.session.autosave_warning  # also shown, persistently, by autosave_warning
        if warning:
            text += f"\n{warning}"
        self.status_label.setText(text)
        if getattr(self, "autosave_warning", None) is not None:
            self.autosave_warning.refresh()  # at once, not at the next poll

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
        self.session.mode = self.structure_list.mode
        self.refresh_structures()
        self.dicom.adopt_structure_layers()  # an RTSTRUCT/SEG opened with the series (openmedlab view DIR)
        self._attach_view()
        self._offer_restore()

    def adopt_session(self, layer, session) -> None:
        """Annotate ``session`` (an AnnotationSession built elsewhere, e.g. a data-set case) over ``layer``."""
        self.runner.cancel()
        self.session.adopt(layer, session)
        self.session.mode = self.structure_list.mode
        self.refresh_structures()
        self._attach_view()

    def _attach_view(self) -> None:
        """Point the prompt layers, the layer choices and the engine at the session just shown."""
        self.interaction.watch(self.session.points_layer, self.session.boxes_layer)
        self.viewer.layers.selection.active = self.session.points_layer
        self._refresh_combos()
        if self.runner.engine is not None:
            self.runner.set_volume(self.session.volume)
        else:
            self.models.request_load()

    def set_target_layer(self, layer=None) -> None:
        """Commit into ``layer`` (a Labels layer on the image grid, or its name); None: a new one."""
        if isinstance(layer, str):
            layer = self.viewer.layers[layer]
        self.runner.cancel()
        self.session.set_target_layer(layer)
        self.refresh_structures()
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
        self.box_button.setToolTip(BOX_TOOLTIP if self.box_button.isEnabled() else "This model takes clicks only.")
        self.propagate_button.setEnabled(False)  # until the engine is loaded
        if self.session.volume is None:
            return
        self.runner.settings["window"] = self.models.window
        # the 2D engine encodes the slices around each box or click in the background (issue #12)
        self.runner.settings["prefetch"] = INTERACTIVE_PREFETCH
        server = self.models.server  # issue #18: a RemoteEngine when the Server choice is on
        factory = server.factory() if server.active else self.engine_factory
        self.runner.load(factory, name, checkpoint, device, self.session.volume)
        self.show_status(f"Loading {name} on {server.describe() if server.active else device}…")

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
        return self._prompt(lambda: self.session.add_point(world_zyx, positive, self.slice_axis()))

    def add_point_voxel(self, zyx, positive: bool | None = None) -> bool:
        """Add a click at voxel ``(z, y, x)`` of the image and run the engine."""
        positive = not self.negative_mode if positive is None else positive
        return self._prompt(lambda: self.session.add_point_voxel(zyx, positive, self.slice_axis()))

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

    def _submit(self, call) -> None:
        """Run an :class:`annotation.EngineCall` (the 2D models read the slice axis in its prompts)."""
        if call is None:
            return
        self.runner.predict(call)
        n = len(call.prompts.points) + len(call.prompts.boxes)
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

    def _on_piece(self, outcome) -> None:
        """A piece of a running answer (a propagated slice, a SAM-Med3D crop): shown at once."""
        self.session.add_preview_piece(outcome.generation, outcome.value)

    def _on_axis_changed(self, *_) -> None:
        self.runner.cancel_background()

    def _on_failed(self, outcome) -> None:
        err = outcome.error
        if outcome.kind in ("predict", "propagate"):
            self.session.redraw_preview()  # without the pieces it streamed
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

    # --- structures -----------------------------------------------------------------------------
    def refresh_structures(self) -> None:
        """Show the session's structures in the list."""
        self.structure_list.set_rows(self.session.rows(), self.session.selected)
        self.contouring.refresh_inputs()

    def _request(self, request, done: str | None = None):
        """Send ``request`` to the session; a refused one shows why (nothing changed). Returns the
        outcome or None."""
        try:
            outcome = self.session.handle(request)
        except (PromptError, ValueError) as err:
            self.show_status(str(err))
            self.refresh_structures()  # undo a checkbox the user ticked
            return None
        self.refresh_structures()
        self.show_status(done or outcome.message[:1].upper() + outcome.message[1:] + ".")
        return outcome

    def select_structure(self, name: str | None) -> None:
        """The structure the next commit writes into and napari's paint tools act on."""
        if self.session.structures is None:
            return
        self.session.select(name)
        if self.structure_list.selected_name() != name:
            self.refresh_structures()

    def select_class(self, label_id: int) -> str | None:
        """Select the structure with ``label_id`` (created, named by the class table, if new)."""
        try:
            name = self.session.structure_for_id(int(label_id))
        except (PromptError, ValueError) as err:
            self.show_status(str(err))
            return None
        self.select_structure(name)
        self.refresh_structures()
        return name

    def add_structure(self, name: str | None = None, color=None) -> str | None:
        name = name or self.session.new_structure_name()
        if self._request(rq.AddStructure(name, color)) is None:
            return None
        self.select_structure(name)
        return name

    def remove_structure(self, name: str) -> bool:
        return self._request(rq.RemoveStructure(name)) is not None

    def rename_structure(self, old: str, new: str) -> bool:
        return self._request(rq.Rename(old, new)) is not None

    def lock(self, name: str, locked: bool = True) -> bool:
        ok = self._request(rq.Lock(name, locked)) is not None
        self.session.set_preview_color()
        return ok

    def set_visible(self, name: str, visible: bool = True) -> bool:
        return self._request(rq.SetVisible(name, visible)) is not None

    def add_class_structures(self, classes) -> list[str]:
        """One empty structure per class not present yet (a preset or an imported class table)."""
        if self.session.structures is None:
            self.session.class_table = list(classes)
            return []
        added = self.session.add_class_structures(classes)
        if self.session.selected is None and self.session.structures.names():
            self.session.select(self.session.structures.names()[0])
        self.refresh_structures()
        self.show_status(f"Added {len(added)} structure{'s' if len(added) != 1 else ''}.")
        return added

    def load_preset(self, name: str) -> list[str]:
        from ..annotation.label_classes import generic_classes, load_preset
        from .structure_list import GENERIC

        return self.add_class_structures(generic_classes() if name == GENERIC else load_preset(name))

    def export_classes(self, path) -> None:
        write_classes(self.session.structures.classes(), path)
        self.show_status(f"Wrote the class table {path}.")

    def set_commit_mode(self, mode: str) -> None:
        """replace, add or subtract: how a commit changes the selected structure."""
        if self.structure_list.mode != mode:
            self.structure_list.set_mode(mode)
        self.session.mode = mode

    def set_exclude_locked(self, on: bool) -> None:
        """Remove locked structures' voxels from the preview and the commit (on by default)."""
        if self.structure_list.exclude_check.isChecked() != on:
            self.structure_list.exclude_check.setChecked(on)
        if self.session.model is not None:
            self.session.model.exclude_locked = bool(on)
            self.session._draw_preview()

    def commit(self, name: str | None = None) -> dict | None:
        """Write the current object into the selected structure (after a running prediction ends)."""
        running = self.runner.busy and self.runner.running_generation == self.session.generation
        will_run = self.runner.waiting and (self.runner.engine is not None or self.runner.loading)
        if running or will_run:
            self._commit_when_ready = True
            self.show_status("Committing when the running prediction ends…")
            return None
        if self.session.model is not None and self.session.state.has_prompts and not self.session.state.fresh:
            self.show_status(
                "The preview does not show the last prompt (its prediction failed or was "
                "cancelled): undo that prompt, or click again."
            )
            return None
        try:
            record = self.session.commit(name)
        except (PromptError, ValueError) as err:
            self.show_status(f"Cannot commit: {err}")
            return None
        self.refresh_structures()
        if record is None:
            self.show_status("Nothing to commit: click the structure first.")
        else:
            saved = "" if self.session.autosave_error else "; autosaved"
            self.show_status(
                f"Committed {record['structure']} ({record['mode']}): {record['voxels_changed']} voxels changed{saved}."
            )
        return record

    def undo(self) -> None:
        self._replay(rq.Undo())

    def redo(self) -> None:
        self._replay(rq.Redo())

    def _replay(self, request) -> None:
        self.runner.cancel()
        outcome = self._request(request)
        if outcome is None or self.session.model is None:
            return
        state = self.session.state
        if state.has_prompts and (state.preview is None or not state.fresh):  # never answered
            self._submit(self.session.request(reset=True))

    def clear_object(self) -> None:
        self.runner.cancel()
        if self.session.model is not None and self.session.clear_object():
            self.show_status("Cleared the current object (undo brings it back).")

    def refine(self, structure) -> bool:
        """Make ``structure`` (a name or a label id) the current object; commit replaces it."""
        try:
            if not isinstance(structure, str):
                name = self.session.structure_for_id(int(structure), create=False)
                if name is None:
                    raise ValueError(f"no structure has label {structure}")
                structure = name
            self.session.start_refine(structure)
        except (PromptError, ValueError) as err:
            self.show_status(str(err))
            return False
        self.refresh_structures()
        self.show_status(f"Refining {structure}: click to add or remove, then commit.")
        return True

    # --- teardown ---------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        self.cleanup()
        super().closeEvent(event)

    def cleanup(self) -> None:
        """Detach from the viewer, stop waiting work and flush the autosave."""
        self.runner.cancel()
        self.runner.cancel_background()
        self.autoseg.shutdown()
        self.interaction.detach()
        self.view_controls.detach()
        self.display_controls.detach()
        for emitter, slot in (
            (self.viewer.layers.events.inserted, self._refresh_combos),
            (self.viewer.layers.events.removed, self._on_layer_removed),
            (self.viewer.dims.events.order, self._on_axis_changed),
        ):
            emitter.disconnect(slot)
