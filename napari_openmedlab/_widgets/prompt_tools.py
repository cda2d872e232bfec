"""The prompt tools of the segmentation widget: negative clicks, the box tool, 3D propagation.

*Propagate through volume* is for the 2D models (engines with a ``propagate`` method): the engine
carries the segmented slice through the volume on the worker thread, with progress in the status
line. Its source is the last preview when it answers the current prompts and lies on one slice,
else the prompts themselves (e.g. clicks or boxes on several slices, which ``predict`` refuses).
The 3D result becomes the current object's preview as an undoable step, so commit, undo and redo
work as for any prediction. A newer prompt, undo, *Cancel* or Escape stops it.
"""

from __future__ import annotations

import numpy as np

from ..models.registry import get_spec


def can_propagate(engine) -> bool:
    return callable(getattr(engine, "propagate", None))


def slices_covered(prediction) -> int:
    """How many slices along the propagation axis (axial when unknown) the mask touches."""
    if prediction.empty:
        return 0
    axis = prediction.state.get("axis", 0)
    other = tuple(a for a in range(3) if a != axis)
    return int(np.count_nonzero(prediction.patch.any(axis=other)))


class PromptToolsMixin:
    """Mixed into :class:`SegmentationWidget`: uses its ``session``, ``runner`` and buttons."""

    # --- negative clicks, boxes -----------------------------------------------------------------
    def set_negative(self, on: bool) -> None:
        self.negative_mode = bool(on)
        if self.negative_button.isChecked() != self.negative_mode:
            self.negative_button.setChecked(self.negative_mode)

    def toggle_negative(self) -> None:
        self.set_negative(not self.negative_mode)

    def activate_box_tool(self) -> None:
        if get_spec(self.models.name).family != "2d":
            self.show_status(f"{self.models.name} does not take boxes: use positive and negative clicks.")
            return
        layer = self.session.ensure_boxes_layer()
        self.interaction.watch(self.session.points_layer, layer)
        self.viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"

    def _engine_ready(self, engine) -> None:
        """Enable the tools the engine (None: no engine) supports."""
        self.box_button.setEnabled(bool(getattr(engine, "supports_boxes", False)))
        self._update_propagate_buttons()

    # --- propagation ------------------------------------------------------------------------------
    def propagate(self) -> bool:
        """Carry the current object through the volume with the engine's ``propagate`` (2D models).

        Runs on the worker thread (``wait_for_prediction`` waits for it too); the 3D mask becomes
        the preview. False (with the reason in the status line) when it cannot start.
        """
        engine = self.runner.engine
        if not can_propagate(engine):
            what = "No model is loaded" if engine is None else f"{self.models.name} segments in 3D already"
            self.show_status(f"{what}: propagation is for the 2D models (SAM-Med2D, MedSAM, SAM ViT-B).")
            return False
        session = self.session
        source = self._propagation_source()
        if source is None:
            self.show_status("Nothing to propagate: draw a box or click on a slice first.")
            return False
        if self.runner.propagating:  # for this object: a newer prompt or undo would have cancelled it
            return True
        self.runner.propagate(session.generation, source)
        self.show_status(f"Propagating through the volume with {self.models.name}… (Esc cancels)")
        self._update_propagate_buttons()
        return True

    def _propagation_source(self):
        """The fresh one-slice preview, else the current object's prompts (None: nothing)."""
        state = self.session.state
        preview = state.preview
        if preview is not None and state.fresh and not preview.empty and min(preview.patch.shape) == 1:
            return preview
        return None if state.empty else state.prompts()

    def cancel_propagation(self) -> bool:
        """Stop the running (or waiting) propagation; the preview stays as it was."""
        if not self.runner.cancel_propagation():
            return False
        self._commit_when_ready = False
        self.show_status("Cancelling the propagation…")
        self._update_propagate_buttons()
        return True

    def escape(self) -> None:
        """Escape: cancel a running propagation, else clear the current object."""
        if not self.cancel_propagation():
            self.clear_object()

    def _on_propagated(self, outcome) -> None:
        prediction = outcome.value
        try:
            if not self.session.set_propagation(outcome.generation, prediction):
                return
        except ValueError as err:  # an engine answered on another grid
            self.show_status(f"Propagation failed: {err}")
            return
        self.last_seconds = outcome.seconds
        self.show_status(
            f"Propagated: {int(prediction.patch.sum())} voxels on {slices_covered(prediction)} slices in "
            f"{outcome.seconds:.1f} s. Commit it, or undo to go back to the slice."
        )
        if self._commit_when_ready and self.runner.idle:
            self._commit_when_ready = False
            self.commit()

    def _propagation_stopped(self, outcome) -> None:
        """A propagation was cancelled: say so unless a newer prompt took over."""
        if outcome.generation == self.session.generation:
            self.show_status("Propagation cancelled; the preview is unchanged.")

    def _update_propagate_buttons(self, *_) -> None:
        running = self.runner.propagating
        self.propagate_button.setEnabled(can_propagate(self.runner.engine) and not running)
        self.cancel_propagation_button.setEnabled(running)
