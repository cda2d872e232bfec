"""``openmedlab replay``: requests from JSON replayed on a headless session, saved as a structure set."""

import json

import numpy as np
import pytest

from napari_openmedlab._sample_data import SAMPLE_CT
from napari_openmedlab.annotation import StructureSet
from napari_openmedlab.cli import main
from napari_openmedlab.io import read_volume

SEG = SAMPLE_CT.parent / "seg.nii.gz"


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENMEDLAB_CACHE_DIR", str(tmp_path / "cache"))


def write(path, requests):
    path.write_text(json.dumps(requests))
    return str(path)


def test_replay_starts_from_a_label_map_and_keeps_overlaps(tmp_path, capsys):
    seg = read_volume(SEG).array
    liver = seg == 5
    z, y, x = np.argwhere(liver)[len(np.argwhere(liver)) // 2]
    patch = np.ones((2, 4, 4), bool)
    requests = [
        {"type": "lock", "name": "liver"},
        {"type": "point", "zyx": [int(z), int(y), int(x)]},
        {"type": "commit", "structure": "GTV"},  # a click inside the locked liver: excluded
        {"type": "add_structure", "name": "PTV"},
        {"type": "edit", "structure": "PTV", "mode": "paint", "bbox": [int(z), int(y), int(x), int(z) + 2,
         int(y) + 4, int(x) + 4], "bits": __import__("base64").b64encode(np.packbits(patch).tobytes()).decode()},
    ]
    out, flat = tmp_path / "plan.omlss", tmp_path / "plan.nii.gz"
    code = main(["replay", str(SAMPLE_CT), "--labels", str(SEG), "--model", "seeded-region",
                 "--requests", write(tmp_path / "r.json", requests), "--out", str(out), "--label-map", str(flat)])
    text = capsys.readouterr().out
    assert code == 0, text
    ss = StructureSet.load(out)
    assert "liver" in ss and ss.is_locked("liver") and {"GTV", "PTV"} <= set(ss.names())
    np.testing.assert_array_equal(ss.mask("liver"), liver)
    assert not (ss.mask("GTV") & liver).any()
    assert (ss.mask("PTV") & liver).sum() > 0  # an edit may overlap: both keep the voxels
    assert "overlaps lost by" in text and "liver (32 voxels)" in text
    assert read_volume(flat).array.max() == max(ss.label_ids().values())


def test_replay_refuses_bad_requests_in_one_line(tmp_path, capsys):
    bad = write(tmp_path / "bad.json", [{"type": "commit", "structure": "x", "mode": "overwrite"}])
    assert main(["replay", str(SAMPLE_CT), "--requests", bad, "--out", str(tmp_path / "p.omlss")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("openmedlab: error:") and "replace, add, subtract" in err and "Traceback" not in err
    clicks = write(tmp_path / "c.json", [{"type": "point", "zyx": [1, 2, 3]}])
    assert main(["replay", str(SAMPLE_CT), "--requests", clicks, "--out", str(tmp_path / "p.omlss")]) == 1
    assert "needs a model" in capsys.readouterr().err
    assert not (tmp_path / "p.omlss").exists()


def test_replay_passes_encoder_and_threads_to_the_engine(tmp_path, monkeypatch, capsys):
    """``--encoder``/``--threads`` (as on segment and eval) reach create_engine; bad ones are refused."""
    import napari_openmedlab.engines as engines

    seen = []
    real = engines.create_engine

    def recording(name, checkpoint=None, device="auto", **kwargs):
        seen.append(kwargs)
        return real(name, checkpoint, device, **kwargs)

    monkeypatch.setattr(engines, "create_engine", recording)
    steps = write(tmp_path / "s.json", [{"type": "point", "zyx": [15, 60, 40]}, {"type": "commit", "structure": "x"}])
    args = ["replay", str(SAMPLE_CT), "--model", "seeded-region", "--requests", steps,
            "--out", str(tmp_path / "p.omlss")]
    assert main([*args, "--encoder", "reference", "--threads", "1"]) == 0
    assert main(args) == 0
    assert seen == [{"encoder": "reference", "threads": 1}, {"encoder": "fast", "threads": 0}]
    with pytest.raises(SystemExit):
        main([*args, "--threads", "-1"])
    assert "threads is 0 (automatic)" in capsys.readouterr().err
