"""Label classes (id, name, colour): presets shipped as JSON, import and export.

The JSON we write::

    {"name": "SegRap2023", "source": "...", "classes": [{"id": 1, "name": "Brain", "color": "#e6194b"}, ...]}

On import we also accept a TotalSegmentator-style ``{"labels": {"1": "spleen", ...}}``, a plain
``{"1": "spleen"}`` mapping, and a bare list of ``{"id", "name"[, "color"]}`` records; missing
colours are generated.
"""

from __future__ import annotations

import colorsys
import json
import os
from dataclasses import dataclass
from pathlib import Path

PRESET_DIR = Path(__file__).parent / "presets"
FORMAT = "napari-openmedlab label classes"


class LabelClassError(ValueError):
    """A class table is malformed (duplicate or non-positive ids, unreadable file, ...)."""


@dataclass(frozen=True)
class LabelClass:
    """One structure: the id written into the label map, its name, and a ``#rrggbb`` colour."""

    id: int
    name: str
    color: str

    @property
    def rgba(self) -> tuple[float, float, float, float]:
        h = self.color.lstrip("#")
        return (int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255, 1.0)

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "color": self.color}


def default_color(label_id: int) -> str:
    """A distinct, deterministic colour for an id (golden-angle hues, three brightness bands)."""
    hue = (label_id * 0.618033988749895) % 1.0
    sat, val = ((0.75, 0.95), (0.55, 0.85), (0.9, 0.7))[label_id % 3]
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def _color(value, label_id: int) -> str:
    if value is None:
        return default_color(label_id)
    if isinstance(value, str):
        h = value.strip().lstrip("#")
        if len(h) in (6, 8) and all(c in "0123456789abcdefABCDEF" for c in h):
            return "#" + h[:6].lower()
        raise LabelClassError(f"colour {value!r} of id {label_id}: write it as #rrggbb")
    try:
        rgb = [float(v) for v in list(value)[:3]]
    except (TypeError, ValueError):
        raise LabelClassError(f"colour {value!r} of id {label_id}: write it as #rrggbb") from None
    if max(rgb) <= 1.0:
        rgb = [v * 255 for v in rgb]
    return "#" + "".join(f"{int(round(min(255, max(0, v)))):02x}" for v in rgb)


def validate(classes: list[LabelClass]) -> list[LabelClass]:
    """Sorted by id; raises :class:`LabelClassError` for an id <= 0, a duplicate or an empty name."""
    seen: set[int] = set()
    for c in classes:
        if c.id <= 0:
            raise LabelClassError(f"class {c.name!r}: ids start at 1 (0 is the background)")
        if c.id in seen:
            raise LabelClassError(f"id {c.id} is used twice")
        if not c.name.strip():
            raise LabelClassError(f"id {c.id} has no name")
        seen.add(c.id)
    return sorted(classes, key=lambda c: c.id)


def classes_from_json(data) -> list[LabelClass]:
    """Classes from any accepted JSON shape (see the module docstring)."""
    if isinstance(data, dict) and "classes" in data:
        data = data["classes"]
    elif isinstance(data, dict) and isinstance(data.get("labels"), dict):
        data = data["labels"]
    try:
        if isinstance(data, dict):
            items = [(int(k), str(v), None) for k, v in data.items()]
        elif isinstance(data, list):
            items = [(int(d["id"]), str(d["name"]), d.get("color")) for d in data]
        else:
            raise LabelClassError("expected a list of classes or an id -> name mapping")
    except (KeyError, TypeError, ValueError) as err:
        raise LabelClassError(f"not a label class table ({err})") from None
    return validate([LabelClass(i, name, _color(color, i)) for i, name, color in items])


def read_classes(path: str | os.PathLike) -> list[LabelClass]:
    """Import a class table from a JSON file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LabelClassError(f"{path}: could not read a JSON class table ({err})") from err
    return classes_from_json(data)


def write_classes(
    classes: list[LabelClass], path: str | os.PathLike, name: str = "", source: str = ""
) -> Path:
    """Export a class table as JSON (the format :func:`read_classes` and the presets use)."""
    path = Path(path)
    doc = {
        "format": FORMAT,
        "name": name or path.stem,
        "source": source,
        "classes": [c.to_dict() for c in validate(list(classes))],
    }
    from ..io.atomic import atomic_write_json

    return atomic_write_json(path, doc)


def list_presets() -> list[str]:
    """Names of the shipped presets (e.g. ``SegRap2023``, ``TotalSegmentator``)."""
    names = []
    for f in sorted(PRESET_DIR.glob("*.json")):
        names.append(json.loads(f.read_text(encoding="utf-8")).get("name", f.stem))
    return names


def preset_info(name: str) -> dict:
    """The whole preset document (name, source, notes, classes) for ``name``."""
    for f in sorted(PRESET_DIR.glob("*.json")):
        doc = json.loads(f.read_text(encoding="utf-8"))
        if doc.get("name", f.stem).lower() == name.lower():
            return doc
    raise LabelClassError(f"no preset {name!r}; shipped: {', '.join(list_presets())}")


def load_preset(name: str) -> list[LabelClass]:
    """The classes of a shipped preset, by name (case-insensitive)."""
    return classes_from_json(preset_info(name))


def generic_classes(n: int = 10) -> list[LabelClass]:
    """``label_1`` ... ``label_n``: the table a new session starts with."""
    return [LabelClass(i, f"label_{i}", default_color(i)) for i in range(1, n + 1)]
