"""Benchmark: automatic pre-segmentation on this CPU (random-initialised folders, real network sizes).

Cases (each in its own process, so that its peak RSS is its own):

* ``slice-<model>``: seconds per 512 x 512 slice (2D folder with a 512 x 512 patch at the image's
  spacing: one tile per slice, no resampling), for plain nnU-Net 2D (8 stages, 32..512
  features, nnU-Net's default for such a patch), Swin-UMamba and Swin-UMamba-D (VMamba-Tiny, the
  official sizes). Without mirroring (one network pass per slice; nnU-Net's default mirroring
  makes it 4).
* ``ct-<model>``: the shared CT (sample_data/ct.nii.gz = ../shared/data/totalseg-ct/ct.nii.gz,
  122 x 101 x 30 at 3 mm) end to end: plain nnU-Net 3d_fullres (6 stages, 32..320 features,
  patch 32 x 128 x 128), and Swin-UMamba 2D slice by slice (patch 128 x 128 at 3 mm).
* ``cancel``: Swin-UMamba on 512 x 512 slices; Cancel is pressed during the first network pass
  and the time until the run has stopped is printed.
* ``scan``: our chunked pure-PyTorch selective scan against the step-by-step recurrence written
  naively (the baseline), on the sequence of Swin-UMamba's first stage for a 512 x 512 slice.

    python benchmarks/bench_autoseg.py [--cases slice-plain,slice-swin,...] [--slices 2]

Ratios are against plain nnU-Net measured in the same run. CPU only (no GPU figure here).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

CT = REPO / "napari_openmedlab" / "sample_data" / "ct.nii.gz"
ALL = ["scan", "slice-plain", "slice-swin", "slice-swin_d", "ct-plain3d", "ct-swin", "cancel"]


def _folder(kind: str, root: Path, patch, spacing) -> Path:
    import nnunet_folders as nf

    if kind == "plain":
        return nf.plain_folder(root, dim=len(patch), patch=patch, spacing=spacing,
                               n_stages=8 if len(patch) == 2 else 6, base=32)
    return nf.swin_folder(root, kind, patch=patch, spacing=spacing)


def _slices(n: int):
    from napari_openmedlab.io import Geometry, Volume

    rng = np.random.default_rng(0)
    array = rng.normal(40, 200, (n, 512, 512)).astype(np.int16)
    return Volume(array, Geometry((0.8, 0.8, 2.0)))


def _segmenter(folder: Path, mirroring: bool):
    from napari_openmedlab.engines.autoseg import AutoSegmenter
    from napari_openmedlab.models.nnunet import read_model_folder

    return AutoSegmenter(read_model_folder(folder), "cpu", use_mirroring=mirroring)


def case_slice(kind: str, slices: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        segmenter = _segmenter(_folder(kind, Path(tmp), (512, 512), (0.8, 0.8)), mirroring=False)
        volume = _slices(slices)
        segmenter.predict(_slices(1))  # warm-up (allocator, first-call overheads)
        start = time.perf_counter()
        segmenter.predict(volume)
        seconds = time.perf_counter() - start
    return {"s_per_slice": seconds / slices}


def case_ct(kind: str) -> dict:
    from napari_openmedlab.io import read_volume

    ct = read_volume(CT)
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "plain3d":
            folder = _folder("plain", Path(tmp), (32, 128, 128), (3.0, 3.0, 3.0))
        else:
            folder = _folder(kind, Path(tmp), (128, 128), (3.0, 3.0))
        segmenter = _segmenter(folder, mirroring=False)
        start = time.perf_counter()
        result = segmenter.predict(ct)
        seconds = time.perf_counter() - start
    return {"s_ct": seconds, "classes_found": int(len(np.unique(result.labels.array)) - 1)}


def case_cancel() -> dict:
    from napari_openmedlab.engines.base import Cancelled

    with tempfile.TemporaryDirectory() as tmp:
        segmenter = _segmenter(_folder("swin", Path(tmp), (512, 512), (0.8, 0.8)), mirroring=True)
        cancel = threading.Event()
        pressed: list[float] = []
        first_pass = threading.Event()

        def progress(fraction, message):
            if "network passes" in message:
                first_pass.set()

        def press():  # the user clicks Cancel halfway through the second network pass
            first_pass.wait()
            time.sleep(1.0)
            pressed.append(time.perf_counter())
            cancel.set()

        threading.Thread(target=press, daemon=True).start()
        try:
            segmenter.predict(_slices(4), progress=progress, cancel=cancel)
            return {"cancel_latency_s": float("nan")}
        except Cancelled:
            return {"cancel_latency_s": time.perf_counter() - pressed[0]}


def case_scan() -> dict:
    import torch

    from napari_openmedlab.models.swin_umamba import selective_scan_torch

    # first stage of Swin-UMamba on 512 x 512: 96 channels at 128 x 128, d_inner 192, 4 directions
    b, d, length, n = 1, 4 * 192, 128 * 128, 16
    gen = torch.Generator().manual_seed(0)
    u, delta = torch.randn(b, d, length, generator=gen), torch.randn(b, d, length, generator=gen)
    A = -torch.exp(torch.randn(d, n, generator=gen))
    B, C = torch.randn(b, 4, n, length, generator=gen), torch.randn(b, 4, n, length, generator=gen)
    start = time.perf_counter()
    selective_scan_torch(u, delta, A, B, C, None, None, True)
    ours = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # the naive recurrence: one step at a time, decays and drives computed per step
    steps = 2048
    start = time.perf_counter()
    dt = torch.nn.functional.softplus(delta)
    h = torch.zeros(b, d, n)
    for t in range(steps):
        bt, ct = B[:, :, :, t].repeat_interleave(d // 4, 1), C[:, :, :, t].repeat_interleave(d // 4, 1)
        h = torch.exp(dt[:, :, t, None] * A) * h + dt[:, :, t, None] * bt * u[:, :, t, None]
        (h * ct).sum(-1)
    naive = (time.perf_counter() - start) * length / steps
    return {"scan_s": ours, "naive_scan_s (extrapolated)": naive, "peak_rss_mb (ours)": rss}


def run_case(name: str, slices: int) -> dict:
    import torch

    torch.manual_seed(0)
    if name == "scan":
        out = case_scan()
    elif name.startswith("slice-"):
        out = case_slice(name[len("slice-"):], slices)
    elif name.startswith("ct-"):
        out = case_ct(name[len("ct-"):])
    elif name == "cancel":
        out = case_cancel()
    else:
        raise SystemExit(f"unknown case {name}")
    out.setdefault("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(ALL))
    parser.add_argument("--slices", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_case(args.one, args.slices)))
        return
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    results = {}
    for name in [c.strip() for c in args.cases.split(",") if c.strip()]:
        proc = subprocess.run([sys.executable, __file__, "--one", name, "--slices", str(args.slices)],
                              capture_output=True, text=True)
        if proc.returncode:
            print(f"{name}: failed\n{proc.stderr[-2000:]}")
            continue
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{name:14s} " + "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in results[name].items()), flush=True)
    base = results.get("slice-plain", {}).get("s_per_slice")
    for name in ("slice-swin", "slice-swin_d"):
        if base and name in results:
            print(f"{name}: {results[name]['s_per_slice'] / base:.2f}x the time of plain nnU-Net 2D per slice")
    if "scan" in results:
        r = results["scan"]
        print(f"scan: {r['naive_scan_s (extrapolated)'] / r['scan_s']:.1f}x faster than the naive step-by-step recurrence")


if __name__ == "__main__":
    main()
