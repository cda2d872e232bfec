"""Saving, the autosave restore banner: the file side of the segmentation widget."""

from __future__ import annotations

from qtpy.QtWidgets import QFileDialog

from ..annotation.structure_set import StructureSetError

FILTERS = "Structure set (*.omlss);;NIfTI (*.nii.gz);;NIfTI (*.nii);;NRRD (*.nrrd);;MetaImage (*.mha)"


class FilesMixin:
    """Mixed into :class:`SegmentationWidget`; uses its ``session``, ``banner`` and status line."""

    def save(self, path):
        """Write the structures: ``.omlss`` keeps everything (overlaps, locks, prompts); a label map
        (.nii.gz/.nii/.nrrd/.mha) plus its prompt log warns, naming them, when overlaps are lost."""
        saved = self.session.save(path)
        text = f"Saved {saved.path.name}" + (f" and {saved.log_path.name}" if saved.log_path else "") + "."
        if saved.lost:
            lost = ", ".join(f"{name} ({n} voxels)" for name, n in saved.lost.items())
            warning = f"The label map cannot hold overlaps: {lost} lost voxels to smaller structures."
            text += " " + warning + " Save as .omlss to keep them."
            from napari.utils.notifications import show_warning

            show_warning(warning)
        self.show_status(text)
        return saved

    def _save_dialog(self) -> None:
        if self.session.labels_layer is None:
            return
        path, selected = QFileDialog.getSaveFileName(
            self, "Save structures", f"{self.session.image_layer.name}.omlss", FILTERS
        )
        if path:
            if not path.lower().endswith((".omlss", ".nii.gz", ".nii", ".nrrd", ".mha")):
                path += selected.split("*")[1].rstrip(")")
            try:
                self.save(path)
            except OSError as err:  # FileWriteError: one line, the old file untouched
                self.show_status(f"Not saved: {err}")

    def _offer_restore(self) -> None:
        if self.session.has_autosave:
            self.banner_label.setText(
                f"Autosaved structures of an earlier session were found for this image "
                f"({self.session.recovery_summary()}). Restore or discard them; until you do, they "
                "are kept beside the new work, never overwritten."
            )
            self.banner.show()
            self.show_status("Autosaved structures exist for this image: restore or discard them.")
        else:
            self.banner.hide()

    def restore_autosave(self) -> bool:
        """Load the newest readable autosave of this image's structures (a damaged newest one
        falls back to the previous generation, and the status line says so)."""
        try:
            message = self.session.restore_autosave()
        except (StructureSetError, AttributeError) as err:  # every generation damaged: say so,
            self.show_status(f"No autosave restored: {err}")  # keep the banner to discard them
            return False
        self.banner.hide()
        self.refresh_structures()
        self.show_status(message[:1].upper() + message[1:] + ".")
        return True

    def discard_autosave(self) -> None:
        self.session.discard_autosave()
        self.banner.hide()

    def wait_for_autosave(self, timeout: float = 30.0) -> bool:
        """Autosaves are written before a request returns; kept for scripts that wait anyway."""
        return True
