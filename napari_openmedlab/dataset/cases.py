"""The cases of a data set folder: an nnU-Net raw data set or a folder of images.

* nnU-Net raw: ``imagesTr/<case>_0000.nii.gz`` (other channels ``_0001``... are ignored here),
  ``labelsTr/<case>.nii.gz`` when present, ``dataset.json`` for the class names.
* A folder of images: NIfTI/NRRD/MHA files, and DICOM series in sub-folders (one case each);
  a label map ``<case>_seg.nii.gz`` / ``<case>.seg.nrrd`` / ``labels/<case>.nii.gz`` beside it is
  taken as that case's starting labels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
LABEL_MARKERS = ("_seg", ".seg", "_label", "_labels", "_mask")
PROJECT_DIR = ".openmedlab"


@dataclass(frozen=True)
class DatasetCase:
    name: str
    image: Path
    labels: Path | None = None


def strip_suffix(name: str) -> str:
    for s in IMAGE_SUFFIXES:
        if name.lower().endswith(s):
            return name[: -len(s)]
    return name


def _is_dicom_folder(p: Path) -> bool:
    try:
        return any(f.suffix.lower() == ".dcm" or f.name.upper().startswith(("IM", "CT", "MR"))
                   for f in p.iterdir() if f.is_file())
    except OSError:
        return False


def find_dataset_cases(root: str | os.PathLike) -> list[DatasetCase]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a data set folder")
    if (root / "imagesTr").is_dir():
        labels_dir = root / "labelsTr"
        labels = {strip_suffix(p.name): p for p in labels_dir.iterdir()} if labels_dir.is_dir() else {}
        cases = []
        for p in sorted((root / "imagesTr").iterdir()):
            stem = strip_suffix(p.name)
            if not p.is_file() or stem == p.name or not stem.endswith("_0000"):
                continue
            name = stem[:-5]
            cases.append(DatasetCase(name, p, labels.get(name)))
        if not cases:
            raise FileNotFoundError(f"{root}/imagesTr: no <case>_0000 image")
        return cases
    files = [p for p in sorted(root.iterdir()) if not p.name.startswith(".")]
    label_dir = root / "labels"
    cases = []
    stems = {strip_suffix(p.name): p for p in files if p.is_file()}
    for p in files:
        if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES):
            stem = strip_suffix(p.name)
            if stem.endswith(LABEL_MARKERS):
                continue
            label = next((stems[stem + m] for m in LABEL_MARKERS if stem + m in stems), None)
            if label is None and label_dir.is_dir():
                label = next((q for q in label_dir.iterdir() if strip_suffix(q.name) == stem), None)
            cases.append(DatasetCase(stem, p, label))
        elif p.is_dir() and p.name not in ("labels", PROJECT_DIR) and _is_dicom_folder(p):
            cases.append(DatasetCase(p.name, p, None))
    if not cases:
        raise FileNotFoundError(f"{root}: no image found (NIfTI, NRRD, MHA, or DICOM series in sub-folders)")
    names = [c.name for c in cases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FileNotFoundError(f"{root}: several images share the case name {', '.join(dupes)}")
    return cases
