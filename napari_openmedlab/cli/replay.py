"""``openmedlab replay IMAGE --requests FILE.json --out PLAN.omlss``: replay session requests.

The same requests the widget sends (see ``napari_openmedlab.annotation.requests``), from a JSON
file: a list of objects with a ``"type"`` (or one object per line). They run on a headless
:class:`AnnotationSession` over the image and a structure set (empty, from ``--structures
PLAN.omlss``, or from a label map ``--labels SEG`` with its ``labels.json``); the result is saved
as a structure set, and with ``--label-map`` also flattened (the structures that lose overlapping
voxels are named).

    [{"type": "point", "zyx": [15, 60, 40]}, {"type": "commit", "structure": "liver"},
     {"type": "lock", "name": "liver"}]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ._options import add_speed_options


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("replay", help="replay annotation requests (JSON) into a structure set")
    p.add_argument("image", help="NIfTI/NRRD/MHA file or DICOM folder")
    p.add_argument("--requests", required=True, help="JSON file: a list of requests, or one per line")
    p.add_argument("--model", help="registry name for point/box requests (see `openmedlab info`)")
    p.add_argument("--checkpoint", help="local checkpoint file (wins over the weights cache)")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    add_speed_options(p)
    start = p.add_mutually_exclusive_group()
    start.add_argument("--structures", help="start from this structure set (.omlss)")
    start.add_argument("--labels", help="start from a label map on the image grid (one structure per label)")
    p.add_argument("--keep-locked-voxels", action="store_true",
                   help="let commits share the voxels of locked structures (default: excluded)")
    p.add_argument("--out", required=True, help="the structure set to write (.omlss)")
    p.add_argument("--label-map", help="also write the flattened label map (.nii.gz, .nrrd, ...)")
    p.set_defaults(run=run)


def read_requests(path: str) -> list[dict]:
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not JSON (a list of requests, or one per line): {err}") from None
    return data if isinstance(data, list) else [data]


def run(args) -> int:
    from ..annotation import AnnotationSession, StructureSet, request_from_dict
    from ..annotation.structure_set import StructureSetError
    from ..io import read_labels_onto, read_volume, write_volume
    from ..io.atomic import check_writable_folder
    from ..io.writers import check_output_path
    from ..layers import label_names_beside

    if not args.out.lower().endswith(".omlss"):
        return _fail("--out is a structure set file ending in .omlss")
    check_writable_folder(args.out)
    if args.label_map:
        check_output_path(args.label_map)
    try:
        requests = [request_from_dict(r) for r in read_requests(args.requests)]
        volume = read_volume(args.image)
        if args.structures:
            structures = StructureSet.load(args.structures)
        elif args.labels:
            labels = read_labels_onto(args.labels, volume)
            structures = StructureSet.from_label_map(labels.array, volume.geometry, label_names_beside(args.labels))
        else:
            structures = None
        engine = None
        if args.model:
            from ..engines import create_engine

            engine = create_engine(args.model, args.checkpoint, args.device,
                                   encoder=args.encoder, threads=args.threads)
        session = AnnotationSession(volume, structures, engine, exclude_locked=not args.keep_locked_voxels)
        for i, request in enumerate(requests, 1):
            if engine is None and request.type in ("point", "box"):
                return _fail(f"request {i} ({request.type}) needs a model: add --model")
            outcome = session.handle(request)
            print(f"{i}: {outcome.message}")
    except (ValueError, StructureSetError) as err:  # RequestError, SessionError, locked, bad files
        return _fail(str(err))
    session.structures.save(args.out)
    print(f"{args.out}: {len(session.structures)} structures")
    if args.label_map:
        flat = session.structures.to_label_map()
        write_volume(volume.with_array(flat.labels), args.label_map, labels=True)
        lost = ", ".join(f"{k} ({v} voxels)" for k, v in flat.lost_counts.items())
        print(f"{args.label_map}: one id per structure" + (f"; overlaps lost by {lost}" if lost else ""))
    return 0


def _fail(message: str) -> int:
    print(f"openmedlab: error: {message}", file=sys.stderr)
    return 1
