import json

import numpy as np

from napari_openmedlab.annotation.autosave import Autosaver, RecoveryStore, image_key, recovery_root
from napari_openmedlab.annotation.prompt_log import commit_record, log_document
from napari_openmedlab.engines.base import Box, Prompts
from napari_openmedlab.io import Geometry, Volume

GEOM = Geometry((0.8, 0.8, 2.5), (10.0, -20.0, 30.0), (-1, 0, 0, 0, -1, 0, 0, 0, 1))


def test_recovery_root_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENMEDLAB_RECOVERY_DIR", str(tmp_path))
    assert recovery_root() == tmp_path


def test_key_depends_on_path_and_shape(tmp_path):
    a = image_key(tmp_path / "ct.nii.gz", (10, 20, 30))
    assert a == image_key(str(tmp_path / "ct.nii.gz"), [10, 20, 30])
    assert a != image_key(tmp_path / "ct.nii.gz", (10, 20, 31))
    assert a != image_key(tmp_path / "other.nii.gz", (10, 20, 30))


def test_autosave_writes_labels_in_geometry_and_log(tmp_path):
    store = RecoveryStore.for_image("/data/ct.nii.gz", (4, 5, 6), name="ct", root=tmp_path)
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1, 2, 3] = 9
    prompts = Prompts([[1, 2, 3]], [1], [Box(0, 1, 0, 0, 2, 2)])
    record = commit_record(
        prompts,
        GEOM,
        model={"name": "seeded-region", "device": "cpu"},
        class_id=9,
        class_name="x",
        overlap="overwrite",
        refined_id=None,
        voxels_changed=1,
        bbox=(1, 2, 3, 2, 3, 4),
    )
    log = log_document([record], source="/data/ct.nii.gz", shape=labels.shape, geometry=GEOM)
    saver = Autosaver()
    saver.submit(store, Volume(labels, GEOM), log)
    assert saver.wait(30) and saver.last_error is None
    assert store.exists() and "1 commit" in store.summary()
    volume, back = store.load()
    assert volume.geometry.same_grid(GEOM)
    np.testing.assert_array_equal(volume.array, labels)
    point = back["commits"][0]["points"][0]
    assert point["voxel_zyx"] == [1, 2, 3]
    np.testing.assert_allclose(point["physical_lps_xyz_mm"], GEOM.index_to_physical([1, 2, 3]), atol=1e-3)
    assert back["commits"][0]["boxes"][0]["axis"] == 0
    assert json.loads(store.log_path.read_text())["image"]["shape"] == [4, 5, 6]
    store.discard()
    assert not store.exists()


def test_autosaver_coalesces_and_survives_errors(tmp_path):
    saver = Autosaver()
    bad = RecoveryStore(tmp_path / "file")
    (tmp_path / "file").write_text("not a folder")
    saver.submit(bad, Volume(np.zeros((2, 2, 2), np.uint8)), {})
    assert saver.wait(30) and saver.last_error is not None
    good = RecoveryStore(tmp_path / "ok")
    for i in range(5):
        saver.submit(good, Volume(np.full((2, 2, 2), i, np.uint8)), {"i": i})
    assert saver.wait(30) and saver.last_error is None
    assert good.load()[1] == {"i": 4}


def test_a_snapshot_of_one_image_never_displaces_another_images(tmp_path):
    saver = Autosaver()
    stores = [RecoveryStore(tmp_path / name) for name in "abc"]
    for i, store in enumerate(stores):
        saver.submit(store, Volume(np.full((2, 2, 2), i, np.uint8)), {"i": i})
    saver.submit(stores[0], Volume(np.full((2, 2, 2), 9, np.uint8)), {"i": 9})
    assert saver.wait(30) and saver.last_error is None
    assert [store.load()[1]["i"] for store in stores] == [9, 1, 2]


def _labels(value: int) -> Volume:
    return Volume(np.full((2, 3, 4), value, np.uint8), GEOM)


