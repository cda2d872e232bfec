"""io.atomic and the written-file checks: a write is complete and verified, or nothing changes."""

import errno
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from napari_openmedlab.io import FileWriteError, Geometry, Volume, write_volume
from napari_openmedlab.io.atomic import (
    TEMP_MARKER,
    atomic_folder,
    atomic_path,
    atomic_write_text,
    check_writable_folder,
    remove_stale_temporaries,
)
from napari_openmedlab.io.integrity import nifti_matches


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nifti_matches_what_was_written_and_nothing_else(tmp_path, suffix):
    array = np.random.default_rng(0).integers(0, 500, (6, 7, 8)).astype(np.int16)
    path = tmp_path / f"x{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path), suffix.endswith(".gz"))
    assert nifti_matches(path, array)
    other = array.copy()
    other[3, 3, 3] += 1
    assert not nifti_matches(path, other)
    assert not nifti_matches(path, array[:, :, :7])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # cut short, as a full disk does
    assert not nifti_matches(path, array)


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "notes.txt"
    atomic_write_text(target, "good\n")
    with pytest.raises(FileWriteError, match=r"notes.txt: could not be written \(the disk is full\)"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "good\n" and os.listdir(tmp_path) == ["notes.txt"]


def test_verify_refuses_and_a_folder_target_is_named(tmp_path):
    def refuse(path):
        raise OSError(errno.EIO, "reads back different")

    with pytest.raises(FileWriteError, match="reads back different"):
        with atomic_path(tmp_path / "a.bin", verify=refuse) as tmp:
            tmp.write_bytes(b"x")
    assert os.listdir(tmp_path) == []
    (tmp_path / "dir.nii.gz").mkdir()
    with pytest.raises(FileWriteError, match="is a folder"):
        write_volume(Volume(np.zeros((2, 2, 2), np.uint8), Geometry()), tmp_path / "dir.nii.gz")
    with pytest.raises(FileWriteError, match="is a folder"):
        check_writable_folder(tmp_path / "dir.nii.gz")


def test_stale_temporaries_of_dead_writers_go_live_ones_stay(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    stale = tmp_path / f".mask.nii.gz{TEMP_MARKER}{dead}-abc.nii.gz"
    stale.write_bytes(b"\0" * 100)
    stale_dir = tmp_path / "sub" / f".gen-000002{TEMP_MARKER}{dead}-xyz"
    stale_dir.mkdir(parents=True)
    (stale_dir / "labels.nii.gz").write_bytes(b"\0")
    live = tmp_path / f".other.csv{TEMP_MARKER}{alive}-def"
    live.write_bytes(b"\0")
    assert set(remove_stale_temporaries(tmp_path, recursive=True)) == {stale, stale_dir}
    assert live.exists() and not stale.exists() and not stale_dir.exists()
    stale.write_bytes(b"\0")  # the next write of the same file removes its own stale temporary
    write_volume(Volume(np.zeros((2, 2, 2), np.uint8), Geometry()), tmp_path / "mask.nii.gz")
    assert not stale.exists()


def test_atomic_folder_appears_whole_or_not_at_all(tmp_path):
    with atomic_folder(tmp_path / "gen-1") as tmp:
        (tmp / "a.txt").write_text("a")
    assert (tmp_path / "gen-1" / "a.txt").read_text() == "a"
    with pytest.raises(FileWriteError):
        with atomic_folder(tmp_path / "gen-2") as tmp:
            (tmp / "a.txt").write_text("a")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert sorted(os.listdir(tmp_path)) == ["gen-1"]
