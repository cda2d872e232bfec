"""Fixtures for the DICOM RT exchange tests: generated CT series and the dciodvfy validator."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from dicom_factory import dciodvfy_errors, write_series  # noqa: E402


@pytest.fixture
def make_series(tmp_path):
    counter = {"n": 0}

    def make(**kwargs) -> Path:
        counter["n"] += 1
        return write_series(tmp_path / f"series{counter['n']}", **kwargs)

    return make


@pytest.fixture
def dciodvfy_clean():
    def check(path: Path) -> None:
        errors = dciodvfy_errors(path)
        assert not errors, f"dciodvfy reports errors for {path.name}:\n" + "\n".join(errors)

    return check


@pytest.fixture(autouse=True)
def _every_written_rt_file_is_valid(tmp_path):
    """After each test: every RTSTRUCT/SEG we wrote under tmp_path passes dciodvfy (no Error line).

    Files a test damages on purpose to check the refusals carry ``broken`` or ``wild`` in their name.
    """
    yield
    import pydicom

    for path in sorted(tmp_path.rglob("*.dcm")):
        if "broken" in path.name or "wild" in path.name:
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality", "Manufacturer"])
        except Exception:  # noqa: BLE001 - not a DICOM file: nothing to validate
            continue
        if ds.get("Manufacturer") == "napari-openmedlab" and ds.get("Modality") in ("RTSTRUCT", "SEG"):
            errors = dciodvfy_errors(path)
            assert not errors, f"dciodvfy reports errors for {path}:\n" + "\n".join(errors)
