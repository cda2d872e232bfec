"""The fault-and-bad-input suite: every case ends as a clear error or a right answer.

Never a traceback, never a wrong answer with exit code 0, never a good file lost. Cases needing a
real small file system (a tmpfs) run when the tests run as root (CI does) and are skipped
otherwise; the fault-injection cases run everywhere.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from faults import all_cases, can_mount, classify  # noqa: E402

CASES = all_cases()


def test_case_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, tmp_path, monkeypatch):
    if case.needs_mount and not can_mount():
        pytest.skip("needs a real small file system: root and a tmpfs mount (CI runs as root)")
    monkeypatch.setenv("OPENMEDLAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OPENMEDLAB_RECOVERY_DIR", str(tmp_path / "recovery-root"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    outcome = case.run(tmp_path)
    result = classify(case, outcome)
    expected = "clear error" if case.expect == "error" else "correct"
    assert result == expected, (
        f"{case.what}: {result}\nrc={outcome.rc}\nmessage={outcome.message!r}\nlost={outcome.lost}\n"
        f"wrong={outcome.wrong}\n{outcome.traceback}"
    )
    if case.expect == "error":
        lines = [line for line in outcome.message.strip().splitlines() if line.strip()]
        assert lines, "an error with no message"
