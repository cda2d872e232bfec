"""Autosave of a whole structure set, in generations, with fallback to the last good one.

Each save writes ``generation-<n>-<session>.omlss`` (the :meth:`StructureSet.save` format, atomic:
a temporary file, size-checked, fsynced, renamed into place) in the image's recovery folder. The
zip inside an ``.omlss`` carries a CRC of every member, so a file damaged later (a disk error, a
copy cut short) fails to load and :meth:`StructureSetAutosave.load_latest` falls back to the newest
generation that reads, and says so.

Sessions: every :class:`StructureSetAutosave` is one session (a random id in the file names).
A session keeps its own newest :attr:`~StructureSetAutosave.keep` *good* generations (>= 2, so a
damaged newest one always has a fallback) and never deletes another session's: work on an image
whose autosave was not restored is kept beside the new work until the user restores it (the
session then adopts it, see :meth:`~StructureSetAutosave.restore`) or discards it. Generations
written before session ids (``generation-<n>.omlss``) count as another session's.

A generation holding structures no label map can hold (label ids outside 1..65535) is refused at
restore like a damaged one. Temporaries left by a killed writer are removed before the first save
and at every restore (and at each start by :func:`napari_openmedlab.cleanup.remove_stale_temporaries`).

The folder is ``<recovery root>/<image name>-<image key>/structure-set/`` (see
:func:`.autosave.recovery_root` and :func:`.autosave.image_key`).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import uuid
from pathlib import Path

from ..io.atomic import remove_stale_temporaries
from .autosave import MAX_LABEL_ID, RecoveryError, image_key, recovery_root
from .structure_set import StructureSet, StructureSetError

PATTERN = re.compile(r"^generation-(\d{6,})(?:-([0-9a-f]{1,32}))?\.omlss$")


def session_of(path: Path) -> str | None:
    """The session that wrote a generation file (None: written before session ids)."""
    m = PATTERN.match(Path(path).name)
    return m.group(2) if m else None


def check_ids(structures: StructureSet, source: str) -> StructureSet:
    """Refuse label ids no label map can hold, so a bad snapshot fails at restore, not at every save."""
    for s in structures:
        if s.label_id is not None and not 1 <= int(s.label_id) <= MAX_LABEL_ID:
            raise StructureSetError(
                f"{source}: structure {s.name!r} has label id {s.label_id}, outside 1..{MAX_LABEL_ID}"
            )
    return structures


class StructureSetAutosave:
    """Generations of one image's structure set in ``folder``, written by one session."""

    def __init__(self, folder: str | os.PathLike, keep: int = 3, session: str | None = None) -> None:
        if keep < 2:
            raise ValueError("keep at least 2 generations, so a damaged newest one has a fallback")
        self.folder = Path(folder)
        self.keep = int(keep)
        self.session = session or uuid.uuid4().hex[:12]
        self.adopted: set[str | None] = set()  # sessions whose work this one restored (ours to prune)
        self.saves = 0
        self._written: dict[Path, tuple[int, int]] = {}  # our files: (size, mtime_ns) when written
        self._cleaned = False

    @classmethod
    def for_image(cls, source, shape, name: str = "", root: str | os.PathLike | None = None) -> StructureSetAutosave:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name or (Path(os.fspath(source)).name if source else "image"))
        base = Path(root) if root else recovery_root()
        return cls(base / f"{stem[:40]}-{image_key(source, shape)}" / "structure-set")

    # --- what is there ------------------------------------------------------------------------
    def generations(self, others_only: bool = False) -> list[tuple[int, Path]]:
        """(number, path) of the saved generations, oldest first; ``others_only``: not this
        session's own (what a restore brings back)."""
        try:
            entries = list(self.folder.iterdir())
        except OSError:
            return []
        found = []
        for p in entries:
            m = PATTERN.match(p.name)
            if m and not (others_only and m.group(2) == self.session):
                found.append((int(m.group(1)), p))
        return sorted(found, key=lambda g: (g[0], g[1].name))

    def exists(self, others_only: bool = False) -> bool:
        return bool(self.generations(others_only))

    def _mine(self, path: Path) -> bool:
        sid = session_of(path)
        return sid == self.session or sid in self.adopted

    def _good(self, path: Path) -> bool:
        """A generation we can fall back on: one we wrote and nobody changed since, or one that loads."""
        try:
            st = path.stat()
        except OSError:
            return False
        if self._written.get(path) == (st.st_size, st.st_mtime_ns):
            return True
        try:
            check_ids(StructureSet.load(path), str(path))
        except StructureSetError:
            return False
        self._written[path] = (st.st_size, st.st_mtime_ns)
        return True

    # --- writing ------------------------------------------------------------------------------
    def save(self, structure_set: StructureSet) -> Path:
        """Write a new generation (atomically), then prune this session's beyond :attr:`keep` good
        ones. Raises ``OSError`` (``FileWriteError``: nothing written) when the write fails."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self._cleaned:
            remove_stale_temporaries(self.folder)
            self._cleaned = True
        gens = self.generations()
        number = gens[-1][0] + 1 if gens else 1
        path = structure_set.save(self.folder / f"generation-{number:06d}-{self.session}.omlss")
        st = path.stat()
        self._written[path] = (st.st_size, st.st_mtime_ns)
        self.saves += 1
        self.prune()
        return path

    def prune(self) -> None:
        """Keep this session's (and adopted sessions') newest :attr:`keep` good generations; never
        touch another session's unrestored work."""
        kept = 0
        for _, path in reversed(self.generations()):
            if not self._mine(path):
                continue
            if kept < self.keep:
                kept += self._good(path)
            else:
                path.unlink(missing_ok=True)
                self._written.pop(path, None)

    # --- reading ------------------------------------------------------------------------------
    def load_latest(self, others_only: bool = False) -> tuple[StructureSet, str]:
        """The newest generation that reads, and a one-line message (which one, and what was skipped).

        Raises :class:`.autosave.RecoveryError` (a :class:`StructureSetError`) when there is none,
        or none that reads. ``others_only``: skip this session's own generations.
        """
        structures, message, _ = self._load(others_only)
        return structures, message

    def restore(self) -> tuple[StructureSet, str]:
        """Load the newest good generation of *other* sessions and adopt its session: its
        generations become this session's to prune (the work now goes on here)."""
        structures, message, path = self._load(others_only=True)
        self.adopted.add(session_of(path))
        return structures, message

    def _load(self, others_only: bool) -> tuple[StructureSet, str, Path]:
        if self.folder.is_dir():
            remove_stale_temporaries(self.folder)
        skipped = []
        for number, path in reversed(self.generations(others_only)):
            try:
                ss = check_ids(StructureSet.load(path), str(path.name))
            except StructureSetError as err:
                skipped.append(f"generation {number} is damaged ({err})")
                continue
            text = f"restored autosave generation {number} ({len(ss)} structures)"
            if skipped:
                text += "; " + "; ".join(skipped) + ", so the previous good one was used"
            return ss, text, path
        if skipped:
            raise RecoveryError("no readable autosave: " + "; ".join(skipped))
        raise RecoveryError(f"no autosave in {self.folder}")

    def summary(self, others_only: bool = False) -> str:
        """A line for the restore banner: generations, when, and a damaged newest one."""
        gens = self.generations(others_only)
        if not gens:
            return "no autosave"
        try:
            when = _dt.datetime.fromtimestamp(gens[-1][1].stat().st_mtime).isoformat(sep=" ", timespec="seconds")
        except OSError:
            when = "?"
        line = f"{len(gens)} generation{'s' if len(gens) != 1 else ''}, newest saved {when}"
        sessions = {session_of(p) for _, p in self.generations()}
        if len(sessions) > 1:
            line += f"; autosaves of {len(sessions)} sessions are kept"
        try:
            _, message = self.load_latest(others_only)
        except StructureSetError as err:
            return f"{line}; {err}"
        if "previous good one" in message:
            line += "; the newest is damaged, the previous good one is offered"
        return line

    def discard(self, others_only: bool = False) -> None:
        """Delete the autosaves (``others_only``: only the work of other sessions, as offered)."""
        if not others_only:
            shutil.rmtree(self.folder, ignore_errors=True)
            self._written.clear()
            return
        for _, path in self.generations(others_only=True):
            path.unlink(missing_ok=True)
