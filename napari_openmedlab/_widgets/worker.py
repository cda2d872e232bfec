"""Engine work off the UI thread: model loading, predictions, propagations and weight downloads.

One background job runs at a time per :class:`EngineRunner` (engines are not thread-safe). A new
prediction request replaces any request still waiting and raises the cancel flag of the running
one (a prediction or a 3D propagation); when that one ends, its answer is dropped by the session
(older generation) and the newest request starts. Progress reports of a job whose cancel flag is
raised are dropped, so a cancelled job never overwrites the status line. Jobs run on plain Python threads and report back through Qt signals, which Qt
delivers on the UI thread. Exceptions never escape a job: they come back in :class:`Outcome`.

**Pieces.** A prediction or propagation hands the engine a ``partial`` callback (where the
engine takes one: ``Engine.predict`` of a streaming engine, ``propagate`` of the 2D engine): each
piece of the answer (a :class:`~napari_openmedlab.engines.base.Prediction` whose voxels add to
the preview) reaches the UI thread through :attr:`EngineRunner.piece` as soon as it is ready,
tagged with the job's generation; pieces of a job whose cancel flag is raised are dropped.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qtpy.QtCore import QObject, Signal

from ..models.registry import get_spec
from ..models.weights import download_weights, find_weights, sha256_of

_SHA_CACHE: dict[tuple, str] = {}
_OBJECT_JOBS = ("predict", "propagate")  # the jobs a newer prompt supersedes
logger = logging.getLogger(__name__)


def guard_triton() -> bool:
    """Keep Triton from loading into a process whose OpenGL driver already loaded LLVM.

    Mesa's software and AMD drivers (llvmpipe, radeonsi; Xvfb uses llvmpipe) map libLLVM; Triton's
    own LLVM then crashes the process (segfault) the moment ``torchvision`` or ``torch._dynamo``
    imports it. Our engines never need Triton (it serves ``torch.compile``), so when libLLVM is
    already mapped and Triton is not yet imported, ``import triton`` is made to fail cleanly
    (torch then runs without it). Returns True when the guard was applied.
    """
    if not sys.platform.startswith("linux") or "triton" in sys.modules:
        return False
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            llvm = any("libLLVM" in line for line in maps)
    except OSError:
        return False
    if llvm:
        sys.modules["triton"] = None  # type: ignore[assignment]
        logger.info("libLLVM is loaded by the OpenGL driver: Triton disabled for this process")
    return llvm


def checkpoint_sha256(path) -> str | None:
    """SHA-256 of a checkpoint file, cached by (path, size, mtime)."""
    if path is None:
        return None
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_of(path)
    return _SHA_CACHE[key]


@dataclass
class Outcome:
    """The end of one background job."""

    kind: str  # "load" | "predict" | "propagate" | "download"
    value: Any = None
    error: BaseException | None = None
    generation: int = -1
    seconds: float = 0.0
    info: dict = field(default_factory=dict)


@dataclass
class LoadJob:
    """Create engine ``name`` with ``factory(name, checkpoint, device)`` (None: keep the loaded
    engine) and give it ``volume``."""

    factory: Callable | None
    name: str | None
    checkpoint: Any
    device: str | None
    volume: Any


@dataclass
class ObjectJob:
    """Run the current object: ``kind`` "predict" (``payload``: Prompts) or "propagate" (Prompts or
    a Prediction), for the object's ``generation``; ``reset`` forgets the engine's object first."""

    kind: str
    generation: int
    payload: Any
    reset: bool


def apply_settings(engine, settings: dict) -> None:
    """Set each setting the engine has as a property, only when it changes (a new 2D window
    drops the engine's embedding cache, so it must not be set again on every click)."""
    for name, value in settings.items():
        if isinstance(getattr(type(engine), name, None), property) and getattr(engine, name) != value:
            setattr(engine, name, value)


class _Relay(QObject):
    done = Signal(object)
    progress = Signal(float, str)
    piece = Signal(object)


def takes_partial(fn) -> bool:
    """Whether ``fn`` (an engine's ``predict`` or ``propagate``) has a ``partial`` parameter."""
    try:
        return "partial" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _run_job(relay: _Relay, outcome: Outcome, fn: Callable[[], Any]) -> None:
    t0 = time.perf_counter()
    try:
        outcome.value = fn()
    except BaseException as err:  # reported to the UI thread, never raised here
        outcome.error = err
    outcome.seconds = time.perf_counter() - t0
    try:
        relay.done.emit(outcome)
    except RuntimeError:  # the widget was deleted while the job ran
        pass


class EngineRunner(QObject):
    """Owns the engine; loads it and runs predictions on a worker thread, newest request first."""

    loaded = Signal(object)  # Outcome(kind="load", value=engine, info={name, checkpoint, ...})
    predicted = Signal(object)  # Outcome(kind="predict", value=Prediction, generation=...)
    propagated = Signal(object)  # Outcome(kind="propagate", value=Prediction (3D), generation=...)
    failed = Signal(object)  # Outcome with .error
    progress = Signal(float, str)  # fraction, what runs
    piece = Signal(object)  # Outcome(kind, value=Prediction piece, generation=...): add to the preview
    busy_changed = Signal(bool)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.engine = None
        self.engine_info: dict = {}
        #: engine settings applied before each prediction when the engine has them and they
        #: changed (the 2D engine's ``window`` and ``slice_axis``)
        self.settings: dict[str, Any] = {}
        self._relay = _Relay()
        self._relay.done.connect(self._on_done)
        self._relay.progress.connect(self._relay_progress)
        self._relay.piece.connect(self._relay_piece)
        self._busy: str | None = None
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._pending_load: LoadJob | None = None
        self._pending_predict: ObjectJob | None = None
        self.running_generation = -1
        self._discard_next_load = False

    # --- requests -------------------------------------------------------------------------------
    def load(self, factory, name: str, checkpoint, device: str, volume) -> None:
        """Create engine ``name`` (``factory(name, checkpoint, device)``) and give it ``volume``."""
        self._discard_next_load = self._busy == "load"  # a newer model choice wins
        self._pending_load = LoadJob(factory, name, checkpoint, device, volume)
        self._cancel.set()
        self._kick()

    def set_volume(self, volume) -> None:
        """Give the loaded engine a new volume (in the background); no-op without an engine."""
        if self.engine is not None or self._pending_load is not None:
            info = self.engine_info
            if self._pending_load is not None:
                self._pending_load.volume = volume
            else:
                self._pending_load = LoadJob(None, info.get("name"), info.get("checkpoint"), info.get("device"), volume)
            self._cancel.set()
            self._kick()

    def unload(self) -> None:
        """Forget the engine (and anything waiting); a running job finishes unseen."""
        self._pending_load = None
        self._pending_predict = None
        self._cancel.set()
        self.cancel_background()
        self.engine = None
        self.engine_info = {}
        self._discard_next_load = self._busy == "load"

    def predict(self, call) -> None:
        """Run an :class:`annotation.EngineCall` (generation, prompts, reset); supersedes any waiting
        request and cancels the running one."""
        self._request("predict", call.generation, call.prompts, call.reset)

    def propagate(self, generation: int, source, reset: bool = False) -> None:
        """Run ``engine.propagate(source, progress, cancel)`` (``source``: Prompts or a Prediction).

        Like a prediction, it replaces a waiting request; it cancels a running prediction of an
        older generation only (one for the same object may finish and show its slice first).
        """
        self._request("propagate", generation, source, reset)

    def _request(self, kind: str, generation: int, payload, reset: bool) -> None:
        if self._pending_predict is not None:
            reset = reset or self._pending_predict.reset
        self._pending_predict = ObjectJob(kind, generation, payload, reset)
        if self._busy in _OBJECT_JOBS and (kind == "predict" or self.running_generation != generation):
            self._cancel.set()
        self._kick()

    def cancel(self) -> None:
        """Drop the waiting prediction (or propagation) and ask the running one to stop."""
        self._pending_predict = None
        if self._busy in _OBJECT_JOBS:
            self._cancel.set()

    def cancel_background(self) -> None:
        """Drop the engine's queued background work (the 2D engine's slice embeddings), e.g. when
        the view's slice axis changed; the engine is thread-safe for this call."""
        cancel = getattr(self.engine, "cancel_background", None)
        if cancel is not None:
            cancel()

    def cancel_propagation(self) -> bool:
        """Drop a waiting propagation and stop a running one; False when there was none."""
        found = False
        if self._pending_predict is not None and self._pending_predict.kind == "propagate":
            self._pending_predict = None
            found = True
        if self._busy == "propagate" and not self._cancel.is_set():
            self._cancel.set()
            found = True
        return found

    # --- state ------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._busy is not None

    @property
    def waiting(self) -> bool:
        """A prediction request waits (for the running job, or for a model to load)."""
        return self._pending_predict is not None

    @property
    def propagating(self) -> bool:
        """A propagation runs (and was not cancelled) or waits to run."""
        pending = self._pending_predict
        running = self._busy == "propagate" and not self._cancel.is_set()
        return running or (pending is not None and pending.kind == "propagate")

    @property
    def loading(self) -> bool:
        return self._busy == "load" or self._pending_load is not None

    @property
    def idle(self) -> bool:
        """Nothing runs and nothing that can run is waiting."""
        waiting = self._pending_load is not None or (
            self._pending_predict is not None and self.engine is not None
        )
        return self._busy is None and not waiting

    def wait_idle(self, timeout: float) -> bool:
        """Block (processing Qt events) until idle; for tests and scripts."""
        from qtpy.QtWidgets import QApplication

        end = time.monotonic() + timeout
        while not self.idle:
            if time.monotonic() > end:
                return False
            QApplication.processEvents()
            time.sleep(0.005)
        QApplication.processEvents()
        return True

    # --- jobs -------------------------------------------------------------------------------------
    def _relay_progress(self, fraction: float, message: str) -> None:
        if not (self._busy is not None and self._cancel.is_set()):  # a cancelled job stays quiet
            self.progress.emit(fraction, message)

    def _relay_piece(self, outcome: Outcome) -> None:
        if (
            self._busy is not None
            and not self._cancel.is_set()
            and outcome.generation == self.running_generation
        ):
            self.piece.emit(outcome)

    def _partial_cb(self, kind: str, generation: int, cancel: threading.Event):
        """The ``partial`` callback of one job: pieces go to the UI thread until it is cancelled."""

        def partial(piece) -> None:
            if cancel.is_set():
                return
            try:
                self._relay.piece.emit(Outcome(kind, value=piece, generation=generation))
            except RuntimeError:  # the widget was deleted while the job ran
                pass

        return partial

    def _progress_cb(self, fraction, message="") -> None:
        try:
            self._relay.progress.emit(float(fraction), str(message))
        except RuntimeError:
            pass

    def _start(self, outcome: Outcome, fn: Callable[[], Any]) -> None:
        self._busy = outcome.kind
        self.busy_changed.emit(True)
        self._thread = threading.Thread(
            target=_run_job, args=(self._relay, outcome, fn), name=f"openmedlab-{outcome.kind}", daemon=True
        )
        self._thread.start()

    def _kick(self) -> None:
        if self._busy is not None:
            return
        self._cancel = threading.Event()  # a fresh flag for the job about to start
        if self._pending_load is not None:
            job = self._pending_load
            factory, name, checkpoint, device, volume = job.factory, job.name, job.checkpoint, job.device, job.volume
            self._pending_load = None
            old = self.engine if factory is None else None
            dropped = None
            if factory is not None:
                dropped, self.engine = self.engine, None
            info = dict(self.engine_info) if old is not None else {}
            info.update(
                name=name, checkpoint=checkpoint if old is None else info.get("checkpoint"), device=device
            )
            self._start(Outcome("load", info=info), lambda: self._load_job(factory, old, info, volume, dropped))
        elif self._pending_predict is not None and self.engine is not None:
            pending = self._pending_predict
            generation, payload, reset, kind = pending.generation, pending.payload, pending.reset, pending.kind
            self._pending_predict = None
            self.running_generation = generation
            engine, cancel, settings = self.engine, self._cancel, dict(self.settings)
            job = self._predict_job if kind == "predict" else self._propagate_job
            partial = self._partial_cb(kind, generation, cancel)
            self._start(
                Outcome(kind, generation=generation),
                lambda: job(engine, payload, reset, cancel, settings, partial),
            )

    def _load_job(self, factory, engine, info: dict, volume, dropped=None):
        guard_triton()
        if _is_remote(dropped):
            dropped.close()  # give its server session back before claiming another
        stop = getattr(dropped, "cancel_background", None)
        if stop is not None:
            stop()  # its queued slice embeddings would only slow the new model down
        if engine is None:
            self._progress_cb(0.0, f"loading {info['name']}")
            engine = factory(info["name"], info["checkpoint"], info["device"])
            spec = get_spec(info["name"])
            local = spec.needs_weights and not _is_remote(engine)  # a server holds its own weights
            path = find_weights(spec, info["checkpoint"]) if local else None
            info["checkpoint"] = str(path) if path is not None else None
            info["checkpoint_sha256"] = checkpoint_sha256(path)
            info["device_used"] = str(getattr(engine, "device", info["device"]))
        self._progress_cb(0.5, "preparing the volume")
        engine.set_volume(volume, self._progress_cb)
        return engine

    def _predict_job(
        self, engine, prompts, reset: bool, cancel: threading.Event, settings: dict, partial=None
    ):
        apply_settings(engine, settings)
        if reset:
            engine.reset()
        kwargs = {"partial": partial} if partial is not None and takes_partial(engine.predict) else {}
        return engine.predict(prompts, self._progress_cb, cancel.is_set, **kwargs)

    def _propagate_job(
        self, engine, source, reset: bool, cancel: threading.Event, settings: dict, partial=None
    ):
        apply_settings(engine, settings)
        if reset:
            engine.reset()
        kwargs = {"partial": partial} if partial is not None and takes_partial(engine.propagate) else {}
        return engine.propagate(source, self._progress_cb, cancel.is_set, **kwargs)

    def _on_done(self, outcome: Outcome) -> None:
        self._busy = None
        self._thread = None
        if outcome.kind == "load" and self._discard_next_load:
            self._discard_next_load = False
            self._kick()
            if self._busy is None:
                self.busy_changed.emit(False)
            return
        if outcome.kind == "load" and outcome.error is None:
            self.engine = outcome.value
            self.engine_info = dict(outcome.info)
        if outcome.error is not None:
            self.failed.emit(outcome)
        elif outcome.kind == "load":
            self.loaded.emit(outcome)
        elif outcome.kind == "propagate":
            self.propagated.emit(outcome)
        else:
            self.predicted.emit(outcome)
        self._kick()
        if self._busy is None:
            self.busy_changed.emit(False)


class Downloader(QObject):
    """Downloads one model's weights in the background, with progress and cancel."""

    progress = Signal(object, object)  # bytes received, total (or None)
    finished = Signal(object)  # Outcome(kind="download", value=path | None, error=...)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._relay = _Relay()
        self._relay.done.connect(self._on_done)
        self._cancel = threading.Event()
        self.active: str | None = None

    def start(self, name: str) -> None:
        if self.active is not None:
            return
        spec = get_spec(name)
        self.active = name
        self._cancel = threading.Event()
        cancel = self._cancel

        def job():
            return download_weights(spec, progress=self._emit_progress, cancel=cancel.is_set)

        threading.Thread(
            target=_run_job, args=(self._relay, Outcome("download", info={"name": name}), job), daemon=True
        ).start()

    def cancel(self) -> None:
        self._cancel.set()

    def _emit_progress(self, received, total) -> None:
        try:
            self.progress.emit(received, total)
        except RuntimeError:
            pass

    def _on_done(self, outcome: Outcome) -> None:
        self.active = None
        self.finished.emit(outcome)


def _is_remote(engine) -> bool:
    from ..engines.remote import RemoteEngine

    return isinstance(engine, RemoteEngine)
