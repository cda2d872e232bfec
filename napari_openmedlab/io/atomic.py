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
import glob
import json
import os
import shutil
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
    return 0o666 & ~_umask()


def _describe(err: BaseException) -> str:
    """The cause of a failed write in a few words (one line, whatever the library said)."""
    if isinstance(err, FileWriteError) and getattr(err, "reason", None):
        return err.reason
    code = err.errno if isinstance(err, OSError) else None
    text = str(err)
    if code == errno.ENOSPC or "No space left" in text:
        return "the disk is full"
    if code == errno.EDQUOT or "quota exceeded" in text.lower():
        return "the disk quota is exceeded"
    if code == errno.EROFS or "Read-only file system" in text:
        return "the file system is read-only"
    if code in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        return "permission denied"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[-1][:200] if lines else "") or type(err).__name__


def _cut_short(err: BaseException) -> bool:
    """Whether ``err`` says the file came out incomplete or unreadable (not a refused content)."""
    if isinstance(err, FileWriteError):
        return False
    if isinstance(err, OSError):
        return err.errno in (errno.EIO, None)
    return type(err) is RuntimeError  # SimpleITK's writers raise plain RuntimeErrors


def _nearly_full(folder: Path, margin: int = 1 << 20) -> bool:
    """Whether ``folder``'s file system has less than ``margin`` bytes left for us."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return False
    return st.f_bavail * st.f_frsize < margin


def write_error(target: Path, err: BaseException, tail: str = "") -> FileWriteError:
    """A one-line :class:`FileWriteError` for ``target`` whose ``reason`` is the cause alone."""
    reason = _describe(err)
    out = FileWriteError(f"{target}: could not be written ({reason}){tail}")
    out.reason = reason
    return out


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
    if target.is_dir():
        raise FileWriteError(f"{target}: could not be written (it is a folder, not a file)")
    remove_stale_temporaries(folder, name=target.name)  # a killed earlier write of this same file
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=temporary_name(target), suffix=suffix, dir=folder)
        os.close(fd)
    except OSError as err:
        raise write_error(target, err) from None
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
    except Exception as err:
        if _cut_short(err) and _nearly_full(folder):
            err = OSError(errno.ENOSPC, "No space left on device")  # what cut the file short
        raise write_error(target, err, "; the previous file is untouched") from err
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


def remove_stale_temporaries(
    folder: str | os.PathLike, *, recursive: bool = False, name: str = ""
) -> list[Path]:
    """Remove temporary files (and folders) left in ``folder`` by killed writers; returns them.

    Only entries carrying :data:`TEMP_MARKER` whose writer pid is no longer alive are removed, so
    a concurrent writer's temporary is never touched. ``name``: only those of this target name.
    Never raises: cleaning up is best effort and must not stop the program from starting.
    """
    folder = Path(folder)
    try:
        if not folder.is_dir():
            return []
        pattern = f".{glob.escape(name)}*{TEMP_MARKER}*" if name else f".*{TEMP_MARKER}*"
        found = list(folder.glob(f"**/{pattern}" if recursive else pattern))
    except OSError:
        return []
    removed = []
    for path in found:
        pid_text = path.name.split(TEMP_MARKER, 1)[1].split("-", 1)[0]
        try:
            pid = int(pid_text)
        except ValueError:
            continue
        if pid == os.getpid() or pid_alive(pid):  # a live writer's file (ours too) is not stale
            continue
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on a clean exit, rename it to ``target``.

    For a set of files that is only valid whole (an autosave generation): readers see either no
    ``target`` or all of it. ``target`` must not exist yet. Files inside should still be written
    (and verified) with :func:`atomic_path` or the ``atomic_write_*`` helpers.
    """
    target = Path(target)
    folder = target.parent
    if target.exists():
        raise FileWriteError(f"{target}: could not be written (it exists already)")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=temporary_name(target), dir=folder))
    except OSError as err:
        raise write_error(target, err) from None
    try:
        yield tmp
        for entry in tmp.iterdir():
            _fsync_path(entry)
        _fsync_dir(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        os.rename(tmp, target)
        _fsync_dir(folder)
    except Exception as err:
        raise write_error(target, err) from err
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (also used by the data-set lock)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
