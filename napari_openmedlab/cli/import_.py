"""``openmedlab import FILE.dcm --series DIR --out OUTDIR``: an RTSTRUCT or SEG as NIfTI masks.

Writes one NIfTI mask per ROI/segment (on the series' grid) and ``classes.json`` (id, name, colour,
file, codes). Problems (an ROI left out, an empty ROI) are printed one per line; the exit status is
non-zero only when nothing could be imported.
"""

from __future__ import annotations

import re
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "import",
        help="read a DICOM RTSTRUCT or SEG onto its series: one NIfTI mask per structure",
        description="Rasterise every ROI of an RTSTRUCT (even-odd) or every segment of a SEG onto the grid of "
        "--series and write one NIfTI mask per structure plus a class table.",
    )
    p.add_argument("file", help="the RTSTRUCT or SEG file")
    p.add_argument("--series", required=True, metavar="DIR", help="folder of the referenced image series")
    p.add_argument("--out", required=True, metavar="OUTDIR", help="folder for the masks and classes.json")
    p.set_defaults(run=run)


def safe_file_name(name: str) -> str:
    """A file name for a structure name (spaces and separators become underscores)."""
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "structure"
    return stem[:100]


def run(args) -> int:
    from pathlib import Path

    import numpy as np

    from ..dicom_rt import DicomExchangeError, import_structures, read_series
    from ..io import Volume, write_volume
    from ..io.atomic import atomic_write_json

    if not Path(args.series).is_dir():
        raise DicomExchangeError(f"{args.series}: not a folder; give the folder of the referenced DICOM series")
    series = read_series(args.series)
    result = import_structures(args.file, series)
    for line in result.problems:
        print(f"openmedlab: warning: {line}", file=sys.stderr)
    structures = result.structures
    if len(structures) == 0:
        raise DicomExchangeError(f"{Path(args.file).name}: no structure could be imported")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DicomExchangeError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    records = []
    for label_id, s in enumerate(structures, start=1):
        stem = safe_file_name(s.name)
        while stem.lower() in used:
            stem = f"{stem}_{label_id}"
        used.add(stem.lower())
        file_name = f"{stem}.nii.gz"
        mask = structures.mask(s.name).astype(np.uint8)
        write_volume(Volume(mask, series.geometry), out / file_name, labels=True)
        records.append({"id": label_id, "name": s.name, "color": s.color, "file": file_name, **s.codes})
    atomic_write_json(
        out / "classes.json",
        {"format": "napari-openmedlab label classes", "name": Path(args.file).stem, "source": str(args.file), "classes": records},
    )
    print(f"wrote {len(records)} structures to {out} (one NIfTI mask each, classes.json)")
    return 0