def test_generations_keep_the_newest_per_session_and_fall_back(tmp_path):
    store = RecoveryStore(tmp_path / "img", keep=3)
    for i in range(1, 6):
        store.save(_labels(i), {"commits": [{"i": i}] * i})
    gens = store.generations()
    assert [g.number for g in gens] == [5, 4, 3]  # the two oldest pruned
    assert all(g.fault() is None and g.session == store.session for g in gens)
    (gens[0].folder / "labels.nii.gz").write_bytes(b"damaged")
    snapshot = store.load_snapshot()
    assert snapshot.generation.number == 4 and (snapshot.labels.array == 4).all()
    assert "gen-000005" in snapshot.note and "labels.nii.gz" in snapshot.note
    assert "previous good one" in store.summary()
    store.save(_labels(6), {"commits": []})  # damaged gen-5 is not counted as a good one
    assert [g.number for g in store.generations()] == [6, 5, 4, 3]


def test_a_failed_snapshot_leaves_no_generation_and_sets_the_warning(tmp_path, monkeypatch):
    import errno

    from napari_openmedlab.annotation import autosave

    store = RecoveryStore(tmp_path / "img")
    saver = Autosaver()
    saver.submit(store, _labels(1), {"commits": []})
    assert saver.wait(30) and saver.warning is None

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(autosave, "atomic_write_json", full)
    saver.submit(store, _labels(2), {"commits": [{}]})
    assert saver.wait(30)
    assert saver.warning == "autosave failed: the disk is full; your work is only in memory"
    assert [p.name for p in store.folder.iterdir()] == ["gen-000001"]  # nothing half-written left
    monkeypatch.undo()
    saver.submit(store, _labels(3), {"commits": [{}]})
    assert saver.wait(30) and saver.warning is None and saver.failures == 1


def test_restoring_adopts_the_old_session_so_its_snapshots_can_be_pruned(tmp_path):
    old = RecoveryStore(tmp_path / "img")
    for i in range(3):
        old.save(_labels(i + 1), {"commits": []})
    new = RecoveryStore(tmp_path / "img")
    new.save(_labels(7), {"commits": []})
    assert len(new.generations()) == 4  # the unrestored session's three are kept
    assert (new.load_snapshot().labels.array == 7).all()
    snapshot = new.load_snapshot(others_only=True)  # a restore brings back the other's work
    assert (snapshot.labels.array == 3).all()
    new.adopt(snapshot)
    for i in range(3):
        new.save(_labels(8 + i), {"commits": []})
    assert len(new.generations()) == 3


def test_the_first_versions_single_snapshot_still_restores(tmp_path):
    from napari_openmedlab.io import write_volume
    from napari_openmedlab.io.atomic import atomic_write_json

    store = RecoveryStore(tmp_path / "img")
    store.folder.mkdir()
    write_volume(_labels(4), store.folder / "labels.nii.gz", labels=True)
    atomic_write_json(store.folder / "prompt_log.json", {"commits": [{}]})
    assert store.exists() and (store.load()[0].array == 4).all()


def test_a_checksummed_snapshot_with_a_log_that_is_not_an_object_is_refused(tmp_path):
    import pytest

    from napari_openmedlab.annotation.autosave import RecoveryError
    from napari_openmedlab.io import write_volume

    store = RecoveryStore(tmp_path / "img")
    store.write_snapshot({
        "labels.nii.gz": lambda p: write_volume(_labels(1), p, labels=True),
        "prompt_log.json": lambda p: p.write_text("[1, 2]"),
    })
    with pytest.raises(RecoveryError, match="JSON list, not an object"):
        store.load()
    store.write_snapshot({
        "labels.nii.gz": lambda p: write_volume(_labels(1), p, labels=True),
        "prompt_log.json": lambda p: p.write_text('{"classes": [{"id": 0, "name": "x"}]}'),
    })
    with pytest.raises(RecoveryError, match="class table"):
        store.load_snapshot()
