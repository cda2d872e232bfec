"""``openmedlab segment IMAGE --model M --point z,y,x[,+|-] ... --out OUT``: one object, headless.

Clicks come in voxel indices (``--point``) or in the millimetres napari's status bar shows for the
image (``--point-mm``: physical LPS, written z, y, x like napari's world coordinates).
"""

from __future__ import annotations

import argparse
import math
import sys

from ._options import add_speed_options
from ._remote import add_server_args, engine_from_args


def parse_point(text: str, unit: str = "voxels") -> tuple[tuple[float, float, float], bool]:
    """``"z,y,x"`` or ``"z,y,x,+"`` / ``"z,y,x,-"`` to (zyx, positive); ``unit`` names the numbers
    in the error message (voxel indices for ``--point``, millimetres for ``--point-mm``)."""
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
        raise argparse.ArgumentTypeError(f"a point is z,y,x[,+|-] in {unit}; got {text!r}") from None


def parse_point_mm(text: str) -> tuple[tuple[float, float, float], bool]:
    return parse_point(text, unit="mm")


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


def _mm_to_index(volume, zyx_mm) -> tuple[float, float, float]:
    """A ``--point-mm`` (napari world z, y, x) as a voxel index; refused with the image's extent in
    millimetres when it lies outside (the voxel numbers alone would not help the user)."""
    import numpy as np

    from ..engines import PromptError

    index = volume.geometry.world_to_index(zyx_mm)
    shape = np.asarray(volume.shape)
    if np.any(index < -0.5) or np.any(index > shape - 0.5):
        corners = np.array(np.meshgrid(*[(-0.5, n - 0.5) for n in shape], indexing="ij")).reshape(3, -1).T
        world = volume.geometry.index_to_world(corners)
        extent = ", ".join(f"{lo:.1f}..{hi:.1f}" for lo, hi in zip(world.min(0), world.max(0)))
        mm = ", ".join(f"{float(v):g}" for v in zyx_mm)
        raise PromptError(f"click at ({mm}) mm lies outside the image, which spans (z, y, x) = ({extent}) mm")
    return tuple(float(v) for v in index)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("segment", help="segment one object from clicks and/or boxes")
    p.add_argument("image", help="NIfTI/NRRD/MHA file or DICOM folder")
    p.add_argument("--model", required=True, help="registry name (see `openmedlab info`)")
    p.add_argument("--checkpoint", help="local checkpoint file (wins over the weights cache)")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    add_speed_options(p)
    add_server_args(p)
    p.add_argument("--point", action="append", type=parse_point, default=[], metavar="Z,Y,X[,+|-]",
                   help="a click in voxel indices; + positive (default), - negative; repeatable")
    p.add_argument("--point-mm", action="append", type=parse_point_mm, default=[], metavar="Z,Y,X[,+|-]",
                   help="a click in millimetres as napari's status bar shows it for this image "
                        "(physical LPS z, y, x); repeatable, mixes with --point")
    p.add_argument("--box", action="append", type=parse_box, default=[], metavar="Z,Y0,X0,Y1,X1",
                   help="an axial box on slice Z (2D models only); repeatable")
    p.add_argument("--propagate", action="store_true",
                   help="2D models: propagate the slice result through the volume")
    p.add_argument("--component", type=int, help="time point/channel of a 4D or multi-channel image")
    p.add_argument("--out", required=True, help="output mask (.nii.gz, .nii, .nrrd, .mha)")
    p.set_defaults(run=run)


def run(args) -> int:
    import numpy as np

    from ..engines import PromptError, Prompts
    from ..io import read_volume, write_volume
    from ..io.writers import check_output_path

    clicks = args.point + args.point_mm
    if not clicks and not args.box:
        raise SystemExit("openmedlab segment: give at least one --point, --point-mm or --box")
    if clicks and not args.box and not any(positive for _, positive in clicks):
        # negative clicks only say where the object is not: the answer would be an empty mask
        raise PromptError("all clicks are negative: add a positive click (z,y,x or z,y,x,+) inside "
                          "the object")
    check_output_path(args.out)  # before minutes of model loading and inference
    volume = read_volume(args.image, component=args.component)
    points_mm = [(_mm_to_index(volume, zyx), positive) for zyx, positive in args.point_mm]
    clicks = args.point + points_mm
    prompts = Prompts(
        points=[p for p, _ in clicks],
        labels=[int(pos) for _, pos in clicks],
        boxes=list(args.box),
    )
    prompts.check_inside(volume.shape)  # before the model loads, and before any progress line
    engine = engine_from_args(args, encoder=args.encoder, threads=args.threads)
    if args.box and not engine.supports_boxes:
        raise SystemExit(f"openmedlab segment: {args.model} takes clicks only, not boxes")
    if args.propagate and not hasattr(engine, "propagate"):
        raise SystemExit(f"openmedlab segment: {args.model} segments in 3D already; drop --propagate")

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
