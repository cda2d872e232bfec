"""SAM-Med2D through the 2D engine: first slice (embedding + decoding), next click, and propagation
through the 30 slices of the sample CT, with random weights in the official configuration.

    python benchmarks/bench_sam_med2d_propagation.py [--model sam-med2d] [--threads N]

Random weights tend to mark a large region on every slice, so propagation does not stop early and
every slice is embedded and decoded: a worst case for time. Stopping rules are switched off to make
sure all 30 slices run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from napari_openmedlab.engines import Box, Prompts
from napari_openmedlab.engines.propagation import PropagationOptions
from napari_openmedlab.engines.sam2d import Sam2DEngine
from napari_openmedlab.io import read_volume
from napari_openmedlab.models.registry import get_spec
from napari_openmedlab.models.sam_med2d.model import CONFIGS, build_sam2d

CT = Path(__file__).resolve().parents[2] / "shared" / "data" / "totalseg-ct" / "ct.nii.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam-med2d", choices=sorted(CONFIGS))
    ap.add_argument("--threads", type=int)
    ap.add_argument("--ct", type=Path, default=CT)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    volume = read_volume(args.ct)
    engine = Sam2DEngine(build_sam2d(CONFIGS[args.model]), get_spec(args.model), device="cpu")
    engine.set_volume(volume)
    z = volume.shape[0] // 2
    box = Box(axis=0, index=z, r0=30, c0=20, r1=70, c1=60)

    t0 = time.perf_counter()
    first = engine.predict(Prompts(boxes=[box]))
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.predict(Prompts([[z, 50, 40]], [1], boxes=[box]))
    t_next = time.perf_counter() - t0

    options = PropagationOptions(min_area=0, min_overlap=0.0, min_dice=0.0)
    calls_before = engine.encoder_calls
    t0 = time.perf_counter()
    result = engine.propagate(first, options=options)
    t_prop = time.perf_counter() - t0
    n_slices = int(np.count_nonzero(result.to_mask().any(axis=(1, 2))))
    embedded = engine.encoder_calls - calls_before

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, model {args.model} (random weights)")
    print(f"first box on a slice (embedding + decoding): {t_first:7.3f} s")
    print(f"next click on the same slice (decoding only): {t_next:7.3f} s")
    print(f"propagation: {n_slices} slices with mask, {embedded} slices embedded, {t_prop:7.2f} s "
          f"({t_prop / max(embedded, 1):.3f} s per slice)")


if __name__ == "__main__":
    main()
