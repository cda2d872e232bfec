"""The structure set: ordered, named, possibly overlapping structures over one image grid.

A radiotherapy structure set is not a label map: a GTV sits inside a parotid, a PTV covers part of
the OARs. Each :class:`Structure` therefore owns its own boolean mask (stored sparsely as a bounding
box plus a bit-packed patch, see :mod:`.masks`), and two structures may share voxels exactly.

Flattening to a label map (for NIfTI/NRRD or nnU-Net) follows one stated rule, see
:meth:`StructureSet.to_label_map`: **where structures overlap, the smaller one (fewer voxels) keeps
the voxel**, ties going to the structure listed first. A GTV inside a parotid thus stays visible.
The voxels each structure lost are reported.

On-disk format (``*.omlss``, see :meth:`StructureSet.save`): a NumPy ``.npz`` archive (zip, no
pickles) holding ``manifest`` (UTF-8 JSON: format name and version, grid shape and geometry, and one
record per structure: name, colour, label id, codes, locked, visible, prompts, voxel count, bbox)
and, per structure ``i``, ``mask_i`` (the bit-packed patch, uint8). It is written through
:func:`io.atomic.atomic_path`, and ``load(save(x))`` is bit-exact.
"""

from __future__ import annotations

import copy
import io as _io
import json
import os
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path
from ..io.geometry import Geometry
from .label_classes import LabelClass, default_color
from .masks import EMPTY_BBOX, SparseMask, bbox_slices

FORMAT = "napari-openmedlab structure set"
FORMAT_VERSION = 1
SUFFIX = ".omlss"


class StructureSetError(ValueError):
    """Bad input for a structure set (unknown or duplicate name, mask on another grid, bad file)."""


class LockedStructureError(StructureSetError):
    """A change was asked of a locked structure."""


def _normalise_color(color, index: int) -> str:
    if color is None:
        return default_color(index + 1)
    if isinstance(color, str):
        h = color.strip().lstrip("#")
        if len(h) in (6, 8) and all(c in "0123456789abcdefABCDEF" for c in h):
            return "#" + h[:6].lower()
        raise StructureSetError(f"colour {color!r}: write it as #rrggbb")
    try:
        rgb = [float(v) for v in list(color)[:3]]
    except (TypeError, ValueError):
        raise StructureSetError(f"colour {color!r}: write it as #rrggbb") from None
    if max(rgb) <= 1.0:
        rgb = [v * 255 for v in rgb]
    return "#" + "".join(f"{int(round(min(255, max(0, v)))):02x}" for v in rgb)


@dataclass
class Structure:
    """One named structure.

    Attributes:
        name: unique within the set.
        color: ``#rrggbb``.
        mask: the voxels, sparse.
        label_id: the id it had (or gets) in a label map; None until assigned.
        codes: optional codes from the class table (``tg263``, ``snomed``, ``original_name``, ...).
        locked: a locked structure is never changed by a commit or an operation.
        visible: shown in the viewer.
        prompts: the prompts that made it (JSON-able records, newest last).
    """

    name: str
    color: str
    mask: SparseMask
    label_id: int | None = None
    codes: dict = field(default_factory=dict)
    locked: bool = False
    visible: bool = True
    prompts: list = field(default_factory=list)

    @property
    def voxel_count(self) -> int:
        return self.mask.count


@dataclass
class Flattening:
    """The result of :meth:`StructureSet.to_label_map`.

    Attributes:
        labels: the label map (uint8 or uint16), ``(z, y, x)``.
        ids: structure name -> id written.
        lost: structure name -> ``(N, 3)`` voxel indices ``(z, y, x)`` the structure had but that
            carry another structure's id in ``labels`` (only structures that lost voxels appear).
    """

    labels: np.ndarray
    ids: dict
    lost: dict

    @property
    def lost_counts(self) -> dict:
        return {name: int(len(v)) for name, v in self.lost.items()}


