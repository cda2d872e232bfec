"""Undoable changes of a structure set, and the session's undo step that groups them.

A mask change keeps only the voxels inside the smallest box that holds every changed voxel, before
and after, bit-packed: undoing a 3-voxel brush stroke on a 512 x 512 x 300 structure costs bytes,
not a volume. One :class:`SessionStep` may change several structures (a commit that creates its
structure, a future boolean operation) and the current object at once; undo and redo replay it as
one.

Changes refer to structures by name. Undo is last-in first-out, so when an older change is undone
every rename after it has been undone already and the name is right again.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from .masks import EMPTY_BBOX, bbox_slices, bbox_union, bounding_box
from .structure_set import Structure, StructureSet
from .undo import ObjectState


def _pack(a: np.ndarray) -> np.ndarray:
    return np.packbits(np.asarray(a, dtype=bool).ravel())


def _unpack(bits: np.ndarray, shape) -> np.ndarray:
    return np.unpackbits(bits, count=int(np.prod(shape))).view(bool).reshape(shape)


@dataclass
class MaskChange:
    """The voxels of structure ``name`` inside ``bbox`` before and after one edit (bit-packed)."""

    name: str
    bbox: tuple
    before_bits: np.ndarray
    after_bits: np.ndarray
    voxels_changed: int

    @classmethod
    def between(cls, name: str, old, new) -> MaskChange | None:
        """The change from SparseMask ``old`` to ``new`` (same grid); None when they are equal."""
        box = bbox_union(old.bbox, new.bbox)
        if box == EMPTY_BBOX:
            return None
        a, b = old.crop(box), new.crop(box)
        diff = a != b
        inner = bounding_box(diff)
        if inner == EMPTY_BBOX:
            return None
        sl = bbox_slices(inner)
        tight = tuple(box[i] + inner[i] for i in range(3)) + tuple(box[i] + inner[i + 3] for i in range(3))
        return cls(name, tight, _pack(a[sl]), _pack(b[sl]), int(diff.sum()))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.bbox[i + 3] - self.bbox[i] for i in range(3))  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        return int(self.before_bits.nbytes + self.after_bits.nbytes)

    def names(self) -> list[str]:
        return [self.name]

    def _put(self, ss: StructureSet, bits: np.ndarray) -> None:
        s = ss.structure(self.name)
        ss.set_mask(self.name, s.mask.with_region(self.bbox, _unpack(bits, self.shape)), force=True)

    def undo(self, ss: StructureSet) -> None:
        self._put(ss, self.before_bits)

    def redo(self, ss: StructureSet) -> None:
        self._put(ss, self.after_bits)


@dataclass
class StructureAdded:
    """A structure appeared at position ``index`` (undo removes it, redo puts it back)."""

    structure: Structure
    index: int

    @property
    def nbytes(self) -> int:
        return self.structure.mask.nbytes

    def names(self) -> list[str]:
        return [self.structure.name]

    def undo(self, ss: StructureSet) -> None:
        ss.remove(self.structure.name, force=True)

    def redo(self, ss: StructureSet) -> None:
        ss.insert(copy.deepcopy(self.structure), self.index)


@dataclass
class StructureRemoved(StructureAdded):
    """A structure was removed from position ``index``."""

    def undo(self, ss: StructureSet) -> None:
        StructureAdded.redo(self, ss)

    def redo(self, ss: StructureSet) -> None:
        StructureAdded.undo(self, ss)


@dataclass
class Renamed:
    old: str
    new: str
    nbytes: int = 0

    def names(self) -> list[str]:
        return [self.old, self.new]

    def undo(self, ss: StructureSet) -> None:
        ss.rename(self.new, self.old)

    def redo(self, ss: StructureSet) -> None:
        ss.rename(self.old, self.new)


@dataclass
class LockChanged:
    name: str
    locked: bool
    nbytes: int = 0

    def names(self) -> list[str]:
        return [self.name]

    def undo(self, ss: StructureSet) -> None:
        (ss.unlock if self.locked else ss.lock)(self.name)

    def redo(self, ss: StructureSet) -> None:
        (ss.lock if self.locked else ss.unlock)(self.name)


@dataclass
class PromptLogged:
    """A commit's prompt-log record appended to a structure's ``prompts``."""

    name: str
    record: dict
    nbytes: int = 0

    def names(self) -> list[str]:
        return [self.name]

    def undo(self, ss: StructureSet) -> None:
        prompts = ss.structure(self.name).prompts
        for i in range(len(prompts) - 1, -1, -1):
            if prompts[i] is self.record:
                del prompts[i]
                break

    def redo(self, ss: StructureSet) -> None:
        ss.structure(self.name).prompts.append(self.record)


@dataclass
class SessionStep:
    """One undoable user action: structure changes (in order) and/or a change of the current object."""

    description: str
    changes: list = field(default_factory=list)
    before: ObjectState | None = None
    after: ObjectState | None = None

    @property
    def nbytes(self) -> int:
        total = sum(c.nbytes for c in self.changes)
        for state in (self.before, self.after):
            total += state.nbytes if state is not None else 0
        return total

    def touched(self) -> list[str]:
        """Names of the structures this step changes (old and new names for a rename)."""
        out: list[str] = []
        for c in self.changes:
            for n in c.names():
                if n not in out:
                    out.append(n)
        return out

    def mask_changes(self) -> list[MaskChange]:
        return [c for c in self.changes if isinstance(c, MaskChange)]

    def undo(self, ss: StructureSet) -> None:
        for c in reversed(self.changes):
            c.undo(ss)

    def redo(self, ss: StructureSet) -> None:
        for c in self.changes:
            c.redo(ss)
