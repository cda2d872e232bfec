"""Self-describing requests: every user action on an :class:`AnnotationSession`, as data.

The widget, the CLI, the tests and a future HTTP server all drive the session with these objects.
Each is a frozen dataclass checked on construction (a bad one raises :class:`RequestError` before
anything changes) and round-trips through JSON: ``to_dict()`` adds a ``"type"`` field and
:func:`request_from_dict` builds the right class back from it.

Coordinates are voxel indices ``(z, y, x)`` of the image grid. A painted or erased region travels
as a bounding box ``(z0, y0, x0, z1, y1, x1)`` (half-open) plus the bit-packed boolean patch inside
it (base64 in JSON), the project's one mask vocabulary (:mod:`.masks`).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np

from .masks import bbox_is_empty

COMMIT_MODES = ("replace", "add", "subtract")
"""replace: the structure becomes the object; add: union; subtract: the object's voxels are removed."""

EDIT_MODES = ("paint", "erase")


class RequestError(ValueError):
    """A request that cannot be valid for any session (bad type, missing field, bad value)."""


def _name(value, what: str = "structure") -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestError(f"{what}: a non-empty name is needed, got {value!r}")
    return value.strip()


def _axis(value, what: str) -> int:
    if isinstance(value, bool) or value not in (0, 1, 2):
        raise RequestError(f"{what} is 0 (axial z), 1 (coronal y) or 2 (sagittal x); got {value!r}")
    return int(value)


def _finite(values, n: int, what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise RequestError(f"{what}: {n} numbers expected, got {values!r}") from None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise RequestError(f"{what}: {n} finite numbers expected, got {values!r}")
    return out


def _bbox(values) -> tuple[int, int, int, int, int, int]:
    try:
        box = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise RequestError(f"bbox: six integers (z0, y0, x0, z1, y1, x1) expected, got {values!r}") from None
    if len(box) != 6 or min(box) < 0 or bbox_is_empty(box):
        raise RequestError(f"bbox: six non-negative integers with z0 < z1, y0 < y1, x0 < x1; got {values!r}")
    return box  # type: ignore[return-value]


@dataclass(frozen=True)
class Request:
    """Base class; ``type`` names the request in JSON."""

    type: ClassVar[str] = "request"

    def to_dict(self) -> dict:
        out = {"type": self.type}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Request:
        return request_from_dict(data) if cls is Request else cls._build(data)

    @classmethod
    def _build(cls, data: dict) -> Request:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names - {"type"}
        if unknown:
            raise RequestError(f"{cls.type}: unknown field(s) {', '.join(sorted(unknown))}")
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as err:
            raise RequestError(f"{cls.type}: {err}") from None


# --- the current object ---------------------------------------------------------------------------
@dataclass(frozen=True)
class AddPoint(Request):
    """A click on the current object at voxel ``zyx``; ``slice_axis`` is the axis normal to the slice
    the user clicked on (0 axial, 1 coronal, 2 sagittal; None in a 3D view), which 2D models use."""

    type: ClassVar[str] = "point"
    zyx: tuple[float, float, float]
    positive: bool = True
    slice_axis: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "zyx", _finite(self.zyx, 3, "point zyx"))
        object.__setattr__(self, "positive", bool(self.positive))
        if self.slice_axis is not None:
            object.__setattr__(self, "slice_axis", _axis(self.slice_axis, "slice_axis"))


@dataclass(frozen=True)
class AddBox(Request):
    """A box on slice ``index`` of ``axis``; rows/columns are the remaining axes in array order."""

    type: ClassVar[str] = "box"
    axis: int
    index: int
    r0: float
    c0: float
    r1: float
    c1: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "axis", _axis(self.axis, "box axis"))
        if isinstance(self.index, bool) or not isinstance(self.index, (int, np.integer)) or self.index < 0:
            raise RequestError(f"box index: a non-negative slice number, got {self.index!r}")
        object.__setattr__(self, "index", int(self.index))
        r0, c0, r1, c1 = _finite((self.r0, self.c0, self.r1, self.c1), 4, "box corners")
        if r1 < r0 or c1 < c0:
            raise RequestError(f"box corners: r0 <= r1 and c0 <= c1 needed, got {(r0, c0, r1, c1)}")
        for k, v in zip(("r0", "c0", "r1", "c1"), (r0, c0, r1, c1)):
            object.__setattr__(self, k, v)


@dataclass(frozen=True)
class ClearObject(Request):
    """Forget the current object's prompts and preview (undoable)."""

    type: ClassVar[str] = "clear"


@dataclass(frozen=True)
class Refine(Request):
    """Make ``structure`` the current object: its mask is shown and sent to the engine as a mask prompt."""

    type: ClassVar[str] = "refine"
    structure: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "structure", _name(self.structure))


