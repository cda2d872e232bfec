"""``openmedlab contour OPERATION ...``: margins, booleans, interpolation, clean-up, statistics.

Every input is a mask or label map (NIfTI, NRRD, MetaImage): the structure is its non-zero voxels,
or the voxels of one id with ``--label``. Inputs on another grid are resampled onto the first
input's grid in physical space (nearest neighbour); one that ends up empty there is refused.
Outputs are 0/1 masks on the first input's grid, written atomically.

  openmedlab contour margin GTV.nii.gz --mm 5 --out CTV.nii.gz
  openmedlab contour margin CTV.nii.gz --mm-per-axis 5,5,3 --out PTV.nii.gz
  openmedlab contour margin CTV.nii.gz --mm-directions R5,L5,A10,P5,S3,I3 --out PTV.nii.gz
  openmedlab contour margin CTV.nii.gz --mm 5 --mm-directions A10 --out PTV.nii.gz   (A 10, others 5)
  openmedlab contour ring PTV.nii.gz --inner 5 --outer 15 --out ring.nii.gz
  openmedlab contour subtract CTV.nii.gz bone.nii.gz air.nii.gz --out CTV_crop.nii.gz
  openmedlab contour interpolate drawn.nii.gz --axis z --out filled.nii.gz
  openmedlab contour smooth PTV.nii.gz --mm 2 --out PTV_smooth.nii.gz
  openmedlab contour fill-holes body.nii.gz --2d --out body_filled.nii.gz
  openmedlab contour largest body.nii.gz --out body_main.nii.gz
  openmedlab contour stats seg.nii.gz --image ct.nii.gz
  openmedlab contour stats manual.nii.gz auto.nii.gz --tolerance 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _numbers(text: str, count: int, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        values = []
    if len(values) != count:
        raise argparse.ArgumentTypeError(f"{what}: {count} numbers in mm separated by commas; got {text!r}")
    return values


def parse_per_axis(text: str) -> list[float]:
    """``x,y,z`` in mm: right-left, anterior-posterior, superior-inferior."""
    return _numbers(text, 3, "--mm-per-axis")


def _common(p, outputs: bool = True, many: bool = False) -> None:
    if many:
        p.add_argument("inputs", nargs="+", metavar="IN", help="masks or label maps (two or more)")
    else:
        p.add_argument("inputs", nargs=1, metavar="IN", help="mask or label map")
    p.add_argument("--label", type=int, help="use the voxels of this id (default: every non-zero voxel)")
    if outputs:
        p.add_argument("--out", required=True, help="output mask (.nii.gz, .nii, .nrrd, .mha)")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "contour", help="margins, booleans, interpolation, smoothing, statistics of structures",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ops = p.add_subparsers(dest="operation", metavar="OPERATION", required=True)

    m = ops.add_parser("margin", help="expand (or shrink, negative mm) by a margin in mm")
    _common(m)
    m.add_argument("--mm", type=float, help="isotropic margin in mm (negative: shrink); with named "
                   "--mm-directions, the distance of the sides not named")
    kind = m.add_mutually_exclusive_group()
    kind.add_argument("--mm-per-axis", type=parse_per_axis, metavar="X,Y,Z",
                      help="per patient axis: right-left, anterior-posterior, superior-inferior")
    kind.add_argument("--mm-directions", metavar="R,L,A,P,S,I",
                      help="per side: six numbers in the order R,L,A,P,S,I or named like R5,L5,A10")
    m.add_argument("--shrink", action="store_true",
                   help="shrink by the given distances (or give them negative: --mm-per-axis=-5,-5,-3)")

    r = ops.add_parser("ring", help="outer margin minus inner margin (a ring around the structure)")
    _common(r)
    r.add_argument("--inner", type=float, default=0.0, help="inner distance in mm (default 0)")
    r.add_argument("--outer", type=float, required=True, help="outer distance in mm")

    for name, text in (("union", "voxels in any input"), ("intersect", "voxels in every input"),
                       ("subtract", "the first input minus the others"),
                       ("xor", "voxels in exactly one of two inputs (odd count for more)")):
        _common(ops.add_parser(name, help=text), many=True)

    i = ops.add_parser("interpolate", help="fill the slices between drawn slices")
    _common(i)
    i.add_argument("--axis", default="z", choices=("z", "y", "x"), help="slice axis of the voxel grid (default z)")
    i.add_argument("--drawn", help="drawn slice indices, e.g. 10,13,16 (default: the non-empty slices)")

    s = ops.add_parser("smooth", help="smooth the surface, moving it by at most --mm")
    _common(s)
    s.add_argument("--mm", type=float, required=True, help="smoothing distance and bound in mm")

    f = ops.add_parser("fill-holes", help="fill enclosed holes (3D, or per slice with --2d)")
    _common(f)
    f.add_argument("--2d", dest="two_d", action="store_true", help="fill per slice of --axis")
    f.add_argument("--axis", default="z", choices=("z", "y", "x"), help="slice axis for --2d (default z)")

    lg = ops.add_parser("largest", help="keep the largest connected piece(s)")
    _common(lg)
    lg.add_argument("--count", type=int, default=1, help="pieces to keep (default 1)")
    lg.add_argument("--connectivity", type=int, default=1, choices=(1, 2, 3),
                    help="1: faces (default), 2: edges, 3: corners")

    isl = ops.add_parser("remove-islands", help="drop connected pieces smaller than a volume")
    _common(isl)
    isl.add_argument("--min-cm3", type=float, required=True, help="smallest piece kept, in cm3")
    isl.add_argument("--connectivity", type=int, default=1, choices=(1, 2, 3))

    st = ops.add_parser("stats", help="a table: volume, intensity, extent, centroid; Dice/HD95/NSD of pairs")
    st.add_argument("inputs", nargs="+", metavar="IN", help="masks or label maps (every id is a row)")
    st.add_argument("--label", type=int, help="only this id")
    st.add_argument("--image", help="image on which to measure intensities (any grid: resampled)")
    st.add_argument("--tolerance", type=float, default=1.0, metavar="MM",
                    help="surface Dice tolerance in mm (default 1)")
    st.add_argument("--json", dest="json_out", help="also write the figures to this JSON file")
    p.set_defaults(run=run)


def run(args) -> int:
    import numpy as np

    if args.operation == "stats":
        from ._contour_stats import run_stats

        return run_stats(args)
    from ..annotation.contouring import run_operation
    from ..io import Volume, write_volume
    from ..io.writers import check_output_path

    check_output_path(args.out)  # before any work
    params = _params(args)
    masks, reference = _read_masks(args.inputs, args.label)
    result = run_operation(args.operation, masks, reference.geometry, **params)
    meta = {"contour": {"operation": args.operation, "inputs": [str(p) for p in args.inputs]}}
    write_volume(Volume(result.dense().astype(np.uint8), reference.geometry, meta), args.out, labels=True)
    voxel_cm3 = float(np.prod(reference.geometry.spacing)) / 1000.0
    print(f"{args.out}: {args.operation}, {result.count} voxels ({result.count * voxel_cm3:.2f} cm3; "
          f"first input {masks[0].count * voxel_cm3:.2f} cm3)")
    return 0


def _params(args) -> dict:
    from ..annotation.contouring import ContouringError, Margin

    op = args.operation
    if op == "margin":
        from ..annotation.contouring.margins import parse_side_values

        if args.mm_directions is not None:
            spec = Margin.sides(*parse_side_values(args.mm_directions, default=args.mm or 0.0))
        elif args.mm_per_axis is not None:
            spec = Margin.per_axis(*args.mm_per_axis)
        elif args.mm is not None:
            spec = Margin.isotropic(args.mm)
        else:
            raise ContouringError("margin needs a distance: --mm, --mm-per-axis or --mm-directions")
        if args.shrink and not spec.shrink:
            spec = Margin.sides(*[-r for r in spec.radii])
        return {"margin": spec}
    if op == "ring":
        if args.outer <= args.inner:
            raise ContouringError(f"the ring's outer distance ({args.outer} mm) must exceed its inner one ({args.inner} mm)")
        return {"inner": args.inner, "outer": args.outer}
    if op == "interpolate":
        drawn = None
        if args.drawn:
            try:
                drawn = [int(v) for v in args.drawn.split(",") if v.strip()]
            except ValueError:
                raise ContouringError(f"--drawn takes slice indices like 10,13,16; got {args.drawn!r}") from None
        return {"axis": args.axis, "drawn": drawn}
    if op == "smooth":
        return {"mm": args.mm}
    if op == "fill-holes":
        return {"mode": "2d" if args.two_d else "3d", "axis": args.axis}
    if op == "largest":
        return {"count": args.count, "connectivity": args.connectivity}
    if op == "remove-islands":
        return {"min_cm3": args.min_cm3, "connectivity": args.connectivity}
    return {}


def load_structure_volume(path: str, label: int | None, reference=None):
    """Read a mask or label map (resampled onto ``reference``'s grid when given)."""
    import numpy as np

    from ..annotation.contouring import ContouringError
    from ..io import read_volume, resample_labels_to

    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"No such file or folder: {source}")
    volume = read_volume(source)
    array = volume.array
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise ContouringError(f"{source.name}: not a mask or label map (it holds fractional values)")
    if array.size and array.min() < 0:
        raise ContouringError(f"{source.name}: not a mask or label map (it holds negative values; is it an image?)")
    if reference is not None and not (volume.geometry.same_grid(reference.geometry) and volume.shape == reference.shape):
        had = bool(np.any(array != 0) if label is None else np.any(array == label))
        volume = resample_labels_to(volume.with_array(array.astype(np.uint16 if array.max() > 255 else np.uint8)),
                                    reference.geometry, reference.shape)
        has = bool(np.any(volume.array != 0) if label is None else np.any(volume.array == label))
        if had and not has:
            raise ContouringError(f"{source.name} lies outside the grid of the first input; nothing of it remains there")
        print(f"openmedlab contour: note: {source.name} was resampled onto the first input's grid", file=sys.stderr)
    return volume


