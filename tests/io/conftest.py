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
