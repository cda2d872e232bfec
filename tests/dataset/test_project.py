"""Annotating a data set headlessly through the session API: statuses, resume after kill -9,
the lock, the nnU-Net export equal to what was annotated, and the effort report."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from napari_openmedlab.annotation import requests as rq
from napari_openmedlab.cli import main
from napari_openmedlab.dataset import AnnotationProject, ProjectLockedError
from napari_openmedlab.engines import create_engine
from napari_openmedlab.io import Volume, read_volume, write_volume


@pytest.fixture
def dataset(shared_data, tmp_path):
    root = tmp_path / "Dataset900_Test"
    (root / "imagesTr").mkdir(parents=True)
    ct = read_volume(shared_data / "totalseg-ct" / "ct.nii.gz")
    for i, (z0, z1) in enumerate(((0, 20), (5, 25), (10, 30))):
        write_volume(Volume(ct.array[z0:z1].copy(), ct.geometry), root / "imagesTr" / f"case{i}_0000.nii.gz")
    (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1, "spleen": 2},
                                                   "channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}))
    return root


def annotate(work, seed):
    """One liver object from two clicks, plus a painted 'spleen' cube (a brush stroke)."""
    shape = np.array(work.volume.shape)
    work.handle(rq.AddPoint(tuple(float(v) for v in shape // 2)))
    work.handle(rq.AddPoint(tuple(float(v) for v in shape // 2 + [0, 5, 5])))
    work.handle(rq.Commit("liver", "replace"))
    cube = np.ones((3, 4, 5), bool)
    work.handle(rq.AddStructure("spleen"))
    work.handle(rq.Edit.from_mask("spleen", "paint", cube, (seed, 10, 10)))


def test_three_cases_statuses_export_and_report(dataset, tmp_path):
    engine = create_engine("seeded-region")
    with AnnotationProject.open(dataset) as project:
        assert project.case_names() == ["case0", "case1", "case2"]
        assert [c.name for c in project.classes] == ["liver", "spleen"]
        annotated = {}
        name = project.next_case(undone=True)
        for i in range(3):
            work = project.open_case(name, engine)
            assert project.status(name) == "in progress"
            annotate(work, i)
            work.save()
            annotated[name] = {s: work.structures.mask(s).copy() for s in work.structures.names()}
            project.set_status(name, "done" if i < 2 else "skipped")
            name = project.next_case(name, undone=True)
        assert name is None
        assert project.cases("done") == ["case0", "case1"] and project.cases("skipped") == ["case2"]
        with pytest.raises(ProjectLockedError, match="open in another viewer"):
            AnnotationProject.open(dataset)
    out = tmp_path / "nnunet"
    assert main(["dataset", "export", str(dataset), "--nnunet", str(out), "--id", "801", "--name", "MyOARs"]) == 0
    folder = out / "Dataset801_MyOARs"
    ds = json.loads((folder / "dataset.json").read_text())
    assert ds["labels"] == {"background": 0, "liver": 1, "spleen": 2} and ds["numTraining"] == 2
    assert ds["file_ending"] == ".nii.gz" and ds["channel_names"] == {"0": "CT"}
    for case in ("case0", "case1"):
        labels = read_volume(folder / "labelsTr" / f"{case}.nii.gz")
        image = read_volume(folder / "imagesTr" / f"{case}_0000.nii.gz")
        original = read_volume(dataset / "imagesTr" / f"{case}_0000.nii.gz")
        assert np.array_equal(image.array, original.array) and labels.geometry.same_grid(original.geometry)
        liver, spleen = annotated[case]["liver"], annotated[case]["spleen"]
        assert np.array_equal(labels.array == 2, spleen)  # the smaller structure keeps overlaps
        assert np.array_equal(labels.array == 1, liver & ~spleen)
    datalist = json.loads((folder / "datalist.json").read_text())
    assert len(datalist["training"]) + len(datalist["validation"]) == 2
    nnunet = pytest.importorskip("nnunetv2.experiment_planning.verify_dataset_integrity")
    nnunet.verify_dataset_integrity(str(folder), 1)  # nnU-Net's own checks raise on any problem
    report = tmp_path / "effort.csv"
    assert main(["dataset", "report", str(dataset), "--out", str(report)]) == 0
    text = report.read_text().splitlines()
    assert text[0].startswith("case,status,structure,clicks")
    liver_rows = [r.split(",") for r in text[1:] if ",liver," in r]
    assert len(liver_rows) == 3 and all(r[3] == "2" for r in liver_rows)
    assert report.with_suffix(".png").stat().st_size > 0


RESUME_SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np
    from napari_openmedlab.annotation import requests as rq
    from napari_openmedlab.dataset import AnnotationProject
    project = AnnotationProject.open(sys.argv[1])
    work = project.open_case("case0")
    work.handle(rq.AddStructure("liver"))
    work.handle(rq.Edit.from_mask("liver", "paint", np.ones((2, 3, 4), bool), (1, 2, 3)))
    work.save()
    project.set_status("case0", "done")
    work = project.open_case("case1")
    work.handle(rq.AddStructure("spleen"))
    work.handle(rq.Edit.from_mask("spleen", "paint", np.ones((2, 2, 2), bool), (4, 4, 4)))
    # not saved explicitly: only the session's autosave has it
    print("ready", flush=True)
    os.kill(os.getpid(), 9)
""")


def test_resume_after_the_process_is_killed(dataset, tmp_path):
    script = tmp_path / "annotate.py"
    script.write_text(RESUME_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script), str(dataset)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == -signal.SIGKILL and "ready" in done.stdout, done.stderr
    assert (dataset / ".openmedlab" / "lock").exists()  # left behind by the killed process
    with AnnotationProject.open(dataset) as project:  # a dead holder's lock is taken over
        assert project.status("case0") == "done" and project.status("case1") == "in progress"
        assert project.next_case(undone=True) == "case1"
        saved = project.structure_set("case0")
        assert saved.mask("liver").sum() == 24
        work = project.open_case("case1")
        assert work.restored_from_autosave and work.structures.mask("spleen").sum() == 8
        assert project.status("case2") == "todo"
