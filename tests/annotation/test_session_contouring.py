"""Contouring through the AnnotationSession: one request, one undo step across structures."""

import json

import numpy as np
import pytest

from napari_openmedlab.annotation import (
    AnnotationSession,
    Contour,
    Edit,
    Lock,
    Redo,
    StructureSet,
    Undo,
)
from napari_openmedlab.annotation import requests as rq
from napari_openmedlab.annotation.contouring import Margin, margin, plan
from napari_openmedlab.annotation.session_contouring import offer_plan, plan_request, request_params
from napari_openmedlab.annotation.structure_set import LockedStructureError
from napari_openmedlab.io import Geometry, Volume

SHAPE = (16, 24, 24)
GEOM = Geometry((0.9, 0.8, 2.0), (10.0, -5.0, 3.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1))


@pytest.fixture
def session():
    ss = StructureSet(GEOM, SHAPE)
    gtv = np.zeros(SHAPE, bool)
    gtv[6:10, 9:14, 9:14] = True
    cord = np.zeros(SHAPE, bool)
    cord[:, 10:13, 15:18] = True
    ss.add("GTV", gtv)
    ss.add("Cord", cord)
    return AnnotationSession(Volume(np.zeros(SHAPE, np.int16), GEOM, {}), ss)


def test_contour_request_json_round_trip_and_checks():
    r = Contour("margin", ["GTV"], "PTV", {"sides": [4, 4, 2, 2, 5, 0]})
    back = rq.request_from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r and back.inputs == ("GTV",) and back.to_dict()["type"] == "contour"
    for bad, words in (({"operation": "grow"}, "operation"), ({"inputs": "GTV"}, "inputs"),
                       ({"output": " "}, "output"), ({"params": {"mm": object()}}, "param")):
        data = {"type": "contour", "operation": "margin", "inputs": ["GTV"], "output": "PTV", **bad}
        with pytest.raises(rq.RequestError, match=words):
            rq.request_from_dict(data)


def test_a_margin_is_one_undo_step_across_structures(session):
    ss = session.structures
    gtv = ss.mask("GTV")
    session.handle(Lock("GTV"))  # a locked input is only read
    out = session.handle(Contour("margin", ["GTV"], "PTV", {"sides": [4, 4, 2, 2, 5, 0]}))
    expected = margin(gtv, GEOM, Margin.sides(4, 4, 2, 2, 5, 0)).dense()
    np.testing.assert_array_equal(ss.mask("PTV"), expected)
    assert out.order_changed and out.structures == ["PTV"] and "cm3" in out.message
    assert ss.structure("PTV").prompts[0]["operation"] == "margin"
    assert ss.structure("PTV").label_id not in (ss.structure("GTV").label_id, ss.structure("Cord").label_id)

    # an existing output: PTV minus the cord, written into PTV
    session.handle(Contour("subtract", ["PTV", "Cord"], "PTV"))
    np.testing.assert_array_equal(ss.mask("PTV"), expected & ~ss.mask("Cord"))
    session.handle(Edit.from_mask("Cord", "erase", ss.mask("Cord")))  # another structure's edit

    session.handle(Undo())  # the erase
    session.handle(Undo())  # the subtract, one step
    np.testing.assert_array_equal(ss.mask("PTV"), expected)
    assert len(ss.structure("PTV").prompts) == 1
    session.handle(Undo())  # the margin: PTV gone
    assert ss.names() == ["GTV", "Cord"]
    session.handle(Redo())
    np.testing.assert_array_equal(ss.mask("PTV"), expected)
    session.handle(Redo())
    np.testing.assert_array_equal(ss.mask("PTV"), expected & ~ss.mask("Cord"))


def test_a_locked_output_is_refused_and_nothing_changes(session):
    session.handle(Lock("Cord"))
    before = session.structures.mask("Cord").copy()
    with pytest.raises(LockedStructureError, match="locked"):
        session.handle(Contour("smooth", ["GTV"], "Cord", {"mm": 1.0}))
    np.testing.assert_array_equal(session.structures.mask("Cord"), before)
    assert session.history.can_undo  # only the lock
    session.handle(Undo())
    assert not session.history.can_undo


def test_an_offered_plan_is_used_only_while_its_masks_are_current(session):
    r = Contour("margin", ["GTV"], "PTV", request_params({"margin": Margin.isotropic(2.0)}))
    planned = plan_request(session.structures, r)
    planned.edit.after = planned.edit.after.with_region((0, 0, 0, 1, 1, 1), np.ones((1, 1, 1), bool))  # marked
    offer_plan(session, planned)
    session.handle(r)
    assert session.structures.mask("PTV")[0, 0, 0]  # the offered result was written
    session.handle(Undo())

    stale = plan_request(session.structures, r)
    session.handle(Edit.from_mask("GTV", "paint", np.ones((1, 1, 1), bool), origin=(2, 2, 2)))
    offer_plan(session, stale)
    session.handle(r)  # the GTV changed since: computed again
    fresh = plan(session.structures, "margin", ["GTV"], "PTV_check", margin=Margin.isotropic(2.0)).after.dense()
    np.testing.assert_array_equal(session.structures.mask("PTV"), fresh)


def test_annotate_replays_contour_requests(tmp_path, capsys):
    import SimpleITK as sitk

    from napari_openmedlab.cli import main

    labels = np.zeros(SHAPE, np.uint8)
    labels[6:10, 9:14, 9:14] = 1
    labels[:, 10:13, 15:18] = 2
    for array, name in ((np.zeros(SHAPE, np.int16), "ct.nii.gz"), (labels, "seg.nii.gz")):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.8, 0.9, 2.0))
        sitk.WriteImage(image, str(tmp_path / name))
    steps = [{"type": "contour", "operation": "margin", "inputs": ["label_1"], "output": "PTV", "params": {"mm": 2}},
             {"type": "contour", "operation": "subtract", "inputs": ["PTV", "label_2"], "output": "PTV_opt"},
             {"type": "undo"}, {"type": "redo"}]
    (tmp_path / "steps.json").write_text(json.dumps(steps))
    args = ["replay", str(tmp_path / "ct.nii.gz"), "--labels", str(tmp_path / "seg.nii.gz"),
            "--requests", str(tmp_path / "steps.json"), "--out", str(tmp_path / "plan.omlss")]
    assert main(args) == 0
    ss = StructureSet.load(tmp_path / "plan.omlss")
    names = ss.names()
    assert names[-2:] == ["PTV", "PTV_opt"]
    np.testing.assert_array_equal(ss.mask("PTV_opt"), ss.mask("PTV") & ~ss.mask(names[1]))
    (tmp_path / "bad.json").write_text(json.dumps([{"type": "lock", "name": names[1]}, {
        "type": "contour", "operation": "smooth", "inputs": [names[0]], "output": names[1], "params": {"mm": 1}}]))
    args[args.index("--requests") + 1] = str(tmp_path / "bad.json")
    capsys.readouterr()
    assert main(args) == 1
    assert "locked" in capsys.readouterr().err
