"""Benchmark: SAM-Med3D clicks with the defaults the user runs, against the old defaults, in one run.

Both engines share one network (the official ``vit_b_ori`` architecture, random weights, seed 0)
and one 512 x 512 x 300 int16 CT-like volume (0.8 x 0.8 x 1.5 mm, ``bench_sam_med3d_pipeline``'s
synthetic case). They alternate, round by round, so both see the same machine load:

* ``defaults``: ``SamMed3DEngine(model, "cpu")``: 64 cached crops, extension crops encoded in
  batches, threads chosen from the free cores before each click;
* ``old``: ``SamMed3DEngine`` as it was at git revision ``--baseline`` (default ``257b836``, before
  issue #12), loaded from git beside today's package, with its defaults: 8 cached crops, crops
  encoded one by one, every crop re-decoded on each click, torch's own thread count (all cores).

Per engine and round: a large object (large-object extension on, the default: with random
weights every mask reaches the crop faces, so a click runs 1 + 8 crops) first click, the time
until its first crop is on screen (streamed; the old engine shows nothing before it ends) and
next clicks in the same region, and a small object (one crop: what an object inside 192 mm
costs) first and next click. The caller keeps only the latest answer (a widget's undo history
keeps earlier ones too: then each answer is fresh memory, see docs/benchmarks.md).
Then a liver-sized ellipsoid clicked at its centre and off centre, with the real network run in
full but its mask replaced by the object's true shape in each crop (``oracle_engine``): how many
crops, and seconds, a large object takes when the mask follows it as trained weights would. Then a next click again while another process keeps one core busy
(``--no-load`` skips it), the image encoder alone, fast vs reference (the official computation),
and the profile of the clicks (seconds per step, from ``Prediction.timings``).

    python benchmarks/bench_sam_med3d_defaults.py [--rounds 2] [--no-load]

Prints a table; figures are medians over the rounds. On a shared machine, say so with them.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _spin(stop) -> None:  # a background process that keeps one core busy
    x = 0
    while not stop.is_set():
        for _ in range(100000):
            x += 1


def _clicks(engine, click, near, n_next: int = 1) -> tuple[float, float, dict, dict, float]:
    """First click, then ``n_next`` negative clicks near ``near``; the caller keeps only the
    latest answer. Returns the first click's seconds, the
    median next click's, both profiles and the seconds to the first streamed piece (the
    first click's total where the engine does not stream)."""
    from napari_openmedlab.engines import Prompts

    engine.reset()
    prompts = Prompts([click], [1])
    shown: list[float] = []
    runs = getattr(engine, "encoder_calls", 0)
    t0 = time.perf_counter()
    kwargs = {"partial": lambda piece: shown.append(time.perf_counter() - t0)} if getattr(
        engine, "streams", False) else {}
    answer = engine.predict(prompts, **kwargs)
    t_first = time.perf_counter() - t0
    first_timings = dict(answer.timings, crops=len(answer.state["crops"]),
                         runs=getattr(engine, "encoder_calls", 0) - runs)
    t_next = []
    for k in range(n_next):
        prompts = prompts.add_point((near[0], near[1] + 3 * k, near[2]), positive=False)
        t0 = time.perf_counter()
        answer = engine.predict(prompts)
        t_next.append(time.perf_counter() - t0)
    return (t_first, statistics.median(t_next), first_timings,
            dict(answer.timings, crops=len(answer.state["crops"]), runs=0),
            shown[0] if shown else t_first)


def liver_sized(shape, centre, spacing=(1.5, 0.8, 0.8), semi_axes_mm=(75.0, 80.0, 105.0)):
    """A liver-sized ellipsoid (15 x 16 x 21 cm: craniocaudal, anteroposterior, left-right)."""
    import numpy as np

    z, y, x = (np.arange(n) for n in shape)
    r = [((a - c) * s / m) ** 2 for a, c, s, m in zip((z, y, x), centre, spacing, semi_axes_mm)]
    return (r[0][:, None, None] + r[1][None, :, None] + r[2][None, None, :]) <= 1.0


