"""The headless annotation session: overlaps kept, locks respected, commit modes, undo/redo across
structures, requests from JSON, autosave with fallback, kill -9 safety."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from napari_openmedlab.annotation import (
    AddPoint,
    AddStructure,
    AnnotationSession,
    ClearObject,
    Commit,
    Edit,
    Lock,
    Redo,
    Refine,
    RemoveStructure,
    Rename,
    SessionError,
    StructureSet,
    StructureSetAutosave,
    StructureSetError,
    Undo,
)
from napari_openmedlab.annotation.structure_set import LockedStructureError
from napari_openmedlab.engines.base import Engine, Prediction, PromptError
from napari_openmedlab.io import Geometry, Volume

SHAPE = (16, 24, 24)
GEOM = Geometry((0.9, 0.8, 2.0), (10.0, -5.0, 3.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1))


def ball(center, r, shape=SHAPE):
    zz, yy, xx = np.indices(shape)
    return (zz - center[0]) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2 <= r * r


class BallEngine(Engine):
    """Answers a ball of ``radius`` around each positive click, minus one around each negative one.
    It records what it was asked, so the tests can check the prompts the session sent."""

    name = "ball"

    def __init__(self, radius=4):
        super().__init__()
        self.radius = radius
        self.calls = []

    def _set_volume(self, volume, progress):
        pass

    def _predict(self, prompts, progress, cancel):
        self.calls.append(prompts)
        mask = np.zeros(self.volume.shape, bool)
        for p, positive in zip(prompts.points, prompts.labels):
            b = ball(p, self.radius, self.volume.shape)
            mask = mask | b if positive else mask & ~b
        if prompts.mask is not None and not len(prompts.points):
            mask = prompts.mask
        return Prediction.from_mask(mask)


@pytest.fixture
def volume():
    return Volume(np.zeros(SHAPE, np.int16), GEOM, {"source": "/virtual/ct.nii.gz"})


@pytest.fixture
def session(volume):
    return AnnotationSession(volume, engine=BallEngine())


def commit_ball(s, center, name, mode="add", radius=None):
    if radius is not None:
        s.engine.radius = radius
    s.handle(AddPoint(center))
    return s.handle(Commit(name, mode))


def test_overlapping_commits_keep_both_structures(session):
    commit_ball(session, (8, 12, 12), "Parotid_L", radius=6)
    commit_ball(session, (8, 12, 15), "GTVp", radius=3)
    parotid, gtv = session.structures.mask("Parotid_L"), session.structures.mask("GTVp")
    np.testing.assert_array_equal(parotid, ball((8, 12, 12), 6))
    np.testing.assert_array_equal(gtv, ball((8, 12, 15), 3))
    assert (parotid & gtv).sum() > 0  # the shared voxels belong to both
    assert session.structures.names() == ["Parotid_L", "GTVp"]
    assert session.structures.structure("GTVp").prompts[0]["points"][0]["voxel_zyx"] == [8, 12, 15]


def test_commit_modes_replace_add_subtract(session):
    a, b = ball((8, 8, 8), 4), ball((8, 8, 13), 4)
    commit_ball(session, (8, 8, 8), "Liver")
    commit_ball(session, (8, 8, 13), "Liver", "add")
    np.testing.assert_array_equal(session.structures.mask("Liver"), a | b)
    commit_ball(session, (8, 8, 13), "Liver", "subtract")
    np.testing.assert_array_equal(session.structures.mask("Liver"), a & ~b)
    out = commit_ball(session, (8, 8, 13), "Liver", "replace")
    np.testing.assert_array_equal(session.structures.mask("Liver"), b)
    assert out.record["mode"] == "replace" and out.record["structure"] == "Liver"
    assert [r["mode"] for r in session.structures.structure("Liver").prompts] == ["add", "add", "subtract", "replace"]


def test_locked_structure_is_never_changed_and_excluded_from_the_object(session):
    commit_ball(session, (8, 12, 8), "Mandible", radius=5)
    session.handle(Lock("Mandible"))
    mandible = session.structures.mask("Mandible").copy()
    session.engine.radius = 5
    session.handle(AddPoint((8, 12, 13)))
    preview = session.preview().to_mask()
    assert not (preview & mandible).any() and preview.sum() > 0  # excluded from the preview
    assert (session.object.preview.to_mask() & mandible).any()  # the engine's own answer overlapped
    for request in (Commit("Mandible"), Edit.from_mask("Mandible", "erase", mandible), RemoveStructure("Mandible")):
        with pytest.raises(LockedStructureError, match="locked"):
            session.handle(request)
    assert session.object.has_prompts  # a refused commit keeps the object
    session.handle(Commit("Parotid_R"))
    np.testing.assert_array_equal(session.structures.mask("Mandible"), mandible)
    assert not (session.structures.mask("Parotid_R") & mandible).any()

    session.exclude_locked = False  # the switch: the commit may now share the mandible's voxels
    session.handle(AddPoint((8, 12, 13)))
    session.handle(Commit("Parotid_R", "replace"))
    assert (session.structures.mask("Parotid_R") & mandible).any()
    np.testing.assert_array_equal(session.structures.mask("Mandible"), mandible)


def test_undo_redo_across_structures_and_the_object(session):
    commit_ball(session, (8, 8, 8), "A")
    commit_ball(session, (8, 14, 14), "B")
    session.handle(Edit.from_mask("A", "paint", np.ones((1, 2, 2), bool), origin=(0, 0, 0)))
    session.handle(Rename("B", "Brainstem"))
    session.handle(AddStructure("PTV"))
    a_full = session.structures.mask("A").copy()
    assert a_full[0, 0, 0] and session.structures.names() == ["A", "Brainstem", "PTV"]

    out = session.handle(Undo())  # the new structure
    assert session.structures.names() == ["A", "Brainstem"] and out.order_changed
    session.handle(Undo())  # the rename
    assert session.structures.names() == ["A", "B"]
    out = session.handle(Undo())  # the paint stroke, by its small box only
    assert not session.structures.mask("A")[0, 0, 0] and out.bbox == (0, 0, 0, 1, 2, 2)
    session.handle(Undo())  # the commit of B, which created it: the object and its click come back
    assert session.structures.names() == ["A"]
    assert session.object.has_prompts and session.object.points.tolist() == [[8, 14, 14]]
    session.handle(Undo())  # the click on B
    session.handle(Undo())  # the commit of A (which created it)
    assert session.structures.names() == []
    for _ in range(6):
        session.handle(Redo())
    assert session.structures.names() == ["A", "Brainstem", "PTV"]
    np.testing.assert_array_equal(session.structures.mask("A"), a_full)
    np.testing.assert_array_equal(session.structures.mask("Brainstem"), ball((8, 14, 14), 4))
    assert session.handle(Redo()).message == "nothing to redo"
    assert len(session.structures.structure("Brainstem").prompts) == 1


def test_undo_a_lock_first_then_the_commit(session):
    commit_ball(session, (8, 8, 8), "A")
    session.handle(Lock("A"))
    session.handle(Undo())
    assert not session.structures.is_locked("A")
    session.handle(Undo())
    assert "A" not in session.structures


def test_refine_replaces_with_mask_prompt(session):
    commit_ball(session, (8, 8, 8), "A", radius=3)
    session.handle(Refine("A"))
    assert session.preview().to_mask().sum() == ball((8, 8, 8), 3).sum()
    session.engine.radius = 5
    session.handle(AddPoint((8, 8, 8)))
    assert session.engine.calls[-1].mask is not None  # the structure travelled as the mask prompt
    session.handle(Commit("A", "replace"))
    np.testing.assert_array_equal(session.structures.mask("A"), ball((8, 8, 8), 5))
    with pytest.raises(SessionError, match="no voxels"):
        session.handle(Refine(session.handle(AddStructure("empty")).structures[0]))


def test_slice_axis_travels_in_the_prompts(session):
    session.handle(AddPoint((8, 8, 8), slice_axis=2))
    assert session.engine.calls[-1].slice_axis == 2


def test_bad_requests_change_nothing(session, volume):
    commit_ball(session, (8, 8, 8), "A")
    before = session.structures.to_bytes()
    steps = len(session.history)
    with pytest.raises(PromptError, match="outside"):
        session.handle(AddPoint((99, 0, 0)))
    with pytest.raises(SessionError, match="nothing to commit"):
        session.handle(Commit("B"))
    with pytest.raises(StructureSetError, match="exists already"):
        session.handle(AddStructure("A"))
    with pytest.raises(StructureSetError, match="no structure named"):
        session.handle(Rename("nope", "x"))
    with pytest.raises(SessionError, match="outside the image"):
        session.handle(Edit.from_mask("A", "paint", np.ones((2, 2, 2), bool), origin=(15, 0, 0)))
    assert session.structures.to_bytes() == before and len(session.history) == steps
    other = StructureSet(Geometry((1.0, 1.0, 1.0)), (4, 4, 4))
    with pytest.raises(SessionError, match="resample"):
        AnnotationSession(volume, other)


def test_requests_as_json_drive_the_same_session(session):
    script = [
        {"type": "point", "zyx": [8, 8, 8]},
        {"type": "commit", "structure": "A"},
        {"type": "point", "zyx": [8, 9, 9], "positive": True},
        {"type": "clear"},
        {"type": "lock", "name": "A"},
        {"type": "undo"},
    ]
    for item in script:
        session.handle(json.loads(json.dumps(item)))
    assert not session.structures.is_locked("A") and session.structures.mask("A").sum() > 0
    assert session.object.empty


def test_engine_runs_elsewhere_through_pending(volume):
    s = AnnotationSession(volume)  # no engine: the caller runs it (the widget's worker)
    s.handle(AddPoint((8, 8, 8)))
    call = s.pending()
    assert call.reset and call.prompts.points.tolist() == [[8, 8, 8]]
    engine = BallEngine()
    engine.set_volume(volume)
    answer = engine.predict(call.prompts)
    s.handle(AddPoint((8, 8, 12)))  # newer prompts: the old answer is ignored
    assert not s.set_prediction(call.generation, answer)
    call = s.pending()
    assert not call.reset and s.set_prediction(call.generation, engine.predict(call.prompts))
    s.handle(Commit("A"))
    s.handle(ClearObject())
    assert s.structures.mask("A").sum() == (ball((8, 8, 8), 4) | ball((8, 8, 12), 4)).sum()


def test_save_load_bit_exact_with_prompts_and_locks(session, tmp_path):
    commit_ball(session, (8, 12, 12), "Parotid_L", radius=6)
    commit_ball(session, (8, 12, 15), "GTVp", radius=3)
    session.handle(Lock("Parotid_L"))
    path = session.structures.save(tmp_path / "plan.omlss")
    back = StructureSet.load(path)
    assert back.to_bytes() == session.structures.to_bytes()
    assert back.is_locked("Parotid_L") and back.structure("GTVp").prompts == session.structures.structure("GTVp").prompts
    np.testing.assert_array_equal(back.mask("GTVp"), session.structures.mask("GTVp"))


def test_autosave_generations_and_fallback_to_the_previous_good_one(volume, tmp_path):
    store = StructureSetAutosave.for_image("/virtual/ct.nii.gz", SHAPE, "ct", root=tmp_path)
    s = AnnotationSession(volume, engine=BallEngine(), autosave=store)
    commit_ball(s, (8, 8, 8), "A")
    commit_ball(s, (8, 14, 14), "B")
    s.handle(Lock("B"))
    assert [n for n, _ in store.generations()] == [1, 2, 3]
    commit_ball(s, (4, 4, 4), "C")
    assert [n for n, _ in store.generations()] == [2, 3, 4]  # keeps the newest 3
    loaded, message = store.load_latest()
    assert loaded.to_bytes() == s.structures.to_bytes() and "generation 4" in message

    newest = store.generations()[-1][1]
    newest.write_bytes(newest.read_bytes()[:100])  # a damaged newest autosave
    loaded, message = store.load_latest()
    assert loaded.names() == ["A", "B"] and loaded.is_locked("B")
    assert "generation 4 is damaged" in message and "previous good one" in message
    for _, p in store.generations():
        p.write_bytes(b"junk")
    with pytest.raises(StructureSetError, match="no readable autosave"):
        store.load_latest()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_kill_9_right_after_a_commit_loses_nothing_committed(tmp_path):
    """A child process commits two structures, starts a third object, and is killed with SIGKILL."""
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        import numpy as np
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_session import BallEngine, GEOM, SHAPE
        from napari_openmedlab.annotation import AnnotationSession, AddPoint, Commit, StructureSetAutosave
        from napari_openmedlab.io import Volume
        store = StructureSetAutosave({str(tmp_path / "auto")!r})
        s = AnnotationSession(Volume(np.zeros(SHAPE, np.int16), GEOM), engine=BallEngine(), autosave=store)
        for name, c in (("A", (8, 8, 8)), ("B", (8, 9, 10))):
            s.handle(AddPoint(c))
            s.handle(Commit(name))
        s.handle(AddPoint((4, 4, 4)))  # the object not yet committed
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    loaded, _ = StructureSetAutosave(tmp_path / "auto").load_latest()
    assert loaded.names() == ["A", "B"]
    np.testing.assert_array_equal(loaded.mask("B"), ball((8, 9, 10), 4))


def test_undo_steps_keep_earlier_previews_bit_packed_and_give_them_back(session):
    from napari_openmedlab.annotation.undo import PackedPreview

    answers = []
    for zyx, positive in (((8, 12, 12), True), ((8, 20, 20), True), ((8, 12, 15), False)):
        session.handle(AddPoint(zyx, positive))
        answers.append(session.object.preview.to_mask())
    assert not isinstance(session.object.preview, PackedPreview)  # the one on screen stays as is
    held = [state.preview for step in session.history._undo for state in (step.before, step.after)
            if state is not None and state.preview is not None]
    packed = [p for p in held if isinstance(p, PackedPreview)]
    assert len({id(p) for p in packed}) >= 2  # each earlier answer, packed once (states share it)
    assert all(not isinstance(p, PackedPreview) or p in packed for p in held)
    assert all(p.nbytes * 7 <= p.patch.nbytes for p in packed)
    session.handle(Undo())
    np.testing.assert_array_equal(session.preview().to_mask(), answers[1])
    session.handle(Undo())
    np.testing.assert_array_equal(session.preview().to_mask(), answers[0])
    session.handle(Redo())
    session.handle(Redo())
    np.testing.assert_array_equal(session.preview().to_mask(), answers[2])


def test_a_session_lets_the_engine_reuse_its_answer_memory():
    """Undo steps must not pin the engine's earlier answers (SAM-Med3D writes each answer into
    memory it reuses once no one holds it)."""
    torch = pytest.importorskip("torch")
    from napari_openmedlab.engines.sam_med3d import SamMed3DEngine
    from tests.engines.test_sam_med3d_engine import FakeSam3D, _rod_volume

    volume, rod = _rod_volume()
    engine = SamMed3DEngine(FakeSam3D(), "cpu")
    s = AnnotationSession(volume, engine=engine)
    with torch.inference_mode():
        s.handle(AddPoint((150, 24, 24)))
        for k in range(4):
            s.handle(AddPoint((150 + 30 * (k % 2), 24, 10 + k), positive=False))
    # the first answer's array and its spare, then the two that alternate: no new one per click
    assert engine._buffers.allocated <= 3
    assert (s.preview().to_mask() & rod).sum() > 0.5 * rod.sum()