@dataclass(frozen=True)
class Commit(Request):
    """Write the current object into ``structure`` (created when missing) with ``mode``."""

    type: ClassVar[str] = "commit"
    structure: str
    mode: str = "add"

    def __post_init__(self) -> None:
        object.__setattr__(self, "structure", _name(self.structure))
        if self.mode not in COMMIT_MODES:
            raise RequestError(f"commit mode is one of {', '.join(COMMIT_MODES)}; got {self.mode!r}")


# --- direct edits ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Edit(Request):
    """Paint (set) or erase (clear) the voxels of a patch in ``structure``.

    ``bbox`` places the patch on the grid; ``bits`` is ``np.packbits`` of the boolean patch (C
    order), base64 text in JSON. Build one with :meth:`from_mask`.
    """

    type: ClassVar[str] = "edit"
    structure: str
    mode: str
    bbox: tuple[int, int, int, int, int, int]
    bits: bytes = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "structure", _name(self.structure))
        if self.mode not in EDIT_MODES:
            raise RequestError(f"edit mode is paint or erase; got {self.mode!r}")
        object.__setattr__(self, "bbox", _bbox(self.bbox))
        bits = self.bits
        if isinstance(bits, str):
            try:
                bits = base64.b64decode(bits.encode("ascii"), validate=True)
            except (ValueError, UnicodeEncodeError):
                raise RequestError("edit bits: not base64 text") from None
        if not isinstance(bits, (bytes, bytearray)):
            raise RequestError("edit bits: bytes (or base64 text) expected")
        n = int(np.prod(self.patch_shape))
        if len(bits) != (n + 7) // 8:
            raise RequestError(f"edit bits: {len(bits)} bytes do not fit a box of {n} voxels")
        object.__setattr__(self, "bits", bytes(bits))

    @classmethod
    def from_mask(cls, structure: str, mode: str, patch, origin=(0, 0, 0)) -> Edit:
        """The edit of boolean ``patch`` whose corner is at voxel ``origin`` (a full mask: origin 0)."""
        patch = np.asarray(patch, dtype=bool)
        if patch.ndim != 3:
            raise RequestError(f"edit patch: 3D (z, y, x) expected, got shape {patch.shape}")
        o = tuple(int(v) for v in origin)
        box = (*o, *(o[i] + patch.shape[i] for i in range(3)))
        return cls(structure, mode, box, np.packbits(patch.ravel()).tobytes())

    @property
    def patch_shape(self) -> tuple[int, int, int]:
        return tuple(self.bbox[i + 3] - self.bbox[i] for i in range(3))  # type: ignore[return-value]

    def patch(self) -> np.ndarray:
        shape = self.patch_shape
        flat = np.unpackbits(np.frombuffer(self.bits, np.uint8), count=int(np.prod(shape)))
        return flat.view(bool).reshape(shape)

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["bits"] = base64.b64encode(self.bits).decode("ascii")
        return out


# --- the structure set ----------------------------------------------------------------------------
@dataclass(frozen=True)
class AddStructure(Request):
    """A new, empty structure (appended to the order)."""

    type: ClassVar[str] = "add_structure"
    name: str
    color: str | None = None
    codes: dict = field(default_factory=dict)
    label_id: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", _name(self.name))
        if not isinstance(self.codes, dict):
            raise RequestError(f"codes: a mapping (e.g. {{'tg263': 'Parotid_L'}}), got {self.codes!r}")
        if self.label_id is not None and (isinstance(self.label_id, bool) or int(self.label_id) <= 0):
            raise RequestError(f"label_id: a positive integer, got {self.label_id!r}")


@dataclass(frozen=True)
class RemoveStructure(Request):
    type: ClassVar[str] = "remove_structure"
    name: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", _name(self.name))


@dataclass(frozen=True)
class Rename(Request):
    type: ClassVar[str] = "rename"
    old: str
    new: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "old", _name(self.old, "old name"))
        object.__setattr__(self, "new", _name(self.new, "new name"))


@dataclass(frozen=True)
class Lock(Request):
    """Lock (``locked=True``) or unlock a structure; a locked structure is never changed."""

    type: ClassVar[str] = "lock"
    name: str
    locked: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", _name(self.name))
        object.__setattr__(self, "locked", bool(self.locked))


@dataclass(frozen=True)
class SetVisible(Request):
    """Show or hide a structure (a view setting: not an undo step)."""

    type: ClassVar[str] = "visible"
    name: str
    visible: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", _name(self.name))
        object.__setattr__(self, "visible", bool(self.visible))


# --- contouring -----------------------------------------------------------------------------------
def _json_value(value, what: str):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(v, what) for v in value]
    raise RequestError(f"{what}: numbers, text or lists expected, got {value!r}")