def oracle_engine(model, truth, device="cpu"):
    """``SamMed3DEngine`` whose network runs in full (its cost is what is measured) but whose
    mask in each crop is then the object's true shape there: what well-trained weights give on a
    clear-cut object. Random weights mark every crop face, so they always use 1 + 8 crops; this
    shows how many crops, and seconds, a large object really takes with the extension rules."""
    import torch.nn.functional as F

    from napari_openmedlab.engines.sam_med3d import MASK_LOGIT, SamMed3DEngine

    class OracleMaskEngine(SamMed3DEngine):
        truths: dict = {}  # crop start -> (low-res logits, 128^3 mask): the benchmark's own work

        def _decode(self, embedding, points, labels, mask_prompt, timings):
            import torch

            super()._decode(embedding, points, labels, mask_prompt, timings)  # the real cost
            start = next(s for s, e in self._cache.items() if e is embedding)
            if start not in self.truths:  # sampled once, outside the timed rounds (warm-up)
                t0 = time.perf_counter()
                crop = self.grid.sample_mask(truth, start)
                fraction = F.avg_pool3d(torch.from_numpy(crop.astype("float32"))[None, None], 4)
                fraction = fraction.to(self.device)
                self.truths[start] = (MASK_LOGIT * (2 * fraction - 1), crop)
                self.oracle_seconds += time.perf_counter() - t0
            logits, crop = self.truths[start]
            return logits.clone(), crop

    engine = OracleMaskEngine(model, device)
    engine.oracle_seconds = 0.0
    return engine


