"""``openmedlab dataset export|report DATASET_DIR``: training exports and the annotators' effort."""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("dataset", help="export annotated cases for training; report the effort")
    sub = p.add_subparsers(dest="dataset_command", metavar="ACTION")
    e = sub.add_parser("export", help="nnU-Net v2 raw data set (+ MONAI datalist.json) from the done cases")
    e.add_argument("dataset_dir")
    e.add_argument("--nnunet", required=True, metavar="OUT_DIR", help="folder that receives DatasetXXX_NAME")
    e.add_argument("--id", type=int, required=True, help="nnU-Net data set id (1..999)")
    e.add_argument("--name", required=True, help="data set name (letters, digits, _ and -)")
    e.add_argument("--modality", default="CT", help="channel name in dataset.json (default CT)")
    e.add_argument("--validation", type=float, default=0.2, help="validation fraction of datalist.json")
    e.add_argument("--seed", type=int, default=0, help="seed of the training/validation split")
    e.set_defaults(run=run_export)
    r = sub.add_parser("report", help="clicks, boxes, strokes, time and Dice per case and structure")
    r.add_argument("dataset_dir")
    r.add_argument("--out", help="CSV (default DATASET_DIR/.openmedlab/effort.csv)")
    r.add_argument("--plot", help="PNG plot of the effort (default beside the CSV)")
    r.add_argument("--reference", help="folder of reference label maps (case name = file name) for Dice")
    r.set_defaults(run=run_report)
    p.set_defaults(run=lambda args: (p.print_help(), 2)[1])


def run_export(args) -> int:
    from ..dataset import AnnotationProject
    from ..dataset.export import export_nnunet, write_datalist

    with AnnotationProject.open(args.dataset_dir) as project:
        report = export_nnunet(project, args.nnunet, args.id, args.name, modality=args.modality)
    datalist = write_datalist(report, validation_fraction=args.validation, seed=args.seed)
    lost = {c: sum(v.values()) for c, v in report.losses.items() if v}
    print(f"{report.folder}: {len(report.cases)} cases, {len(report.labels)} labels; {datalist.name} written")
    for case in lost:
        detail = ", ".join(f"{k} {v}" for k, v in report.losses[case].items())
        print(f"  {case}: overlaps flattened, voxels lost: {detail}", file=sys.stderr)
    return 0


def run_report(args) -> int:
    from ..dataset import AnnotationProject
    from ..dataset.report import write_report

    project = AnnotationProject.open(args.dataset_dir, lock=False)
    out = Path(args.out) if args.out else project.root / ".openmedlab" / "effort.csv"
    plot = args.plot or str(out.with_suffix(".png"))
    rows = write_report(project, out, plot, args.reference)
    cases = {r["case"] for r in rows}
    clicks = sum(int(r["clicks"]) for r in rows)
    print(f"{out}: {len(cases)} cases, {clicks} clicks in all; plot: {plot}")
    return 0