def _select(volume, label: int | None, name: str):
    import numpy as np

    from ..annotation.contouring import ContouringError

    if label is None:
        ids = np.unique(volume.array[:: max(1, volume.shape[0] // 32)])
        if np.count_nonzero(ids) > 1:
            print(f"openmedlab contour: note: {name} holds several ids; using every non-zero voxel "
                  "(choose one with --label)", file=sys.stderr)
        return volume.array != 0
    mask = volume.array == label
    if not mask.any():
        raise ContouringError(f"{name} holds no voxel with label {label}")
    return mask


def _read_masks(paths, label: int | None):
    from ..annotation.masks import SparseMask

    reference = load_structure_volume(paths[0], label)
    masks = [SparseMask.from_dense(_select(reference, label, Path(paths[0]).name))]
    for path in paths[1:]:
        volume = load_structure_volume(path, label, reference)
        masks.append(SparseMask.from_dense(_select(volume, label, Path(path).name)))
    return masks, reference


def labels_json_names(path: str) -> dict:
    """id -> name from a ``labels.json`` beside ``path`` ({"labels": {"id": "name"}}), if any."""
    candidate = Path(path).with_name("labels.json")
    try:
        data = json.loads(candidate.read_text(encoding="utf-8"))
        return {int(k): str(v) for k, v in data.get("labels", {}).items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}
