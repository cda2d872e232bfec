"""`openmedlab batch`: every case, resumable, failures listed, Ray equal to the local run."""

import csv
import json

import numpy as np
import pytest

from napari_openmedlab.batch import EvalTask, run_batch
from napari_openmedlab.cli import main
from napari_openmedlab.io import Volume, read_volume, write_volume


@pytest.fixture(scope="module")
def dataset(shared_data, tmp_path_factory):
    """Three small cases cut from the shared CT (liver, spleen, stomach kept) and one broken case."""
    root = tmp_path_factory.mktemp("ds")
    (root / "imagesTr").mkdir()
    (root / "labelsTr").mkdir()
    ct = read_volume(shared_data / "totalseg-ct" / "ct.nii.gz")
    labels = read_volume(shared_data / "totalseg-ct" / "seg.nii.gz")
    keep = np.isin(labels.array, (1, 5, 6))
    for i, (z0, z1) in enumerate(((0, 20), (5, 25), (10, 30))):
        img = Volume(ct.array[z0:z1].copy(), ct.geometry)
        lab = Volume(np.where(keep[z0:z1], labels.array[z0:z1], 0).astype(np.uint8), ct.geometry)
        write_volume(img, root / "imagesTr" / f"case{i}_0000.nii.gz")
        write_volume(lab, root / "labelsTr" / f"case{i}.nii.gz", labels=True)
    (root / "imagesTr" / "broken_0000.nii.gz").write_bytes(b"not a nifti")
    write_volume(Volume(np.zeros((4, 4, 4), np.uint8), ct.geometry), root / "labelsTr" / "broken.nii.gz", labels=True)
    return root


def _results(out):
    return {p.stem: json.loads(p.read_text()) for p in (out / "cases").glob("*.json")}


def _without_time(result):
    rows = [{k: v for k, v in r.items() if k not in ("seconds", "setup_seconds")} for r in result["rows"]]
    return result["case"], result["mean_final_dice"], rows


def test_local_batch_resumes_and_lists_failures(dataset, tmp_path):
    out = tmp_path / "out"
    code = main(["batch", str(dataset), "--model", "seeded-region", "--clicks", "2", "--out", str(out), "--local"])
    assert code == 0
    assert sorted(_results(out)) == ["case0", "case1", "case2"]
    with open(out / "failures.csv") as f:
        failures = list(csv.DictReader(f))
    assert [r["case"] for r in failures] == ["broken"] and failures[0]["error"]
    with open(out / "summary.csv") as f:
        assert [r["case"] for r in csv.DictReader(f)] == ["case0", "case1", "case2"]
    assert (out / "results.csv").stat().st_size > 0
    before = {p: p.stat().st_mtime_ns for p in (out / "cases").glob("*.json")}
    report = run_batch(EvalTask("seeded-region", n_clicks=2), dataset, out)
    assert sorted(report.skipped) == ["case0", "case1", "case2"] and not report.done
    assert {p: p.stat().st_mtime_ns for p in (out / "cases").glob("*.json")} == before


def test_ray_with_two_workers_equals_the_local_run(dataset, tmp_path):
    pytest.importorskip("ray")
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    run_batch(EvalTask("seeded-region", n_clicks=2), dataset, local)
    report = run_batch(EvalTask("seeded-region", n_clicks=2), dataset, on_ray, ray_address="local", workers=2)
    assert sorted(report.done) == ["case0", "case1", "case2"] and list(report.failed) == ["broken"]
    a, b = _results(local), _results(on_ray)
    assert sorted(a) == sorted(b)
    for name in a:
        assert _without_time(a[name]) == _without_time(b[name])


def test_batch_refuses_a_missing_dataset(tmp_path, capsys):
    code = main(["batch", str(tmp_path / "nope"), "--model", "seeded-region", "--out", str(tmp_path / "o")])
    assert code == 1 and "not a data set folder" in capsys.readouterr().err
