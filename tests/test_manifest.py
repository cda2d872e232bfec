"""The npe2 manifest is valid and every python_name imports, exactly as napari would import it."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

npe2 = pytest.importorskip("npe2")
MANIFEST = Path(__file__).resolve().parents[1] / "napari_openmedlab" / "napari.yaml"


def test_manifest_validates():
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "napari-openmedlab"
    npe2_cli = Path(sys.executable).with_name("npe2")
    # npe2 prints a check mark: force UTF-8 so a C locale (as in CI) cannot break the run
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUTF8": "1"}
    result = subprocess.run(
        [str(npe2_cli), "validate", str(MANIFEST)], capture_output=True, env=env, encoding="utf-8", errors="replace"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_python_name_imports():
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    for command in manifest.contributions.commands:
        module_name, attr = command.python_name.split(":")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, attr)), command.python_name


def test_entry_point_is_registered():
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="napari.manifest") if ep.name == "napari-openmedlab"]
    assert eps and eps[0].value == "napari_openmedlab:napari.yaml"


def test_importing_the_package_pulls_no_torch_or_qt():
    code = (
        "import sys, napari_openmedlab, napari_openmedlab.io, napari_openmedlab.engines, "
        "napari_openmedlab.layers, napari_openmedlab.cli;"
        "bad = [m for m in ('torch', 'napari', 'qtpy', 'PyQt6') if m in sys.modules];"
        "print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
