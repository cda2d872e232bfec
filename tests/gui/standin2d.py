"""A 2D stand-in for the GUI tests: the real :class:`Sam2DEngine` (prompt grouping, slice choice,
propagation rules) whose ``segment_slice`` answers from a reference segmentation, like a perfect
2D model, optionally slowly. Built lazily: torch is imported only inside a test, after the widget
guarded Triton against the OpenGL driver's LLVM (see ``worker.guard_triton``)."""

from __future__ import annotations

import threading
import time

import numpy as np
from scipy import ndimage


def oracle_factory(reference: np.ndarray, delay: float = 0.0):
    """An ``engine_factory`` making :class:`OracleEngine` s on ``reference`` (bool, volume grid)."""
    from napari_openmedlab._widgets.worker import guard_triton

    guard_triton()
    import torch
    from torch import nn

    from napari_openmedlab.engines.sam2d import Sam2DEngine, SliceEmbedding, SliceResult, slice_of
    from napari_openmedlab.models.registry import get_spec

    class Unused(nn.Module):
        """The attributes Sam2DEngine reads from a network; segment_slice never runs it."""

        def __init__(self) -> None:
            super().__init__()
            self.image_encoder = nn.Module()
            self.image_encoder.img_size = 256
            self.prompt_encoder = nn.Module()
            self.prompt_encoder.mask_input_size = (64, 64)
            self.mask_decoder = nn.Module()

    class OracleEngine(Sam2DEngine):
        """A slice's answer: the reference components under the box, else under the positive clicks;
        ``delay`` seconds per slice. ``asked`` lists the (axis, index) of every slice segmented."""

        def __init__(self) -> None:
            super().__init__(Unused(), get_spec("sam-med2d"))
            self.reference = reference
            self.delay = delay
            self.asked: list[tuple[int, int]] = []
            self.threads: set[str] = set()

        def _compute_embeddings(self, keys):  # the oracle needs no image embedding
            return [SliceEmbedding(torch.zeros(1), None, 0.0) for _ in keys]

        def segment_slice(self, axis, index, points_rc=None, labels=None, box=None, **kwargs):
            self.threads.add(threading.current_thread().name)
            time.sleep(self.delay)
            self.asked.append((axis, index))
            lab, _ = ndimage.label(slice_of(self.reference, axis, index))
            if box is None:
                keep = [lab[int(r), int(c)] for (r, c), positive in zip(points_rc, labels) if positive]
            else:
                r0, c0, r1, c1 = box
                keep = lab[int(np.ceil(r0)) : int(r1) + 1, int(np.ceil(c0)) : int(c1) + 1]
            keep = np.asarray(keep)
            mask = np.isin(lab, np.unique(keep[keep > 0]))
            return SliceResult(axis, index, mask, torch.zeros(1, 1, 64, 64), 1.0, False)

    made = []

    def make(name, checkpoint=None, device="auto"):
        made.append(OracleEngine())
        return made[-1]

    make.made = made
    return make
