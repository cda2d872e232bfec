"""Benchmark: what the safe volume write costs against SimpleITK's plain ``WriteImage``.

``io.write_volume`` writes to a temporary file, fsyncs it, reads it back (gzip CRC, NIfTI size,
voxels and grid compared) and renames it; the plain write does none of that and, on a full disk,
leaves a 0-byte or cut file without an error. Cases: a 512x512x300 label map (two organs) and a
512x512x300 int16 CT-like image, each as .nii.gz and .nrrd.

    python benchmarks/bench_atomic_write.py [--repeat 3] [--size 512,512,300]

Prints the median seconds of both writes and their ratio, per case.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from napari_openmedlab.io import Geometry, Volume, write_volume  # noqa: E402


def volumes(shape):
    z, y, x = (np.arange(n, dtype=np.float32) for n in shape)
    zz, yy, xx = z[:, None, None], y[None, :, None], x[None, None, :]
    centre = [n / 2 for n in shape]
    labels = np.zeros(shape, np.uint8)
    labels[((zz - centre[0]) / 60) ** 2 + ((yy - centre[1]) / 90) ** 2 + ((xx - centre[2] + 80) / 70) ** 2 < 1] = 1
    labels[((zz - centre[0]) / 40) ** 2 + ((yy - centre[1]) / 50) ** 2 + ((xx - centre[2] - 90) / 45) ** 2 < 1] = 2
    rng = np.random.default_rng(0)
    ct = (rng.normal(0, 20, shape) + 60 * labels - 900 * (labels == 0)).astype(np.int16)
    return {"labels": labels, "ct": ct}


def main() -> None:
    import SimpleITK as sitk

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", default="512,512,300", help="x,y,z voxels")
    args = parser.parse_args()
    nx, ny, nz = (int(v) for v in args.size.split(","))
    geometry = Geometry((0.7, 0.7, 1.0))
    print(f"volume {nx}x{ny}x{nz}, {args.repeat} repeats, median seconds")
    print(f"{'case':18s} {'plain':>8s} {'safe':>8s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, array in volumes((nz, ny, nx)).items():
            for suffix in (".nii.gz", ".nrrd"):
                path = Path(tmp) / f"{name}{suffix}"
                plain, safe = [], []
                for _ in range(args.repeat):
                    image = sitk.GetImageFromArray(array)
                    geometry.apply_to_sitk(image)
                    t0 = time.perf_counter()
                    sitk.WriteImage(image, str(path), True)
                    plain.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    write_volume(Volume(array, geometry), path, labels=name == "labels")
                    safe.append(time.perf_counter() - t0)
                p, s = statistics.median(plain), statistics.median(safe)
                print(f"{name + suffix:18s} {p:8.3f} {s:8.3f} {s / p:6.2f}")


if __name__ == "__main__":
    main()
