"""The annotation project of one data set folder: statuses, per-case structure sets, effort, a lock.

Files (all written atomically through :mod:`io.atomic`)::

    DATASET/openmedlab_project.json       the project state: one record per case (status, who/when,
                                          seconds spent, effort per structure, structure-set file)
    DATASET/.openmedlab/cases/<case>.omlss   each case's structure set (with its prompt log)
    DATASET/.openmedlab/autosave/<case>/     the session's autosave generations while a case is open
    DATASET/.openmedlab/lock                 who has the project open (pid, host, user, since)

Two viewers on the same folder: the second one gets :class:`ProjectLockedError` naming who holds
it; a lock left by a process that died on this machine is recognised and taken over.

Effort: :meth:`CaseWork.handle` passes each request to the session and counts, per structure, the
clicks and boxes of each committed object and the brush strokes (edits); time spent is the wall
time between requests with gaps capped at :data:`IDLE_CAP_S` (a coffee break is not annotation).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import getpass
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..annotation import requests as rq
from ..annotation.label_classes import LabelClass
from ..annotation.session import AnnotationSession
from ..annotation.structure_autosave import StructureSetAutosave
from ..annotation.structure_set import StructureSet, StructureSetError
from ..io.atomic import atomic_write_json, pid_alive, remove_stale_temporaries
from .cases import PROJECT_DIR, DatasetCase, find_dataset_cases

STATE_FILE = "openmedlab_project.json"
FORMAT = "napari-openmedlab annotation project"
STATUSES = ("todo", "in progress", "done", "skipped")
IDLE_CAP_S = 60.0


class ProjectError(ValueError):
    """The project cannot do this (unknown case or status, damaged state file, ...)."""


class ProjectLockedError(ProjectError):
    """Another viewer has the project open."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


def _new_record(case: DatasetCase, root: Path) -> dict:
    return {
        "image": os.path.relpath(case.image, root),
        "labels": os.path.relpath(case.labels, root) if case.labels else None,
        "status": "todo",
        "structure_set": None,
        "structures": [],
        "seconds": 0.0,
        "effort": {},
        "created": _now(),
        "last_edit": None,
        "edited_by": None,
    }


@dataclass
class CaseWork:
    """One open case: its image, structure set and annotation session, with effort counting."""

    project: AnnotationProject
    name: str
    session: AnnotationSession
    restored_from_autosave: bool = False
    _last_request: float = field(default_factory=time.monotonic)
    _object_clicks: int = 0
    _object_boxes: int = 0

    @property
    def volume(self):
        return self.session.volume

    @property
    def structures(self) -> StructureSet:
        return self.session.structures

    def handle(self, request: rq.Request | dict):
        """Pass a request to the session and count the effort it represents."""
        if isinstance(request, dict):
            request = rq.request_from_dict(request)
        now = time.monotonic()
        self._spend(min(now - self._last_request, IDLE_CAP_S))
        self._last_request = now
        outcome = self.session.handle(request)
        if isinstance(request, rq.AddPoint):
            self._object_clicks += 1
        elif isinstance(request, rq.AddBox):
            self._object_boxes += 1
        elif isinstance(request, rq.ClearObject):
            self._object_clicks = self._object_boxes = 0
        elif isinstance(request, rq.Commit):
            e = self._effort(request.structure)
            e["clicks"] += self._object_clicks
            e["boxes"] += self._object_boxes
            e["commits"] += 1
            self._object_clicks = self._object_boxes = 0
        elif isinstance(request, rq.Edit):
            self._effort(request.structure)["strokes"] += 1
        self.project._touch(self.name)
        return outcome

    def _effort(self, structure: str) -> dict:
        effort = self.project._records[self.name].setdefault("effort", {})
        return effort.setdefault(structure, {"clicks": 0, "boxes": 0, "strokes": 0, "commits": 0})

    def _spend(self, seconds: float) -> None:
        rec = self.project._records[self.name]
        rec["seconds"] = float(rec.get("seconds", 0.0)) + max(0.0, seconds)

    def save(self) -> None:
        self.project.save_case(self)


