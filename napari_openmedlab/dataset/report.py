"""The annotator's effort per case and structure: clicks, boxes, strokes, seconds, Dice reached.

The Dice column is filled where a reference exists: a label map of the case in ``reference_dir``
(same case name), matched to the structure by the class table's id (or the label's name).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path, atomic_write_text
from .cases import strip_suffix
from .project import AnnotationProject

COLUMNS = ["case", "status", "structure", "clicks", "boxes", "strokes", "commits", "case_seconds", "dice"]


def effort_rows(project: AnnotationProject, reference_dir=None) -> list[dict]:
    refs = {}
    if reference_dir is not None:
        refs = {strip_suffix(p.name): p for p in Path(reference_dir).iterdir() if p.is_file()}
    ids = {c.name: c.id for c in project.classes}
    rows = []
    for case in project.case_names():
        rec = project.record(case)
        effort = rec.get("effort") or {}
        ss = project.structure_set(case)
        names = sorted(set(effort) | ({s.name for s in ss if not s.mask.empty} if ss else set()))
        reference = None
        if case in refs and ss is not None:
            from ..io import read_labels_onto, read_volume

            reference = read_labels_onto(refs[case], read_volume(project.root / rec["image"])).array
        if not names:
            names = [""]
        for name in names:
            e = effort.get(name, {})
            dice = ""
            if reference is not None and name and name in ss:
                label_id = ids.get(name, ss.structure(name).label_id)
                ref = reference == label_id
                got = ss.mask(name)
                denom = ref.sum() + got.sum()
                dice = f"{2 * np.logical_and(ref, got).sum() / denom:.4f}" if denom else ""
            rows.append({"case": case, "status": rec["status"], "structure": name,
                         "clicks": e.get("clicks", 0), "boxes": e.get("boxes", 0),
                         "strokes": e.get("strokes", 0), "commits": e.get("commits", 0),
                         "case_seconds": f"{float(rec.get('seconds', 0.0)):.1f}", "dice": dice})
    return rows


def write_report(project: AnnotationProject, out_csv, plot=None, reference_dir=None) -> list[dict]:
    rows = effort_rows(project, reference_dir)
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out_csv, buf.getvalue())
    if plot:
        _plot(rows, plot)
    return rows


def _plot(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = sorted({r["case"] for r in rows})
    clicks = [sum(int(r["clicks"]) + int(r["boxes"]) for r in rows if r["case"] == c) for c in cases]
    strokes = [sum(int(r["strokes"]) for r in rows if r["case"] == c) for c in cases]
    seconds = [float(next(r["case_seconds"] for r in rows if r["case"] == c)) for c in cases]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    x = np.arange(len(cases))
    a.bar(x - 0.2, clicks, 0.4, label="clicks + boxes")
    a.bar(x + 0.2, strokes, 0.4, label="brush strokes")
    a.set_xticks(x, cases, rotation=45, ha="right")
    a.set_ylabel("interactions")
    a.set_title("Interactions per case")
    a.legend()
    b.bar(x, np.array(seconds) / 60.0, color="tab:green", label="time spent")
    b.set_xticks(x, cases, rotation=45, ha="right")
    b.set_ylabel("minutes")
    b.set_title("Annotation time per case")
    b.legend()
    fig.tight_layout()
    suffix = Path(path).suffix or ".png"
    with atomic_path(path, suffix=suffix) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
