"""Benchmark: SAM-Med2D propagation with today's defaults against the engine before issue #12, in one run.

Both engines run the official SAM-Med2D configuration with the same random weights (seed 0) on the
shared CT (122 x 101 x 30, axial slices), a box on the middle slice, and alternate round by round
so both see the same machine load:

* ``defaults``: today's ``Sam2DEngine`` as the widget sets it up: the encoder's oneDNN CPU path,
  ``prefetch=INTERACTIVE_PREFETCH`` (the slices around a box are encoded in the background as
  soon as it is segmented), a propagation encodes ``batch`` slices per encoder call, and streams
  each slice's mask (``partial``) as soon as the walk keeps it;
* ``old``: ``sam2d.py`` and the image encoder as they were at git revision ``--baseline`` (default
  ``d015a29``: main when this work began), loaded from git beside today's package (the helper
  modules it imports are today's, unchanged in what they compute), with their defaults.

Random weights mark a large region on every slice; the stopping rules are switched off so that
all 30 slices run (a worst case for time). Figures per round:

* embedding per slice: batch 1 and batch 4 (the encoder alone), and max |diff| vs the old encoder;
* propagation from the request, cold (nothing prefetched: the box's slice only);
* propagation from the request after the box was drawn and the user thought ``--think`` seconds
  (the default's background embedding ran meanwhile; the old engine has none);
* time to the first streamed slice (the old engine shows nothing before the end);
* a click on another slice while the background embedding runs, against the same click with it off;
* the propagation's batch size (1, 2, 4), cold;
* voxels that differ between the two engines' 3D results.

Then the adapter's convolutions written four ways, and where the encoder's time goes
(torch.profiler, batch 1), before and after.

    python benchmarks/bench_sam_med2d_propagation.py [--rounds 2] [--think 2] [--no-profile]

Prints a table; figures are medians over the rounds. On a shared machine, say so with them.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from napari_openmedlab.engines import Box, Prompts
from napari_openmedlab.engines.propagation import PropagationOptions
from napari_openmedlab.engines.sam2d import INTERACTIVE_PREFETCH, Sam2DEngine
from napari_openmedlab.io import read_volume
from napari_openmedlab.models.registry import get_spec
from napari_openmedlab.models.sam_med2d.model import CONFIGS, build_sam2d

REPO = Path(__file__).resolve().parents[1]
CT = REPO.parent / "shared" / "data" / "totalseg-ct" / "ct.nii.gz"
NO_STOPS = PropagationOptions(min_area=0, min_overlap=0.0, min_dice=0.0)


def load_module_at(revision: str, relpath: str, name: str):
    """Module ``relpath`` as it was at git ``revision``, loaded inside today's package as ``name``
    (so that its relative imports resolve)."""
    source = subprocess.run(
        ["git", "show", f"{revision}:{relpath}"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / Path(relpath).name
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _Network(nn.Module):
    """The old encoder with today's (shared) prompt encoder and decoder."""

    def __init__(self, encoder, model) -> None:
        super().__init__()
        self.image_encoder = encoder
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder
        self.config = model.config


def bench_adapter(old_ie, rounds: int = 5) -> dict[str, tuple[float, float]]:
    """The adapter's two convolutions (768 channels, 16x16 tokens) per slice at batch 1 and 4:
    main's GEMM forms (MKL), torch's convolutions (NCHW, channels last) and ours (oneDNN)."""
    import torch.nn.functional as F

    from napari_openmedlab.models.sam_med2d import cpu_kernels as ck

    c = 768
    g = torch.Generator().manual_seed(0)
    down = torch.randn(c, c, 3, 3, generator=g) * (2 / (9 * c)) ** 0.5
    up = torch.randn(c, c, 4, 4, generator=g) * (2 / (16 * c)) ** 0.5
    down_cl, up_cl = (w.contiguous(memory_format=torch.channels_last) for w in (down, up))

    def gemm(x):  # main's CPU path
        z = torch.relu(old_ie._conv_gemm(x.permute(0, 3, 1, 2), down, 2, 1))
        return old_ie._conv_transpose_gemm(z, up, 2, 1)

    def native(x, wd=down, wu=up, layout=torch.contiguous_format):
        z = x.permute(0, 3, 1, 2).contiguous(memory_format=layout)
        z = torch.relu(F.conv2d(z, wd, stride=2, padding=1))
        return F.conv_transpose2d(z, wu, stride=2, padding=1)

    variants = {
        "main: unfold/fold + MKL products": gemm,
        "torch conv2d/conv_transpose2d, NCHW": native,
        "torch conv2d/conv_transpose2d, channels last": lambda x: native(x, down_cl, up_cl, torch.channels_last),
        "ours: channels last, oneDNN products": lambda x: ck.conv_transpose_cl(ck.conv_cl(x, down, 2, 1, "relu"), up, 2, 1),
    }
    out = {}
    with torch.no_grad():
        for name, fn in variants.items():
            per = []
            for b in (1, 4):
                x = torch.randn(b, 16, 16, c, generator=g)
                fn(x)
                times = []
                for _ in range(rounds):
                    t0 = time.perf_counter()
                    fn(x)
                    times.append(time.perf_counter() - t0)
                per.append(min(times) / b)
            out[name] = (per[0], per[1])
    return out


