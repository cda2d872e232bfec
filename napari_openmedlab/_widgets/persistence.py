"""Saving, autosaving and restoring a session's labels and prompt log (no Qt)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..annotation.autosave import write_json_atomic
from ..annotation.label_classes import classes_from_json
from ..annotation.prompt_log import log_document
from ..annotation.undo import LabelDiff, Step
from ..io import Volume, VolumeWriteError, write_volume


class PersistenceMixin:
    """Mixed into :class:`Session`: uses its ``labels_layer``, ``volume``, ``records``, ``recovery``."""

    def labels_volume(self, copy: bool = False) -> Volume:
        data = np.asarray(self.labels_layer.data)
        return Volume(data.copy() if copy else data, self.volume.geometry, {"source": self.source})

    def log_document(self) -> dict:
        return log_document(
            self.records,
            source=self.source,
            shape=self.volume.shape,
            geometry=self.volume.geometry,
            classes=[c.to_dict() for c in self.classes],
        )

    def save(self, path) -> tuple[Path, Path]:
        """Write the target labels (NIfTI/NRRD/MHA by suffix) and ``<name>.prompts.json`` beside it."""
        self._require_image()
        path = Path(path)
        labels_path = write_volume(self.labels_volume(), path, labels=True)
        stem = path.name
        for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        log_path = write_json_atomic(path.with_name(stem + ".prompts.json"), self.log_document())
        return labels_path, log_path

    def autosave(self) -> None:
        if self.recovery is not None and self.labels_layer is not None:
            self.autosaver.submit(self.recovery, self.labels_volume(copy=True), self.log_document())

    @property
    def has_autosave(self) -> bool:
        return self.recovery is not None and self.recovery.exists()

    def restore_autosave(self) -> bool:
        """Load the recovery labels and prompt log into the target (an undoable step)."""
        if not self.has_autosave:
            return False
        self.autosaver.wait(60)
        volume, log = self.recovery.load()
        if volume.shape != self.volume.shape:
            raise VolumeWriteError(
                f"recovery labels have shape {volume.shape}, the image {self.volume.shape}"
            )
        data = self.labels_layer.data
        restored = volume.array
        if restored.dtype.itemsize > data.dtype.itemsize:
            self.labels_layer.data = data = data.astype(restored.dtype)
        diff = LabelDiff.between(data, restored.astype(data.dtype))
        if diff is not None:
            data[diff.slices] = diff.after
            self.history.push(Step("restore autosave", labels=diff))
        self.records = list(log.get("commits", []))
        if log.get("classes"):  # the names and colours the work was made with, not the defaults
            self.set_classes(classes_from_json(log["classes"]))
        self.labels_layer.refresh()
        return True

    def discard_autosave(self) -> None:
        if self.recovery is not None:
            self.autosaver.wait(60)
            self.recovery.discard()

    def recovery_summary(self) -> str:
        return self.recovery.summary() if self.recovery is not None else ""
