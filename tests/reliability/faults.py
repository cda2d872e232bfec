"""Tools of the fault-and-bad-input suite: small file systems, test volumes, outcome classes.

Used by ``tests/reliability/test_cases.py`` and by ``benchmarks/reliability_census.py`` (which
prints the table and counts of ``docs/reliability.md``); no pytest import here.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
import shutil
import subprocess
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

OUTCOMES = ("clear error", "correct", "traceback", "silent-wrong", "data lost")


@dataclass
class Outcome:
    """What one case did: exit code, what the user read, whether a good file was lost."""

    rc: int
    message: str = ""
    traceback: str = ""
    lost: list[str] = field(default_factory=list)
    wrong: str = ""  # for cases that must succeed: what was wrong with the result


@dataclass
class Case:
    """One bad input or fault. ``expect``: ``error`` (a clear refusal) or ``ok`` (a right answer)."""

    id: str
    group: str
    what: str
    expect: str
    run: Callable[[Path], Outcome]
    needs_mount: bool = False


def classify(case: Case, out: Outcome) -> str:
    """One of :data:`OUTCOMES`."""
    if out.traceback or out.rc < 0 or out.rc >= 128:
        return "traceback"
    if out.lost:
        return "data lost"
    if case.expect == "error":
        if out.rc == 0 or out.wrong:  # no refusal, or a misleading one
            return "silent-wrong"
        return "clear error" if out.message.strip() and "Traceback" not in out.message else "traceback"
    return "correct" if out.rc == 0 and not out.wrong else "silent-wrong"


# --- running the CLI and the API ----------------------------------------------------------------
def run_cli(argv: list[str]) -> Outcome:
    """``openmedlab ARGV`` in this process; an escaping exception is recorded as a traceback."""
    from napari_openmedlab.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as stop:
            rc = stop.code if isinstance(stop.code, int) else (1 if stop.code else 0)
            if isinstance(stop.code, str):
                err.write(stop.code + "\n")
        except Exception:
            return Outcome(1, err.getvalue(), traceback.format_exc())
    return Outcome(rc, err.getvalue())


def run_api(call: Callable[[], object], expected: tuple[type[BaseException], ...]) -> Outcome:
    """``call()``: one of ``expected`` raised is a clear error (rc 1), anything else a traceback."""
    try:
        call()
    except expected as err:
        return Outcome(1, str(err))
    except Exception:
        return Outcome(1, "", traceback.format_exc())
    return Outcome(0)


def protect(*paths: Path) -> Callable[[], list[str]]:
    """Remember ``paths``' bytes; the returned function lists those changed or gone since."""
    before = {p: p.read_bytes() for p in paths}

    def changed() -> list[str]:
        return [p.name for p, data in before.items() if not p.is_file() or p.read_bytes() != data]

    return changed


def leftovers(folder: Path, allowed: set[str]) -> list[str]:
    """Names in ``folder`` other than ``allowed`` (temporaries a failed write left behind)."""
    return sorted(n for n in os.listdir(folder) if n not in allowed)


# --- a real small file system ---------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def can_mount() -> bool:
    """Whether a tmpfs can be mounted here (root, and a container that allows it): tried once."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount")):
        return False
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mount-probe-") as tmp:
        try:
            with small_filesystem(Path(tmp) / "fs", 64):
                return True
        except (OSError, subprocess.CalledProcessError):
            return False


@contextlib.contextmanager
def small_filesystem(where: Path, size_kb: int = 512):
    """A tmpfs of ``size_kb`` mounted at ``where`` (root only); unmounted on exit."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)],
                   check=True, capture_output=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


def remount_read_only(where: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True, capture_output=True)


def fill(folder: Path, leave_bytes: int = 0) -> Path:
    """Fill the file system of ``folder`` up, then free ``leave_bytes`` (rounded to blocks)."""
    filler = folder / "filler.bin"
    block = b"\0" * 4096
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
    if leave_bytes:
        size = filler.stat().st_size
        os.truncate(filler, max(0, size - leave_bytes))
    return filler


# --- the registry of cases -----------------------------------------------------------------------
CASES: list[Case] = []


def case(group: str, what: str, expect: str = "error", needs_mount: bool = False):
    """Register the decorated ``fn(tmp) -> Outcome`` as a case named after it."""

    def register(fn):
        CASES.append(Case(fn.__name__, group, what, expect, fn, needs_mount))
        return fn

    return register


def all_cases() -> list[Case]:
    """Every case (importing the case modules registers them)."""
    import cases_input  # noqa: F401
    import cases_write  # noqa: F401

    return list(CASES)


# --- test data ------------------------------------------------------------------------------------
SHAPE = (20, 40, 40)
CENTRE = (10, 20, 20)


def ct_array(seed: int = 0) -> np.ndarray:
    """A CT-like int16 volume: air-free body at 0 HU with noise, a 60 HU sphere of radius 7 at CENTRE."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(SHAPE)
    sphere = (z - CENTRE[0]) ** 2 + (y - CENTRE[1]) ** 2 + (x - CENTRE[2]) ** 2 <= 49
    array = rng.normal(0, 8, SHAPE) + 200 * sphere
    return np.round(array).astype(np.int16)


def sphere_labels() -> np.ndarray:
    z, y, x = np.indices(SHAPE)
    return ((z - CENTRE[0]) ** 2 + (y - CENTRE[1]) ** 2 + (x - CENTRE[2]) ** 2 <= 49).astype(np.uint8)


def write_image(path: Path, array: np.ndarray, spacing=(0.8, 0.8, 2.0)) -> Path:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path), path.name.endswith(".gz"))
    return path


def write_ct(tmp: Path, name: str = "ct.nii.gz") -> Path:
    return write_image(tmp / name, ct_array())


def segment_cli(tmp: Path, image: Path, *extra, out: Path | None = None) -> Outcome:
    """``openmedlab segment IMAGE`` with the weight-free engine and a click at the sphere's centre."""
    out = out or tmp / "mask.nii.gz"
    point = ",".join(map(str, CENTRE))
    return run_cli(["segment", image, "--model", "seeded-region", "--point", point, "--out", out, *extra])


def eval_cli(tmp: Path, image: Path, labels: Path, *extra) -> Outcome:
    return run_cli(["eval", image, labels, "--model", "seeded-region", "--clicks", "1", "--quiet",
                    "--out", tmp / "r.csv", *extra])


def volume(array: np.ndarray | None = None):
    from napari_openmedlab.io import Geometry, Volume

    return Volume(ct_array() if array is None else array, Geometry((0.8, 0.8, 2.0)))
