"""Benchmark: the whole SAM-Med3D click pipeline, official steps (TorchIO + medim) vs our engine.

Both pipelines start from a volume already in memory and get the same random weights (our
``Sam3D`` built with a fixed seed; medim's network loads the same state dict). Per case:

* first click: a click in a crop never seen (preprocess + encoder + decoder + back onto the
  volume grid); median over ``--clicks`` clicks in different crops;
* next click: another click in the same crop (prompt encoder + decoder + back onto the grid;
  the official flow keeps its embedding and previous logits too); median over ``--clicks``;
* peak RSS of the process (``resource.getrusage``; each pipeline in its own subprocess).

The official steps, as SAM-Med3D's ``utils/infer_utils.py`` does them with installed packages:
``tio.Resample(1.5)`` of the whole volume, ``tio.ToCanonical()``, ``tio.CropOrPad(128,
mask_name='label')`` centred on the clicked voxel, ``tio.ZNormalization(x > 0)``, medim's
network (encoder, prompt encoder + decoder with the previous logits), trilinear upsampling,
sigmoid > 0.5 and ``tio.Resample(original, 'nearest')`` of the crop back onto the whole grid.
Ours: ``SamMed3DEngine`` (``max_extra_crops=0``, one crop like the official flow).

    python benchmarks/bench_sam_med3d_pipeline.py [--device auto] [--cases ct,synthetic]
        [--clicks 3] [--skip-official]

Cases: ``ct`` = ../shared/data/totalseg-ct/ct.nii.gz (122x101x30, 3 mm); ``synthetic`` = a
512x512x300 int16 CT-like volume, 0.8x0.8x1.5 mm. Needs torchio and medim for the official side.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CT = REPO / ".." / "shared" / "data" / "totalseg-ct" / "ct.nii.gz"


# --- inputs -----------------------------------------------------------------------------------
def load_case(case: str, ct: Path = CT):
    """(Volume, clicks): clicks (z, y, x) in different crops, each followed by a nearby one."""
    from napari_openmedlab.io import Geometry, Volume, read_volume

    if case == "ct":
        volume = read_volume(ct)
        shape = np.array(volume.shape)
        centres = [shape // 2, shape // 4, (shape * 3) // 4]
    else:
        shape = (300, 512, 512)
        rng = np.random.default_rng(0)
        yy, xx = np.ogrid[:shape[1], :shape[2]]
        body = np.where(((yy - 256) / 220.0) ** 2 + ((xx - 256) / 180.0) ** 2 <= 1, 40, -1000)
        texture = rng.integers(-20, 20, size=shape[1:], dtype=np.int16)
        centres = [(150, 256, 256), (60, 200, 150), (240, 300, 360)]
        array = np.empty(shape, np.int16)
        for z in range(shape[0]):  # slice by slice: no full-size temporaries
            plane = body.copy()
            for cz, cy, cx in centres:
                r = 1 - ((z - cz) / 30.0) ** 2
                if r > 0:
                    plane[((yy - cy) / 50.0) ** 2 + ((xx - cx) / 45.0) ** 2 <= r] = 120
            array[z] = plane + texture
        volume = Volume(array, Geometry((0.8, 0.8, 1.5), (-200.0, -180.0, -400.0),
                                        (-1, 0, 0, 0, -1, 0, 0, 0, 1)))
    clicks = [tuple(int(v) for v in c) for c in centres]
    return volume, clicks


def random_state(path: Path) -> None:
    import torch

    from napari_openmedlab.models.sam_med3d import build_sam_med3d

    torch.manual_seed(0)
    torch.save(build_sam_med3d().state_dict(), path)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# --- workers (one pipeline per process) -------------------------------------------------------
def run_ours(case: str, state: Path, device: str, n: int, ct: Path) -> dict:

    from napari_openmedlab.engines import Prompts
    from napari_openmedlab.engines.sam_med3d import SamMed3DEngine
    from napari_openmedlab.models.device import resolve_device
    from napari_openmedlab.models.sam_med3d import load_sam_med3d

    dev = resolve_device(device)
    engine = SamMed3DEngine(load_sam_med3d(state, dev), dev, max_extra_crops=0)
    _warm_up(engine.model.image_encoder, dev)
    volume, clicks = load_case(case, ct)
    rss_loaded = _rss_mb()
    first, nxt, encoder = [], [], []
    t0 = time.perf_counter()
    engine.set_volume(volume)
    set_volume = time.perf_counter() - t0
    for click in clicks[:n]:
        engine.reset()
        prompts = Prompts([click], [1])
        t0 = time.perf_counter()
        encoder.append(engine.predict(prompts).timings["encoder"])
        first.append(time.perf_counter() - t0 + set_volume)
        set_volume = 0.0
        prompts = prompts.add_point((click[0], click[1] + 6, click[2] + 6), positive=False)
        t0 = time.perf_counter()
        engine.predict(prompts)
        nxt.append(time.perf_counter() - t0)
    return {"first": first, "next": nxt, "encoder": encoder, "rss_loaded": rss_loaded,
            "rss": _rss_mb(), "device": str(engine.device)}


def run_official(case: str, state: Path, device: str, n: int, ct: Path) -> dict:
    import torch
    import torch.nn.functional as F
    import torchio as tio

    from napari_openmedlab.models.device import resolve_device

    with contextlib.redirect_stdout(io.StringIO()):
        import medim

        model = medim.create_model("SAM-Med3D", pretrained=False)
    model.load_state_dict(torch.load(state, weights_only=True), strict=True)
    dev = resolve_device(device)
    model = model.to(dev).eval()
    _warm_up(model.image_encoder, dev)
    volume, clicks = load_case(case, ct)
    rss_loaded = _rss_mb()
    # the volume as TorchIO holds a file it read: (C, x, y, z) data, RAS affine
    affine = np.eye(4)
    affine[:3, :3] = volume.geometry.direction_matrix @ np.diag(volume.geometry.spacing)
    affine[:3, 3] = volume.geometry.origin
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    data = torch.from_numpy(volume.array.transpose(2, 1, 0)[None])
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)

    def postprocess(low_res, roi_affine):
        hi = F.interpolate(low_res, size=(128,) * 3, mode="trilinear", align_corners=False)
        roi = (torch.sigmoid(hi) > 0.5).float().cpu()[0]
        roi = tio.LabelMap(tensor=roi, affine=roi_affine)
        reference = tio.ScalarImage(tensor=torch.zeros((1, *data.shape[1:])), affine=affine)
        back = tio.Resample(target=reference, image_interpolation="nearest")(roi)
        return back.data[0].numpy().astype(np.uint8).transpose(2, 1, 0)

    def decode(embedding, coords, labels, prev):
        sparse, dense = model.prompt_encoder(points=[coords, labels], boxes=None, masks=prev)
        low_res, _ = model.mask_decoder(image_embeddings=embedding,
                                        image_pe=model.prompt_encoder.get_dense_pe(),
                                        sparse_prompt_embeddings=sparse,
                                        dense_prompt_embeddings=dense)
        return low_res

    first, nxt, encoder = [], [], []
    for click in clicks[:n]:
        t0 = time.perf_counter()
        label = torch.zeros((1, *data.shape[1:]), dtype=torch.uint8)
        # a 3x3x3-voxel label (one voxel can vanish when resampled to 1.5 mm)
        label[0, click[2] - 1:click[2] + 2, click[1] - 1:click[1] + 2, click[0] - 1:click[0] + 2] = 1
        subject = tio.Subject(image=tio.ScalarImage(tensor=data, affine=affine),
                              label=tio.LabelMap(tensor=label, affine=affine))
        subject = tio.ToCanonical()(tio.Resample(target=1.5)(subject))
        subject = tio.CropOrPad(mask_name="label", target_shape=(128,) * 3)(subject)
        roi = tio.ZNormalization(masking_method=lambda x: x > 0)(subject.image.data.clone())
        points = torch.argwhere(subject.label.data[0])[:1].float()[None].to(dev)
        roi_affine = subject.image.affine.copy()
        del subject
        with torch.no_grad():
            t1 = time.perf_counter()
            embedding = model.image_encoder(roi[None].to(dev))
            sync()
            encoder.append(time.perf_counter() - t1)
            prev = torch.zeros((1, 1, 32, 32, 32), device=dev)
            labels = torch.ones((1, 1), dtype=torch.int64, device=dev)
            low_res = decode(embedding, points, labels, prev)
            postprocess(low_res, roi_affine)
        sync()
        first.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with torch.no_grad():
            extra = points[:, :1] + torch.tensor([0.0, -4.0, 4.0], device=dev)
            low_res = decode(embedding, torch.cat([points, extra], 1),
                             torch.tensor([[1, 0]], device=dev), low_res)
            postprocess(low_res, roi_affine)
        sync()
        nxt.append(time.perf_counter() - t0)
    return {"first": first, "next": nxt, "encoder": encoder, "rss_loaded": rss_loaded,
            "rss": _rss_mb(), "device": str(dev)}


def _warm_up(encoder, device) -> None:
    import torch

    with torch.no_grad():
        encoder(torch.zeros((1, 1, 128, 128, 128), device=device))


# --- driver -----------------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cases", default="ct,synthetic")
    parser.add_argument("--clicks", type=int, default=3)
    parser.add_argument("--skip-official", action="store_true")
    parser.add_argument("--ct", type=Path, default=CT, help="the sample CT (default: %(default)s)")
    parser.add_argument("--worker", choices=["ours", "official"], help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        run = run_ours if args.worker == "ours" else run_official
        result = run(args.case, Path(args.state), args.device, args.clicks, args.ct)
        print("RESULT " + json.dumps(result))
        return 0

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "random_sam_med3d.pt"
        random_state(state)
        for case in args.cases.split(","):
            for pipeline in ("official", "ours"):
                if pipeline == "official" and args.skip_official:
                    continue
                cmd = [sys.executable, __file__, "--worker", pipeline, "--case", case,
                       "--state", str(state), "--device", args.device, "--clicks", str(args.clicks),
                       "--ct", str(args.ct)]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
                line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if proc.returncode != 0 or not line:
                    print(f"{case}/{pipeline} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                    continue
                r = json.loads(line[-1][7:])
                rows.append((case, pipeline, r["device"], statistics.median(r["first"]),
                             statistics.median(r["encoder"]), statistics.median(r["next"]),
                             r["rss_loaded"], r["rss"]))
    print(f"{'case':10} {'pipeline':9} {'device':7} {'first click s':>13} {'(encoder s)':>11} "
          f"{'next click s':>12} {'RSS loaded MB':>13} {'peak RSS MB':>11}")
    for case, pipeline, dev, first, enc, nxt, loaded, peak in rows:
        print(f"{case:10} {pipeline:9} {dev:7} {first:13.3f} {enc:11.3f} {nxt:12.3f} "
              f"{loaded:13.0f} {peak:11.0f}")
    print("RSS loaded: after loading the model and the volume; peak RSS: after the clicks.")
    print("targets (ours, 512x512x300): next click <= 0.1 s, first click <= 2.5 s, peak RSS <= 1500 MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
