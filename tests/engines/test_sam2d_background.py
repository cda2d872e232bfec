"""The 2D engine's background embedding, batched encoding and streamed propagation (issue #12).

What they must not change (the answer), in what order they work, and what cancels them. No test
here is timed: order and cancellation are read from the encoder's own record of calls.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from torch import nn

from napari_openmedlab.engines.base import Box, Prediction, Prompts
from napari_openmedlab.engines.propagation import PropagationOptions, walk_order
from napari_openmedlab.engines.sam2d import Sam2DEngine
from napari_openmedlab.engines.slice_cache import SliceCache
from napari_openmedlab.io import Volume, read_volume
from napari_openmedlab.models.registry import get_spec
from napari_openmedlab.models.sam_med2d import build_sam2d, small_config

UNTIL_EMPTY = PropagationOptions(min_area=1, min_overlap=0.0, min_dice=0.0)  # random weights: all 30


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/engines/conftest.py


@pytest.fixture(scope="module")
def liver_box(shared_data) -> Box:
    liver = read_volume(shared_data / "totalseg-ct" / "seg.nii.gz").array[15] == 5
    rows, cols = np.nonzero(liver)
    return Box(0, 15, rows.min(), cols.min(), rows.max(), cols.max())


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return build_sam2d(small_config("sam-med2d"))


def _engine(network, ct, **kwargs) -> Sam2DEngine:
    engine = Sam2DEngine(network, get_spec("sam-med2d"), **kwargs)
    engine.set_volume(ct)
    return engine


def test_walk_order_is_the_propagation_order():
    assert walk_order(15, 30, 3) == [14, 13, 12, 16, 17, 18]
    assert walk_order(1, 4, 5) == [0, 2, 3]


def test_batched_embeddings_equal_one_by_one(network, ct):
    engine = _engine(network, ct)
    keys = [(0, 3), (0, 17), (1, 50), (0, 29)]  # two axes in one batch: same input size
    together = engine._compute_embeddings(keys)
    assert engine.encoder_batches == 1 and engine.encoder_calls == 4
    for key, emb in zip(keys, together):
        alone = engine._compute_embeddings([key])[0]
        assert emb.features.shape == alone.features.shape == (1, 32, 16, 16)
        assert float((emb.features - alone.features).abs().max()) <= 1e-5
        assert emb.features.untyped_storage().nbytes() == emb.features.nbytes  # not a batch view


def test_background_and_batches_change_nothing_in_the_answer(network, ct, liver_box):
    plain = _engine(network, ct, prefetch=0, batch=1)
    first = plain.predict(Prompts(boxes=[liver_box]))
    want = plain.propagate(first, options=UNTIL_EMPTY)
    assert plain.encoder_batches == plain.encoder_calls == 30

    fast = _engine(network, ct, prefetch=32, batch=4)
    first_fast = fast.predict(Prompts(boxes=[liver_box]))
    np.testing.assert_array_equal(first_fast.to_mask(), first.to_mask())
    time.sleep(0.05)  # the background has begun; the propagation takes over whatever is left
    got = fast.propagate(first_fast, options=UNTIL_EMPTY)
    np.testing.assert_array_equal(got.to_mask(), want.to_mask())
    assert got.state["stops"] == want.state["stops"] and got.timings["slices"] == 29
    assert fast.encoder_calls == 30 and fast.encoder_batches < 30  # each slice once, some together
    fast.close()


def test_streamed_pieces_come_in_walk_order_and_make_the_answer(network, ct, liver_box):
    engine = _engine(network, ct)
    first = engine.predict(Prompts(boxes=[liver_box]))
    pieces: list[Prediction] = []
    out = engine.propagate(first, options=UNTIL_EMPTY, partial=pieces.append)
    slices = [p.bbox[0] for p in pieces]
    assert all(p.bbox[3] == p.bbox[0] + 1 for p in pieces)  # one slice each
    assert slices == [15, *walk_order(15, 30, 30)]  # the annotated slice, then as the walk keeps them
    union = np.zeros(ct.shape, bool)
    for p in pieces:
        union |= p.to_mask()
    np.testing.assert_array_equal(union, out.to_mask())


def test_pieces_stop_with_the_walk(network, ct, liver_box):
    engine = _engine(network, ct)
    first = engine.predict(Prompts(boxes=[liver_box]))
    pieces: list[Prediction] = []
    out = engine.propagate(first, options=PropagationOptions(max_distance=2), partial=pieces.append)
    kept = np.flatnonzero(out.to_mask().any(axis=(1, 2))).tolist()
    assert sorted(p.bbox[0] for p in pieces) == kept  # a slice the rules refuse is never shown
    assert engine.encoder_calls == 1 + out.timings["slices"]  # batches end where the walk must


# ---------------------------------------------------------------- a stand-in encoder with a gate


class GateEncoder(nn.Module):
    """Records which thread encoded each call and its batch size; a background call waits at the
    gate (``open`` it) so that tests can act while it runs."""

    img_size = 256

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []
        self.running = threading.Event()
        self.gate = threading.Event()

    def forward(self, x):
        background = threading.current_thread().name.startswith("slice-prefetch")
        if background:
            self.running.set()
            assert self.gate.wait(10)
        self.calls.append(("background" if background else "caller", len(x)))
        return torch.zeros(len(x), 8, 16, 16)


class GateNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.image_encoder = GateEncoder()
        self.prompt_encoder = nn.Module()
        self.prompt_encoder.mask_input_size = (64, 64)
        self.mask_decoder = nn.Module()


@pytest.fixture
def gated(ct):
    """Makes engines on GateNet; afterwards opens their gates and stops their threads (also when
    a test fails with a background call held at the gate)."""
    made = []

    def make(**kwargs) -> tuple[Sam2DEngine, GateEncoder]:
        engine = Sam2DEngine(GateNet(), get_spec("sam-med2d"), **kwargs)
        engine.set_volume(ct)
        made.append(engine)
        return engine, engine.network.image_encoder

    yield make
    for engine in made:
        engine.cache.cancel_prefetch()
        engine.network.image_encoder.gate.set()
        engine.close()


def test_background_embedding_follows_the_walk_one_slice_at_a_time(ct, gated):
    engine, encoder = gated(prefetch=3)
    encoder.gate.set()
    engine.embedding(0, 15)  # what a box on slice 15 does first
    assert engine.cache.wait_prefetch(30)
    assert engine.cache.keys() == [(0, i) for i in [15, *walk_order(15, 30, 3)]]  # encoded in that order
    assert encoder.calls == [("caller", 1)] + [("background", 1)] * 6


def test_the_users_slice_waits_for_at_most_the_running_background_slice(ct, gated):
    engine, encoder = gated(prefetch=10)
    engine.embedding(0, 15)
    assert encoder.running.wait(10)  # the background holds slice 14 at the gate
    user = threading.Thread(target=engine.embedding, args=(0, 2), kwargs={"prefetch": False})
    user.start()
    while not engine.cache._callers:  # the user's request is registered and waits for the encoder
        time.sleep(0.005)
    encoder.gate.set()
    user.join(30)
    assert (0, 2) in engine.cache
    # slice 14 (running) ends, then the user's slice, before any other queued slice
    assert encoder.calls[:3] == [("caller", 1), ("background", 1), ("caller", 1)]


def test_background_embedding_is_cancelled_on_volume_and_axis_change(ct, gated):
    engine, encoder = gated(prefetch=10)
    engine.embedding(0, 15)
    assert encoder.running.wait(10)
    engine.set_volume(Volume(ct.array[:, :, ::-1].copy(), ct.geometry))  # a new image
    assert engine.cache.queued() == [] and len(engine.cache) == 0
    encoder.gate.set()
    assert engine.cache.wait_prefetch(30)
    assert len(engine.cache) == 0  # the slice that was running belonged to the old image
    assert encoder.calls == [("caller", 1), ("background", 1)]

    encoder.gate.clear()
    engine.embedding(0, 15)
    assert engine.cache.queued()
    engine.slice_axis = 1  # another view: the slices queued around axial 15 are not wanted
    assert engine.cache.queued() == []
    engine.embedding(1, 50)
    assert engine.cache.queued()
    engine.prefetch = 0  # switched off: the queue goes too
    assert engine.cache.queued() == []


def test_slice_cache_batches_what_the_caller_needs_and_skips_what_runs():
    started, release = threading.Event(), threading.Event()
    batches: list[list] = []

    def compute_many(keys):
        batches.append(list(keys))
        if "slow" in keys:
            started.set()
            release.wait(10)
        return [np.zeros(4) for _ in keys]

    cache = SliceCache(lambda k: compute_many([k])[0], max_bytes=10_000, compute_many=compute_many)
    cache.prefetch(["slow", "b", "c"])
    assert started.wait(10)
    threading.Timer(0.2, release.set).start()
    values = cache.get_many(["slow", "b", "c", "d"])  # slow: awaited; b, c, d: here, one batch
    assert len(values) == 4 and batches == [["slow"], ["b", "c", "d"]]
    assert cache.queued() == [] and cache.wait_prefetch(10)
    assert batches == [["slow"], ["b", "c", "d"]]  # the background did not compute them again
    cache.close()