def load_engine_at(revision: str):
    """``SamMed3DEngine`` as it was at git ``revision`` (loaded beside today's package)."""
    import importlib.util
    import subprocess
    import tempfile

    import napari_openmedlab.engines as engines

    repo = Path(__file__).resolve().parents[1]
    source = subprocess.run(["git", "show", f"{revision}:napari_openmedlab/engines/sam_med3d.py"],
                            cwd=repo, capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "sam_med3d_baseline.py"
    path.write_text(source)
    name = f"{engines.__name__}._sam_med3d_baseline"  # inside the package: relative imports work
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.SamMed3DEngine


def main(argv=None) -> int:
    import torch
    from bench_sam_med3d_pipeline import load_case

    from napari_openmedlab.engines.sam_med3d import SamMed3DEngine
    from napari_openmedlab.models.sam_med3d import build_sam_med3d
    from napari_openmedlab.models.threads import usable_cores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--next-clicks", type=int, default=2, help="next clicks per object")
    parser.add_argument("--no-load", action="store_true", help="skip the background-load figure")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the GPU figures of issue #12)")
    parser.add_argument("--baseline", default="257b836",
                        help="git revision whose engine is the baseline (default: before issue #12)")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the fast vs reference (official) encoder figure")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = build_sam_med3d().eval()
    volume, centres = load_case("synthetic")
    cores = usable_cores()
    OldEngine = load_engine_at(args.baseline)
    engines = {
        "defaults": SamMed3DEngine(model, args.device),
        "old": OldEngine(model, args.device),  # its own defaults; torch's thread count (all cores)
    }
    old_predict = engines["old"].predict

    def predict_with_all_cores(*a, **k):  # the new engine may have lowered the process's count
        torch.set_num_threads(cores)
        return old_predict(*a, **k)

    engines["old"].predict = predict_with_all_cores
    for e in engines.values():
        e.set_volume(volume)
    with torch.inference_mode():
        model.image_encoder(torch.zeros((1, 1, 128, 128, 128), device=engines["defaults"].device))

    click = centres[0]
    near = (click[0] + 2, click[1] + 4, click[2] + 4)
    small = centres[1]
    small_near = (small[0] + 2, small[1] + 4, small[2] + 4)
    truth = liver_sized(volume.shape, click)
    off_centre = (click[0] + 20, click[1] - 40, click[2] + 60)  # 30 mm up, 32 back, 48 left
    oracle = oracle_engine(model, truth, args.device)
    oracle.set_volume(volume)
    for at in (click, off_centre):  # warm-up: the true masks of the crops the clicks reach
        _clicks(oracle, at, (at[0] + 2, at[1] + 4, at[2] + 4), args.next_clicks)
    rows: dict[tuple[str, str], list[float]] = {}
    profile: dict[str, dict] = {}
    for r in range(args.rounds):
        for name, engine in engines.items():
            engine._cache.clear()  # every round starts cold (a new object, a new region)
            engine.max_extra_crops = 8
            first, nxt, timings, next_timings, shown = _clicks(engine, click, near, args.next_clicks)
            rows.setdefault((name, "large first"), []).append(first)
            rows.setdefault((name, "large first on screen"), []).append(shown)
            rows.setdefault((name, "large next"), []).append(nxt)
            profile.setdefault(name + " large", timings)
            profile.setdefault(name + " large next", next_timings)
            engine.max_extra_crops = 0
            first, nxt, timings, _, _ = _clicks(engine, small, small_near, args.next_clicks)
            rows.setdefault((name, "small first"), []).append(first)
            rows.setdefault((name, "small next"), []).append(nxt)
            profile.setdefault(name + " small", timings)
            engine.max_extra_crops = 8
            print(f"round {r + 1} {name}: done", file=sys.stderr, flush=True)
        for where, at in (("centre", click), ("off centre", off_centre)):
            oracle._cache.clear()
            first, nxt, timings, next_timings, shown = _clicks(oracle, at, (at[0] + 2, at[1] + 4, at[2] + 4), args.next_clicks)
            rows.setdefault(("oracle", f"liver {where} first"), []).append(first)
            rows.setdefault(("oracle", f"liver {where} on screen"), []).append(shown)
            rows.setdefault(("oracle", f"liver {where} next"), []).append(nxt)
            profile.setdefault(f"liver {where}", timings)
            profile.setdefault(f"liver {where} next", next_timings)

    if not args.no_load and args.device == "cpu":
        stop = mp.Event()
        spinner = mp.Process(target=_spin, args=(stop,), daemon=True)
        spinner.start()
        time.sleep(1.5)  # the free-core count looks back over the time since the last click
        try:
            for _ in range(args.rounds):
                for name, engine in engines.items():
                    engine.max_extra_crops = 0  # the decoder under load, on one cached crop
                    _, nxt, _, _, _ = _clicks(engine, small, small_near, args.next_clicks)
                    rows.setdefault((name, "next, 1 core busy"), []).append(nxt)
                    engine.max_extra_crops = 8
                    time.sleep(0.5)
        finally:
            stop.set()
            spinner.join()

    encoder_rows = []
    if not args.no_reference:
        # the encoder alone on one crop: fast vs reference (the official computation, bit-equal
        # to medim's encoder: tests/evaluation/test_official_exactness.py), alternating
        crop = torch.randn(1, 1, 128, 128, 128).to(engines["defaults"].device)
        torch.set_num_threads(cores)
        times = {"fast": [], "reference": []}
        with torch.inference_mode():
            outs = {}
            for _ in range(args.rounds):
                for mode in ("reference", "fast"):
                    t0 = time.perf_counter()
                    outs[mode] = model.image_encoder(crop, fast=mode == "fast")
                    times[mode].append(time.perf_counter() - t0)
        diff = float((outs["fast"] - outs["reference"]).abs().max())
        encoder_rows = [statistics.median(times["fast"]), statistics.median(times["reference"]), diff]

    where = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
             else f"CPU, {cores} cores")
    print(f"SAM-Med3D with the defaults, 512x512x300 int16, {where}, torch "
          f"{torch.__version__}, median of {args.rounds} rounds, alternating")
    print(f"{'click':22} {'defaults s':>11} {'old s':>9} {'old/defaults':>13}")
    for what in ("large first", "large first on screen", "large next", "small first", "small next",
                 "next, 1 core busy"):
        if (("defaults", what)) not in rows:
            continue
        a = statistics.median(rows[("defaults", what)])
        b = statistics.median(rows[("old", what)])
        print(f"{what:22} {a:11.3f} {b:9.3f} {b / a:12.1f}x")
    print("\nliver-sized ellipsoid (15 x 16 x 21 cm), the mask following it (defaults engine, the "
          "network run in full; see oracle_engine):")
    for where in ("centre", "off centre"):
        crops, runs = profile[f"liver {where}"]["crops"], profile[f"liver {where}"]["runs"]
        cells = "   ".join(f"{what} {statistics.median(rows[('oracle', f'liver {where} {what}')]):.3f} s"
                           for what in ("first", "on screen", "next"))
        print(f"  click at the {where:10}: {crops} crops ({runs} encoded)   {cells}")
    if encoder_rows:
        fast, ref, diff = encoder_rows
        print(f"{'encoder, one crop':22} {fast:11.3f} {ref:9.3f} {ref / fast:12.1f}x"
              f"   (fast vs reference = official; max |diff| {diff:.2e})")
    print("\nprofile (seconds per step, first round; 'crops': crops in the answer, 'runs': crops encoded):")
    steps = ("crops", "runs", "preprocess", "encoder", "decoder", "postprocess", "total")
    print(f"{'':20}" + "".join(f"{s:>12}" for s in steps))
    for name, t in profile.items():
        print(f"{name:20}" + "".join(
            f"{t.get(s, 0):12d}" if s in ("crops", "runs") else f"{t.get(s, 0.0):12.3f}" for s in steps))
    print(f"threads chosen by the defaults engine on its last click: "
          f"{engines['defaults'].thread_policy.chosen}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
