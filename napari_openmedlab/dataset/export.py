"""Training exports of the done cases: an nnU-Net v2 raw data set and a MONAI-style datalist.

Label ids are the same in every case: the project's class table where a structure's name is in it,
then the remaining names (sorted) after the table's largest id. Overlapping structures are
flattened by :meth:`StructureSet.to_label_map`'s rule (the smaller structure keeps the voxel), and
the voxels each structure lost are reported per case in ``flattening_losses.csv``.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import Volume, read_volume, write_volume
from ..io.atomic import atomic_write_json, atomic_write_text
from .project import AnnotationProject, ProjectError


@dataclass
class ExportReport:
    folder: Path
    cases: list[str] = field(default_factory=list)
    labels: dict = field(default_factory=dict)
    losses: dict = field(default_factory=dict)  # case -> {structure: voxels lost}


def _label_table(project: AnnotationProject, cases: list[str]) -> dict[str, int]:
    table = {c.name: c.id for c in project.classes}
    extra = set()
    for name in cases:
        ss = project.structure_set(name)
        extra |= {s.name for s in ss if not s.mask.empty and s.name not in table}
    top = max(table.values(), default=0)
    for i, name in enumerate(sorted(extra)):
        table[name] = top + 1 + i
    return table


def export_nnunet(project: AnnotationProject, out_dir, dataset_id: int, name: str,
                  *, modality: str = "CT", include_status=("done",)) -> ExportReport:
    """Write ``OUT/DatasetXXX_NAME`` with imagesTr, labelsTr and dataset.json from the done cases."""
    if not 1 <= int(dataset_id) <= 999:
        raise ProjectError(f"an nnU-Net data set id is 1..999; got {dataset_id}")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ProjectError(f"data set name {name!r}: letters, digits, _ and - only")
    cases = [c for c in project.case_names() if project.status(c) in include_status]
    cases = [c for c in cases if project.structure_set(c) is not None]
    if not cases:
        raise ProjectError(f"no case with status {' or '.join(include_status)} and saved structures to export")
    folder = Path(out_dir) / f"Dataset{int(dataset_id):03d}_{name}"
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    table = _label_table(project, cases)
    report = ExportReport(folder, labels=table)
    for case in cases:
        ss = project.structure_set(case)
        image = read_volume(project.root / project.record(case)["image"])
        if tuple(ss.shape) != tuple(image.shape) or not ss.geometry.same_grid(image.geometry):
            raise ProjectError(f"{case}: the saved structure set is not on the image's grid")
        for s in ss:
            s.label_id = table.get(s.name, s.label_id)
        flat = ss.to_label_map()
        case_id = re.sub(r"[^A-Za-z0-9_-]", "_", case)
        write_volume(image, folder / "imagesTr" / f"{case_id}_0000.nii.gz")
        labels = flat.labels.astype(np.uint8 if max(table.values(), default=0) <= 255 else np.uint16)
        write_volume(Volume(labels, image.geometry), folder / "labelsTr" / f"{case_id}.nii.gz", labels=True)
        report.cases.append(case_id)
        report.losses[case_id] = flat.lost_counts
    dataset = {
        "name": name,
        "description": "exported by napari-openmedlab from annotated cases",
        "channel_names": {"0": modality},
        "labels": {"background": 0, **{k: v for k, v in sorted(table.items(), key=lambda kv: kv[1])}},
        "numTraining": len(report.cases),
        "file_ending": ".nii.gz",
        "overlap_rule": "where structures overlapped, the smaller structure keeps the voxel",
    }
    atomic_write_json(folder / "dataset.json", dataset, indent=2)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["case", "structure", "voxels_lost"])
    for case, lost in report.losses.items():
        for structure, n in sorted(lost.items()):
            w.writerow([case, structure, n])
    atomic_write_text(folder / "flattening_losses.csv", buf.getvalue())
    return report


def write_datalist(report: ExportReport, *, validation_fraction: float = 0.2, seed: int = 0) -> Path:
    """MONAI-style ``datalist.json`` beside the export: a training/validation split by ``seed``."""
    cases = sorted(report.cases)
    rng = random.Random(seed)
    shuffled = cases[:]
    rng.shuffle(shuffled)
    n_val = int(round(len(cases) * validation_fraction)) if len(cases) > 1 else 0
    val = set(shuffled[:n_val])

    def item(c):
        return {"image": f"imagesTr/{c}_0000.nii.gz", "label": f"labelsTr/{c}.nii.gz"}

    data = {"seed": seed, "training": [item(c) for c in cases if c not in val],
            "validation": [item(c) for c in cases if c in val]}
    path = report.folder / "datalist.json"
    atomic_write_json(path, data, indent=2)
    return path


def dataset_json(report: ExportReport) -> dict:
    return json.loads((report.folder / "dataset.json").read_text())
