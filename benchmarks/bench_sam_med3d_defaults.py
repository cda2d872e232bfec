"""Benchmark: SAM-Med3D clicks with the defaults the user runs, against the old defaults, in one run.

Both engines share one network (the official ``vit_b_ori`` architecture, random weights, seed 0)
and one 512 x 512 x 300 int16 CT-like volume (0.8 x 0.8 x 1.5 mm, ``bench_sam_med3d_pipeline``'s
synthetic case). They alternate, round by round, so both see the same machine load:

* ``defaults``: ``SamMed3DEngine(model, "cpu")``: 64 cached crops, extension crops encoded in
  batches, threads chosen from the free cores before each click;
* ``old``: the defaults before this change: 8 cached crops, one crop per encoder call, torch's
  own thread count (all cores).

Per engine and round: a large object (large-object extension on, the default: with random
weights every mask reaches the crop faces, so a click runs 1 + 8 crops) first click and next
click in the same region, and a small object (one crop: what an object inside 192 mm costs)
first and next click. Then the next click of the large object again while another process
keeps one core busy (``--no-load`` skips it). Finally the profile of the first click (seconds
per step, from ``Prediction.timings``).

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


def _clicks(engine, click, near, n_next: int = 1) -> tuple[float, float, dict, dict]:
    from napari_openmedlab.engines import Prompts

    engine.reset()
    prompts = Prompts([click], [1])
    t0 = time.perf_counter()
    first = engine.predict(prompts)
    t_first = time.perf_counter() - t0
    t_next = []
    for k in range(n_next):
        prompts = prompts.add_point((near[0], near[1] + 3 * k, near[2]), positive=False)
        t0 = time.perf_counter()
        nxt = engine.predict(prompts)
        t_next.append(time.perf_counter() - t0)
    return (t_first, statistics.median(t_next), dict(first.timings, crops=len(first.state["crops"])),
            dict(nxt.timings, crops=len(nxt.state["crops"])))


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
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = build_sam_med3d().eval()
    volume, centres = load_case("synthetic")
    cores = usable_cores()
    class OldDefaults(SamMed3DEngine):
        """The engine as it was: 8 cached crops whatever a click uses, one crop per encoder call."""

        cache_size = property(lambda self: 8, lambda self, value: None)

    engines = {
        "defaults": SamMed3DEngine(model, "cpu"),
        "old": OldDefaults(model, "cpu", encoder_batch=1, threads=cores),
    }
    for e in engines.values():
        e.set_volume(volume)
    with torch.inference_mode():
        model.image_encoder(torch.zeros((1, 1, 128, 128, 128)))  # warm-up

    click = centres[0]
    near = (click[0] + 2, click[1] + 4, click[2] + 4)
    small = centres[1]
    small_near = (small[0] + 2, small[1] + 4, small[2] + 4)
    rows: dict[tuple[str, str], list[float]] = {}
    profile: dict[str, dict] = {}
    for r in range(args.rounds):
        for name, engine in engines.items():
            engine._cache.clear()  # every round starts cold (a new object, a new region)
            engine.max_extra_crops = 8
            first, nxt, timings, next_timings = _clicks(engine, click, near, n_next=args.next_clicks)
            rows.setdefault((name, "large first"), []).append(first)
            rows.setdefault((name, "large next"), []).append(nxt)
            profile.setdefault(name + " large", timings)
            profile.setdefault(name + " large next", next_timings)
            engine.max_extra_crops = 0
            first, nxt, timings, _ = _clicks(engine, small, small_near, n_next=args.next_clicks)
            rows.setdefault((name, "small first"), []).append(first)
            rows.setdefault((name, "small next"), []).append(nxt)
            profile.setdefault(name + " small", timings)
            engine.max_extra_crops = 8
            print(f"round {r + 1} {name}: done", file=sys.stderr, flush=True)

    if not args.no_load:
        stop = mp.Event()
        spinner = mp.Process(target=_spin, args=(stop,), daemon=True)
        spinner.start()
        time.sleep(1.5)  # the free-core count looks back over the time since the last click
        try:
            for _ in range(args.rounds):
                for name, engine in engines.items():
                    engine.max_extra_crops = 0  # the decoder under load, on one cached crop
                    _, nxt, _, _ = _clicks(engine, small, small_near, n_next=args.next_clicks)
                    rows.setdefault((name, "next, 1 core busy"), []).append(nxt)
                    engine.max_extra_crops = 8
                    time.sleep(0.5)
        finally:
            stop.set()
            spinner.join()

    print(f"SAM-Med3D with the defaults, 512x512x300 int16, CPU ({cores} cores, torch "
          f"{torch.__version__}), median of {args.rounds} rounds, alternating")
    print(f"{'click':22} {'defaults s':>11} {'old s':>9} {'old/defaults':>13}")
    for what in ("large first", "large next", "small first", "small next", "next, 1 core busy"):
        if (("defaults", what)) not in rows:
            continue
        a = statistics.median(rows[("defaults", what)])
        b = statistics.median(rows[("old", what)])
        print(f"{what:22} {a:11.3f} {b:9.3f} {b / a:12.1f}x")
    print("\nprofile (seconds per step, first round; 'crops': crops the click used):")
    steps = ("crops", "preprocess", "encoder", "decoder", "postprocess", "total")
    print(f"{'':20}" + "".join(f"{s:>12}" for s in steps))
    for name, t in profile.items():
        print(f"{name:20}" + "".join(
            f"{t.get(s, 0):12d}" if s == "crops" else f"{t.get(s, 0.0):12.3f}" for s in steps))
    print(f"threads chosen by the defaults engine on its last click: "
          f"{engines['defaults'].thread_policy.chosen}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
