"""No lost work: after each commit the labels and the prompt log go to a recovery folder.

The recovery folder is ``$OPENMEDLAB_RECOVERY_DIR`` when set, else ``recovery/`` in the user's data
folder (``~/.local/share/napari-openmedlab/recovery`` on Linux). Each image has its own subfolder,
keyed by its source path and shape, holding ``labels.nii.gz`` (in the image's geometry, through
:func:`io.write_volume`, which writes atomically) and ``prompt_log.json`` (written to a temporary
file, then renamed). Writes run on one background thread; a newer snapshot replaces one that is
still waiting, so a burst of commits costs one write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

from ..io import Volume, read_volume, write_volume
from ..io.writers import file_mode_for

RECOVERY_ENV = "OPENMEDLAB_RECOVERY_DIR"
LABELS_FILE = "labels.nii.gz"
LOG_FILE = "prompt_log.json"

logger = logging.getLogger(__name__)


def recovery_root() -> Path:
    """Where recovery folders live (not created here)."""
    env = os.environ.get(RECOVERY_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-openmedlab")) / "recovery"


def image_key(source: str | os.PathLike | None, shape) -> str:
    """A stable key for an image: hash of its absolute source path and its shape."""
    src = os.path.abspath(os.fspath(source)) if source else "<no source>"
    text = f"{src}|{tuple(int(s) for s in shape)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def write_json_atomic(path: Path, data: dict) -> Path:
    """Write JSON to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        os.chmod(tmp, file_mode_for(path))  # mkstemp makes 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class RecoveryStore:
    """The recovery folder of one image."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    @classmethod
    def for_image(cls, source, shape, name: str = "", root: str | os.PathLike | None = None) -> RecoveryStore:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name or (Path(os.fspath(source)).name if source else "image"))
        base = Path(root) if root else recovery_root()
        return cls(base / f"{stem[:40]}-{image_key(source, shape)}")

    @property
    def labels_path(self) -> Path:
        return self.folder / LABELS_FILE

    @property
    def log_path(self) -> Path:
        return self.folder / LOG_FILE

    def exists(self) -> bool:
        return self.labels_path.is_file() and self.log_path.is_file()

    def save(self, labels: Volume, log: dict) -> None:
        """Write the labels (atomic) and then the prompt log (atomic)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        write_volume(labels, self.labels_path, labels=True)
        write_json_atomic(self.log_path, log)

    def load(self) -> tuple[Volume, dict]:
        """The saved labels and prompt log."""
        volume = read_volume(self.labels_path)
        log = json.loads(self.log_path.read_text(encoding="utf-8"))
        return volume, log

    def summary(self) -> str:
        """A line for the restore prompt: when it was saved, how many commits."""
        try:
            log = json.loads(self.log_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return "unreadable recovery data"
        n = len(log.get("commits", []))
        return f"{n} commit{'s' if n != 1 else ''}, saved {log.get('saved', '?')}"

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class Autosaver:
    """Runs :meth:`RecoveryStore.save` on one background thread.

    Per recovery folder only the newest snapshot is kept (older ones are superseded), but a
    snapshot of one image never displaces another image's: switching images loses no save.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[RecoveryStore, Volume, dict]] = {}
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self.last_error: BaseException | None = None
        self.saves = 0

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
            except Exception as err:  # keep the thread alive; the widget shows last_error
                logger.exception("autosave to %s failed", store.folder)
                self.last_error = err
