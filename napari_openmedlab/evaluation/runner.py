"""Run simulated interactive sessions with an engine and record Dice, NSD and time per click.

For each case and each class: reset the engine, then N times draw a click from the error of the
current prediction (:mod:`.clicks` or :mod:`.protocol_sam_med3d`), call ``engine.predict`` with
all clicks so far, and score the prediction against the class mask on the image grid.

Protocols:

* ``largest-error`` (default): the engine sees the whole volume (``set_volume`` once per case);
  clicks from :class:`~.clicks.ClickSimulator` (seed 0 per object unless given), so every class
  is reproducible on its own.
* ``sam-med3d``: the official SAM-Med3D validation: per class, the 1.5 mm RAS+ 128^3 crop
  centred on the class (the engine's volume), random error clicks from one generator seeded
  with 233 per case, the crop's prediction resampled back to the image grid for scoring.

Folders in nnU-Net layout: ``DATASET/imagesTr/<case>_0000.nii.gz`` with
``DATASET/labelsTr/<case>.nii.gz`` (also ``imagesTs``/``labelsTs``, ``imagesVa``/``labelsVa``, and
label files named exactly like the image, as SAM-Med3D's ``imagesVa`` are).
Class names come from ``dataset.json`` (nnU-Net: ``{"labels": {"liver": 1}}``) or a
``labels.json`` beside the label file (``{"labels": {"1": "liver"}}``) when there is one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from ..engines.base import Engine, Prompts
from ..io import read_volume, resample_labels_to
from ..io.readers import FILE_SUFFIXES
from ..io.volume import Volume
from .clicks import ClickSimulator
from .inputs import check_label_map
from .metrics import dice, nsd
from .protocol_sam_med3d import SEED as SAM_MED3D_SEED
from .protocol_sam_med3d import SamMed3DClicks, prepare_roi

__all__ = [
    "PROTOCOLS",
    "CaseFiles",
    "ClickResult",
    "evaluate_case",
    "evaluate_cases",
    "find_cases",
    "load_class_names",
    "markdown_table",
    "mean_dice_by_click",
    "dice_figure",
    "plot_dice",
    "read_csv",
    "write_csv",
]

PROTOCOLS = ("largest-error", "sam-med3d")

Progress = Callable[[float, str], None]


@dataclass
class ClickResult:
    """One row of the results: the state after ``click`` clicks on one class of one case.

    ``z, y, x`` is the click on the image grid (voxel indices; for ``sam-med3d`` the crop voxel
    mapped back and rounded); ``positive`` is empty when no click was needed (no error left).
    ``seconds`` is the engine's ``predict`` time for this click; ``setup_seconds`` the
    ``set_volume`` time that this class paid (the whole case's, on its first class, for
    ``largest-error``; the crop's, for ``sam-med3d``).
    """

    case: str
    class_id: int
    class_name: str
    click: int
    z: int | None
    y: int | None
    x: int | None
    positive: bool | None
    dice: float
    nsd: float
    seconds: float
    setup_seconds: float
    protocol: str
    model: str
    gt_voxels: int


@dataclass
class CaseFiles:
    name: str
    image: Path
    labels: Path


# --- finding cases ----------------------------------------------------------------------------

_SPLITS = (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs"), ("imagesVa", "labelsVa"),
           ("imagesVal", "labelsVal"))


def _strip_suffix(name: str) -> str:
    for suffix in FILE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def find_cases(images: str | os.PathLike, labels: str | os.PathLike | None = None) -> list[CaseFiles]:
    """The (image, labels) pairs of a dataset folder, sorted by case name.

    ``images`` is a dataset root holding ``imagesTr``/``labelsTr`` (or Ts/Va), or an images folder;
    ``labels`` is the labels folder, needed only when it cannot be found beside the images
    (``imagesXx`` -> ``labelsXx``). Multi-channel nnU-Net cases use channel ``_0000``.
    """
    images = Path(images)
    if labels is None:
        for img_dir, lab_dir in _SPLITS:
            if (images / img_dir).is_dir() and (images / lab_dir).is_dir():
                images, labels = images / img_dir, images / lab_dir
                break
        else:
            match = re.fullmatch(r"images(.*)", images.name)
            sibling = images.parent / f"labels{match.group(1)}" if match else None
            if sibling is None or not sibling.is_dir():
                raise FileNotFoundError(
                    f"{images}: no labels folder found; give it as LABELS (nnU-Net layout: "
                    "DATASET/imagesTr + DATASET/labelsTr)"
                )
            labels = sibling
    labels = Path(labels)
    if not labels.is_dir():
        raise FileNotFoundError(f"{labels}: not a folder of label maps")
    label_files = {_strip_suffix(p.name): p for p in labels.iterdir()
                   if p.is_file() and p.name.lower().endswith(FILE_SUFFIXES)}
    cases: dict[str, CaseFiles] = {}
    for p in sorted(images.iterdir()):
        if not (p.is_file() and p.name.lower().endswith(FILE_SUFFIXES)):
            continue
        stem = _strip_suffix(p.name)
        m = re.fullmatch(r"(.+)_(\d{4})", stem)
        if stem in label_files:
            name = stem
        elif m and m.group(1) in label_files:
            if m.group(2) != "0000":
                continue  # other channels of a multi-channel case
            name = m.group(1)
        else:
            continue
        cases[name] = CaseFiles(name, p, label_files[name])
    if not cases:
        raise FileNotFoundError(f"no image in {images} has a label map in {labels}")
    return [cases[k] for k in sorted(cases)]


def load_class_names(labels_path: str | os.PathLike) -> dict[int, str]:
    """Class id -> name from a ``labels.json`` beside the file or a ``dataset.json`` above it."""
    path = Path(labels_path)
    candidates = [path.parent / "labels.json", path.parent / "dataset.json",
                  path.parent.parent / "dataset.json"]
    for c in candidates:
        if not c.is_file():
            continue
        try:
            data = json.loads(c.read_text())
        except (OSError, ValueError):
            continue
        table = data.get("labels", data) if isinstance(data, dict) else None
        if not isinstance(table, dict):
            continue
        names: dict[int, str] = {}
        for k, v in table.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):  # nnU-Net: name -> id
                names[int(v)] = str(k)
            elif str(k).lstrip("-").isdigit():  # id -> name
                names[int(k)] = str(v)
        if names:
            names.pop(0, None)
            return names
    return {}


# --- evaluation -------------------------------------------------------------------------------

def evaluate_case(
    engine: Engine,
    image: Volume,
    labels: Volume,
    *,
    n_clicks: int = 5,
    classes: Sequence[int] | None = None,
    protocol: str = "largest-error",
    nsd_tolerance_mm: float = 1.0,
    seed: int | None = None,
    case: str = "case",
    class_names: dict[int, str] | None = None,
    model: str | None = None,
    progress: Progress | None = None,
    progress_span: tuple[float, float] = (0.0, 1.0),
) -> list[ClickResult]:
    """Simulate ``n_clicks`` clicks per class of one case; one :class:`ClickResult` per click.

    ``labels`` is put on the image grid first (nearest neighbour in physical space) when its grid
    differs. ``classes`` defaults to every non-zero id present, in increasing order. ``seed``
    defaults to 0 (``largest-error``) or 233 (``sam-med3d``).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if n_clicks < 1:
        raise ValueError("n_clicks must be at least 1")
    check_label_map(labels, case)
    if labels.shape != image.shape or not labels.geometry.same_grid(image.geometry):
        labels = resample_labels_to(labels, image.geometry, image.shape)
    label_array = np.asarray(labels.array)
    present = [int(v) for v in np.unique(label_array) if v != 0]
    class_ids = present if classes is None else [int(c) for c in classes]
    names = class_names or {}
    model = model or getattr(engine, "name", type(engine).__name__)
    spacing = image.geometry.spacing_zyx
    lo, hi = progress_span
    total = max(len(class_ids) * n_clicks, 1)
    done = 0

    def tick(what: str) -> None:
        if progress is not None:
            progress(lo + (hi - lo) * done / total, what)

    rows: list[ClickResult] = []
    setup = 0.0
    if protocol == "largest-error":
        t0 = time.perf_counter()
        engine.set_volume(image)
        setup = time.perf_counter() - t0
    sam_clicks = SamMed3DClicks(SAM_MED3D_SEED if seed is None else seed) if protocol == "sam-med3d" else None

    for cid in class_ids:
        gt = label_array == cid
        name = names.get(cid, str(cid))
        gt_voxels = int(gt.sum())

        def row(k, zyx, positive, pred_full, seconds, setup_s,
                cid=cid, name=name, gt=gt, gt_voxels=gt_voxels) -> ClickResult:
            return ClickResult(
                case, cid, name, k,
                *(zyx if zyx is not None else (None, None, None)),
                positive, dice(gt, pred_full), nsd(gt, pred_full, spacing, nsd_tolerance_mm),
                seconds, setup_s, protocol, model, gt_voxels,
            )

        if not gt.any():  # asked for a class the case does not have: nothing to click
            empty = np.zeros(gt.shape, bool)
            rows += [row(k, None, None, empty, 0.0, 0.0) for k in range(1, n_clicks + 1)]
            done += n_clicks
            tick(f"{case}: class {name} absent")
            continue

        if protocol == "largest-error":
            engine.reset()
            simulator = ClickSimulator(spacing, seed=0 if seed is None else seed)
            target, to_full, to_image_index = gt, (lambda m: m), (lambda q: q)
            class_setup, setup = setup, 0.0
        else:
            roi = prepare_roi(image, labels, cid)
            t0 = time.perf_counter()
            engine.set_volume(roi.image)
            if hasattr(engine, "first_crop_box"):  # SAM-Med3D: the whole 128^3 ROI is its one crop
                engine.first_crop_box = ((0, 0, 0), roi.image.shape)
                engine.max_extra_crops = 0
            class_setup = time.perf_counter() - t0
            simulator = sam_clicks
            target, to_full = roi.label, roi.to_source
            g_roi, g_img = roi.image.geometry, image.geometry

            def to_image_index(q, g_roi=g_roi, g_img=g_img):
                idx = g_img.physical_to_index(g_roi.index_to_physical(np.asarray(q, float)))
                return tuple(int(v) for v in np.round(idx))

            if roi.empty:  # the official code skips such a class: empty prediction, no click
                empty = np.zeros(gt.shape, bool)
                rows += [row(k, None, None, empty, 0.0, class_setup if k == 1 else 0.0)
                         for k in range(1, n_clicks + 1)]
                done += n_clicks
                tick(f"{case}: class {name} outside its crop")
                continue

        prompts = Prompts()
        pred_target: np.ndarray | None = None
        last: ClickResult | None = None
        for k in range(1, n_clicks + 1):
            click = simulator.next_click(target, pred_target)
            if click is None:  # nothing left to correct: the state stays as it is
                assert last is not None
                rows.append(ClickResult(**{**asdict(last), "click": k, "z": None, "y": None,
                                           "x": None, "positive": None, "seconds": 0.0,
                                           "setup_seconds": 0.0}))
            else:
                prompts = prompts.add_point(click.zyx, click.positive)
                t0 = time.perf_counter()
                prediction = engine.predict(prompts)
                seconds = time.perf_counter() - t0
                pred_target = prediction.to_mask()
                last = row(k, to_image_index(click.zyx), click.positive, to_full(pred_target),
                           seconds, class_setup if k == 1 else 0.0)
                rows.append(last)
            done += 1
            tick(f"{case}: {name} click {k}/{n_clicks} dice {rows[-1].dice:.3f}")
    return rows


def evaluate_cases(
    engine: Engine,
    cases: Sequence[CaseFiles],
    *,
    progress: Progress | None = None,
    **kwargs,
) -> list[ClickResult]:
    """:func:`evaluate_case` over files; class names from the dataset's json when there is one."""
    rows: list[ClickResult] = []
    n = max(len(cases), 1)
    given_names = kwargs.pop("class_names", None)
    for i, c in enumerate(cases):
        image = read_volume(c.image)
        labels = read_volume(c.labels)
        names = given_names or load_class_names(c.labels)
        rows += evaluate_case(engine, image, labels, case=c.name, class_names=names,
                              progress=progress, progress_span=(i / n, (i + 1) / n), **kwargs)
    if progress is not None:
        progress(1.0, "done")
    return rows


# --- output -----------------------------------------------------------------------------------

_COLUMNS = [f.name for f in fields(ClickResult)]


def write_csv(rows: Sequence[ClickResult], path: str | os.PathLike) -> Path:
    """One line per (case, class, click); floats with 6 significant digits; parent folders made.

    Written atomically: an existing CSV is replaced only by a complete new one.
    """
    from ..io.atomic import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    f = io.StringIO(newline="")
    writer = csv.writer(f)
    writer.writerow(_COLUMNS)
    for r in rows:
        writer.writerow([_csv_value(getattr(r, name)) for name in _COLUMNS])
    return atomic_write_text(path, f.getvalue())


def _csv_value(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}"
    return v


def read_csv(path: str | os.PathLike) -> list[ClickResult]:
    """Rows written by :func:`write_csv`."""
    out = []
    with open(path, newline="") as f:
        for d in csv.DictReader(f):
            opt_int = lambda s: None if s == "" else int(s)  # noqa: E731
            out.append(ClickResult(
                d["case"], int(d["class_id"]), d["class_name"], int(d["click"]),
                opt_int(d["z"]), opt_int(d["y"]), opt_int(d["x"]),
                None if d["positive"] == "" else bool(int(d["positive"])),
                float(d["dice"]), float(d["nsd"]), float(d["seconds"]),
                float(d["setup_seconds"]), d["protocol"], d["model"], int(d["gt_voxels"]),
            ))
    return out


def _nanmean(values) -> float:
    """Mean of the non-NaN values; NaN (and no warning) when there are none."""
    a = np.asarray(values, dtype=float)
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else float("nan")


def mean_dice_by_click(rows: Sequence[ClickResult], key: str = "class_name") -> dict[str, np.ndarray]:
    """``{group: mean Dice after click 1..N}`` over cases (``key``: a ClickResult field)."""
    groups: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        groups.setdefault(str(getattr(r, key)), {}).setdefault(r.click, []).append(r.dice)
    return {
        g: np.array([_nanmean(v[k]) for k in sorted(v)]) for g, v in groups.items()
    }


def markdown_table(
    rows: Sequence[ClickResult],
    clicks: Sequence[int] = (1, 3, 5),
    metrics: Sequence[str] = ("dice", "nsd"),
) -> str:
    """A markdown table: one line per (case, class), columns metric@clicks, plus the mean line."""
    table: dict[tuple[str, int, str], dict[int, ClickResult]] = {}
    for r in rows:
        table.setdefault((r.case, r.class_id, r.class_name), {})[r.click] = r
    header = ["case", "class"] + [f"{m.upper() if m == 'nsd' else m.capitalize()} @{k}"
                                  for m in metrics for k in clicks]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    sums: dict[tuple[str, int], list[float]] = {}
    for (case, _cid, name), by_click in table.items():
        cells = [case, name]
        for m in metrics:
            for k in clicks:
                r = by_click.get(k)
                v = getattr(r, m) if r is not None else float("nan")
                sums.setdefault((m, k), []).append(v)
                cells.append("" if math.isnan(v) else f"{v:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    mean = ["**mean**", f"{len(table)} objects"]
    for m in metrics:
        for k in clicks:
            v = _nanmean(sums.get((m, k), []))
            mean.append(f"**{v:.3f}**")
    lines.append("| " + " | ".join(mean) + " |")
    return "\n".join(lines)


_NAMED_LINES_MAX = 12
"""Up to this many structures get a coloured, named line each; more are drawn as one grey family
(a legend of 41 names is unreadable) under the mean, with the best and worst named."""


def dice_figure(rows: Sequence[ClickResult], title: str | None = None):
    """The Dice-vs-clicks figure (a Matplotlib ``Figure``): one line per structure (mean over
    cases), the mean over all of them in black, axis labels, a legend, the model in the title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    per_class = mean_dice_by_click(rows)
    fig = Figure(figsize=(8.5, 4.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    n = max((len(v) for v in per_class.values()), default=0)
    xs = np.arange(1, n + 1)
    named = len(per_class) <= _NAMED_LINES_MAX
    for i, (name, values) in enumerate(sorted(per_class.items())):
        if named:
            ax.plot(xs[: len(values)], values, marker=".", linewidth=1, alpha=0.7, label=name)
        else:
            ax.plot(xs[: len(values)], values, color="0.6", linewidth=0.8, alpha=0.6,
                    label=f"each structure ({len(per_class)})" if i == 0 else None)
    if not named and per_class:
        finals = {name: v[-1] for name, v in per_class.items() if len(v) and np.isfinite(v[-1])}
        for name, colour in ((max(finals, key=finals.get), "tab:green"),
                             (min(finals, key=finals.get), "tab:red")) if finals else ():
            values = per_class[name]
            ax.plot(xs[: len(values)], values, color=colour, linewidth=1.4, marker=".",
                    label=f"{name} ({'best' if colour == 'tab:green' else 'worst'} at the end)")
    if per_class:
        means = mean_dice_by_click(rows, key="protocol")
        for proto, values in means.items():
            ax.plot(xs[: len(values)], values, color="black", linewidth=2.5, marker="o",
                    label=f"mean over {len(per_class)} structures" + (f" ({proto})" if len(means) > 1 else ""))
    protocols = sorted({r.protocol for r in rows})
    ax.set_xlabel(f"number of simulated clicks ({', '.join(protocols)} protocol)")
    ax.set_ylabel("Dice with the reference (1 = identical)")
    ax.set_ylim(0, 1)
    ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    models = sorted({r.model for r in rows})
    cases = len({r.case for r in rows})
    ax.set_title(title or f"{', '.join(models)}: Dice after each click "
                          f"({cases} case{'s' if cases != 1 else ''})")
    if per_class:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def plot_dice(rows: Sequence[ClickResult], path: str | os.PathLike, title: str | None = None) -> Path:
    """Write :func:`dice_figure` (atomically, the image checked complete before it replaces the
    target). Drawn with Matplotlib's Agg canvas directly: no pyplot, no change to a running GUI backend."""
    from ..io.atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = dice_figure(rows, title)
    with atomic_path(path, suffix=path.suffix or ".png", verify=_check_image_file) as tmp:
        fig.savefig(tmp, format=(path.suffix[1:] or "png").lower(), bbox_inches="tight")
    return path


def _check_image_file(tmp: Path) -> None:
    """``verify`` for a plot: a PNG must end with its IEND chunk (a full disk cuts it short)."""
    if tmp.suffix.lower() == ".png":
        with open(tmp, "rb") as f:
            f.seek(max(0, tmp.stat().st_size - 12))
            if not f.read().endswith(b"IEND\xaeB`\x82"):
                raise OSError(5, "the written image is incomplete")
