"""The thread count follows the cores other processes leave free (or a fixed choice)."""

import pytest

from napari_openmedlab.models import threads as th


class _Clock:
    """Stands in for the wall clock, /proc/stat and our own CPU time."""

    def __init__(self, monkeypatch):
        self.t, self.system, self.own = 100.0, 0.0, 0.0
        monkeypatch.setattr(th.time, "monotonic", lambda: self.t)
        monkeypatch.setattr(th, "_system_busy_seconds", lambda: self.system)
        monkeypatch.setattr(th, "_own_cpu_seconds", lambda: self.own)
        monkeypatch.setattr(th, "usable_cores", lambda: 4)

    def advance(self, seconds, others_busy, own_busy=0.0):
        self.t += seconds
        self.own += own_busy * seconds
        self.system += (others_busy + own_busy) * seconds


def test_automatic_uses_the_cores_others_leave_free(monkeypatch):
    clock = _Clock(monkeypatch)
    policy = th.ThreadPolicy()
    assert policy.automatic and policy.choose() == 4  # nothing measured yet: all cores
    clock.advance(2.0, others_busy=1.0, own_busy=1.5)  # our own work does not count
    assert policy.choose() == 3
    clock.advance(2.0, others_busy=2.9)
    assert policy.choose() == 1
    clock.advance(0.05, others_busy=0.0)  # too short a look to say anything: keep the choice
    assert policy.choose() == 1
    clock.advance(2.0, others_busy=0.2)  # a little background noise does not take a core
    assert policy.choose() == 4
    clock.advance(2.0, others_busy=9.0)
    assert policy.choose() == 1  # never fewer than one


def test_fixed_count_and_bad_values(monkeypatch):
    clock = _Clock(monkeypatch)
    policy = th.ThreadPolicy(2)
    clock.advance(2.0, others_busy=4.0)
    assert not policy.automatic and policy.choose() == 2
    assert th.ThreadPolicy(0).automatic
    with pytest.raises(ValueError, match="threads"):
        th.ThreadPolicy(-1)


def test_apply_sets_torch_threads(monkeypatch):
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        assert th.ThreadPolicy(1).apply() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_real_sample_is_sane():
    policy = th.ThreadPolicy()
    assert 1 <= policy.choose() <= th.usable_cores()