@dataclass(frozen=True)
class Contour(Request):
    """A contouring operation (:mod:`.contouring`) on named ``inputs`` into ``output`` (new, or an
    unlocked existing structure): one undo step.

    ``params`` are the operation's JSON parameters (mm); a margin is ``{"mm": 5}`` (negative
    shrinks) or ``{"sides": [R, L, A, P, S, I]}`` (or the text ``"R5,L5,A10,P3,S7,I2"``).
    """

    type: ClassVar[str] = "contour"
    operation: str
    inputs: tuple[str, ...]
    output: str
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        from .contouring.operations import OPERATIONS  # scipy-backed: loaded only when used

        if self.operation not in OPERATIONS:
            raise RequestError(f"contour operation is one of {', '.join(OPERATIONS)}; got {self.operation!r}")
        if isinstance(self.inputs, str) or not isinstance(self.inputs, (list, tuple)) or not self.inputs:
            raise RequestError(f"contour inputs: a list of structure names, got {self.inputs!r}")
        object.__setattr__(self, "inputs", tuple(_name(n, "contour input") for n in self.inputs))
        object.__setattr__(self, "output", _name(self.output, "contour output"))
        if not isinstance(self.params, dict) or not all(isinstance(k, str) for k in self.params):
            raise RequestError(f"contour params: a mapping of names to values, got {self.params!r}")
        object.__setattr__(self, "params", {k: _json_value(v, f"contour param {k}") for k, v in self.params.items()})

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["params"] = dict(self.params)
        return out

@dataclass(frozen=True)
class ImportStructures(Request):
    """Several structures with their masks as ONE undo step (an automatic draft, another set).

    Each item is a dict: ``name``, ``bbox`` + ``bits`` (as in :class:`Edit`), optional ``color``,
    ``codes`` and ``label_id``. A new name becomes a new structure; an unlocked structure of the
    same name gets the item's mask (replace); a locked one is kept as it is and reported.
    Build one with :meth:`from_structure_set`.
    """

    type: ClassVar[str] = "import_structures"
    items: tuple
    source: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.items, (dict, str, bytes)) or not hasattr(self.items, "__iter__"):
            raise RequestError("import_structures items: a list of structures expected")
        checked, names = [], set()
        for item in self.items:
            if not isinstance(item, dict):
                raise RequestError(f"import_structures item: an object with name, bbox, bits; got {item!r:.60}")
            unknown = set(item) - {"name", "bbox", "bits", "color", "codes", "label_id"}
            if unknown:
                raise RequestError(f"import_structures item: unknown field(s) {', '.join(sorted(unknown))}")
            edit = Edit(item.get("name"), "paint", item.get("bbox", ()), item.get("bits", b""))
            if edit.structure in names:
                raise RequestError(f"import_structures: {edit.structure!r} appears twice")
            names.add(edit.structure)
            meta = AddStructure(edit.structure, item.get("color"), item.get("codes") or {}, item.get("label_id"))
            checked.append({"name": edit.structure, "bbox": edit.bbox, "bits": edit.bits, "color": meta.color,
                            "codes": dict(meta.codes), "label_id": meta.label_id})
        if not checked:
            raise RequestError("import_structures: no structures to import")
        object.__setattr__(self, "items", tuple(checked))
        object.__setattr__(self, "source", str(self.source or ""))

    @classmethod
    def from_structure_set(cls, structures, source: str = "") -> ImportStructures:
        """The import of every non-empty structure of ``structures`` (same grid as the session)."""
        items = []
        for s in structures:
            if s.mask.empty:
                continue
            edit = Edit.from_mask(s.name, "paint", s.mask.patch(), s.mask.bbox[:3])
            items.append({"name": s.name, "bbox": edit.bbox, "bits": edit.bits, "color": s.color,
                          "codes": dict(s.codes), "label_id": s.label_id})
        return cls(tuple(items), source)

    def edits(self) -> list[Edit]:
        return [Edit(i["name"], "paint", i["bbox"], i["bits"]) for i in self.items]

    def to_dict(self) -> dict:
        items = [dict(i, bbox=list(i["bbox"]), bits=base64.b64encode(i["bits"]).decode("ascii")) for i in self.items]
        return {"type": self.type, "items": items, "source": self.source}


# --- history --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Undo(Request):
    type: ClassVar[str] = "undo"


@dataclass(frozen=True)
class Redo(Request):
    type: ClassVar[str] = "redo"


REQUEST_TYPES: dict[str, type[Request]] = {
    cls.type: cls
    for cls in (
        AddPoint,
        AddBox,
        ClearObject,
        Refine,
        Commit,
        Edit,
        AddStructure,
        RemoveStructure,
        Rename,
        Lock,
        SetVisible,
        Contour,
        ImportStructures,
        Undo,
        Redo,
    )
}


def request_from_dict(data: dict) -> Request:
    """The request a JSON object describes (its ``"type"`` picks the class)."""
    if not isinstance(data, dict):
        raise RequestError(f"a request is a JSON object with a 'type', got {type(data).__name__}")
    kind = data.get("type")
    cls = REQUEST_TYPES.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise RequestError(f"unknown request type {kind!r} (known: {', '.join(REQUEST_TYPES)})")
    return cls._build(data)
