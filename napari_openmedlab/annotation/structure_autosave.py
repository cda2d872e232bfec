"""Autosave of a whole structure set, in generations, with fallback to the last good one.

Each save writes ``generation-<n>.omlss`` (the :meth:`StructureSet.save` format, atomic: a
temporary file renamed into place) in the image's recovery folder and keeps the newest
:attr:`StructureSetAutosave.keep` generations. A crash while writing leaves the previous
generation whole; a damaged newest file (a disk error, a copy cut short) makes :meth:`load_latest`
fall back to the newest one that reads, and say so.

The folder is ``<recovery root>/<image name>-<image key>/structure-set/`` (see
:func:`.autosave.recovery_root` and :func:`.autosave.image_key`), beside the label-map recovery of
:class:`.autosave.RecoveryStore`.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from ..io.atomic import remove_stale_temporaries
from .autosave import image_key, recovery_root
from .structure_set import StructureSet, StructureSetError

PATTERN = re.compile(r"^generation-(\d{6,})\.omlss$")


class StructureSetAutosave:
    """Generations of one image's structure set in ``folder``."""

    def __init__(self, folder: str | os.PathLike, keep: int = 3) -> None:
        if keep < 2:
            raise ValueError("keep at least 2 generations, so a damaged newest one has a fallback")
        self.folder = Path(folder)
        self.keep = int(keep)
        self.saves = 0

    @classmethod
    def for_image(cls, source, shape, name: str = "", root: str | os.PathLike | None = None) -> StructureSetAutosave:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name or (Path(os.fspath(source)).name if source else "image"))
        base = Path(root) if root else recovery_root()
        return cls(base / f"{stem[:40]}-{image_key(source, shape)}" / "structure-set")

    def generations(self) -> list[tuple[int, Path]]:
        """(number, path) of the saved generations, oldest first."""
        if not self.folder.is_dir():
            return []
        found = []
        for p in self.folder.iterdir():
            m = PATTERN.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found)

    def exists(self) -> bool:
        return bool(self.generations())

    def save(self, structure_set: StructureSet) -> Path:
        """Write a new generation (atomically), then drop the ones beyond :attr:`keep`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        gens = self.generations()
        number = gens[-1][0] + 1 if gens else 1
        path = structure_set.save(self.folder / f"generation-{number:06d}.omlss")
        self.saves += 1
        for _, old in self.generations()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def load_latest(self) -> tuple[StructureSet, str]:
        """The newest generation that reads, and a one-line message (which one, and what was skipped).

        Raises :class:`StructureSetError` when there is none, or none that reads.
        """
        remove_stale_temporaries(self.folder) if self.folder.is_dir() else None
        skipped = []
        for number, path in reversed(self.generations()):
            try:
                ss = StructureSet.load(path)
            except StructureSetError as err:
                skipped.append(f"generation {number} is damaged ({err})")
                continue
            text = f"restored autosave generation {number} ({len(ss)} structures)"
            if skipped:
                text += "; " + "; ".join(skipped) + ", so the previous good one was used"
            return ss, text
        if skipped:
            raise StructureSetError("no readable autosave: " + "; ".join(skipped))
        raise StructureSetError(f"no autosave in {self.folder}")

    def summary(self) -> str:
        gens = self.generations()
        if not gens:
            return "no autosave"
        import datetime as _dt

        when = _dt.datetime.fromtimestamp(gens[-1][1].stat().st_mtime).isoformat(sep=" ", timespec="seconds")
        return f"{len(gens)} generation{'s' if len(gens) != 1 else ''}, newest saved {when}"

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
