"""Per-slice embedding cache for the 2D engines: LRU, bounded in bytes, optional prefetch.

A 2D foundation model encodes one slice at a time (SAM ViT-B: 256x64x64 float32 = 4 MiB per
slice, SAM-Med2D: 256x16x16 = 256 KiB). Clicking around a volume and propagating through it
revisits slices, so the embeddings are kept, most recently used last, until their total size
passes ``max_bytes``; then the least recently used ones are dropped.

Prefetch (``prefetch(keys)``) computes embeddings in one background thread so that scrolling to
a neighbouring slice finds its embedding ready. A ``get`` for a key the background thread is
computing waits for that result instead of computing it twice; keys still queued are computed
by the caller at once. ``clear`` (new volume, new window) drops everything and abandons queued
prefetches; a result computed for an older generation is discarded.

Everything is thread-safe; ``compute`` itself runs outside the lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

DEFAULT_MAX_BYTES = 512 * 1024 * 1024


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


class SliceCache:
    """LRU cache of per-slice values computed on demand by ``compute(key)``.

    Args:
        compute: builds the value of a key (e.g. ``(axis, index)`` -> image embedding).
        max_bytes: bound on the summed size of the cached values; the most recent value is
            always kept even if it alone is larger.
        sizeof: size of a value in bytes (default :func:`nbytes_of`).
    """

    def __init__(
        self,
        compute: Callable[[Hashable], Any],
        max_bytes: int = DEFAULT_MAX_BYTES,
        sizeof: Callable[[Any], int] = nbytes_of,
    ) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self._compute = compute
        self.max_bytes = int(max_bytes)
        self._sizeof = sizeof
        self._lock = threading.RLock()
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._running: dict[Hashable, Future] = {}  # key -> future of a background compute
        self._queued: dict[Hashable, Future] = {}
        self._generation = 0
        self._executor: ThreadPoolExecutor | None = None
        #: statistics, for status lines and tests
        self.hits = 0
        self.misses = 0
        self.computed = 0
        self.prefetched = 0

    # -- queries -----------------------------------------------------------------------------

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

    def peek(self, key: Hashable) -> Any | None:
        """The cached value, or None; does not compute nor change the LRU order."""
        with self._lock:
            entry = self._items.get(key)
            return None if entry is None else entry[0]

    # -- the main call -----------------------------------------------------------------------

    def get(self, key: Hashable) -> Any:
        """The value of ``key``: cached, awaited from the prefetch thread, or computed now."""
        with self._lock:
            entry = self._items.get(key)
            if entry is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return entry[0]
            running = self._running.get(key)
            queued = self._queued.pop(key, None)
            if queued is not None:
                queued.cancel()
            generation = self._generation
        if running is not None:
            try:
                value = running.result()
            except Exception:  # the background compute failed: compute here (and raise here)
                value = None
            with self._lock:
                if value is not None and generation == self._generation:
                    self.hits += 1
                    if key in self._items:
                        self._items.move_to_end(key)
                    return value
        with self._lock:
            self.misses += 1
        value = self._compute(key)
        with self._lock:
            self.computed += 1
            if generation == self._generation:
                self._store(key, value)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._store(key, value)

    def clear(self) -> None:
        """Drop every value and abandon queued prefetches (a running one is discarded)."""
        with self._lock:
            self._generation += 1
            self._items.clear()
            self._bytes = 0
            for future in self._queued.values():
                future.cancel()
            self._queued.clear()
            self._running.clear()  # their results belong to the old generation: not awaited

    # -- prefetch ----------------------------------------------------------------------------

    def prefetch(self, keys: Iterable[Hashable]) -> None:
        """Compute ``keys`` in the background thread, in order, unless cached or pending.

        Keys queued earlier and not started yet are abandoned: only the latest request counts
        (the user has moved on).
        """
        with self._lock:
            for future in self._queued.values():
                future.cancel()
            self._queued.clear()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slice-prefetch")
            generation = self._generation
            for key in keys:
                if key in self._items or key in self._running or key in self._queued:
                    continue
                future = self._executor.submit(self._background, key, generation)
                self._queued[key] = future

    def wait_prefetch(self, timeout: float | None = None) -> None:
        """Block until queued and running prefetches are done (tests, clean shutdown)."""
        with self._lock:
            futures = list(self._queued.values()) + list(self._running.values())
        for future in futures:
            if not future.cancelled():
                try:
                    future.result(timeout=timeout)
                except Exception:
                    pass

    def close(self) -> None:
        """Stop the background thread (after its current compute)."""
        with self._lock:
            self.clear()
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def _background(self, key: Hashable, generation: int) -> Any:
        with self._lock:
            future = self._queued.pop(key, None)
            if generation != self._generation or key in self._items or key in self._running:
                return None
            if future is not None:
                self._running[key] = future
        value = None
        try:
            value = self._compute(key)
        finally:
            with self._lock:
                if self._running.get(key) is future:
                    del self._running[key]
                if value is not None and generation == self._generation:
                    self.computed += 1
                    self.prefetched += 1
                    self._store(key, value)
        return value

    # -- internals ---------------------------------------------------------------------------

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
