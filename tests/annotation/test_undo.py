import numpy as np

from napari_openmedlab.annotation.editing import commit_mask
from napari_openmedlab.annotation.undo import History, LabelDiff, ObjectState, Step, mask_bbox
from napari_openmedlab.engines.base import Box, Prediction


def _ball(shape, center, r):
    zz, yy, xx = np.indices(shape)
    return (zz - center[0]) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2 <= r * r


def test_diff_is_bbox_of_changed_voxels_and_round_trips():
    labels = np.zeros((20, 30, 40), np.uint8)
    before = labels.copy()
    diff = commit_mask(labels, Prediction.from_mask(_ball(labels.shape, (10, 15, 20), 3)), 4)
    assert diff.bbox == (7, 12, 17, 14, 19, 24)
    assert diff.before.shape == (7, 7, 7) and diff.nbytes == 2 * 7**3
    after = labels.copy()
    diff.undo(labels)
    np.testing.assert_array_equal(labels, before)
    diff.redo(labels)
    np.testing.assert_array_equal(labels, after)


def test_undo_keeps_later_brush_strokes():
    labels = np.zeros((10, 10, 10), np.uint8)
    mask = np.zeros_like(labels, bool)
    mask[2:6, 2:6, 2:6] = True
    diff = commit_mask(labels, Prediction.from_mask(mask), 1)
    labels[3, 3, 3] = 7  # painted afterwards with napari's brush, inside the committed box
    diff.undo(labels)
    assert labels[3, 3, 3] == 7
    assert labels.sum() == 7


def test_between_returns_none_when_equal():
    a = np.ones((3, 3, 3), np.uint8)
    assert LabelDiff.between(a, a.copy()) is None
    assert mask_bbox(np.zeros((2, 2, 2), bool)) is None


def _step(nbytes):
    before = np.zeros(nbytes // 2, np.uint8).reshape(1, 1, -1)
    return Step("edit", labels=LabelDiff((0, 0, 0, 1, 1, before.shape[2]), before, before.copy()))


def test_history_bounded_in_bytes_drops_oldest_first():
    h = History(max_bytes=1000)
    steps = [_step(400) for _ in range(5)]
    for s in steps:
        h.push(s)
    assert h.nbytes <= 1000
    assert len(h) == 2
    assert h.undo() is steps[-1]
    assert h.undo() is steps[-2]
    assert h.undo() is None
    assert h.redo() is steps[-2]


def test_history_keeps_the_newest_step_even_if_too_big():
    h = History(max_bytes=10)
    big = _step(100)
    h.push(_step(4))
    h.push(big)
    assert len(h) == 1 and h.undo() is big


def test_push_clears_redo():
    h = History()
    a, b = Step("a"), Step("b")
    h.push(a)
    h.undo()
    assert h.can_redo
    h.push(b)
    assert not h.can_redo and h.undo() is b


def test_object_state_prompts_and_bytes():
    state = ObjectState().with_point((1, 2, 3), True).with_point((4, 5, 6), False)
    prompts = state.prompts()
    np.testing.assert_array_equal(prompts.labels, [1, 0])
    assert state.has_prompts and not state.empty
    mask = np.zeros((8, 8, 8), bool)
    mask[1:3, 1:3, 1:3] = True
    refine = ObjectState(mask=Prediction.from_mask(mask), refine_id=3)
    refine.preview = refine.mask
    assert refine.nbytes == 8  # the shared patch counts once
    assert refine.prompts().mask.sum() == 8 and not refine.has_prompts


def test_a_new_prompt_keeps_the_old_preview_but_marks_it_stale():
    mask = np.zeros((4, 4, 4), bool)
    mask[1, 1, 1] = True
    state = ObjectState(preview=Prediction.from_mask(mask))
    clicked = state.with_point((1, 1, 1), True)
    assert clicked.preview is state.preview and state.fresh and not clicked.fresh
    assert not clicked.with_box(Box(0, 1, 0, 0, 2, 2)).fresh


def test_history_counts_a_state_and_a_preview_shared_by_steps_once():
    def preview(k):
        mask = np.zeros((10, 10, 10), bool)
        mask[k] = True
        return Prediction((0, 0, 0, 10, 10, 10), mask, (10, 10, 10))  # 1000 bytes

    h = History(max_bytes=4500)
    state = ObjectState(preview=preview(0))
    for k in range(1, 5):  # as the session does: the click's state shares the old preview first
        new = state.with_point((k, 0, 0), True)
        h.push(Step("click", before=state, after=new))
        new.preview = preview(k)  # the answer arrives
        h.touch()
        state = new
    # five distinct previews (5000 bytes) and the points: the oldest step goes, three stay;
    # counted per step (before + after), every step held 2000 bytes and only two would stay
    assert len(h) == 3
    assert 4000 < h.nbytes <= 4500
