"""``openmedlab contour stats``: one row per structure, then the pair metrics of the inputs."""

from __future__ import annotations

import math
from pathlib import Path


def _fmt(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, tuple):
        return "(" + ", ".join(f"{v:.{digits}f}" for v in value) + ")"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def run_stats(args) -> int:
    import numpy as np

    from ..annotation.contouring import ContouringError, structure_stats
    from ..annotation.masks import SparseMask
    from ..evaluation.structure_comparison import compare
    from ..io import read_volume
    from ..io.atomic import atomic_write_json
    from .contour import labels_json_names, load_structure_volume

    if args.tolerance < 0:
        raise ContouringError(f"--tolerance must be >= 0 mm, got {args.tolerance}")
    reference = load_structure_volume(args.inputs[0], args.label)
    image = None
    if args.image:
        if not Path(args.image).exists():
            raise FileNotFoundError(f"No such file or folder: {args.image}")
        from ..io.resample import resample_labels_to

        source = read_volume(args.image)
        if not (source.geometry.same_grid(reference.geometry) and source.shape == reference.shape):
            # nearest neighbour keeps the HU values themselves (no blending across organ borders)
            source = resample_labels_to(source, reference.geometry, reference.shape)
        image = source.array
    rows, whole = [], []
    for i, path in enumerate(args.inputs):
        volume = reference if i == 0 else load_structure_volume(path, args.label, reference)
        names = labels_json_names(path)
        ids = [args.label] if args.label is not None else [int(v) for v in np.unique(volume.array) if v != 0]
        stem = Path(path).name
        for label_id in ids:
            mask = SparseMask.from_dense(volume.array == label_id)
            name = names.get(label_id, f"{stem}:{label_id}" if len(ids) > 1 else stem)
            rows.append(structure_stats(mask, reference.geometry, image, name))
        whole.append((stem, SparseMask.from_dense(volume.array == args.label if args.label is not None
                                                  else volume.array != 0)))
    header = ["structure", "voxels", "cm3", "mean", "min", "max", "bbox min LPS mm", "bbox max LPS mm",
              "centroid LPS mm"]
    table = [[r.name, str(r.voxels), f"{r.volume_cm3:.2f}", _fmt(r.mean), _fmt(r.minimum), _fmt(r.maximum),
              _fmt(r.bbox_min_mm), _fmt(r.bbox_max_mm), _fmt(r.centroid_mm)] for r in rows]
    _print_table(header, table)
    pairs = []
    if len(whole) > 1:
        print()
        pair_rows = []
        for stem, mask in whole[1:]:
            c = compare(whole[0][1], mask, reference.geometry, args.tolerance)
            pairs.append({"a": whole[0][0], "b": stem, **c.__dict__})
            pair_rows.append([whole[0][0], stem, _fmt(c.dice, 4), _fmt(c.hd95_mm, 2), _fmt(c.surface_dice, 4)])
        _print_table(["A", "B", "Dice", "HD95 mm", f"surface Dice @{args.tolerance:g} mm"], pair_rows)
    if args.json_out:  # strict JSON: NaN and infinity (an empty structure) become null
        report = {"structures": [r.as_dict() for r in rows], "pairs": pairs}
        atomic_write_json(args.json_out, _finite(report))
    return 0


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _print_table(header, rows) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))
