"""Saving, the autosave restore banner: the file side of the segmentation widget."""

from __future__ import annotations

import re
from pathlib import Path

from qtpy.QtWidgets import QFileDialog

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")


def _strip_image_suffix(name: str) -> str:
    for suffix in _IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _safe(text: str) -> str:
    """Letters, digits, ``-`` and ``.`` kept; runs of anything else (spaces, slashes) become ``_``."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_.")


class FilesMixin:
    """Mixed into :class:`SegmentationWidget`; uses its ``session``, ``banner`` and status line."""

    def save(self, path):
        """Write the target labels (by suffix: .nii.gz/.nii/.nrrd/.mha) and the prompt log JSON."""
        labels_path, log_path = self.session.save(path)
        self.show_status(f"Saved {labels_path.name} and {log_path.name}.")
        return labels_path, log_path

    def suggested_save_path(self) -> Path:
        """Where *Save…* starts: the image's own folder, ``<image>_<class>.nii.gz`` without spaces
        (``ct_liver.nii.gz``; ``ct_labels.nii.gz`` once several classes are committed); the working
        folder for an image that came from no file."""
        session = self.session
        source = Path(session.source) if session.source else None
        if source is not None and source.exists():
            folder = source if source.is_dir() else source.parent  # a DICOM series: beside its slices
            stem = source.name if source.is_dir() else _strip_image_suffix(source.name)
        else:
            folder, stem = Path.cwd(), session.image_layer.name if session.image_layer else "labels"
        committed = {r.get("class_id") for r in session.records} - {None}
        if len(committed) > 1:  # several structures in one file
            what = "labels"
        else:
            what = session.class_name(int(committed.pop()) if committed else session.class_id)
        name = "_".join(part for part in (_safe(stem), _safe(what)) if part) or "labels"
        return folder / f"{name}.nii.gz"

    def _save_dialog(self) -> None:
        if self.session.labels_layer is None:
            return
        path, selected = QFileDialog.getSaveFileName(
            self,
            "Save labels",
            str(self.suggested_save_path()),
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
