"""Per-slice cost of the full SAM-Med2D network (random weights) on this machine.

    PYTHONPATH=. python benchmarks/bench_sam_med2d.py [--repeats 3] [--device cpu] [--threads N]
                                                      [--models sam-med2d,sam-vit-b]

Reports, per model: slice preprocessing, image embedding (the slow step, once per slice),
one decoder call with a click (every click), a decoder call with a box plus the previous mask,
and the logits-to-slice postprocessing. Figures are the median and the best of ``--repeats``
runs after one warm-up; on a shared machine the best is the steadier number.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from napari_openmedlab.models.sam_med2d import CONFIGS, build_sam2d, prepare_slice


def _time(fn, repeats: int, sync) -> list[float]:
    fn()
    sync()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return out


def bench(name: str, device: str, repeats: int, slice_shape=(512, 512)) -> dict[str, list[float]]:
    torch.manual_seed(0)
    model = build_sam2d(name, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sl = (np.random.default_rng(0).random(slice_shape) * 255).astype(np.uint8)
    kind, size = model.config.preprocess, model.config.img_size

    image, tf = prepare_slice(sl, kind, size)
    emb = model.embed_slice(sl)
    first = model.predict_slice(emb, points_xy=[[200, 250]], point_labels=[1], multimask_output=True)
    res = {
        "preprocess": _time(lambda: prepare_slice(sl, kind, size), repeats, sync),
        "embed": _time(lambda: model.embed(image), repeats, sync),
        "decode (1 click, multimask)": _time(
            lambda: model.decode(
                emb.embedding,
                point_coords=tf.coords_to_input([[200, 250]]),
                point_labels=[1],
                multimask_output=True,
            ),
            repeats,
            sync,
        ),
        "decode (box + mask prompt)": _time(
            lambda: model.decode(
                emb.embedding,
                boxes=tf.boxes_to_input([100, 120, 300, 330]),
                mask_input=first.mask_prompt(),
                multimask_output=False,
            ),
            repeats,
            sync,
        ),
        "postprocess to slice": _time(lambda: tf.logits_to_slice(first.low_res_logits), repeats, sync),
        "predict_slice (all of a click)": _time(
            lambda: model.predict_slice(emb, points_xy=[[200, 250]], point_labels=[1], multimask_output=True),
            repeats,
            sync,
        ),
    }
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--models", default="sam-med2d", help=f"comma-separated, from {', '.join(CONFIGS)}")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else platform.processor() or platform.machine()
    )
    print(
        f"torch {torch.__version__}, device {args.device} ({dev}), threads {torch.get_num_threads()}, "
        f"repeats {args.repeats}, slice 512x512, random weights"
    )
    for name in args.models.split(","):
        cfg = CONFIGS[name]
        params = sum(p.numel() for p in build_sam2d(cfg).parameters())
        print(
            f"\n{name}: input {cfg.img_size}x{cfg.img_size}, embedding {cfg.embedding_size}x{cfg.embedding_size}, "
            f"{params / 1e6:.1f} M parameters"
        )
        for step, times in bench(name, args.device, args.repeats).items():
            print(
                f"  {step:32s} median {statistics.median(times) * 1000:9.1f} ms   best {min(times) * 1000:9.1f} ms"
            )


if __name__ == "__main__":
    main()
