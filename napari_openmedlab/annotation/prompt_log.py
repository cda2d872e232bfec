"""The prompt log: what was clicked, with which model, written as which class, and when.

One record per commit. Prompts are given both as voxel indices ``(z, y, x)`` of the image grid and
as physical LPS millimetres ``(x, y, z)``, so the log can be replayed on the same image or mapped
onto a resampled one.
"""

from __future__ import annotations

import datetime as _dt

import numpy as np

from ..engines.base import Prompts
from ..io.geometry import Geometry

FORMAT = "napari-openmedlab prompt log"
VERSION = 1


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def _round(values, ndigits: int = 3) -> list[float]:
    return [round(float(v), ndigits) for v in np.ravel(values)]


def prompts_to_json(prompts: Prompts, geometry: Geometry) -> dict:
    """Points and boxes in voxels and in physical mm."""
    points = []
    for zyx, label in zip(prompts.points, prompts.labels):
        points.append(
            {
                "voxel_zyx": _round(zyx),
                "physical_lps_xyz_mm": _round(geometry.index_to_physical(zyx)),
                "positive": bool(label),
            }
        )
    boxes = []
    for b in prompts.boxes:
        rows_cols = [a for a in range(3) if a != b.axis]
        corners = []
        for r, c in ((b.r0, b.c0), (b.r1, b.c1)):
            zyx = np.zeros(3)
            zyx[b.axis], zyx[rows_cols[0]], zyx[rows_cols[1]] = b.index, r, c
            corners.append(_round(geometry.index_to_physical(zyx)))
        boxes.append(
            {
                "axis": int(b.axis),
                "index": int(b.index),
                "r0": float(b.r0),
                "c0": float(b.c0),
                "r1": float(b.r1),
                "c1": float(b.c1),
                "corners_physical_lps_xyz_mm": corners,
            }
        )
    return {"points": points, "boxes": boxes, "mask_prompt": prompts.mask is not None}


def commit_record(
    prompts: Prompts,
    geometry: Geometry,
    *,
    model: dict,
    class_id: int,
    class_name: str,
    overlap: str,
    refined_id: int | None,
    voxels_changed: int,
    bbox: tuple | None,
) -> dict:
    """The log record of one commit.

    ``model`` holds ``name``, ``checkpoint`` (path or None), ``checkpoint_sha256``, ``device`` (as
    chosen) and optionally ``device_used`` (as resolved, e.g. ``cuda:0`` for ``auto``).
    """
    return {
        "time": now_iso(),
        "action": "refine" if refined_id is not None else "commit",
        "model": model.get("name"),
        "checkpoint": model.get("checkpoint"),
        "checkpoint_sha256": model.get("checkpoint_sha256"),
        "device": model.get("device_used") or model.get("device"),
        "class_id": int(class_id),
        "class_name": class_name,
        "overlap": overlap,
        "refined_id": refined_id,
        "voxels_changed": int(voxels_changed),
        "bbox_zyx": list(bbox) if bbox is not None else None,
        **prompts_to_json(prompts, geometry),
    }


def log_document(
    records: list[dict],
    *,
    source: str | None,
    shape,
    geometry: Geometry,
    classes: list[dict] | None = None,
) -> dict:
    """The whole log as written next to saved labels and into the recovery folder."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "saved": now_iso(),
        "image": {"source": source, "shape": [int(s) for s in shape], "geometry": geometry.to_dict()},
        "classes": classes or [],
        "commits": list(records),
    }