class AnnotationProject:
    """The project state of ``root`` (see the module docstring); open it with :meth:`open`."""

    def __init__(self, root: Path, classes: list[LabelClass] | None, records: dict, lock_path: Path | None) -> None:
        self.root = root
        self.classes = list(classes or [])
        self._records = records
        self._lock_path = lock_path

    # --- opening and closing ------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike, classes: list[LabelClass] | None = None, *, lock: bool = True) -> AnnotationProject:
        root = Path(root).resolve()
        cases = find_dataset_cases(root)
        work = root / PROJECT_DIR
        (work / "cases").mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(root)
        remove_stale_temporaries(work / "cases")
        lock_path = cls._acquire(work / "lock") if lock else None
        try:
            state = cls._read_state(root / STATE_FILE)
            records = state.get("cases", {})
            if classes is None and state.get("classes"):
                classes = [LabelClass(int(c["id"]), str(c["name"]), str(c["color"])) for c in state["classes"]]
            if classes is None:
                classes = _dataset_json_classes(root)
            for case in cases:  # new images appear as todo; records of vanished images are kept
                if case.name not in records:
                    records[case.name] = _new_record(case, root)
            project = cls(root, classes, records, lock_path)
            project._case_order = [c.name for c in cases]
            project.write_state()
        except BaseException:
            if lock_path is not None:
                with contextlib.suppress(OSError):
                    lock_path.unlink()
            raise
        return project

    @staticmethod
    def _acquire(path: Path) -> Path:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "user": _user(), "since": _now()}
        for _ in range(2):
            try:
                # a lock, not data: O_EXCL creation is the point, so not the atomic writer (which replaces)
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = json.loads(path.read_text())
                except (OSError, ValueError):
                    holder = {}
                same_host = holder.get("host") == me["host"]
                if same_host and isinstance(holder.get("pid"), int) and not pid_alive(holder["pid"]):
                    with contextlib.suppress(OSError):
                        path.unlink()  # left by a process that died here: take it over
                    continue
                raise ProjectLockedError(
                    f"{path.parent.parent} is open in another viewer ({holder.get('user', '?')}@"
                    f"{holder.get('host', '?')}, pid {holder.get('pid', '?')}, since {holder.get('since', '?')}); "
                    f"close it there first, or delete {path} if that program is gone"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return path
        raise ProjectLockedError(f"{path}: could not take the project lock")

    def close(self) -> None:
        self.write_state()
        if self._lock_path is not None:
            with contextlib.suppress(OSError):
                self._lock_path.unlink()
            self._lock_path = None

    def __enter__(self) -> AnnotationProject:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def _read_state(path: Path) -> dict:
        if not path.exists():
            return {"cases": {}}
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ProjectError(f"{path}: the project state is damaged ({err}); restore it from a backup "
                               "or move it away to start the statuses anew (structure sets stay)") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get("cases"), dict):
            raise ProjectError(f"{path}: not a napari-openmedlab project state file")
        return state

    def write_state(self) -> None:
        atomic_write_json(self.root / STATE_FILE, {
            "format": FORMAT,
            "version": 1,
            "classes": [c.to_dict() for c in self.classes],
            "cases": self._records,
        })

    # --- reading ------------------------------------------------------------------------------
    def case_names(self) -> list[str]:
        return [n for n in self._case_order if n in self._records]

    def record(self, name: str) -> dict:
        if name not in self._records:
            raise ProjectError(f"no case named {name!r} in {self.root}")
        return dict(self._records[name])

    def status(self, name: str) -> str:
        return self.record(name)["status"]

    def cases(self, status: str | None = None) -> list[str]:
        return [n for n in self.case_names() if status is None or self._records[n]["status"] == status]

    def next_case(self, after: str | None = None, *, undone: bool = False, step: int = 1) -> str | None:
        """The case after (step=1) or before (step=-1) ``after``; with ``undone`` the next todo or
        in-progress one, wrapping around."""
        names = self.case_names()
        if not names:
            return None
        start = names.index(after) if after in names else (-1 if step > 0 else len(names))
        n = len(names)
        for k in range(1, n + 1):
            i = start + k * step
            if not undone and not 0 <= i < n:
                return None
            name = names[i % n]
            if not undone or self._records[name]["status"] in ("todo", "in progress"):
                return name
        return None

    # --- changing -----------------------------------------------------------------------------
    def set_status(self, name: str, status: str) -> None:
        if status not in STATUSES:
            raise ProjectError(f"status is one of {', '.join(STATUSES)}; got {status!r}")
        self.record(name)
        self._records[name]["status"] = status
        self._touch(name)
        self.write_state()

    def _touch(self, name: str) -> None:
        rec = self._records[name]
        rec["last_edit"] = _now()
        rec["edited_by"] = _user()

    def _paths(self, name: str) -> tuple[Path, Path]:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        work = self.root / PROJECT_DIR
        return work / "cases" / f"{safe}.omlss", work / "autosave" / safe

    def open_case(self, name: str, engine=None, **session_kwargs) -> CaseWork:
        """Load a case: its image, then its saved structure set, else a newer autosave, else its
        label file (one structure per label), else an empty set. Marks a todo case in progress."""
        from ..io import read_labels_onto, read_volume

        rec = self.record(name)
        volume = read_volume(self.root / rec["image"])
        saved, autosave_dir = self._paths(name)
        autosave = StructureSetAutosave(autosave_dir)
        structures, restored = None, False
        if autosave.exists():
            newest = autosave.generations()[-1][1]
            if not saved.exists() or newest.stat().st_mtime_ns > saved.stat().st_mtime_ns:
                try:
                    structures, _ = autosave.load_latest()
                    restored = True
                except StructureSetError:
                    structures = None
        if structures is None and saved.exists():
            structures = StructureSet.load(saved)
        if structures is None and rec.get("labels"):
            labels = read_labels_onto(self.root / rec["labels"], volume)
            structures = StructureSet.from_label_map(labels.array, volume.geometry, self.classes or None)
        if structures is None:
            structures = StructureSet(volume.geometry, volume.shape)
        session = AnnotationSession(volume, structures, engine, autosave=autosave, **session_kwargs)
        if rec["status"] == "todo":
            self._records[name]["status"] = "in progress"
            self._touch(name)
            self.write_state()
        return CaseWork(self, name, session, restored)

    def save_case(self, work: CaseWork) -> Path:
        """Write the case's structure set (atomically) and the project state."""
        saved, _ = self._paths(work.name)
        work.structures.save(saved)
        rec = self._records[work.name]
        rec["structure_set"] = os.path.relpath(saved, self.root)
        rec["structures"] = [s.name for s in work.structures if not s.mask.empty]
        self._touch(work.name)
        self.write_state()
        return saved

    def structure_set(self, name: str) -> StructureSet | None:
        """The saved structure set of a case (None when never saved)."""
        saved, _ = self._paths(name)
        return StructureSet.load(saved) if saved.exists() else None


def _dataset_json_classes(root: Path) -> list[LabelClass]:
    path = root / "dataset.json"
    if not path.is_file():
        return []
    try:
        labels = json.loads(path.read_text()).get("labels", {})
    except (OSError, ValueError, AttributeError):
        return []
    from ..annotation.label_classes import default_color

    out = []
    for name, value in labels.items():
        if isinstance(value, int) and value > 0:
            out.append(LabelClass(value, str(name), default_color(value)))
    return sorted(out, key=lambda c: c.id)
