"""``openmedlab eval`` and the runner behind it: one case, nnU-Net folders, both protocols."""

import csv
import json

import numpy as np
import pytest

from napari_openmedlab.engines.base import Engine, Prediction
from napari_openmedlab.evaluation import runner
from napari_openmedlab.io import Geometry, Volume, write_volume

try:  # the lead's entry point; fall back on this module's own parser until it exists
    from napari_openmedlab.cli import main
except ImportError:  # pragma: no cover
    import argparse

    from napari_openmedlab.cli import evaluate

    def main(argv):
        parser = argparse.ArgumentParser(prog="openmedlab")
        evaluate.add_parser(parser.add_subparsers())
        args = parser.parse_args(argv)
        return args.run(args)


def ball(shape, centre, radius):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum((g - c) ** 2 for g, c in zip(grids, centre)) <= radius**2


def synthetic_case(seed=0, shape=(24, 40, 40)):
    """CT-like: body at 0 HU, class 1 (60 HU) and class 2 (-60 HU) balls, noise; 1.5 mm voxels."""
    rng = np.random.default_rng(seed)
    a = np.full(shape, -1000.0)
    a[:, 3:-3, 3:-3] = 0
    lab = np.zeros(shape, np.uint8)
    one = ball(shape, (12, 14, 13), 6)
    two = ball(shape, (12, 26, 27), 5)
    a[one], a[two] = 60, -60
    lab[one], lab[two] = 1, 2
    a += rng.normal(0, 10, shape)
    geometry = Geometry((1.5, 1.5, 1.5), (-30.0, -30.0, 5.0))
    return Volume(a.astype(np.int16), geometry), Volume(lab, geometry)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_eval_one_case_writes_csv_and_plot(shared_data, tmp_path, capsys):
    ct = shared_data / "totalseg-ct" / "ct.nii.gz"
    seg = shared_data / "totalseg-ct" / "seg.nii.gz"
    out, png = tmp_path / "r" / "results.csv", tmp_path / "dice.png"
    code = main(["eval", str(ct), str(seg), "--model", "seeded-region", "--clicks", "2",
                 "--classes", "1,3", "--out", str(out), "--plot", str(png)])
    assert code == 0
    rows = read_rows(out)
    assert [(r["class_name"], r["click"]) for r in rows] == [
        ("spleen", "1"), ("spleen", "2"), ("kidney_left", "1"), ("kidney_left", "2")]
    assert rows[0]["positive"] == "1" and rows[0]["protocol"] == "largest-error"
    assert all(0 < float(r["dice"]) <= 1 and 0 < float(r["nsd"]) <= 1 for r in rows)
    assert float(rows[0]["dice"]) > 0.85 and float(rows[2]["dice"]) > 0.85  # spleen, kidney
    assert all(float(r["seconds"]) < 2 for r in rows)
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr()
    assert "mean Dice by click" in printed.out and "predict time per click" in printed.out
    assert "%" in printed.err  # the progress bar


def write_dataset(root, n_cases=2, nnunet_names=True):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(n_cases):
        image, labels = synthetic_case(seed=i)
        name = f"case_{i:03d}"
        write_volume(image, root / "imagesTr" / (f"{name}_0000.nii.gz" if nnunet_names else f"{name}.nii.gz"))
        write_volume(labels, root / "labelsTr" / f"{name}.nii.gz", labels=True)
    (root / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "bright": 1, "dark": 2}}))


def test_eval_dataset_folder_in_nnunet_layout(tmp_path):
    write_dataset(tmp_path / "Dataset001")
    out = tmp_path / "results.csv"
    assert main(["eval", str(tmp_path / "Dataset001"), "--model", "seeded-region", "--clicks", "3",
                 "--out", str(out), "--quiet"]) == 0
    rows = read_rows(out)
    assert len(rows) == 2 * 2 * 3
    assert {r["case"] for r in rows} == {"case_000", "case_001"}
    assert {r["class_name"] for r in rows} == {"bright", "dark"}
    assert np.mean([float(r["dice"]) for r in rows if r["click"] == "3"]) > 0.8
    # an images folder with its labels folder gives the same cases
    cases = runner.find_cases(tmp_path / "Dataset001" / "imagesTr", tmp_path / "Dataset001" / "labelsTr")
    assert [c.name for c in cases] == ["case_000", "case_001"]
    assert [c.name for c in runner.find_cases(tmp_path / "Dataset001" / "imagesTr")] == ["case_000", "case_001"]


def test_find_cases_same_names_and_errors(tmp_path):
    write_dataset(tmp_path / "d", n_cases=1, nnunet_names=False)  # SAM-Med3D style: same names
    assert [c.name for c in runner.find_cases(tmp_path / "d")] == ["case_000"]
    with pytest.raises(FileNotFoundError):
        runner.find_cases(tmp_path / "d" / "labelsTr" / "..", tmp_path / "nowhere")
    (tmp_path / "lonely").mkdir()
    with pytest.raises(FileNotFoundError):
        runner.find_cases(tmp_path / "lonely")


def test_eval_single_image_needs_labels_and_unknown_model_is_clear(tmp_path, capsys):
    image, labels = synthetic_case()
    write_volume(image, tmp_path / "img.nii.gz")
    with pytest.raises(SystemExit):
        main(["eval", str(tmp_path / "img.nii.gz"), "--model", "seeded-region",
              "--out", str(tmp_path / "r.csv")])
    write_volume(labels, tmp_path / "lab.nii.gz", labels=True)
    code = main(["eval", str(tmp_path / "img.nii.gz"), str(tmp_path / "lab.nii.gz"),
                 "--model", "no-such-model", "--out", str(tmp_path / "r.csv")])
    assert code == 1 and "unknown model" in capsys.readouterr().err


