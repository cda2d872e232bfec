"""``openmedlab view``: one clear line and a non-zero exit for a bad path or a missing display."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from napari_openmedlab.cli import main


@pytest.fixture
def no_display(monkeypatch):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")


def _bad_paths(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    fake = tmp_path / "scan.nii.gz"
    fake.write_text("not a NIfTI either\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    no_dicom = tmp_path / "photos"
    no_dicom.mkdir()
    (no_dicom / "a.txt").write_text("x")
    return {
        "text file": (text, "not a supported format"),
        "fake NIfTI": (fake, "could not be decoded"),
        "empty folder": (empty, "folder is empty"),
        "folder without DICOM": (no_dicom, "no DICOM series"),
        "missing path": (tmp_path / "missing.nii.gz", "no such file or folder"),
    }


@pytest.mark.parametrize(
    "case", ["text file", "fake NIfTI", "empty folder", "folder without DICOM", "missing path"]
)
def test_a_bad_path_is_one_line_naming_it(case, tmp_path, no_display, capsys):
    path, what = _bad_paths(tmp_path)[case]
    code = main(["view", str(path)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("openmedlab: error: ")
    assert str(path) in err and what in err


def test_no_display_is_one_line_and_exit_code_2(no_display, capsys):
    assert main(["view"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "DISPLAY" in err and "xvfb-run -a" in err


def test_no_display_from_the_command_line_has_no_qt_dump(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    code = "import sys; from napari_openmedlab.cli import main; sys.exit(main(['view']))"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_headless_qt_platform_counts_as_a_display(monkeypatch):
    from napari_openmedlab.cli.view import display_problem

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert display_problem() is None
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    assert "xvfb-run" in display_problem()