class StructureSet:
    """An ordered set of named structures over one image grid.

    ``geometry`` is an :class:`io.Geometry` (or a :class:`io.Volume`, whose geometry and shape are
    taken). ``shape`` is the grid's ``(z, y, x)`` size; when omitted, the first mask added fixes it.
    """

    def __init__(self, geometry, shape: Iterable[int] | None = None) -> None:
        if hasattr(geometry, "geometry") and hasattr(geometry, "shape"):  # a Volume
            shape = geometry.shape if shape is None else shape
            geometry = geometry.geometry
        if not isinstance(geometry, Geometry):
            raise StructureSetError("a StructureSet needs an io.Geometry (or a Volume) for its grid")
        self.geometry = geometry
        self.shape: tuple[int, int, int] | None = tuple(int(s) for s in shape) if shape is not None else None
        self._structures: dict[str, Structure] = {}

    # --- reading ------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self._structures)

    def __len__(self) -> int:
        return len(self._structures)

    def __contains__(self, name: str) -> bool:
        return name in self._structures

    def __iter__(self):
        return iter(self._structures.values())

    def structure(self, name: str) -> Structure:
        try:
            return self._structures[name]
        except KeyError:
            known = ", ".join(self._structures) or "none"
            raise StructureSetError(f"no structure named {name!r} (structures: {known})") from None

    def mask(self, name: str) -> np.ndarray:
        """The structure's mask as a dense boolean array ``(z, y, x)`` on the grid."""
        s = self.structure(name)
        if self.shape is None:
            raise StructureSetError("the structure set has no grid shape yet")
        return s.mask.dense()

    def sparse(self, name: str) -> SparseMask:
        return self.structure(name).mask

    def is_locked(self, name: str) -> bool:
        return self.structure(name).locked

    def color(self, name: str) -> str:
        return self.structure(name).color

    def locked_names(self) -> list[str]:
        return [s.name for s in self if s.locked]

    def nbytes(self) -> int:
        """Bytes held by the masks."""
        return sum(s.mask.nbytes for s in self)

    def volume_cm3(self, name: str) -> float:
        voxel_mm3 = float(np.prod(self.geometry.spacing))
        return self.structure(name).voxel_count * voxel_mm3 / 1000.0

    # --- changing -----------------------------------------------------------------------------
    def _checked_mask(self, mask) -> SparseMask:
        if isinstance(mask, SparseMask):
            if self.shape is None:
                self.shape = mask.shape
            if mask.shape != self.shape:
                raise StructureSetError(f"mask on a grid of shape {mask.shape}, the set's grid is {self.shape}")
            return mask
        mask = np.asarray(mask)
        if mask.ndim != 3:
            raise StructureSetError(f"a mask is 3D (z, y, x); got shape {mask.shape}")
        if mask.dtype != bool:
            if not np.issubdtype(mask.dtype, np.integer) and not np.issubdtype(mask.dtype, np.floating):
                raise StructureSetError(f"a mask is boolean; got dtype {mask.dtype}")
            values = np.unique(mask)
            if not np.isin(values, (0, 1)).all():
                raise StructureSetError("a mask holds only 0 and 1 (or True/False); use from_label_map for ids")
            mask = mask.astype(bool)
        shape = tuple(mask.shape)
        if self.shape is not None and shape != self.shape:
            raise StructureSetError(f"mask on a grid of shape {shape}, the set's grid is {self.shape}")
        return SparseMask.from_dense(mask)

    def add(
        self,
        name: str,
        mask=None,
        color=None,
        *,
        label_id: int | None = None,
        codes: Mapping | None = None,
        locked: bool = False,
        visible: bool = True,
        prompts: list | None = None,
    ) -> Structure:
        """Add a structure (empty when ``mask`` is None); names are unique."""
        name = self._check_new_name(name)
        if mask is None:
            if self.shape is None:
                raise StructureSetError(f"{name!r}: the first structure needs a mask (or give the set a shape)")
            sparse = SparseMask(self.shape)
        else:
            sparse = self._checked_mask(mask)
        if label_id is not None and (int(label_id) <= 0 or int(label_id) in self.label_ids().values()):
            raise StructureSetError(f"{name!r}: label id {label_id} is not positive or already used")
        structure = Structure(
            name=name,
            color=_normalise_color(color, len(self._structures)),
            mask=sparse,
            label_id=int(label_id) if label_id is not None else None,
            codes=dict(codes or {}),
            locked=bool(locked),
            visible=bool(visible),
            prompts=list(prompts or []),
        )
        self._structures[name] = structure
        return structure

    def _check_new_name(self, name) -> str:
        if not isinstance(name, str) or not name.strip():
            raise StructureSetError(f"a structure name is a non-empty string, got {name!r}")
        name = name.strip()
        if name in self._structures:
            raise StructureSetError(f"a structure named {name!r} exists already")
        return name

    def set_mask(self, name: str, mask, *, force: bool = False) -> None:
        """Replace a structure's mask; refused for a locked structure unless ``force``."""
        s = self.structure(name)
        if s.locked and not force:
            raise LockedStructureError(f"{name!r} is locked; unlock it before changing it")
        s.mask = self._checked_mask(mask)

    def rename(self, old: str, new: str) -> None:
        s = self.structure(old)
        if new == old:
            return
        new = self._check_new_name(new)
        items = [(new if k == old else k, v) for k, v in self._structures.items()]
        s.name = new
        self._structures = dict(items)

    def remove(self, name: str, *, force: bool = False) -> Structure:
        """Remove a structure; refused for a locked one unless ``force`` (undo uses it)."""
        s = self.structure(name)
        if s.locked and not force:
            raise LockedStructureError(f"{name!r} is locked; unlock it before removing it")
        return self._structures.pop(name)

    def insert(self, structure: Structure, index: int | None = None) -> Structure:
        """Put a whole :class:`Structure` (name unique, mask on this grid) at position ``index``."""
        self._check_new_name(structure.name)
        self._checked_mask(structure.mask)
        self._structures[structure.name] = structure
        if index is not None:
            self.move(structure.name, index)
        return structure

    def index(self, name: str) -> int:
        """The structure's position in the order."""
        self.structure(name)
        return list(self._structures).index(name)

    def lock(self, name: str) -> None:
        self.structure(name).locked = True

    def unlock(self, name: str) -> None:
        self.structure(name).locked = False

    def set_visible(self, name: str, visible: bool) -> None:
        self.structure(name).visible = bool(visible)

    def set_color(self, name: str, color) -> None:
        self.structure(name).color = _normalise_color(color, 0)

    def move(self, name: str, index: int) -> None:
        """Move a structure to position ``index`` of the order."""
        self.structure(name)
        order = [k for k in self._structures if k != name]
        order.insert(max(0, min(index, len(order))), name)
        self._structures = {k: self._structures[k] for k in order}

    def copy(self) -> StructureSet:
        return copy.deepcopy(self)

    # --- label maps ---------------------------------------------------------------------------
    def label_ids(self) -> dict:
        """name -> label id: the structure's own id where it has one, else the next free ids in order."""
        used = {s.label_id for s in self._structures.values() if s.label_id is not None}
        out, next_id = {}, 1
        for s in self._structures.values():
            if s.label_id is not None:
                out[s.name] = s.label_id
                continue
            while next_id in used:
                next_id += 1
            out[s.name] = next_id
            used.add(next_id)
        return out

    def to_label_map(self) -> Flattening:
        """Flatten to one label map. Overlaps: the smaller structure keeps the voxel (ties: first listed).

        Returns a :class:`Flattening` with the map, the ids and the voxels each structure lost.
        """
        if self.shape is None:
            raise StructureSetError("the structure set has no grid shape yet")
        ids = self.label_ids()
        top = max(ids.values(), default=0)
        dtype = np.uint8 if top <= 255 else np.uint16
        labels = np.zeros(self.shape, dtype=dtype)
        order = list(self._structures.values())
        # paint the largest first so the smaller ones land on top; a stable sort keeps list order
        # for equal sizes, and painting in reverse of that makes the first listed win a tie.
        ranked = sorted(range(len(order)), key=lambda i: (-order[i].voxel_count, -i))
        for i in ranked:
            s = order[i]
            if s.mask.empty:
                continue
            sl = bbox_slices(s.mask.bbox)
            region = labels[sl]
            region[s.mask.patch()] = ids[s.name]
        lost = {}
        for s in order:
            if s.mask.empty:
                continue
            sl = bbox_slices(s.mask.bbox)
            missing = s.mask.patch() & (labels[sl] != ids[s.name])
            if missing.any():
                idx = np.argwhere(missing) + np.array(s.mask.bbox[:3])
                lost[s.name] = idx
        return Flattening(labels, ids, lost)

    @classmethod
    def from_label_map(
        cls,
        array: np.ndarray,
        geometry: Geometry,
        classes=None,
        *,
        include_empty: bool = False,
    ) -> StructureSet:
        """One structure per label id present (per class of ``classes`` with ``include_empty``).

        ``classes``: a list of :class:`LabelClass`, a mapping id -> name, or None (names
        ``label_<id>``). Ids present without a class get ``label_<id>``.
        """
        array = np.asarray(array)
        if array.ndim != 3:
            raise StructureSetError(f"a label map is 3D (z, y, x); got shape {array.shape}")
        if not np.issubdtype(array.dtype, np.integer):
            if np.issubdtype(array.dtype, np.floating) and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
                array = array.astype(np.int64)
            elif array.dtype == bool:
                array = array.astype(np.uint8)
            else:
                raise StructureSetError("a label map holds non-negative integer ids")
        if array.size and array.min() < 0:
            raise StructureSetError(f"a label map holds non-negative ids; found {int(array.min())}")
        table: dict[int, tuple[str, str | None, dict]] = {}
        for c in _class_records(classes):
            table[c[0]] = (c[1], c[2], c[3])
        out = cls(geometry, array.shape)
        present = [int(v) for v in np.unique(array) if v != 0]
        wanted = sorted(set(present) | (set(table) if include_empty else set()))
        from scipy import ndimage

        objects = ndimage.find_objects(array.astype(np.int64, copy=False)) if present else []
        for label_id in wanted:
            name, color, codes = table.get(label_id, (f"label_{label_id}", None, {}))
            if label_id - 1 < len(objects) and objects[label_id - 1] is not None:
                sl = objects[label_id - 1]
                bbox = tuple(s.start for s in sl) + tuple(s.stop for s in sl)
                sparse = SparseMask(array.shape, bbox, array[sl] == label_id)
            else:
                sparse = SparseMask(array.shape)
            if name in out:
                name = f"{name}_{label_id}"
            out.add(name, sparse, color if color else default_color(label_id), label_id=label_id, codes=codes)
        return out

    # --- files --------------------------------------------------------------------------------
    def manifest(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "shape": list(self.shape) if self.shape is not None else None,
            "geometry": self.geometry.to_dict(),
            "structures": [
                {
                    "name": s.name,
                    "color": s.color,
                    "label_id": s.label_id,
                    "codes": s.codes,
                    "locked": s.locked,
                    "visible": s.visible,
                    "prompts": s.prompts,
                    "voxels": s.voxel_count,
                    "bbox": list(s.mask.bbox),
                }
                for s in self
            ],
        }

    def to_bytes(self) -> bytes:
        arrays = {"manifest": np.frombuffer(json.dumps(self.manifest()).encode("utf-8"), dtype=np.uint8)}
        for i, s in enumerate(self):
            arrays[f"mask_{i}"] = s.mask.bits
        buffer = _io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()

    def save(self, path: str | os.PathLike) -> Path:
        """Write the set atomically (format in the module docstring); returns the path."""
        path = Path(path)
        data = self.to_bytes()

        def verify(tmp: Path) -> None:
            if tmp.stat().st_size != len(data):
                raise OSError(f"short write ({tmp.stat().st_size} of {len(data)} bytes)")

        with atomic_path(path, verify=verify) as tmp:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        return path

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "structure set") -> StructureSet:
        try:
            with np.load(_io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            manifest = json.loads(bytes(arrays["manifest"]).decode("utf-8"))
        except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, UnicodeDecodeError) as err:
            raise StructureSetError(f"{source}: not a readable structure set ({err})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise StructureSetError(f"{source}: not a napari-openmedlab structure set")
        if int(manifest.get("version", 0)) > FORMAT_VERSION:
            raise StructureSetError(f"{source}: written by a newer version (format {manifest.get('version')})")
        try:
            out = cls(Geometry.from_dict(manifest["geometry"]), manifest["shape"])
            for i, rec in enumerate(manifest["structures"]):
                bits = arrays[f"mask_{i}"]
                sparse = SparseMask.from_bits(out.shape, rec["bbox"], bits, rec.get("voxels"))
                out.add(
                    rec["name"],
                    sparse,
                    rec["color"],
                    label_id=rec.get("label_id"),
                    codes=rec.get("codes") or {},
                    locked=rec.get("locked", False),
                    visible=rec.get("visible", True),
                    prompts=rec.get("prompts") or [],
                )
        except StructureSetError as err:
            raise StructureSetError(f"{source}: {err}") from None
        except (KeyError, TypeError, ValueError) as err:
            raise StructureSetError(f"{source}: damaged structure set ({type(err).__name__}: {err})") from None
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> StructureSet:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise StructureSetError(f"{path}: cannot be read ({err.strerror or err})") from None
        return cls.from_bytes(data, str(path))

    def classes(self) -> list[LabelClass]:
        """The class table matching :meth:`label_ids` (for label-map exports)."""
        ids = self.label_ids()
        return [LabelClass(ids[s.name], s.name, s.color) for s in self]

    def __repr__(self) -> str:
        return f"StructureSet(shape={self.shape}, structures={self.names()})"


def _class_records(classes) -> list[tuple[int, str, str | None, dict]]:
    if classes is None:
        return []
    if isinstance(classes, Mapping):
        return [(int(k), str(v), None, {}) for k, v in classes.items()]
    out = []
    for c in classes:
        if isinstance(c, LabelClass):
            out.append((c.id, c.name, c.color, {}))
        elif isinstance(c, Mapping):
            codes = {k: v for k, v in c.items() if k not in ("id", "name", "color")}
            out.append((int(c["id"]), str(c["name"]), c.get("color"), codes))
        else:
            raise StructureSetError(f"class {c!r}: expected a LabelClass or a {{id, name, color}} record")
    return out


EMPTY = EMPTY_BBOX  # re-exported for callers that test emptiness of a structure's box
