"""One loaded network per model, shared by every session; per-session engines around it.

A session gets its own :class:`Engine` (its own volume, embedding cache and current object) built
around the shared network, so two users never see each other's state, while the weights sit in
memory once. Accelerator work is serialised by one lock per device: a GPU runs one decoder at a
time anyway, and interleaving two users' kernels only adds memory pressure.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from ..engines import Engine, create_engine


@dataclass
class LoadedModel:
    name: str
    prototype: Engine
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new_engine(self) -> Engine:
        return sibling_engine(self.prototype)


def sibling_engine(engine: Engine) -> Engine:
    """A fresh engine of the same kind sharing ``engine``'s loaded network (no copy of weights)."""
    from ..engines.seeded import SeededRegionEngine

    if isinstance(engine, SeededRegionEngine):
        import copy

        return SeededRegionEngine(copy.deepcopy(engine.params))
    from ..engines.sam_med3d import SamMed3DEngine

    if isinstance(engine, SamMed3DEngine):
        return SamMed3DEngine(engine.model, engine.device)
    from ..engines.sam2d import Sam2DEngine

    if isinstance(engine, Sam2DEngine):
        return Sam2DEngine(engine.network, engine.spec, engine.device)
    raise TypeError(f"cannot share the network of a {type(engine).__name__}")


class ModelPool:
    """The models this server offers, each loaded once on first use (or at start with ``preload``)."""

    def __init__(self, names: list[str], checkpoints: dict | None = None, device: str = "auto") -> None:
        from ..models.registry import get_spec

        for name in names:
            get_spec(name)  # an unknown name fails at start, not at the first request
        self.names = list(names)
        self.checkpoints = {k: os.fspath(v) for k, v in (checkpoints or {}).items()}
        self.device = device
        self._loaded: dict[str, LoadedModel] = {}
        self._load_lock = threading.Lock()

    def get(self, name: str) -> LoadedModel:
        if name not in self.names:
            raise KeyError(name)
        with self._load_lock:
            if name not in self._loaded:
                engine = create_engine(name, self.checkpoints.get(name), self.device)
                self._loaded[name] = LoadedModel(name, engine)
            return self._loaded[name]

    def preload(self) -> None:
        for name in self.names:
            self.get(name)

    def loaded(self) -> list[str]:
        return list(self._loaded)