def build_engines(revision: str):
    torch.manual_seed(0)
    model = build_sam2d(CONFIGS["sam-med2d"])
    old_ie = load_module_at(
        revision,
        "napari_openmedlab/models/sam_med2d/image_encoder.py",
        "napari_openmedlab.models.sam_med2d._image_encoder_baseline",
    )
    old_sam2d = load_module_at(
        revision, "napari_openmedlab/engines/sam2d.py", "napari_openmedlab.engines._sam2d_baseline"
    )
    old_encoder = old_ie.ImageEncoderViT(model.image_encoder.cfg)
    old_encoder.load_state_dict(model.image_encoder.state_dict())
    spec = get_spec("sam-med2d")
    new = Sam2DEngine(model, spec, device="cpu", prefetch=INTERACTIVE_PREFETCH)
    old = old_sam2d.Sam2DEngine(_Network(old_encoder, model), spec, device="cpu")
    return new, old, old_ie


def _median(values) -> float:
    return statistics.median(values) if values else float("nan")


def bench_encoder(engine, volume, z: int) -> dict:
    """Per-slice seconds at batch 1 and 4 (the encoder alone, on the CT's slices)."""
    from napari_openmedlab.engines.slice2d import encoder_input, slice_of
    from napari_openmedlab.models.sam_med2d import preprocess as pp

    engine.set_volume(volume)  # the intensity bounds
    encoder = engine.network.image_encoder
    inputs = []
    for index in range(z - 2, z + 2):
        image = pp.to_uint8(slice_of(volume.array, 0, index), engine.intensity_bounds)
        inputs.append(encoder_input(image, "sam-med2d", 256, None)[0])
    x = torch.cat(inputs)
    out = {}
    with torch.no_grad():
        encoder(x[:1])
        t0 = time.perf_counter()
        one = encoder(x[:1])
        out["b1"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        four = encoder(x)
        out["b4"] = (time.perf_counter() - t0) / 4
    out["embeddings"] = four
    out["b4_vs_b1"] = float((four[:1] - one).abs().max())
    return out


def propagate_once(engine, volume, z: int, think: float | None, batch: int | None = None) -> dict:
    """Box on slice ``z``, then Propagate after ``think`` seconds (None: the cache is emptied first,
    so only the box's slice is ready: cold)."""
    engine.set_volume(volume)  # empties the cache
    if batch is not None:
        engine.batch = batch
    box = Box(axis=0, index=z, r0=30, c0=20, r1=70, c1=60)
    prefetch = engine.prefetch
    if think is None:
        engine.prefetch = 0
    first = engine.predict(Prompts(boxes=[box]))
    engine.prefetch = prefetch
    if think is not None:
        time.sleep(think)
    ready = len(engine.cache)
    pieces: list[float] = []
    kwargs = {}
    t0 = time.perf_counter()
    if isinstance(engine, Sam2DEngine):
        kwargs["partial"] = lambda piece: pieces.append(time.perf_counter() - t0)
    result = engine.propagate(first, options=NO_STOPS, **kwargs)
    total = time.perf_counter() - t0
    # the annotated slice comes first (it was on screen already); the first propagated one next
    first_new = pieces[1] if len(pieces) > 1 else total
    return {"total": total, "first": first_new, "ready": ready, "mask": result.to_mask()}


def click_latency(engine, volume, z: int, prefetch: int) -> tuple[float, float]:
    """A box on ``z``, then at once a click on ``z`` (decoding only) and a box on ``z + 8`` (not
    prefetched yet: the background walks below ``z`` first), with background embedding ``prefetch``."""
    engine.set_volume(volume)
    engine.prefetch = prefetch
    engine.predict(Prompts(boxes=[Box(0, z, 30, 20, 70, 60)]))
    t0 = time.perf_counter()
    engine.predict(Prompts([[z, 50, 40]], [1], boxes=[Box(0, z, 30, 20, 70, 60)]))
    same = time.perf_counter() - t0
    time.sleep(0.3)  # the background is encoding its first slices
    t0 = time.perf_counter()
    engine.predict(Prompts(boxes=[Box(0, z + 8, 30, 20, 70, 60)]))
    other = time.perf_counter() - t0
    engine.cache.cancel_prefetch()
    engine.cache.wait_prefetch(60)
    engine.prefetch = INTERACTIVE_PREFETCH
    return same, other


def profile_encoder(encoder, x, rows: int = 8) -> list[tuple[str, float, float]]:
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        encoder(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            encoder(x)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [(e.key, e.self_cpu_time_total / 1e3, 100 * e.self_cpu_time_total / total) for e in events[:rows]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--think", type=float, default=2.0, help="seconds between the box and Propagate")
    parser.add_argument("--baseline", default="d015a29", help="git revision of the old engine")
    parser.add_argument("--ct", type=Path, default=CT)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args(argv)

    volume = read_volume(args.ct)
    z = volume.shape[0] // 2
    new, old, old_ie = build_engines(args.baseline)
    runs: dict[str, list] = {}

    def add(key, value):
        runs.setdefault(key, []).append(value)

    for r in range(args.rounds):
        for name, engine in (("old", old), ("new", new)) if r % 2 == 0 else (("new", new), ("old", old)):
            enc = bench_encoder(engine, volume, z)
            add(f"{name} b1", enc["b1"])
            add(f"{name} b4", enc["b4"])
            add(f"{name} b4 vs b1", enc["b4_vs_b1"])
            add(f"{name} embeddings", enc["embeddings"])
            cold = propagate_once(engine, volume, z, None)
            add(f"{name} cold", cold["total"])
            add(f"{name} cold first", cold["first"])
            add(f"{name} mask", cold["mask"])
            warm = propagate_once(engine, volume, z, args.think)
            add(f"{name} think", warm["total"])
            add(f"{name} think first", warm["first"])
            add(f"{name} think ready", warm["ready"])
        for batch in (1, 2, 4):
            add(f"batch {batch}", propagate_once(new, volume, z, None, batch)["total"])
        new.batch = 4
        for prefetch in (0, INTERACTIVE_PREFETCH):
            same, other = click_latency(new, volume, z, prefetch)
            add(f"click same {prefetch}", same)
            add(f"click other {prefetch}", other)
        print(f"round {r + 1}/{args.rounds} done", flush=True)

    m = {
        k: (_median(v) if not isinstance(v[0], (torch.Tensor, np.ndarray)) else v[-1])
        for k, v in runs.items()
    }
    diff = float((m["new embeddings"] - m["old embeddings"]).abs().max())
    voxels = int((m["new mask"] != m["old mask"]).sum())
    print(
        f"\ntorch {torch.__version__}, threads {torch.get_num_threads()}, {args.rounds} rounds (medians), "
        f"SAM-Med2D official config, random weights, CT {volume.shape}, box on slice {z}, stops off"
    )
    print(f"{'':44s} {'old':>9s} {'defaults':>9s} {'ratio':>7s}")

    def row(label, key_old, key_new, unit="s"):
        a, b = m.get(key_old, float("nan")), m[key_new]
        print(f"{label:44s} {a:8.3f}{unit} {b:8.3f}{unit} {a / b:6.2f}x")

    row("embedding per slice, batch 1", "old b1", "new b1")
    row("embedding per slice, batch 4", "old b4", "new b4")
    row("propagation, 30 slices, cold", "old cold", "new cold")
    row(f"propagation after {args.think:g} s think time", "old think", "new think")
    row("first propagated slice, cold", "old cold first", "new cold first")
    row(f"first propagated slice, after {args.think:g} s", "old think first", "new think first")
    print(
        f"slices ready at Propagate after {args.think:g} s: old {m['old think ready']:.0f}, "
        f"defaults {m['new think ready']:.0f}"
    )
    print(
        f"max |diff| embeddings, defaults vs old encoder: {diff:.2e}; batch 4 vs batch 1: "
        f"{m['new b4 vs b1']:.2e}"
    )
    print(f"voxels differing between the two 3D results: {voxels} of {int(m['old mask'].sum())}")
    print("propagation cold by batch size: " + ", ".join(f"{b}: {m[f'batch {b}']:.2f} s" for b in (1, 2, 4)))
    print(
        f"click on the box's slice right after the box: {m['click same 0'] * 1e3:.0f} ms without background "
        f"embedding, {m[f'click same {INTERACTIVE_PREFETCH}'] * 1e3:.0f} ms with"
    )
    print(
        f"box on another slice while it runs: {m['click other 0']:.2f} s without, "
        f"{m[f'click other {INTERACTIVE_PREFETCH}']:.2f} s with"
    )

    print("\nthe adapter's convolutions (768 channels, 16x16 tokens), ms per slice, best of 5:")
    for name, (b1, b4) in bench_adapter(old_ie).items():
        print(f"  {name:48s} batch 1 {b1 * 1e3:6.1f}   batch 4 {b4 * 1e3:6.1f}")

    if not args.no_profile:
        x = torch.randn(1, 3, 256, 256)
        print("\nwhere the encoder's time goes (batch 1, self CPU time, torch.profiler)")
        for name, engine in (("old", old), ("defaults", new)):
            table = profile_encoder(engine.network.image_encoder, x)
            print(f"  {name}: " + ", ".join(f"{k} {ms:.0f} ms ({pc:.0f} %)" for k, ms, pc in table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
