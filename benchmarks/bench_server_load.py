"""Load benchmark of `openmedlab serve` on the loopback address: N clients x M clicks each.

    python benchmarks/bench_server_load.py [--clients 8] [--clicks 50] [--models seeded-region,sam-med3d-turbo]

Each client claims a session, uploads the shared CT once and sends M clicks (a growing prompt set,
restarted every 5 clicks as a new object); every result is compared with the local engine's for
the same prompts. Prints p50/p95 latency per click for the server under load and for the local
engine alone (the baseline, same process, measured in the same run). SAM-Med3D uses a random
official-format checkpoint (no download). Only 127.0.0.1 is used; the server stops at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests" / "server"))

KEY = "bench-key-0123456789abcdef"


def sequences(shape, clients, clicks, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(clients):
        seq = []
        for i in range(clicks):
            p = rng.integers(np.array(shape) // 4, 3 * np.array(shape) // 4)
            seq.append((p, i % 5 == 0 or rng.random() > 0.3, i % 5 == 0))
        out.append(seq)
    return out


def run(engine, volume, seq, times=None):
    from napari_openmedlab.engines import Prompts

    engine.set_volume(volume)
    masks, prompts = [], Prompts()
    for point, positive, new_object in seq:
        if new_object:
            engine.reset()
            prompts = Prompts()
        prompts = prompts.add_point(point, positive)
        t0 = time.perf_counter()
        masks.append(engine.predict(prompts).to_mask())
        if times is not None:
            times.append(time.perf_counter() - t0)
    return masks


def bench_model(model, ct, args, tmp) -> None:
    from conftest import LiveServer, free_port

    from napari_openmedlab.engines import create_engine
    from napari_openmedlab.engines.remote import RemoteEngine
    from napari_openmedlab.server.app import ServerConfig, create_app

    checkpoints = {}
    if model == "sam-med3d-turbo":
        from make_random_checkpoint import make

        checkpoints[model] = Path(tmp) / "sam_med3d_turbo.pth"
        make(model, str(checkpoints[model]))
    seqs = sequences(ct.shape, args.clients, args.clicks)
    local_engine = create_engine(model, checkpoints.get(model), "cpu")
    local_times: list[float] = []
    local = [run(local_engine, ct, s, local_times) for s in seqs]
    config = ServerConfig(KEY, [model], checkpoints=checkpoints, device="cpu", max_sessions=args.clients)
    remote_times: list[float] = []
    errors, mismatches = [], []
    lock = threading.Lock()
    with LiveServer(create_app(config), free_port()) as server:
        def client(i):
            times: list[float] = []
            try:
                engine = RemoteEngine(server.url, KEY, model)
                got = run(engine, ct, seqs[i], times)
                engine.close()
                bad = sum(not np.array_equal(a, b) for a, b in zip(local[i], got))
                with lock:
                    remote_times.extend(times)
                    if bad:
                        mismatches.append((i, bad))
            except Exception as err:
                with lock:
                    errors.append(repr(err))

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=1800)
        wall = time.perf_counter() - t0
    lp50, lp95 = np.percentile(local_times, [50, 95])
    rp50, rp95 = np.percentile(remote_times, [50, 95]) if remote_times else (float("nan"),) * 2
    print(f"\n== {model}")
    print(f"local engine, one user:        p50 {lp50 * 1000:8.1f} ms   p95 {lp95 * 1000:8.1f} ms   ({len(local_times)} clicks)")
    print(f"server, {args.clients} concurrent clients: p50 {rp50 * 1000:8.1f} ms   p95 {rp95 * 1000:8.1f} ms   ({len(remote_times)} clicks, {wall:.1f} s wall)")
    print(f"ratio p50 server/local: {rp50 / lp50:.2f}x   errors: {len(errors)}   clicks differing from local: {sum(b for _, b in mismatches)}")
    for e in errors[:3]:
        print("  error:", e)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--clicks", type=int, default=50)
    ap.add_argument("--models", default="seeded-region,sam-med3d-turbo")
    args = ap.parse_args()

    from napari_openmedlab.io import read_volume

    ct = read_volume(ROOT.parent / "shared" / "data" / "totalseg-ct" / "ct.nii.gz")
    print(f"CT {ct.shape}; {args.clients} clients x {args.clicks} clicks; loopback only")
    tmp = tempfile.mkdtemp()
    for model in [m for m in args.models.split(",") if m]:
        bench_model(model, ct, args, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
