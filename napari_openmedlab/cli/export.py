"""``openmedlab export``: structures as a DICOM RTSTRUCT or SEG referencing a CT/MR series.

    openmedlab export --series DIR --rtstruct OUT.dcm [LABELMAP] [--classes CLASSES.json] [--mask NAME=FILE ...]
    openmedlab export --series DIR --seg OUT.dcm [LABELMAP] [--labelmap-seg] ...
"""

from __future__ import annotations

import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="write structures as a DICOM RTSTRUCT or SEG referencing a DICOM series",
        description="Write a label map and/or binary masks as a DICOM RT Structure Set or Segmentation "
        "that references the images of --series (masks on another grid are resampled in physical space).",
    )
    p.add_argument("labelmap", nargs="?", help="label map (NIfTI/NRRD/MHA/DICOM) on the series' geometry (any grid)")
    p.add_argument("--series", required=True, metavar="DIR", help="folder of the image series to reference")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--rtstruct", metavar="OUT.dcm", help="write an RT Structure Set here")
    out.add_argument("--seg", metavar="OUT.dcm", help="write a DICOM SEG here")
    p.add_argument("--classes", metavar="CLASSES.json", help="class table (id -> name, colour) for the label map")
    p.add_argument(
        "--mask", action="append", default=[], metavar="NAME=FILE", help="one binary structure (repeatable; may overlap)"
    )
    p.add_argument("--labelmap-seg", action="store_true", help="SEG as one LABELMAP (overlaps: the smaller structure wins)")
    p.add_argument("--omit-empty-frames", action="store_true", help="SEG: leave out frames without any segment voxel")
    p.add_argument(
        "--write-corrected-series",
        metavar="DIR",
        help="write a copy of the series with new UIDs to DIR and reference that copy (for series with empty or "
        "duplicated UIDs)",
    )
    p.set_defaults(run=run)


def _masks(values: list[str]) -> list[tuple[str, str]]:
    from ..dicom_rt import DicomExchangeError

    out = []
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise DicomExchangeError(f"--mask {value!r}: write it as NAME=FILE")
        out.append((name.strip(), path.strip()))
    return out


def run(args) -> int:
    from ..annotation.label_classes import LabelClassError, read_classes
    from ..annotation.structure_set import StructureSetError
    from ..dicom_rt import DicomExchangeError, export_structures, open_series, structures_on_series
    from ..io.atomic import check_writable_folder

    target = args.rtstruct or args.seg
    try:
        masks = _masks(args.mask)
        check_writable_folder(target)
        classes = read_classes(args.classes) if args.classes else None
        series, note = open_series(args.series, args.write_corrected_series)
        if note:
            print(note)
        structures = structures_on_series(series, args.labelmap, classes, masks)
        lines = export_structures(
            structures,
            series,
            rtstruct=args.rtstruct,
            seg=args.seg,
            labelmap=args.labelmap_seg,
            omit_empty_frames=args.omit_empty_frames,
        )
    except (LabelClassError, StructureSetError) as err:
        raise DicomExchangeError(str(err)) from None
    for line in lines:
        print(line, file=sys.stdout)
    return 0
