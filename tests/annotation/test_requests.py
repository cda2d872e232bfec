"""Requests: validated on construction, JSON round trip through their ``type``."""

import json

import numpy as np
import pytest

from napari_openmedlab.annotation import requests as rq


def every_kind():
    patch = np.zeros((2, 3, 4), bool)
    patch[1, 1:, 2] = True
    return [
        rq.AddPoint((3, 4.5, 5), positive=False, slice_axis=1),
        rq.AddBox(0, 3, 1, 2, 10, 12),
        rq.ClearObject(),
        rq.Refine("Liver"),
        rq.Commit("Parotid_L", "subtract"),
        rq.Edit.from_mask("GTVp", "erase", patch, origin=(1, 2, 3)),
        rq.AddStructure("PTV", "#ff8800", {"tg263": "PTV"}, label_id=7),
        rq.RemoveStructure("PTV"),
        rq.Rename("a", "b"),
        rq.Lock("Mandible", False),
        rq.SetVisible("Mandible", False),
        rq.Undo(),
        rq.Redo(),
    ]


@pytest.mark.parametrize("request_", every_kind(), ids=lambda r: r.type)
def test_json_round_trip(request_):
    text = json.dumps(request_.to_dict())
    back = rq.request_from_dict(json.loads(text))
    assert type(back) is type(request_) and back == request_
    assert json.loads(text)["type"] == request_.type


def test_edit_patch_survives_the_trip():
    patch = np.random.default_rng(0).random((3, 5, 7)) > 0.5
    r = rq.Edit.from_mask("x", "paint", patch, origin=(4, 0, 2))
    assert r.bbox == (4, 0, 2, 7, 5, 9)
    back = rq.request_from_dict(json.loads(json.dumps(r.to_dict())))
    np.testing.assert_array_equal(back.patch(), patch)


@pytest.mark.parametrize(
    "data, words",
    [
        ({"type": "teleport"}, "unknown request type"),
        ({"type": "point", "zyx": [1, 2]}, "3 finite numbers"),
        ({"type": "point", "zyx": [1, 2, float("nan")]}, "finite"),
        ({"type": "point", "zyx": [1, 2, 3], "slice_axis": 5}, "slice_axis"),
        ({"type": "commit", "structure": "x", "mode": "overwrite"}, "replace, add, subtract"),
        ({"type": "commit", "structure": " "}, "non-empty name"),
        ({"type": "commit"}, "missing"),
        ({"type": "commit", "structure": "x", "colour": 1}, "unknown field"),
        ({"type": "box", "axis": 0, "index": 1, "r0": 5, "c0": 0, "r1": 2, "c1": 3}, "r0 <= r1"),
        ({"type": "edit", "structure": "x", "mode": "paint", "bbox": [0, 0, 0, 1, 1, 1], "bits": "@@"}, "base64"),
        ({"type": "edit", "structure": "x", "mode": "paint", "bbox": [0, 0, 0, 4, 4, 4], "bits": "AA=="}, "do not fit"),
        ({"type": "edit", "structure": "x", "mode": "paint", "bbox": [0, 0, 0, 0, 4, 4], "bits": ""}, "bbox"),
        ({"type": "add_structure", "name": "x", "label_id": 0}, "label_id"),
        (["point"], "JSON object"),
    ],
)
def test_bad_requests_say_what_is_wrong(data, words):
    with pytest.raises(rq.RequestError, match=words):
        rq.request_from_dict(data)


def test_requests_are_frozen():
    r = rq.Commit("x")
    with pytest.raises(AttributeError):
        r.mode = "replace"
