"""``./run``: the torch pin holds for the whole install, so no dependency can pull the CUDA build.

The script runs for real, with ``python3`` on PATH replaced by a stand-in whose venv's ``pip``
records its arguments instead of installing anything.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.skipif(sys.platform == "win32" or not shutil.which("bash"), reason="bash script")

FAKE_PYTHON3 = """#!/usr/bin/env bash
# stand-in for `python3 -m venv DIR`: a venv whose pip logs its arguments and whose python says
# the package is already installed here
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin"
  printf '#!/usr/bin/env bash\\necho "pip $*" >> "%s"\\nfor a in "$@"; do case "$a" in -c) c=1;; *) if [ -n "$c" ]; then echo "constraint: $(cat "$a")" >> "%s"; c=; fi;; esac; done\\n' "$LOG" "$LOG" > "$3/bin/pip"
  printf '#!/usr/bin/env bash\\nexit 0\\n' > "$3/bin/python"
  chmod +x "$3/bin/pip" "$3/bin/python"
  exit 0
fi
[ "$1" = "-c" ] && exit 0  # version and venv-module checks: a Python 3.10+ with venv
exit 1
"""


def _stand_in(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run_setup(tmp_path, extra_env=None) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    _stand_in(bin_dir, "python3", FAKE_PYTHON3)
    _stand_in(bin_dir, "dpkg", "#!/usr/bin/env bash\nexit 0\n")  # system packages: all present
    _stand_in(bin_dir, "nvidia-smi", "#!/usr/bin/env bash\nexit 9\n")  # a driver tool, but no GPU
    log = tmp_path / "pip.log"
    log.unlink(missing_ok=True)
    path = os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"])
    env = {"PATH": path, "HOME": str(tmp_path), "LOG": str(log), "OPENMEDLAB_VENV": str(tmp_path / "venv"),
           **(extra_env or {})}
    result = subprocess.run(["bash", str(REPO / "run"), "setup"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return log.read_text().splitlines() if log.exists() else []


def test_without_a_gpu_every_install_is_held_to_the_cpu_torch(tmp_path):
    lines = _run_setup(tmp_path)
    installs = [line for line in lines if line.startswith("pip install") and "--upgrade pip" not in line]
    assert any("-e .[test]" in line for line in installs), lines
    # the pin is a constraint on every install, not only on the first one
    assert all(" -c " in line for line in installs), lines
    assert {line for line in lines if line.startswith("constraint:")} == {"constraint: torch==2.13.0"}


def test_a_second_setup_installs_nothing(tmp_path):
    assert _run_setup(tmp_path)
    assert _run_setup(tmp_path) == []


def test_a_python_without_venv_is_named_before_anything_is_made(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stand_in(bin_dir, "python3", "#!/usr/bin/env bash\n[ \"$1\" = -c ] && case \"$2\" in *ensurepip*) exit 1;; esac\nexit 0\n")
    _stand_in(bin_dir, "dpkg", "#!/usr/bin/env bash\nexit 0\n")
    env = {"PATH": os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"]), "HOME": str(tmp_path),
           "OPENMEDLAB_VENV": str(tmp_path / "venv")}
    result = subprocess.run(["bash", str(REPO / "run"), "setup"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and "python3-venv" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_the_torch_build_can_be_chosen(tmp_path):
    lines = _run_setup(tmp_path, {"OPENMEDLAB_TORCH": "torch==2.14.1"})
    assert {line for line in lines if line.startswith("constraint:")} == {"constraint: torch==2.14.1"}