def test_eval_sam_med3d_protocol_is_deterministic(tmp_path):
    image, labels = synthetic_case()
    write_volume(image, tmp_path / "img.nii.gz")
    write_volume(labels, tmp_path / "lab.nii.gz", labels=True)
    outs = []
    for k in range(2):
        out = tmp_path / f"r{k}.csv"
        assert main(["eval", str(tmp_path / "img.nii.gz"), str(tmp_path / "lab.nii.gz"),
                     "--model", "seeded-region", "--clicks", "2", "--protocol", "sam-med3d",
                     "--quiet", "--out", str(out)]) == 0
        outs.append([{k: v for k, v in r.items() if "seconds" not in k} for r in read_rows(out)])
    assert outs[0] == outs[1] and len(outs[0]) == 4
    first = outs[0][0]
    assert first["protocol"] == "sam-med3d" and first["positive"] == "1"
    # the click, mapped back to the image grid, lies in its class
    z, y, x = (int(first[k]) for k in "zyx")
    assert labels.array[z, y, x] == int(first["class_id"])


class OracleEngine(Engine):
    """Returns the class mask it was told about: Dice 1 from the first click on."""

    name = "oracle"

    def __init__(self, labels):
        super().__init__()
        self.labels = labels

    def _set_volume(self, volume, progress):
        pass

    def _predict(self, prompts, progress, cancel):
        z, y, x = np.round(prompts.points[0]).astype(int)
        return Prediction.from_mask(self.labels == self.labels[z, y, x])


def test_runner_records_no_click_once_nothing_is_left_to_correct(tmp_path):
    image, labels = synthetic_case()
    seen = []
    rows = runner.evaluate_case(OracleEngine(labels.array), image, labels, n_clicks=3,
                                classes=[1, 2, 7], progress=lambda f, w: seen.append(f))
    assert len(rows) == 9
    one = [r for r in rows if r.class_id == 1]
    assert [r.dice for r in one] == [1.0, 1.0, 1.0] and one[0].nsd == 1.0
    assert one[0].positive is True and one[1].positive is None and one[1].z is None
    absent = [r for r in rows if r.class_id == 7]
    assert all(np.isnan(r.dice) and r.positive is None for r in absent)  # nothing to score
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    # CSV round trip, the summary and the markdown table
    path = runner.write_csv(rows, tmp_path / "o.csv")
    back = runner.read_csv(path)
    assert [(r.class_id, r.click, r.positive, r.z) for r in back] == [
        (r.class_id, r.click, r.positive, r.z) for r in rows]
    curve = runner.mean_dice_by_click(rows)["1"]
    assert np.allclose(curve, 1.0)
    table = runner.markdown_table(rows, clicks=(1, 3))
    assert table.splitlines()[0].startswith("| case | class | Dice @1 | Dice @3 | NSD @1")
    assert "**mean**" in table
    runner.plot_dice(rows, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 0


def test_eval_with_no_object_fails_clearly(tmp_path, capsys):
    import numpy as np

    from napari_openmedlab.cli import main
    from napari_openmedlab.io import Volume, write_volume

    image = write_volume(Volume(np.random.default_rng(0).normal(size=(8, 16, 16)).astype(np.float32)),
                         tmp_path / "img.nii.gz")
    labels = write_volume(Volume(np.zeros((8, 16, 16), np.uint8)), tmp_path / "lab.nii.gz", labels=True)
    code = main(["eval", str(image), str(labels), "--model", "seeded-region", "--clicks", "2",
                 "--out", str(tmp_path / "r.csv")])
    assert code == 1 and "no object to evaluate" in capsys.readouterr().err


def test_encoder_and_threads_reach_the_engine(tmp_path, monkeypatch, capsys):
    """``--encoder``/``--threads`` on eval and segment go to create_engine; bad values are refused."""
    import napari_openmedlab.engines as engines

    seen = []
    real = engines.create_engine

    def recording(name, checkpoint=None, device="auto", **kwargs):
        seen.append(kwargs)
        return real(name, checkpoint, device, **kwargs)

    monkeypatch.setattr(engines, "create_engine", recording)
    image, labels = synthetic_case()
    write_volume(image, tmp_path / "img.nii.gz")
    write_volume(labels, tmp_path / "lab.nii.gz", labels=True)
    assert main(["eval", str(tmp_path / "img.nii.gz"), str(tmp_path / "lab.nii.gz"),
                 "--model", "seeded-region", "--clicks", "1", "--encoder", "reference",
                 "--threads", "1", "--quiet", "--out", str(tmp_path / "r.csv")]) == 0
    assert main(["segment", str(tmp_path / "img.nii.gz"), "--model", "seeded-region",
                 "--point", "5,10,10", "--out", str(tmp_path / "m.nii.gz")]) == 0
    assert seen == [{"encoder": "reference", "threads": 1}, {"encoder": "fast", "threads": 0}]
    for bad in (["--encoder", "turbo"], ["--threads", "-2"]):
        with pytest.raises(SystemExit):
            main(["segment", str(tmp_path / "img.nii.gz"), "--model", "seeded-region",
                  "--point", "5,10,10", "--out", str(tmp_path / "m.nii.gz"), *bad])
    assert "threads is 0 (automatic)" in capsys.readouterr().err
