"""Drive a batch: find cases, skip the finished ones, run the rest locally or on Ray.

Layout of ``OUT``::

    OUT/cases/<case>.json   one result per finished case (written atomically: a case is done or absent)
    OUT/summary.csv         one line per case (and, for evaluations, results.csv with every click)
    OUT/failures.csv        case, error: a bad case never stops the run

Resuming is running the same command again: cases with a result file are skipped.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..io.atomic import atomic_write_json, atomic_write_text
from .tasks import BatchCase

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


@dataclass
class BatchReport:
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    out_dir: Path | None = None


def _stem(name: str) -> str:
    for s in IMAGE_SUFFIXES:
        if name.lower().endswith(s):
            return name[: -len(s)]
    return name


def find_batch_cases(dataset: str | os.PathLike, need_labels: bool) -> list[BatchCase]:
    """Cases of a data set: an nnU-Net raw data set (imagesTr/labelsTr) or a folder of images
    (files, or DICOM series in sub-folders); with ``need_labels`` every case needs a label map."""
    root = Path(dataset)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a data set folder")
    if need_labels:
        from ..evaluation.runner import find_cases

        return [BatchCase(c.name, str(c.image), str(c.labels)) for c in find_cases(root)]
    images = root / "imagesTr" if (root / "imagesTr").is_dir() else root
    cases = []
    for p in sorted(images.iterdir()):
        if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES):
            stem = _stem(p.name)
            if stem.endswith(("_0001", "_0002", "_0003")):
                continue  # other channels of an nnU-Net case
            cases.append(BatchCase(stem[:-5] if stem.endswith("_0000") else stem, str(p)))
        elif p.is_dir() and not p.name.startswith((".", "labels")) and any(p.glob("*.dcm")):
            cases.append(BatchCase(p.name, str(p)))
    if not cases:
        raise FileNotFoundError(f"{root}: no image found (NIfTI, NRRD, MHA, or DICOM folders)")
    return cases


def _result_path(out_dir: Path, case: str) -> Path:
    return out_dir / "cases" / f"{case}.json"


def _finished(out_dir: Path, case: str) -> bool:
    path = _result_path(out_dir, case)
    try:
        return "case" in json.loads(path.read_text())
    except (OSError, ValueError):
        return False


def run_batch(
    task,
    dataset: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    ray_address: str | None = None,
    workers: int = 2,
    progress: Callable[[str], None] | None = None,
) -> BatchReport:
    """Run ``task`` on every unfinished case; locally when ``ray_address`` is None, else on Ray
    (``"local"`` starts a Ray instance on this machine with ``workers`` workers)."""
    from ..io.atomic import remove_stale_temporaries

    out = Path(out_dir)
    (out / "cases").mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out / "cases")
    cases = find_batch_cases(dataset, task.needs_labels())
    report = BatchReport(out_dir=out)
    todo = []
    for c in cases:
        if _finished(out, c.name):
            report.skipped.append(c.name)
        else:
            todo.append(c)
    say = progress or (lambda text: None)

    def record(case: BatchCase, result: dict | None, error: str | None) -> None:
        if error is None:
            atomic_write_json(_result_path(out, case.name), result)
            report.done.append(case.name)
            say(f"{case.name}: done")
        else:
            report.failed[case.name] = error
            say(f"{case.name}: FAILED: {error}")

    if ray_address is None:
        for case in todo:
            record(case, *_run_one(task, case, str(out)))
    else:
        _run_on_ray(task, todo, str(out), ray_address, workers, record)
    _write_summaries(out, cases, report, task)
    return report


def _run_one(task, case: BatchCase, out_dir: str) -> tuple[dict | None, str | None]:
    try:
        return task.run(case, out_dir), None
    except Exception as err:  # one bad case never stops the run; the message is recorded
        return None, f"{type(err).__name__}: {err}"


class _CaseWorker:
    """A Ray actor: holds one task (its model loaded once) and runs cases on it."""

    def __init__(self, task) -> None:
        self.task = task
        self.task.setup()

    def run(self, case: BatchCase, out_dir: str):
        return case, *_run_one(self.task, case, out_dir)


def _run_on_ray(task, todo, out_dir, address, workers, record) -> None:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise RuntimeError("--ray needs the [ray] extra: pip install 'napari-openmedlab[ray]'") from None
    if not todo:
        return
    started_here = not ray.is_initialized()
    if started_here:
        if address == "local":
            ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        options = {"num_cpus": 1}
        if gpus and getattr(task, "device", "cpu") != "cpu":
            options["num_gpus"] = min(1.0, gpus / max(1, workers))
        Worker = ray.remote(**options)(_CaseWorker)
        pool = ActorPool([Worker.remote(task) for _ in range(max(1, min(workers, len(todo))))])
        for case, result, error in pool.map_unordered(lambda actor, c: actor.run.remote(c, out_dir), todo):
            record(case, result, error)
    finally:
        if started_here:
            ray.shutdown()


def _write_summaries(out: Path, cases, report: BatchReport, task) -> None:
    results = []
    for c in cases:
        try:
            results.append(json.loads(_result_path(out, c.name).read_text()))
        except (OSError, ValueError):
            continue
    buf = io.StringIO()
    w = csv.writer(buf)
    if task.kind == "eval":
        w.writerow(["case", "mean_final_dice", "seconds"])
        for r in results:
            w.writerow([r["case"], f"{r['mean_final_dice']:.6g}", f"{r['seconds']:.3f}"])
        rows = [row for r in results for row in r["rows"]]
        if rows:
            from ..evaluation.runner import ClickResult, write_csv

            write_csv([ClickResult(**row) for row in rows], out / "results.csv")
    else:
        w.writerow(["case", "output", "labels_present", "seconds"])
        for r in results:
            w.writerow([r["case"], r["output"], " ".join(map(str, r["labels_present"])), f"{r['seconds']:.3f}"])
    atomic_write_text(out / "summary.csv", buf.getvalue())
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["case", "error"])
    for name, error in sorted(report.failed.items()):
        w.writerow([name, error])
    atomic_write_text(out / "failures.csv", buf.getvalue())
