"""Per-slice embedding cache for the 2D engines: LRU, bounded in bytes, batched background prefetch.

A 2D foundation model encodes one slice at a time (SAM ViT-B: 256x64x64 float32 = 4 MiB per
slice, SAM-Med2D: 256x16x16 = 256 KiB). Clicking around a volume and propagating through it
revisits slices, so the embeddings are kept, most recently used last, until their total size
passes ``max_bytes``; then the least recently used ones are dropped.

**Prefetch** (``prefetch(keys, batch)``) computes embeddings in one background thread, in the
order given, ``batch`` keys per ``compute_many`` call, so that the slices the user will need next
(those a propagation walks through) are ready when asked for. A newer ``prefetch`` replaces the
keys still queued (the user has moved on); ``cancel_prefetch`` drops them.

**One computation at a time, the caller's first.** Every computation, in the background or in
the caller's thread, holds one lock: two encoders on a small CPU only slow each other down. A
caller that needs keys (``get``, ``get_many``) computes them itself at once, as one batch, taking
them out of the queue; the background thread starts no new batch while a caller waits, so a
caller waits at most for the one batch already running. A key the background thread is
computing is awaited, never computed twice.

``clear`` (new volume, new window) drops everything and abandons queued prefetches; a result
computed for an older generation is discarded. Everything is thread-safe; ``compute`` runs
outside the state lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

DEFAULT_MAX_BYTES = 512 * 1024 * 1024

INTERACTIVE_PREFETCH = 32
"""The widget's ``prefetch`` for the 2D engine: slices on either side of a box or click encoded in
the background (an organ's whole axial run in most CTs; bounded by the cache's bytes)."""


def nbytes_of(value: Any) -> int:
    """Bytes held by ``value``: tensors, arrays, objects with ``nbytes``, and containers of them.

    Objects with a ``__dict__`` (dataclasses) are summed over their attributes; anything else
    counts 0, so the bound concerns the big buffers only.
    """
    if value is None:
        return 0
    numel = getattr(value, "numel", None)
    element_size = getattr(value, "element_size", None)
    if callable(numel) and callable(element_size):  # torch.Tensor
        return int(numel()) * int(element_size())
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):  # numpy
        return nbytes
    if isinstance(value, dict):
        return sum(nbytes_of(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes_of(v) for v in value)
    if hasattr(value, "__dict__"):
        return sum(nbytes_of(v) for v in vars(value).values())
    return 0


class _Running:
    """A key being computed: its value (or error) once ``done`` is set."""

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


class SliceCache:
    """LRU cache of per-slice values computed on demand by ``compute(key)``.

    Args:
        compute: builds the value of a key (e.g. ``(axis, index)`` -> image embedding).
        max_bytes: bound on the summed size of the cached values; the most recent value is
            always kept even if it alone is larger.
        sizeof: size of a value in bytes (default :func:`nbytes_of`).
        compute_many: builds the values of several keys in one call (a batch through the
            network); default: ``compute`` on each.
    """

    def __init__(
        self,
        compute: Callable[[Hashable], Any],
        max_bytes: int = DEFAULT_MAX_BYTES,
        sizeof: Callable[[Any], int] = nbytes_of,
        compute_many: Callable[[Sequence[Hashable]], Sequence[Any]] | None = None,
    ) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self._compute = compute
        self._compute_many = compute_many or (lambda keys: [compute(k) for k in keys])
        self.max_bytes = int(max_bytes)
        self._sizeof = sizeof
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # a caller finished; the queue changed
        self._compute_lock = threading.Lock()  # one computation at a time
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._running: dict[Hashable, _Running] = {}
        self._queue: OrderedDict[Hashable, None] = OrderedDict()
        self._batch = 1
        self._callers = 0  # callers computing or about to: the background thread holds back
        self._draining = False
        self._generation = 0
        self._executor: ThreadPoolExecutor | None = None
        #: statistics, for status lines and tests
        self.hits = 0
        self.misses = 0
        self.computed = 0
        self.prefetched = 0

    # -- queries -----------------------------------------------------------------------------

    def size_of(self, value: Any) -> int:
        """What ``value`` counts against ``max_bytes``."""
        return int(self._sizeof(value))

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes

    def keys(self) -> list[Hashable]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._items)

    def queued(self) -> list[Hashable]:
        """Keys waiting for the background thread, in the order it will take them."""
        with self._lock:
            return list(self._queue)

    def peek(self, key: Hashable) -> Any | None:
        """The cached value, or None; does not compute nor change the LRU order."""
        with self._lock:
            entry = self._items.get(key)
            return None if entry is None else entry[0]

    # -- the main calls ----------------------------------------------------------------------

    def get(self, key: Hashable) -> Any:
        """The value of ``key``: cached, awaited from the prefetch thread, or computed now."""
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[Hashable]) -> list[Any]:
        """The values of ``keys``; the missing ones (not cached, not being computed) are computed
        here in one ``compute_many`` call, ahead of anything queued for the background."""
        found: dict[Hashable, Any] = {}
        with self._lock:
            awaited: dict[Hashable, _Running] = {}
            missing: list[Hashable] = []
            for key in keys:
                if key in found or key in awaited or key in missing:
                    continue
                entry = self._items.get(key)
                if entry is not None:
                    self._items.move_to_end(key)
                    self.hits += 1
                    found[key] = entry[0]
                elif key in self._running:
                    awaited[key] = self._running[key]
                else:
                    missing.append(key)
                    self._queue.pop(key, None)  # computed here, now
            if missing:
                self._callers += 1
        if missing:
            try:
                found.update(zip(missing, self._compute_now(missing, background=False)))
            finally:
                with self._lock:
                    self._callers -= 1
                    self._changed.notify_all()
        for key, running in awaited.items():
            running.done.wait()
            with self._lock:
                fresh = running.generation == self._generation and running.error is None
                if fresh and running.value is not None:
                    self.hits += 1
                    found[key] = running.value
                    continue
            found[key] = self.get(key)  # the background compute failed or is stale: here, now
        return [found[key] for key in keys]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._store(key, value)

    def clear(self) -> None:
        """Drop every value and abandon queued prefetches (a running one is discarded)."""
        with self._lock:
            self._generation += 1
            self._items.clear()
            self._bytes = 0
            self._queue.clear()
            self._running.clear()  # their results belong to the old generation: not stored

    # -- prefetch ----------------------------------------------------------------------------

    def prefetch(self, keys: Iterable[Hashable], batch: int = 1) -> None:
        """Compute ``keys`` in the background thread, in order, ``batch`` per call, unless cached
        or running. Keys queued earlier and not started yet are abandoned: only the latest
        request counts (the user has moved on)."""
        with self._lock:
            self._queue.clear()
            for key in keys:
                if key not in self._items and key not in self._running:
                    self._queue[key] = None
            self._batch = max(1, int(batch))
            if self._queue and not self._draining:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slice-prefetch")
                self._draining = True
                self._executor.submit(self._drain)
            self._changed.notify_all()

    def cancel_prefetch(self) -> None:
        """Drop the queued keys (one running batch still finishes and is kept)."""
        with self._lock:
            self._queue.clear()

    def wait_prefetch(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or running in the background; False on timeout."""
        with self._lock:
            return self._changed.wait_for(lambda: not self._draining, timeout)

    def close(self) -> None:
        """Stop the background thread (after its current compute)."""
        with self._lock:
            self.clear()
            executor, self._executor = self._executor, None
            self._changed.notify_all()
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def _drain(self) -> None:
        """The background thread's loop: one batch of queued keys at a time, callers first."""
        while True:
            with self._lock:
                self._changed.wait_for(lambda: not self._callers or not self._queue)
                keys = []
                while self._queue and len(keys) < self._batch:
                    key, _ = self._queue.popitem(last=False)
                    if key not in self._items and key not in self._running:
                        keys.append(key)
                if not keys:  # decided under the lock: a prefetch after this starts a new drain
                    self._draining = False
                    self._changed.notify_all()
                    return
            try:
                self._compute_now(keys, background=True)
            except Exception:  # a caller that needs the key computes it again and sees the error
                pass
            except BaseException:
                with self._lock:
                    self._draining = False
                    self._changed.notify_all()
                raise

    # -- internals ---------------------------------------------------------------------------

    def _compute_now(self, keys: list[Hashable], background: bool) -> list[Any]:
        """Compute ``keys`` (marked running) under the compute lock; store them if still current."""
        with self._lock:
            generation = self._generation
            marks = {key: _Running(generation) for key in keys}
            self._running.update(marks)
            if not background:
                self.misses += len(keys)
        values: list[Any] | None = None
        error: BaseException | None = None
        try:
            with self._compute_lock:
                values = list(self._compute_many(keys))
            if len(values) != len(keys):
                raise RuntimeError(f"compute_many gave {len(values)} values for {len(keys)} keys")
        except BaseException as err:
            error = err
        with self._lock:
            for i, key in enumerate(keys):
                mark = marks[key]
                if self._running.get(key) is mark:
                    del self._running[key]
                mark.error = error
                if error is None:
                    mark.value = values[i]
                    self.computed += 1
                    self.prefetched += int(background)
                    if generation == self._generation:
                        self._store(key, values[i])
                mark.done.set()
            self._changed.notify_all()
        if error is not None:
            raise error
        return values

    def _store(self, key: Hashable, value: Any) -> None:
        size = int(self._sizeof(value))
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        self._items[key] = (value, size)
        self._bytes += size
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, (_, dropped) = self._items.popitem(last=False)
            self._bytes -= dropped

    def __del__(self) -> None:  # pragma: no cover - best effort
        executor = getattr(self, "_executor", None)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
