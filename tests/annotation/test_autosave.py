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
