"""Saving, the autosave restore banner: the file side of the segmentation widget."""

from __future__ import annotations

import re
from pathlib import Path

from qtpy.QtWidgets import QFileDialog

from ..annotation.structure_set import StructureSetError

FILTERS = "Structure set (*.omlss);;NIfTI (*.nii.gz);;NIfTI (*.nii);;NRRD (*.nrrd);;MetaImage (*.mha)"
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

    def suggested_save_path(self) -> Path:
        """Where *Save…* starts: the image's own folder, a name without spaces. One drawn structure
        (or none yet: the selected one) -> ``<image>_<structure>.nii.gz`` (``ct_liver.nii.gz``: a
        label map loses nothing); several -> ``<image>_structures.omlss``, which keeps their overlaps,
        locks and prompts. The working folder for an image that came from no file."""
        session = self.session
        source = Path(session.source) if session.source else None
        if source is not None and source.exists():
            folder = source if source.is_dir() else source.parent  # a DICOM series: beside its slices
            stem = source.name if source.is_dir() else _strip_image_suffix(source.name)
        else:
            folder, stem = Path.cwd(), session.image_layer.name if session.image_layer else "labels"
        structures = session.structures
        drawn = [s.name for s in structures if not structures.sparse(s.name).empty] if structures else []
        if len(drawn) > 1:
            return folder / f"{_safe(stem) or 'image'}_structures.omlss"
        what = drawn[0] if drawn else session.selected or "labels"
        name = "_".join(part for part in (_safe(stem), _safe(what)) if part) or "labels"
        return folder / f"{name}.nii.gz"

    def _save_dialog(self) -> None:
        if self.session.labels_layer is None:
            return
        path, selected = QFileDialog.getSaveFileName(
            self, "Save structures", str(self.suggested_save_path()), FILTERS
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
        """Load the newest readable autosave of this image's structures, with their names and
        colours (a damaged newest one falls back to the previous generation, and the status line
        says so)."""
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
