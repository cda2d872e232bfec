"""Saving a view's structures: the structure set itself, or a label map with its prompt log."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..annotation.prompt_log import log_document as _log_document
from ..io import Volume, write_volume
from ..io.atomic import atomic_write_json

LABEL_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


@dataclass
class Saved:
    """What :func:`save` wrote, and the voxels a label map could not keep."""

    path: Path
    log_path: Path | None
    lost: dict  # structure name -> voxels lost to overlaps (label maps only)


def all_records(view) -> list[dict]:
    """Every structure's prompt-log records, oldest first."""
    records = [r for s in view.structures for r in s.prompts]
    return sorted(records, key=lambda r: str(r.get("time", "")))


def log_document(view) -> dict:
    return _log_document(
        all_records(view),
        source=view.source,
        shape=view.volume.shape,
        geometry=view.volume.geometry,
        classes=[c.to_dict() for c in view.structures.classes()],
    )


def save(view, path) -> Saved:
    """``.omlss``: the structure set itself; a label map (``.nii.gz``/``.nii``/``.nrrd``/``.mha``):
    the flattened structures plus ``<name>.prompts.json``; ``lost`` names the structures whose
    overlapping voxels the label map could not keep."""
    view._require_image()
    path = Path(path)
    if path.name.lower().endswith(".omlss"):
        return Saved(view.structures.save(path), None, {})
    flat = view.structures.to_label_map()
    labels = Volume(flat.labels, view.volume.geometry, {"source": view.source})
    labels_path = write_volume(labels, path, labels=True)
    stem = path.name
    for suffix in LABEL_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    log_path = atomic_write_json(path.with_name(stem + ".prompts.json"), log_document(view))
    return Saved(labels_path, Path(log_path), flat.lost_counts)
