"""``openmedlab autoseg IMAGE... --model-folder DIR --out OUT``: a trained nnU-Net v2 model drafts every class.

Writes the label map on the image's grid (``io.write_volume``, atomic) and its class table,
``<OUT name>.labels.json`` (``{"labels": {"1": "liver", ...}}``, the names of ``dataset.json``),
beside it; napari and ``openmedlab view`` pick the names up when the label map is opened.
"""

from __future__ import annotations

import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("autoseg", help="segment all classes with a trained nnU-Net v2 model folder "
                                              "(plain nnU-Net, Swin-UMamba)")
    p.add_argument("image", nargs="+",
                   help="NIfTI/NRRD/MHA file or DICOM folder; one per channel of the model, in dataset.json order")
    p.add_argument("--model-folder", required=True, metavar="DIR",
                   help="nnU-Net results folder: plans.json, dataset.json, fold_*/checkpoint_*.pth")
    p.add_argument("--folds", metavar="0,1,...", help="folds to ensemble (default: every fold with a checkpoint)")
    p.add_argument("--checkpoint", default="checkpoint_final.pth", metavar="NAME",
                   help="checkpoint file name inside each fold folder (default: checkpoint_final.pth)")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--no-mirroring", action="store_true",
                   help="skip test-time mirroring (faster, slightly less accurate)")
    p.add_argument("--step-size", type=float, default=0.5,
                   help="sliding-window step as a fraction of the patch (nnU-Net's default 0.5)")
    p.add_argument("--out", required=True, help="output label map (.nii.gz, .nii, .nrrd, .mha)")
    p.set_defaults(run=run)


def run(args) -> int:
    import numpy as np

    from ..engines.autoseg import AutoSegmenter, require_nnunet
    from ..io import read_volume, write_volume
    from ..io.atomic import atomic_write_json
    from ..io.writers import check_output_path
    from ..layers import file_stem
    from ..models.nnunet import read_model_folder

    out = check_output_path(args.out)  # before minutes of loading and inference
    if not 0 < args.step_size <= 1:
        raise SystemExit("openmedlab autoseg: --step-size is a fraction of the patch in (0, 1]")
    require_nnunet()
    folds = [f.strip() for f in args.folds.split(",") if f.strip()] if args.folds else None
    folder = read_model_folder(args.model_folder, folds=folds, checkpoint=args.checkpoint)
    channels = [read_volume(path) for path in args.image]
    segmenter = AutoSegmenter(folder, args.device, tile_step_size=args.step_size,
                              use_mirroring=not args.no_mirroring)
    print(f"{folder.describe()} on {segmenter.device}", file=sys.stderr)

    def progress(fraction: float, what: str) -> None:
        print(f"\r[{fraction:4.0%}] {what:<48}", end="", file=sys.stderr, flush=True)

    result = segmenter.predict(channels, progress=progress)
    print(file=sys.stderr)
    write_volume(result.labels, out, labels=True)
    table = out.parent / f"{file_stem(str(out))}.labels.json"
    atomic_write_json(table, {"labels": {str(k): v for k, v in sorted(result.classes.items())}})
    counts = np.bincount(result.labels.array.ravel(), minlength=max(result.classes, default=0) + 1)
    found = ", ".join(f"{name} {int(counts[k])}" for k, name in sorted(result.classes.items()) if counts[k])
    print(f"{out}: {found or 'no class found'} (voxels); classes in {table.name}; {result.seconds:.1f}s")
    return 0
