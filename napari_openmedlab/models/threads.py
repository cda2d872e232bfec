"""How many torch threads a click should use: the cores other processes leave free.

On a small shared CPU a second torch thread is a loss as soon as another process holds that core:
every parallel region waits for the slower thread (measured on the 2-core machine: the next-click
decoder 40 ms with 1 thread, 733 ms with 2 while another process was busy). So before each
prediction :class:`ThreadPolicy` counts the cores the *other* processes kept busy since its last
look (``/proc/stat`` busy time minus this process's own CPU time, over the wall time between two
looks, typically the user's think time between clicks) and uses the rest, at least one.

Where ``/proc/stat`` is missing (macOS, Windows) the one-minute load average stands in for the
busy cores. A fixed count (``threads=N``) bypasses all of this.
"""

from __future__ import annotations

import os
import time

#: a look shorter than this says little about the load; keep the previous choice
_MIN_WINDOW_S = 0.2


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _system_busy_seconds() -> float | None:
    """CPU seconds all processes spent busy since boot (``/proc/stat``), or None if unknown."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    values = [int(v) for v in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    busy = sum(values[:8]) - idle  # user..steal; guest time is already inside user
    return busy / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class ThreadPolicy:
    """Chooses the torch thread count before each prediction.

    Args:
        threads: a fixed count, or ``None``/``0`` for automatic (the free cores).
    """

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None and int(threads) < 0:
            raise ValueError(f"threads must be 0 (automatic) or a positive count; got {threads}")
        self.fixed = int(threads) if threads else None
        self.cores = usable_cores()
        self.chosen = self.fixed or self.cores
        self._last = self._sample()

    @property
    def automatic(self) -> bool:
        return self.fixed is None

    def _sample(self) -> tuple[float, float | None, float]:
        return time.monotonic(), _system_busy_seconds(), _own_cpu_seconds()

    def others_busy(self) -> float | None:
        """Cores the other processes kept busy since the last look (None: window too short)."""
        now = self._sample()
        (t0, sys0, own0), (t1, sys1, own1) = self._last, now
        if t1 - t0 < _MIN_WINDOW_S:
            return None
        self._last = now
        if sys0 is None or sys1 is None:
            try:
                return max(0.0, os.getloadavg()[0] - (own1 - own0) / (t1 - t0))
            except OSError:
                return 0.0
        return max(0.0, ((sys1 - sys0) - (own1 - own0)) / (t1 - t0))

    def choose(self) -> int:
        """The thread count for the next prediction (and remember it as :attr:`chosen`)."""
        if self.fixed is not None:
            self.chosen = self.fixed
            return self.chosen
        busy = self.others_busy()
        if busy is not None:
            # a core counts as taken when another process used more than a third of it
            self.chosen = max(1, min(self.cores, self.cores - int(busy + 2 / 3)))
        return self.chosen

    def apply(self) -> int:
        """:meth:`choose`, then set torch's intra-op thread count to it (process-wide)."""
        import torch

        n = self.choose()
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        return n


class ThreadSetting:
    """The ``cpu_threads`` setting of an engine that runs under a :class:`ThreadPolicy`
    (``self.thread_policy``): the CLI's ``--threads``, the widget's spin box and the API set it."""

    thread_policy: ThreadPolicy

    @property
    def cpu_threads(self) -> int:
        """Torch threads on the CPU: a fixed count, or 0 for the cores others leave free."""
        return self.thread_policy.fixed or 0

    @cpu_threads.setter
    def cpu_threads(self, value: int | None) -> None:
        self.thread_policy = ThreadPolicy(value)
