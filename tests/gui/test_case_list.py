"""``openmedlab annotate DATASET_DIR`` (issue #19): the case list dock over three cases."""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest

from napari_openmedlab.cli import main
from napari_openmedlab.cli.annotate import open_annotation
from napari_openmedlab.io import Geometry, Volume, write_volume

pytestmark = pytest.mark.gui


def _ball_volume(center) -> Volume:
    shape = (16, 32, 32)
    zz, yy, xx = np.indices(shape)
    a = np.full(shape, -100, np.int16)
    a[(zz - center[0]) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2 <= 25] = 300
    return Volume(a, Geometry((1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)))


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "cases"
    root.mkdir()
    for name, center in (("alpha", (8, 12, 12)), ("beta", (8, 20, 16)), ("gamma", (6, 16, 20))):
        write_volume(_ball_volume(center), root / f"{name}.nii.gz")
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps([{"id": 1, "name": "tumour", "color": "#ff0000"}]))
    return root, classes


def _args(root, classes):
    return argparse.Namespace(dataset_dir=str(root), classes=str(classes), model="seeded-region",
                              checkpoint=None, device="cpu")


def _rows(case_list):
    t = case_list.table
    return {t.item(r, 0).text(): t.item(r, 1).text() for r in range(t.rowCount())}


def test_next_previous_statuses_and_saving(make_napari_viewer, dataset, tmp_path):
    root, classes = dataset
    viewer = make_napari_viewer()
    viewer, seg, cases = open_annotation(_args(root, classes), viewer=viewer)
    try:
        assert cases.current == "alpha" and seg.session.image_layer.name == "alpha"
        assert _rows(cases) == {"alpha": "in progress", "beta": "todo", "gamma": "todo"}
        assert seg.wait_for_prediction(20) and seg.runner.engine is not None, seg.status_text
        assert seg.session.model is cases.work.session  # the widget shows the project's session
        seg.add_point_voxel((8, 12, 12))
        assert seg.wait_for_prediction(20)
        seg.commit("tumour")
        alpha_mask = seg.session.structures.mask("tumour").copy()
        assert alpha_mask[8, 12, 12] and "tumour" in cases.table.item(0, 2).text()
        cases.buttons["done"].click()
        cases.buttons["next"].click()  # saves alpha first
        assert cases.current == "beta" and seg.session.image_layer.name == "beta"
        assert [x.name for x in viewer.layers if x.name in ("alpha", "beta", "gamma")] == ["beta"]
        assert _rows(cases) == {"alpha": "done", "beta": "in progress", "gamma": "todo"}
        saved = cases.project.structure_set("alpha")
        assert saved is not None and (saved.mask("tumour") == alpha_mask).all()
        effort = cases.project.record("alpha")["effort"]["tumour"]
        assert effort["clicks"] == 1 and effort["commits"] == 1  # counted through the case
        cases.buttons["previous"].click()
        assert cases.current == "alpha" and (seg.session.structures.mask("tumour") == alpha_mask).all()
        cases.mark("skipped")
        cases.buttons["undone"].click()  # the next todo / in-progress case after alpha
        assert cases.current == "beta"
        cases.mark("done")
        cases.buttons["undone"].click()
        assert cases.current == "gamma"
        cases.filter_combo.setCurrentText("done")
        assert list(_rows(cases)) == ["beta"]
        cases.filter_combo.setCurrentText("all cases")
        assert _rows(cases) == {"alpha": "skipped", "beta": "done", "gamma": "in progress"}
        if os.environ.get("OPENMEDLAB_SCREENSHOT"):  # docs/screenshot_case_list.png
            viewer.window._qt_window.resize(1500, 900)
            viewer.window._qt_window.grab().save(os.environ["OPENMEDLAB_SCREENSHOT"])
    finally:
        cases.close_project()
    assert not (root / ".openmedlab" / "lock").exists()
    state = json.loads((root / "openmedlab_project.json").read_text())
    assert state["cases"]["gamma"]["status"] == "in progress"


def test_annotate_refuses_a_folder_without_images(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["annotate", str(empty)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("openmedlab: error:") and "no image found" in err and "Traceback" not in err
