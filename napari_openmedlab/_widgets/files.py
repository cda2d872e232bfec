"""Saving, the autosave restore banner: the file side of the segmentation widget."""

from __future__ import annotations

from qtpy.QtWidgets import QFileDialog


class FilesMixin:
    """Mixed into :class:`SegmentationWidget`; uses its ``session``, ``banner`` and status line."""

    def save(self, path):
        """Write the target labels (by suffix: .nii.gz/.nii/.nrrd/.mha) and the prompt log JSON."""
        labels_path, log_path = self.session.save(path)
        self.show_status(f"Saved {labels_path.name} and {log_path.name}.")
        return labels_path, log_path

    def _save_dialog(self) -> None:
        if self.session.labels_layer is None:
            return
        path, selected = QFileDialog.getSaveFileName(
            self,
            "Save labels",
            f"{self.session.labels_layer.name}.nii.gz",
            "NIfTI (*.nii.gz);;NIfTI (*.nii);;NRRD (*.nrrd);;MetaImage (*.mha)",
        )
        if path:
            if not path.lower().endswith((".nii.gz", ".nii", ".nrrd", ".mha")):
                path += selected.split("*")[1].rstrip(")")
            self.save(path)

    def _offer_restore(self) -> None:
        if self.session.has_autosave:
            self.banner_label.setText(
                f"Unsaved work was found for this image ({self.session.recovery_summary()})."
            )
            self.banner.show()
            self.show_status("Autosaved labels exist for this image: restore or discard them.")
        else:
            self.banner.hide()

    def restore_autosave(self) -> bool:
        """Load the autosaved labels and prompt log of this image into the target layer."""
        ok = self.session.restore_autosave()
        if ok:  # the session took the autosave's class names and colours: show them
            self.classes.set_classes(self.session.classes, emit=False)
        self.banner.hide()
        self.show_status("Restored the autosaved labels." if ok else "No autosave for this image.")
        return ok

    def discard_autosave(self) -> None:
        self.session.discard_autosave()
        self.banner.hide()

    def wait_for_autosave(self, timeout: float = 30.0) -> bool:
        return self.session.autosaver.wait(timeout)
