"""A weight-free stand-in engine for the GUI tests: intensity region growing around the clicks."""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage

from napari_openmedlab.engines.base import Cancelled, Engine, Prediction, PromptError


class StandInEngine(Engine):
    """Grows the connected region of similar intensity around each positive click (within a ball);
    a negative click removes the region it falls in. ``delay`` seconds of (cancellable) sleep per
    prediction imitate a slow model; a click on slice z = 0 fails, like a model refusing a prompt."""

    name = "stand-in"

    def __init__(self, delay: float = 0.0, radius: int = 12, tolerance: float = 60.0, boxes: bool = False):
        super().__init__()
        self.delay = delay
        self.radius = radius
        self.tolerance = tolerance
        self.supports_boxes = boxes
        self.calls = 0
        self.resets = 0

    def _set_volume(self, volume, progress):
        self._array = np.asarray(volume.array, dtype=np.float32)

    def reset(self):
        self.resets += 1

    def _predict(self, prompts, progress, cancel):
        self.calls += 1
        t0 = time.perf_counter()
        end = t0 + self.delay
        while time.perf_counter() < end:
            if cancel is not None and cancel():
                raise Cancelled("superseded")
            time.sleep(0.01)
        if len(prompts.points) and (prompts.points[:, 0] == 0).any():
            raise PromptError("the stand-in refuses clicks on slice 0")
        a = self._array
        mask = np.zeros(a.shape, bool) if prompts.mask is None else prompts.mask.copy()
        for p, label in zip(np.round(prompts.points).astype(int), prompts.labels):
            lo = np.maximum(p - self.radius, 0)
            hi = np.minimum(p + self.radius + 1, a.shape)
            sl = tuple(slice(x, y) for x, y in zip(lo, hi))
            local = np.abs(a[sl] - a[tuple(p)]) <= self.tolerance
            comp, _ = ndimage.label(local)
            region = comp == comp[tuple(p - lo)]
            if label:
                mask[sl] |= region
            else:
                mask[sl] &= ~region
        for b in prompts.boxes:
            index = [slice(None)] * 3
            index[b.axis] = b.index
            rows, cols = [x for x in range(3) if x != b.axis]
            plane = mask[tuple(index)]
            plane[int(b.r0) : int(b.r1) + 1, int(b.c0) : int(b.c1) + 1] = True
        if progress is not None:
            progress(1.0, "stand-in done")
        return Prediction.from_mask(mask, timings={"grow": time.perf_counter() - t0})


def factory(**kwargs):
    """An ``engine_factory`` for the widget that ignores the model name and weights."""
    made = []

    def make(name, checkpoint=None, device="auto"):
        engine = StandInEngine(**kwargs)
        engine.name = name
        engine.supports_boxes = kwargs.get("boxes", False)
        made.append(engine)
        return engine

    make.made = made
    return make
