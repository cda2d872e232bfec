"""The one way this project writes files: never half a file, never a lost good file.

Every writer (volumes, JSON, CSV, plots, autosave snapshots, structure sets, DICOM) goes through
:func:`atomic_path`: the content is written to a temporary file in the target's folder, flushed and
fsynced, checked (non-empty, and by an optional ``verify`` callback that reads it back), then renamed
over the target, and the folder is fsynced so the rename survives a power cut. On any failure the
temporary file is removed, the target is left byte-identical, and :class:`FileWriteError` names the
path and the cause in one line.

Temporary files carry the marker :data:`TEMP_MARKER` and the writer's pid, so one left behind by a
killed process is recognised and removed by :func:`remove_stale_temporaries` at the next start.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import FileWriteError

TEMP_MARKER = ".omltmp-"


def file_mode_for(path: Path) -> int:
    """Permissions for a file written through a temporary: the replaced file's, else 0666 - umask."""
    if path.exists():
        return stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return "the disk is full"
    if isinstance(err, OSError) and err.errno in (errno.EROFS,):
        return "the file system is read-only"
    if isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync a folder; the rename stands
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def temporary_name(target: Path) -> str:
    """The prefix of a temporary file for ``target`` (hidden, marked, with our pid)."""
    return f".{target.name}{TEMP_MARKER}{os.getpid()}-"


def check_writable_folder(target: str | os.PathLike) -> Path:
    """Refuse early (before any work) a target whose folder is missing or not writable."""
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileWriteError(f"{target}: the folder {folder} does not exist")
    if target.is_dir():
        raise FileWriteError(f"{target}: is a folder, not a file")
    try:
        fd, probe = tempfile.mkstemp(prefix=temporary_name(target), dir=folder)
    except OSError as err:
        raise FileWriteError(f"{target}: cannot write in {folder} ({_describe(err)})") from None
    os.close(fd)
    os.unlink(probe)
    return target


@contextlib.contextmanager
def atomic_path(
    target: str | os.PathLike,
    *,
    suffix: str = "",
    verify: Callable[[Path], None] | None = None,
    min_size: int = 1,
) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on a clean exit, check it and rename it into place.

    ``suffix``: the temporary file's suffix (writers such as SimpleITK choose the format by it).
    ``verify``: called with the temporary path after fsync; raise to refuse the file (for writers
    that do not report a short write). ``min_size``: fewer bytes than this is a failed write.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise FileWriteError(f"{target}: could not be written (the folder {folder} does not exist)")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=temporary_name(target), suffix=suffix, dir=folder)
        os.close(fd)
    except OSError as err:
        raise FileWriteError(f"{target}: could not be written ({_describe(err)})") from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        size = tmp.stat().st_size
        if size < min_size:
            raise OSError(errno.EIO, f"the written file is incomplete ({size} bytes)")
        _fsync_path(tmp)
        if verify is not None:
            verify(tmp)
        os.chmod(tmp, file_mode_for(target))  # mkstemp makes 0600; keep what others could read
        os.replace(tmp, target)
        _fsync_dir(folder)
    except FileWriteError:
        raise
    except Exception as err:
        raise FileWriteError(
            f"{target}: could not be written ({_describe(err)}); the previous file is untouched"
        ) from err
    finally:
        with contextlib.suppress(OSError):
            if tmp.exists():
                tmp.unlink()


def atomic_write_bytes(target: str | os.PathLike, data: bytes, *, min_size: int = 1) -> Path:
    """Write ``data`` to ``target`` atomically; the size is checked after fsync."""
    with atomic_path(target, min_size=min(min_size, len(data))) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if tmp.stat().st_size != len(data):
            raise OSError(errno.EIO, f"short write ({tmp.stat().st_size} of {len(data)} bytes)")
    return Path(target)


def atomic_write_text(target: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(target, text.encode(encoding), min_size=0)


def atomic_write_json(target: str | os.PathLike, data, *, indent: int | None = 1) -> Path:
    return atomic_write_text(target, json.dumps(data, indent=indent) + "\n")


def remove_stale_temporaries(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """Remove temporary files left in ``folder`` by writers that were killed; returns them.

    Only files carrying :data:`TEMP_MARKER` whose writer pid is no longer alive are removed, so a
    concurrent writer's temporary is never touched.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    pattern = f"**/.*{TEMP_MARKER}*" if recursive else f".*{TEMP_MARKER}*"
    for path in folder.glob(pattern):
        pid_text = path.name.split(TEMP_MARKER, 1)[1].split("-", 1)[0]
        try:
            pid = int(pid_text)
        except ValueError:
            continue
        if pid == os.getpid() or _pid_alive(pid):  # a live writer's file (ours too) is not stale
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
