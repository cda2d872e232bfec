"""No lost work: after each commit a snapshot of the session goes to a recovery folder.

The recovery folder is ``$OPENMEDLAB_RECOVERY_DIR`` when set, else ``recovery/`` in the user's data
folder (``~/.local/share/napari-openmedlab/recovery`` on Linux). Each image has its own subfolder,
keyed by its source path and shape, holding numbered *generations*::

    <image>-<key>/gen-000007/labels.nii.gz      the files of one snapshot (any names)
                            /prompt_log.json
                            /snapshot.json      written last: session id, time, size + SHA-256 of each file

A generation is written as a hidden temporary folder (files through :mod:`io.atomic`, read back)
and renamed into place whole, so it is there completely or not at all. Per session the newest
:data:`KEEP` generations are kept; a generation that fails its manifest check or whose content
does not parse is skipped at restore and the previous good one offered, with a line saying why.
Generations of another session (work that was not restored) are never pruned by this one: they
go only when the user restores (the session adopts them) or discards them.

Snapshots are generic (:meth:`RecoveryStore.write_snapshot` takes file writers); :meth:`save` and
:meth:`load` are the labels + prompt log pair the widget uses. Writes run on one background thread
(:class:`Autosaver`); a failed write leaves :attr:`Autosaver.warning` set until one succeeds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..io import Volume, VolumeReadError, read_volume, write_volume
from ..io.atomic import atomic_folder, atomic_write_json, remove_stale_temporaries

RECOVERY_ENV = "OPENMEDLAB_RECOVERY_DIR"
LABELS_FILE = "labels.nii.gz"
LOG_FILE = "prompt_log.json"
MANIFEST_FILE = "snapshot.json"
KEEP = 3  # generations per session: the newest and two to fall back on
MAX_LABEL_ID = int(np.iinfo(np.uint16).max)  # what the label files can hold
_GEN = re.compile(r"^gen-(\d{6,})$")

logger = logging.getLogger(__name__)
T = TypeVar("T")


class RecoveryError(ValueError):
    """No snapshot in a recovery folder could be restored (each one's fault is in the message)."""


def recovery_root() -> Path:
    """Where recovery folders live (not created here)."""
    env = os.environ.get(RECOVERY_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-openmedlab")) / "recovery"


def clean_recovery_root(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove temporaries (files and half-written generations) left by killed processes."""
    return remove_stale_temporaries(root or recovery_root(), recursive=True)


def image_key(source: str | os.PathLike | None, shape) -> str:
    """A stable key for an image: hash of its absolute source path and its shape."""
    src = os.path.abspath(os.fspath(source)) if source else "<no source>"
    text = f"{src}|{tuple(int(s) for s in shape)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def write_json_atomic(path: Path, data: dict) -> Path:
    """Write JSON atomically (kept for callers of the first version; see ``io.atomic``)."""
    return atomic_write_json(path, data)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Generation:
    """One snapshot folder; ``manifest`` is None when it is missing or unreadable."""

    folder: Path
    number: int
    manifest: dict | None

    @property
    def session(self) -> str | None:
        return self.manifest.get("session") if self.manifest else None

    def fault(self) -> str | None:
        """Why this generation cannot be trusted, or None when every file matches the manifest."""
        if self.manifest is None:
            return "its manifest is missing or damaged"
        files = self.manifest.get("files")
        if not isinstance(files, dict) or not files:
            return "its manifest lists no files"
        for name, facts in files.items():
            path = self.folder / name
            if not path.is_file():
                return f"{name} is missing"
            if not isinstance(facts, dict) or path.stat().st_size != facts.get("size"):
                return f"{name} has the wrong size"
            if _sha256(path) != facts.get("sha256"):
                return f"{name} is damaged (its checksum differs)"
        return None


@dataclass
class Snapshot:
    """A restored snapshot: labels, prompt log, which generation, and the newer ones skipped."""

    labels: Volume
    log: dict
    generation: Generation | None
    skipped: list[str] = field(default_factory=list)

    @property
    def note(self) -> str:
        """One line for the user when newer snapshots were damaged, else ''."""
        if not self.skipped:
            return ""
        return f"the newest autosave could not be used ({'; '.join(self.skipped)}); using the previous good one"


def check_log(log) -> dict:
    """The prompt log of a snapshot, or :class:`RecoveryError` for one that cannot be right."""
    if not isinstance(log, dict):
        raise RecoveryError(f"the prompt log is a JSON {type(log).__name__}, not an object")
    commits = log.get("commits", [])
    if not isinstance(commits, list) or not all(isinstance(c, dict) for c in commits):
        raise RecoveryError("the prompt log's commits are not a list of records")
    classes = log.get("classes", [])
    if classes:
        from .label_classes import LabelClassError, classes_from_json, validate

        try:
            validate(classes_from_json(classes))
        except (LabelClassError, TypeError, ValueError, KeyError) as err:
            raise RecoveryError(f"the class table in the prompt log is damaged ({err})") from None
    return log


def check_labels(labels: Volume) -> Volume:
    """Refuse label ids that no label file can hold (negative, above 65535, not integers)."""
    array = labels.array
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise RecoveryError(f"the labels are {array.dtype} values, not integer ids")
    if array.size:
        lo, hi = int(array.min()), int(array.max())
        if lo < 0 or hi > MAX_LABEL_ID:
            raise RecoveryError(f"the labels hold id {lo if lo < 0 else hi}, outside 0..{MAX_LABEL_ID}")
    return labels


class RecoveryStore:
    """The recovery folder of one image, written by one session (``session``: any unique text)."""

    def __init__(self, folder: str | os.PathLike, session: str | None = None, keep: int = KEEP) -> None:
        self.folder = Path(folder)
        self.session = session or uuid.uuid4().hex[:12]
        self.keep = max(2, int(keep))
        self.adopted: set[str] = set()

    @classmethod
    def for_image(cls, source, shape, name: str = "", root: str | os.PathLike | None = None) -> RecoveryStore:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name or (Path(os.fspath(source)).name if source else "image"))
        base = Path(root) if root else recovery_root()
        return cls(base / f"{stem[:40]}-{image_key(source, shape)}")

    # --- generations ----------------------------------------------------------------------------
    def generations(self) -> list[Generation]:
        """Every generation folder, newest first (damaged ones included, manifest None)."""
        found = []
        with contextlib.suppress(OSError):
            for entry in self.folder.iterdir():
                match = _GEN.match(entry.name)
                if match and entry.is_dir():
                    found.append(Generation(entry, int(match.group(1)), self._read_manifest(entry)))
        return sorted(found, key=lambda g: g.number, reverse=True)

    @staticmethod
    def _read_manifest(folder: Path) -> dict | None:
        try:
            data = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_snapshot(self, writers: dict[str, Callable[[Path], object]], info: dict | None = None) -> Path:
        """Write one generation: ``writers[name](path)`` writes file ``name`` at ``path``.

        The files land in a temporary folder, get a manifest (size + SHA-256 each) and the folder
        is renamed to the next ``gen-NNNNNN`` whole; then old generations of this session are
        pruned. Raises ``FileWriteError`` (nothing changed) when anything fails.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.folder)
        existing = self.generations()
        number = (existing[0].number + 1) if existing else 1
        target = self.folder / f"gen-{number:06d}"
        with atomic_folder(target) as tmp:
            files = {}
            for name, write in writers.items():
                write(tmp / name)
                files[name] = {"size": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)}
            manifest = {"session": self.session, "number": number, "files": files, **(info or {})}
            atomic_write_json(tmp / MANIFEST_FILE, manifest)
        self.prune()
        return target

    def prune(self) -> None:
        """Keep this session's (and adopted sessions') newest ``keep`` good generations."""
        mine = {self.session, *self.adopted}
        kept = 0
        for gen in self.generations():
            if gen.session not in mine:
                continue  # another session's unrestored work: never ours to delete
            if kept < self.keep and gen.fault() is None:
                kept += 1
            elif kept >= self.keep:
                shutil.rmtree(gen.folder, ignore_errors=True)

    # --- the widget's labels + prompt log pair ---------------------------------------------------
    def save(self, labels: Volume, log: dict) -> Path:
        """Write the labels and the prompt log as one generation."""
        return self.write_snapshot(
            {
                LABELS_FILE: lambda path: write_volume(labels, path, labels=True),
                LOG_FILE: lambda path: atomic_write_json(path, log),
            },
            {"saved": log.get("saved") if isinstance(log, dict) else None},
        )

    @property
    def labels_path(self) -> Path:
        """The newest generation's labels file (where the first version kept it when none)."""
        gens = self.generations()
        return (gens[0].folder if gens else self.folder) / LABELS_FILE

    @property
    def log_path(self) -> Path:
        gens = self.generations()
        return (gens[0].folder if gens else self.folder) / LOG_FILE

    def _candidates(self, others_only: bool = False) -> list[tuple[Path, Generation | None]]:
        gens = self.generations()
        if others_only:  # another session's work (a damaged manifest: session unknown, offered)
            gens = [g for g in gens if g.session != self.session]
        out: list[tuple[Path, Generation | None]] = [(g.folder, g) for g in gens]
        if (self.folder / LABELS_FILE).is_file() or (self.folder / LOG_FILE).is_file():
            out.append((self.folder, None))  # the first version's single snapshot
        return out

    def exists(self, others_only: bool = False) -> bool:
        return bool(self._candidates(others_only))

    def read_newest_good(self, read: Callable[[Path], T], others_only: bool = False) -> tuple[T, Generation | None, list[str]]:
        """``read(folder)`` on the newest generation that passes its manifest check and ``read``.

        ``read`` parses the snapshot's files (any set of names) and raises for content that cannot
        be right; the generations it or the manifest check refused are skipped, newest first.
        Returns ``(what read returned, its generation (None: the first version's layout), skipped
        lines)``; :class:`RecoveryError` naming each one's fault when none is usable.
        ``others_only``: only work of other sessions (what a restore brings back).
        """
        skipped: list[str] = []
        for folder, gen in self._candidates(others_only):
            label = gen.folder.name if gen else "the old-format snapshot"
            try:
                fault = gen.fault() if gen else None
                if fault:
                    raise RecoveryError(fault)
                return read(folder), gen, skipped
            except (RecoveryError, VolumeReadError, OSError, ValueError) as err:
                skipped.append(f"{label}: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
        if not skipped:
            raise RecoveryError(f"{self.folder}: no autosave here")
        raise RecoveryError("no autosave could be restored: " + "; ".join(skipped))

    def load_snapshot(self, others_only: bool = False) -> Snapshot:
        """The newest labels + prompt log snapshot that is complete and sane (see :meth:`read_newest_good`)."""

        def read(folder: Path) -> tuple[Volume, dict]:
            log = check_log(json.loads((folder / LOG_FILE).read_text(encoding="utf-8")))
            return check_labels(read_volume(folder / LABELS_FILE)), log

        (labels, log), gen, skipped = self.read_newest_good(read, others_only)
        return Snapshot(labels, log, gen, skipped)

    def load(self) -> tuple[Volume, dict]:
        """The newest good snapshot's labels and prompt log (see :meth:`load_snapshot`)."""
        snapshot = self.load_snapshot()
        return snapshot.labels, snapshot.log

    def adopt(self, snapshot: Snapshot) -> None:
        """After a restore: the restored session's generations are now this session's to prune."""
        if snapshot.generation is not None and snapshot.generation.session:
            self.adopted.add(snapshot.generation.session)

    def summary(self, others_only: bool = False) -> str:
        """A line for the restore prompt: when it was saved, how many commits, what was damaged."""
        try:
            snapshot = self.load_snapshot(others_only)
        except RecoveryError as err:
            return str(err)
        n = len(snapshot.log.get("commits", []))
        line = f"{n} commit{'s' if n != 1 else ''}, saved {snapshot.log.get('saved', '?')}"
        sessions = {g.session for g in self.generations() if g.session}
        if len(sessions) > 1:
            line += f"; snapshots of {len(sessions)} sessions are kept"
        return line + (f"; {snapshot.note}" if snapshot.note else "")

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class Autosaver:
    """Runs :meth:`RecoveryStore.save` on one background thread.

    Per recovery folder only the newest snapshot is kept (older ones are superseded), but a
    snapshot of one image never displaces another image's: switching images loses no save.
    After a failure :attr:`warning` holds the line to show until a save succeeds.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[RecoveryStore, Volume, dict]] = {}
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self.last_error: BaseException | None = None
        self.saves = 0
        self.failures = 0

    @property
    def warning(self) -> str | None:
        """``"autosave failed: <cause>; your work is only in memory"`` while the last save failed."""
        err = self.last_error
        if err is None:
            return None
        reason = getattr(err, "reason", None) or (str(err).splitlines()[0] if str(err) else type(err).__name__)
        return f"autosave failed: {reason}; your work is only in memory"

    def submit(self, store: RecoveryStore, labels: Volume, log: dict) -> None:
        """Queue a save; ``labels`` must be a snapshot the caller no longer changes."""
        with self._lock:
            key = os.fspath(store.folder)
            self._pending.pop(key, None)
            self._pending[key] = (store, labels, log)
            self._idle.clear()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="openmedlab-autosave", daemon=True)
                self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every queued save is written; False on timeout."""
        return self._idle.wait(timeout)

    @property
    def busy(self) -> bool:
        return not self._idle.is_set()

    def _run(self) -> None:
        while True:
            with self._lock:
                job = self._pending.pop(next(iter(self._pending))) if self._pending else None
                if job is None:
                    self._thread = None
                    self._idle.set()
                    return
            store, labels, log = job
            try:
                store.save(labels, log)
                self.saves += 1
                self.last_error = None
            except Exception as err:  # keep the thread alive; the widget shows the warning
                logger.warning("autosave to %s failed: %s", store.folder, err)
                self.failures += 1
                self.last_error = err
