"""``openmedlab segment IMAGE --model M --point z,y,x[,+|-] ... --out OUT``: one object, headless."""

from __future__ import annotations

import argparse
import math
import sys

from ._remote import add_server_args, engine_from_args


def parse_point(text: str) -> tuple[tuple[float, float, float], bool]:
    """``"z,y,x"`` or ``"z,y,x,+"`` / ``"z,y,x,-"`` (voxel indices) to (zyx, positive)."""
    parts = [p.strip() for p in text.split(",")]
    positive = True
    if len(parts) == 4 and parts[3] in ("+", "-", "1", "0"):
        positive = parts[3] in ("+", "1")
        parts = parts[:3]
    try:
        if len(parts) != 3:
            raise ValueError
        zyx = tuple(float(v) for v in parts)
        if not all(math.isfinite(v) for v in zyx):
            raise ValueError
        return zyx, positive
    except ValueError:
        raise argparse.ArgumentTypeError(f"a point is z,y,x[,+|-] in voxels; got {text!r}") from None


def parse_box(text: str):
    """``"z,y0,x0,y1,x1"``: an axial box on slice z (voxel indices, inclusive)."""
    from ..engines.base import Box

    try:
        z, y0, x0, y1, x1 = (float(v) for v in text.split(","))
        if not all(math.isfinite(v) for v in (z, y0, x0, y1, x1)):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"a box is z,y0,x0,y1,x1 in voxels; got {text!r}") from None
    return Box(axis=0, index=int(z), r0=min(y0, y1), c0=min(x0, x1), r1=max(y0, y1), c1=max(x0, x1))


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("segment", help="segment one object from clicks and/or boxes")
    p.add_argument("image", help="NIfTI/NRRD/MHA file or DICOM folder")
    p.add_argument("--model", required=True, help="registry name (see `openmedlab info`)")
    p.add_argument("--checkpoint", help="local checkpoint file (wins over the weights cache)")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    add_server_args(p)
    p.add_argument("--point", action="append", type=parse_point, default=[], metavar="Z,Y,X[,+|-]",
                   help="a click in voxel indices; + positive (default), - negative; repeatable")
    p.add_argument("--box", action="append", type=parse_box, default=[], metavar="Z,Y0,X0,Y1,X1",
                   help="an axial box on slice Z (2D models only); repeatable")
    p.add_argument("--propagate", action="store_true",
                   help="2D models: propagate the slice result through the volume")
    p.add_argument("--component", type=int, help="time point/channel of a 4D or multi-channel image")
    p.add_argument("--out", required=True, help="output mask (.nii.gz, .nii, .nrrd, .mha)")
    p.set_defaults(run=run)


def run(args) -> int:
    import numpy as np

    from ..engines import Prompts
    from ..io import read_volume, write_volume
    from ..io.writers import check_output_path

    if not args.point and not args.box:
        raise SystemExit("openmedlab segment: give at least one --point or --box")
    check_output_path(args.out)  # before minutes of model loading and inference
    volume = read_volume(args.image, component=args.component)
    engine = engine_from_args(args)
    if args.box and not engine.supports_boxes:
        raise SystemExit(f"openmedlab segment: {args.model} takes clicks only, not boxes")
    if args.propagate and not hasattr(engine, "propagate"):
        raise SystemExit(f"openmedlab segment: {args.model} segments in 3D already; drop --propagate")
    prompts = Prompts(
        points=[p for p, _ in args.point],
        labels=[int(pos) for _, pos in args.point],
        boxes=list(args.box),
    )

    def progress(fraction: float, what: str) -> None:
        print(f"\r[{fraction:4.0%}] {what:<40}", end="", file=sys.stderr, flush=True)

    engine.set_volume(volume, progress=progress)
    prediction = engine.predict(prompts, progress=progress)
    if args.propagate:
        prediction = engine.propagate(prompts, progress=progress)
    print(file=sys.stderr)
    mask = prediction.to_mask().astype(np.uint8)
    write_volume(volume.with_array(mask), args.out, labels=True)
    print(f"{args.out}: {int(mask.sum())} voxels segmented "
          f"({' '.join(f'{k} {v:.2f}s' for k, v in prediction.timings.items())})")
    return 0
