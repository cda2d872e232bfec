"""``openmedlab batch DATASET --out DIR``: pre-segment or evaluate every case, locally or on Ray."""

from __future__ import annotations

import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("batch", help="pre-segment or evaluate a whole data set (locally or on Ray)")
    p.add_argument("dataset", help="a folder of images, or an nnU-Net raw data set (imagesTr/labelsTr)")
    p.add_argument("--out", required=True, help="output folder (results per case, summary.csv, failures.csv)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="evaluate with simulated clicks using this registry model (as `eval`)")
    what.add_argument("--model-folder", help="pre-segment with this nnU-Net v2 results folder (as `autoseg`)")
    p.add_argument("--checkpoint", help="--model: local checkpoint; --model-folder: checkpoint file name")
    p.add_argument("--folds", help="--model-folder: comma-separated folds (default: all found)")
    p.add_argument("--device", default="cpu", help="auto, cuda, mps or cpu (default cpu)")
    p.add_argument("--clicks", type=int, default=5, help="--model: clicks per object (default 5)")
    p.add_argument("--protocol", default="largest-error", choices=("largest-error", "sam-med3d"))
    p.add_argument("--seed", type=int, help="--model: random seed of the click simulation")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--ray", metavar="ADDRESS",
                       help="run on a Ray cluster (ADDRESS, 'auto', or 'local' to start one here); needs [ray]")
    where.add_argument("--local", action="store_true", help="run in this process without Ray (the default)")
    p.add_argument("--workers", type=int, default=2, help="Ray workers (one model loaded per worker)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..batch import AutosegTask, EvalTask, run_batch

    if args.model:
        if args.clicks < 1:
            print("openmedlab: error: --clicks must be at least 1", file=sys.stderr)
            return 2
        task = EvalTask(args.model, args.checkpoint, args.device, args.clicks, args.protocol, args.seed)
    else:
        folds = [int(f) for f in args.folds.split(",")] if args.folds else None
        task = AutosegTask(args.model_folder, folds, args.checkpoint or "checkpoint_final.pth", args.device)
    try:
        report = run_batch(task, args.dataset, args.out, ray_address=args.ray, workers=args.workers,
                           progress=lambda text: print(text, file=sys.stderr))
    except RuntimeError as err:
        print(f"openmedlab: error: {err}", file=sys.stderr)
        return 2
    print(f"{report.out_dir}: {len(report.done)} done, {len(report.skipped)} already finished, "
          f"{len(report.failed)} failed (see failures.csv)")
    return 1 if report.failed and not report.done and not report.skipped else 0
