"""Results on real data: the weight-free engine on the two shared CT cases, 1, 3 and 5 clicks.

Cases (read from ../shared/data, never copied into the project):

* ``totalseg-ct``: ct.nii.gz + seg.nii.gz (122x101x30, 3 mm), TotalSegmentator classes;
* ``totalseg-dicom``: the DICOM series (512x512x20, 0.98x0.98x2 mm) with seg.nii.gz resampled
  onto the series grid in physical space (``io.resample_labels_to``: that file's grid is flipped
  in y against the series).

Every class with at least ``--min-voxels`` voxels on the image grid is scored: five simulated
clicks (largest-error protocol by default, seed 0), Dice and NSD (1 mm) after each click, through
``napari_openmedlab.evaluation.runner`` exactly as ``openmedlab eval`` does. The same run also
scores the frozen engine it replaced (``benchmarks/_seeded_before.py``; ``--no-baseline`` skips
it), and reports the issue-#11 target set: liver, spleen, stomach, aorta, inferior vena cava,
vertebra T12 and left autochthon muscle of the DICOM series.

    python benchmarks/eval_real_data.py [--protocol largest-error] [--clicks 5] [--min-voxels 50]
        [--out docs/results] [--markdown docs/results.md] [--no-baseline]

Writes ``<out>/weight_free.csv`` (and ``weight_free_before.csv``), ``<out>/weight_free_dice.png``
and the markdown report.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
DATA = REPO.parent / "shared" / "data"

from _seeded_before import SeededRegionEngine as BaselineEngine  # noqa: E402

from napari_openmedlab.engines import create_engine  # noqa: E402
from napari_openmedlab.evaluation import runner  # noqa: E402
from napari_openmedlab.io import read_volume, resample_labels_to  # noqa: E402

# issue #11: the DICOM series' structures the engine must reach a mean Dice of 0.80 on (5 clicks)
TARGET_CASE = "totalseg-dicom"
TARGET = {5: "liver", 1: "spleen", 6: "stomach", 52: "aorta", 63: "inferior_vena_cava",
          32: "vertebrae_T12", 86: "autochthon_left"}
MAJOR = {"spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "pancreas",
         "aorta", "inferior_vena_cava"}


def cases():
    ct = DATA / "totalseg-ct"
    yield "totalseg-ct", read_volume(ct / "ct.nii.gz"), read_volume(ct / "seg.nii.gz"), ct / "labels.json"
    dcm = DATA / "totalseg-dicom"
    image = read_volume(dcm / "series")
    labels = resample_labels_to(read_volume(dcm / "seg.nii.gz"), image.geometry, image.shape)
    yield "totalseg-dicom", image, labels, dcm / "labels.json"


def _dice_at(rows, click: int) -> dict[tuple[str, int], float]:
    return {(r.case, r.class_id): r.dice for r in rows if r.click == click}


def target_section(results: dict[str, list], clicks: int) -> list[str]:
    """Markdown: the issue-#11 target set and the per-case means, now and before, after each click."""
    shown = tuple(k for k in (1, 3, 5) if k <= clicks)
    keys = [k for k in ("seeded-region", "before") if k in results]
    label = {"seeded-region": "now", "before": "before"}
    md = ["", "## Now and before (the engine as it was: `benchmarks/_seeded_before.py`), mean Dice", "",
          "| set | " + " | ".join(f"{label[k]} @{c}" for k in keys for c in shown) + " |",
          "|---|" + "---|" * (len(keys) * len(shown))]
    sets = [(f"{TARGET_CASE}: the 7 target structures", lambda c, i: c == TARGET_CASE and i in TARGET)]
    for case in dict.fromkeys(r.case for r in results[keys[0]]):
        sets.append((f"{case}: all classes", lambda c, i, case=case: c == case))
    for title, keep in sets:
        cells = []
        for k in keys:
            for c in shown:
                values = [v for (case, cid), v in _dice_at(results[k], c).items() if keep(case, cid)]
                cells.append(f"{statistics.fmean(values):.3f}" if values else "-")
        md.append(f"| {title} | " + " | ".join(cells) + " |")
    md += ["", f"The target structures of {TARGET_CASE}, Dice after {clicks} clicks:", "",
           "| structure | " + " | ".join(label[k] for k in keys) + " |",
           "|---|" + "---|" * len(keys)]
    last = {k: _dice_at(results[k], clicks) for k in keys}
    for cid, name in TARGET.items():
        md.append(f"| {name} | " + " | ".join(
            f"{last[k].get((TARGET_CASE, cid), float('nan')):.3f}" for k in keys) + " |")
    return md


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", default="largest-error", choices=runner.PROTOCOLS)
    parser.add_argument("--clicks", type=int, default=5)
    parser.add_argument("--min-voxels", type=int, default=50)
    parser.add_argument("--nsd-tolerance", type=float, default=1.0)
    parser.add_argument("--out", default=str(REPO / "docs" / "results"))
    parser.add_argument("--markdown", default=str(REPO / "docs" / "results.md"))
    parser.add_argument("--no-baseline", action="store_true",
                        help="do not score the engine as it was before (benchmarks/_seeded_before.py)")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"shared data not found at {DATA}", file=sys.stderr)
        return 1

    engines = {"seeded-region": create_engine("seeded-region")}
    if not args.no_baseline:
        engines["before"] = BaselineEngine()
    results: dict[str, list[runner.ClickResult]] = {k: [] for k in engines}
    timings: dict[str, float] = {}
    loaded = list(cases())
    for key, engine in engines.items():
        t_start = time.perf_counter()
        for name, image, labels, names_file in loaded:
            counts = np.bincount(np.asarray(labels.array).ravel().astype(np.int64))
            classes = [int(c) for c in np.flatnonzero(counts)
                       if c != 0 and counts[c] >= args.min_voxels]
            names = runner.load_class_names(names_file)
            print(f"{key} on {name}: {image.shape} voxels, {len(classes)} classes", flush=True)

            def progress(fraction, what):
                print(f"\r  [{fraction:4.0%}] {what:<60.60}", end="", flush=True)

            results[key] += runner.evaluate_case(
                engine, image, labels, n_clicks=args.clicks, classes=classes,
                protocol=args.protocol, nsd_tolerance_mm=args.nsd_tolerance, case=name,
                class_names=names, model=key, progress=progress,
            )
            print()
        timings[key] = time.perf_counter() - t_start
    rows = results["seeded-region"]
    total = timings["seeded-region"]

    out = Path(args.out)
    csv_path = runner.write_csv(rows, out / "weight_free.csv")
    if "before" in results:
        runner.write_csv(results["before"], out / "weight_free_before.csv")
    png_path = runner.plot_dice(rows, out / "weight_free_dice.png",
                                title=f"seeded-region (weight-free), {args.protocol} clicks")
    print(f"wrote {csv_path} and {png_path}")

    shown = tuple(k for k in (1, 3, 5) if k <= args.clicks)
    latencies = [r.seconds for r in rows if r.positive is not None]
    curve = runner.mean_dice_by_click(rows, key="protocol")[args.protocol]
    per_case = runner.mean_dice_by_click(rows, key="case")
    md = [
        "# Results: weight-free baseline on real CT",
        "",
        "Generated by `python benchmarks/eval_real_data.py` (do not edit by hand). Engine: "
        "`seeded-region` (no weights; adaptive-threshold region growing from the clicks, "
        "split by negative clicks: see `napari_openmedlab/engines/seeded.py`). It is the "
        "baseline the foundation models are compared against with `openmedlab eval`.",
        "",
        "Data: `../shared/data/totalseg-ct` (122x101x30 voxels, 3 mm) and "
        "`../shared/data/totalseg-dicom` (DICOM series 512x512x20, 0.98x0.98x2 mm; its "
        "segmentation resampled onto the series grid in physical space). The reference masks are "
        "TotalSegmentator model outputs, not manual contours (see the data's README); "
        "CT images from the TotalSegmentator data set (CC BY 4.0).",
        "",
        f"Protocol: `{args.protocol}`: each organ is one object; click 1 at the organ's "
        "interior-most voxel, every next click at the interior-most voxel of the largest "
        "connected error (positive in a miss, negative in a false positive), seed 0. "
        f"Classes with at least {args.min_voxels} voxels. Dice; NSD = normalised surface distance "
        f"at {args.nsd_tolerance:g} mm (DeepMind surface-distance definition, as SAM-Med3D "
        "reports it). Full per-click rows: [results/weight_free.csv](results/weight_free.csv).",
        "",
        "![Dice vs clicks](results/weight_free_dice.png)",
        "",
        "## Summary",
        "",
        "| | " + " | ".join(f"{k} click{'s' if k > 1 else ''}" for k in shown) + " |",
        "|---|" + "---|" * len(shown),
        "| mean Dice, all objects | " + " | ".join(f"**{curve[k - 1]:.3f}**" for k in shown) + " |",
    ]
    for case, values in per_case.items():
        md.append(f"| mean Dice, {case} | " + " | ".join(f"{values[k - 1]:.3f}" for k in shown) + " |")
    major = [r for r in rows if r.class_name in MAJOR]
    if major:
        values = runner.mean_dice_by_click(major, key="protocol")[args.protocol]
        n = len({(r.case, r.class_id) for r in major})
        md.append(f"| mean Dice, {n} major abdominal organs* | "
                  + " | ".join(f"{values[k - 1]:.3f}" for k in shown) + " |")
    md += ["", "\\* " + ", ".join(sorted(MAJOR)) + ", in both cases where present."]
    md += target_section(results, args.clicks)
    md += [
        "",
        f"Latency of `predict` per click: median {statistics.median(latencies):.3f} s, "
        f"max {max(latencies):.3f} s over {len(latencies)} clicks "
        f"({platform.processor() or platform.machine()}, CPU only, a machine possibly shared with "
        "other jobs: compare with the figures measured before in the same run); whole run "
        f"{total:.0f} s. "
        "`python benchmarks/bench_weight_free.py` also times a 512x512x300 volume."
        + (f" Before: median {statistics.median([r.seconds for r in results['before'] if r.positive is not None]):.3f} s"
           f" per click, whole run {timings['before']:.0f} s (same run, same machine)." if "before" in results else ""),
        "",
        "## Per organ",
        "",
        runner.markdown_table(rows, clicks=shown),
        "",
    ]
    Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
    Path(args.markdown).write_text("\n".join(md))
    print(f"wrote {args.markdown}")
    print("mean Dice by click: " + " ".join(f"{k + 1}:{v:.3f}" for k, v in enumerate(curve)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
