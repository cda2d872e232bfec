"""The wire format: exact round trips, bounded inflation, validated prompts."""

import zlib

import numpy as np
import pytest

from napari_openmedlab.engines import Prediction, PromptError, Prompts
from napari_openmedlab.engines.base import Box
from napari_openmedlab.engines.wire import (
    WireError,
    apply_update,
    decode_volume,
    encode_update,
    encode_volume,
    prompts_from_json,
    prompts_to_json,
)


def test_volume_round_trip_is_exact():
    a = np.random.default_rng(0).integers(-1024, 3000, (7, 9, 11)).astype(np.int16)
    header, body = encode_volume(a)
    assert np.array_equal(decode_volume(header, body, 10**6), a)


def test_volume_limits_are_checked_before_inflating():
    header, body = encode_volume(np.zeros((50, 50, 50), np.uint8))
    with pytest.raises(WireError, match="exceeds"):
        decode_volume(header, body, 1000)
    with pytest.raises(WireError, match="truncated|promises"):
        decode_volume(header, body[: len(body) // 2], 10**6)
    bomb = zlib.compress(bytes(10**6))
    with pytest.raises(WireError, match="promises"):
        decode_volume({"shape": [10, 10, 10], "dtype": "uint8"}, bomb, 10**6)
    with pytest.raises(WireError, match="dtype"):
        decode_volume({"shape": [2, 2, 2], "dtype": "object"}, b"", 10**6)


def _pred(mask):
    return Prediction.from_mask(mask)


def test_updates_rebuild_every_prediction_exactly():
    rng = np.random.default_rng(1)
    shape = (10, 12, 14)
    previous_server = previous_client = None
    for _ in range(6):
        mask = np.zeros(shape, bool)
        z, y, x = rng.integers(0, 8, 3)
        mask[z:z + rng.integers(1, 4), y:y + 5, x:x + 3] = rng.random() > 0.2
        new = _pred(mask)
        msg = encode_update(previous_server, new)
        got = apply_update(previous_client, msg)
        assert got.bbox == new.bbox and np.array_equal(got.to_mask(), mask)
        previous_server, previous_client = new, got


def test_prompts_round_trip_and_validation():
    mask = np.zeros((5, 6, 7), bool)
    mask[1:3, 2:4, 3:6] = True
    p = Prompts([[1, 2, 3], [2, 3, 4]], [1, 0], [Box(0, 2, 1, 1, 4, 5)], mask)
    back = prompts_from_json(prompts_to_json(p), (5, 6, 7))
    assert np.array_equal(back.points, p.points) and list(back.labels) == [1, 0]
    assert back.boxes == p.boxes and np.array_equal(back.mask, mask)
    with pytest.raises(PromptError, match="outside"):
        prompts_from_json({"points": [[9, 1, 1]], "labels": [1]}, (5, 6, 7))
    for bad in ([1, 2], {"points": "x", "labels": []}, {"points": [[1, 2]], "labels": [1]},
                {"points": [[1, 2, 3]], "labels": ["yes"]}, {"points": [], "labels": [], "evil": 1},
                {"points": [[1, 1, 1]], "labels": [1], "boxes": [{"axis": 5}]}):
        with pytest.raises((WireError, PromptError)):
            prompts_from_json(bad, (5, 6, 7))


def test_update_after_a_shrinking_or_moving_mask():
    shape = (8, 8, 8)
    a = np.zeros(shape, bool)
    a[0:6, 0:6, 0:6] = True
    b = np.zeros(shape, bool)
    b[3:5, 4:8, 2:4] = True
    for first, second in ((a, b), (b, a), (a, np.zeros(shape, bool)), (np.zeros(shape, bool), b)):
        p1, p2 = _pred(first), _pred(second)
        got = apply_update(apply_update(None, encode_update(None, p1)), encode_update(p1, p2))
        assert np.array_equal(got.to_mask(), second)
