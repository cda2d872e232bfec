"""Benchmark: official SAM-Med3D image encoder (medim) vs ours (exact fast path).

Both networks get the same random weights (relative-position tables and
``qkv`` biases randomised too, so the padded-window terms matter). The encoder
runs on a random ``(1, 1, 128, 128, 128)`` crop: warm-up, then ``--repeats``
timed runs; the median time of each, their ratio and the max abs difference of
the embeddings are printed.

    python benchmarks/bench_sam_med3d_encoder.py [--repeats 3] [--warmup 1]
        [--device cpu|cuda] [--threads N] [--reference]

Needs ``medim`` (test extra). No download.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time


def _time(fn, x, warmup: int, repeats: int, sync) -> tuple[float, float, object]:
    """Median wall-clock seconds, median process CPU seconds, last output."""
    out = None
    for _ in range(warmup):
        out = fn(x)
    sync()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn(x)
        sync()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--reference", action="store_true", help="also time our padded reference path")
    args = parser.parse_args(argv)

    import torch

    try:
        import medim
    except ImportError:
        print("medim is not installed (pip install medim==0.1.2)", file=sys.stderr)
        return 2
    from napari_openmedlab.models.sam_med3d import build_sam_med3d

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):  # medim prints "creating model ..."
        official = medim.create_model("SAM-Med3D", pretrained=False)
    with torch.no_grad():
        for name, p in official.named_parameters():
            if "rel_pos" in name or "pos_embed" in name or name.endswith("qkv.bias"):
                p.normal_(0.0, 0.5)
    official = official.image_encoder.to(device).eval()
    ours = build_sam_med3d()
    ours.image_encoder.load_state_dict(official.state_dict(), strict=True)
    ours = ours.to(device).eval()

    x = torch.randn(1, 1, 128, 128, 128, device=device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    with torch.inference_mode():
        t_off, c_off, ref = _time(official, x, args.warmup, args.repeats, sync)
        t_ours, c_ours, got = _time(lambda v: ours.encode(v, fast=True), x, args.warmup, args.repeats, sync)
        print(f"(medians of {args.repeats} runs after {args.warmup} warm-up; CPU = process CPU time)")
        print(f"official encoder : {t_off:8.3f} s wall {c_off:8.3f} s CPU")
        print(f"ours (fast)      : {t_ours:8.3f} s wall {c_ours:8.3f} s CPU")
        print(f"speed-up         : {t_off / t_ours:8.2f} x wall {c_off / c_ours:8.2f} x CPU")
        print(f"max |diff|       : {(ref - got).abs().max().item():.3e}")
        if args.reference:
            t_ref, c_ref, got_ref = _time(lambda v: ours.encode(v, fast=False), x, 0, 1, sync)
            print(f"ours (reference) : {t_ref:8.3f} s wall {c_ref:8.3f} s CPU (1 run), "
                  f"max |diff| {(ref - got_ref).abs().max().item():.3e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
