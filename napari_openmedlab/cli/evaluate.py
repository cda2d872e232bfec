"""``openmedlab eval IMAGE [LABELS] --model M --clicks N --out results.csv``: simulated sessions.

IMAGE is one of

* an image file (NIfTI, NRRD, MetaImage) or a DICOM folder: one case; LABELS (a label map, on
  any grid: it is resampled onto the image's in physical space) is required;
* a dataset folder in nnU-Net layout (``imagesTr/`` + ``labelsTr/``, or Ts/Va): every case;
  LABELS is optional: a labels folder given there replaces ``labelsTr``, anything else is ignored;
* a folder of images (e.g. ``imagesTr``): LABELS is the labels folder, or ``labelsTr`` beside it.

A folder counts as a dataset when it holds ``imagesTr``/``imagesTs``/``imagesVa`` or image
files directly; anything else that is a folder is read as a DICOM series.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._options import add_speed_options
from ._remote import add_server_args, engine_from_args


def _class_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"classes are label ids like 1,2,5; got {text!r}") from None


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", aliases=["evaluate"],
        help="score a model with simulated clicks (Dice, NSD, time per click)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", help="image file, DICOM folder, or dataset folder (nnU-Net layout)")
    p.add_argument("labels", nargs="?", help="label map (single case) or labels folder")
    p.add_argument("--model", required=True, help="registry name (see `openmedlab info`)")
    p.add_argument("--checkpoint", help="local checkpoint file (wins over the weights cache)")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    add_speed_options(p)
    add_server_args(p)
    p.add_argument("--clicks", type=int, default=5, help="clicks per object (default 5)")
    p.add_argument("--classes", type=_class_list, help="label ids to score, e.g. 1,2,5 (default: all present)")
    p.add_argument("--protocol", choices=("largest-error", "sam-med3d"), default="largest-error",
                   help="click simulation: largest-error (interior of the largest error, default) "
                        "or sam-med3d (official validation: 128^3 crop on the label, seed 233)")
    p.add_argument("--seed", type=int, help="click seed (default 0, or 233 for sam-med3d)")
    p.add_argument("--nsd-tolerance", type=float, default=1.0, metavar="MM",
                   help="NSD tolerance in mm (default 1.0, as SAM-Med3D's metric_utils)")
    p.add_argument("--out", required=True, help="results CSV (one row per case, class and click)")
    p.add_argument("--plot", help="Dice-vs-clicks PNG")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _is_dataset(path: Path) -> bool:
    from ..io.readers import FILE_SUFFIXES

    if not path.is_dir():
        return False
    if any((path / d).is_dir() for d in ("imagesTr", "imagesTs", "imagesVa", "imagesVal")):
        return True
    return any(p.is_file() and p.name.lower().endswith(FILE_SUFFIXES) for p in path.iterdir())


class _Bar:
    """A text progress bar: tqdm when installed, else a carriage-return line on stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tqdm = None
        if not quiet:
            try:
                from tqdm import tqdm

                self.tqdm = tqdm(total=100, file=sys.stderr, leave=True,
                                 bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}")
            except ImportError:
                self.tqdm = None

    def __call__(self, fraction: float, what: str) -> None:
        if self.quiet:
            return
        if self.tqdm is not None:
            self.tqdm.n = round(100 * min(max(fraction, 0.0), 1.0), 1)
            self.tqdm.set_postfix_str(what, refresh=False)
            self.tqdm.refresh()
        else:
            width = 30
            filled = int(width * fraction)
            print(f"\r[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%} {what:<50.50}",
                  end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.quiet:
            return
        if self.tqdm is not None:
            self.tqdm.close()
        else:
            print(file=sys.stderr)


PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def check_outputs(out: str, plot: str | None) -> None:
    """Refuse a results or plot path that cannot be written (read-only, a folder, bad suffix)."""
    from ..io.atomic import check_writable_folder, write_error
    from ..io.errors import FileWriteError

    if plot and not plot.lower().endswith(PLOT_SUFFIXES):
        raise FileWriteError(f"{plot}: choose a plot suffix among {', '.join(PLOT_SUFFIXES)}")
    for target in (out, plot):
        if not target:
            continue
        try:
            Path(target).parent.mkdir(parents=True, exist_ok=True)  # as the writers do
        except OSError as err:
            raise write_error(Path(target), err) from None
        check_writable_folder(target)


def run(args) -> int:
    import numpy as np

    from ..evaluation import runner
    from ..io import read_volume

    if args.clicks < 1:
        raise SystemExit("openmedlab eval: --clicks must be at least 1")
    image = Path(args.image)
    if not image.exists():
        raise FileNotFoundError(f"No such file or folder: {image}")
    check_outputs(args.out, args.plot)  # before minutes of simulated clicks, not after
    engine = engine_from_args(args, encoder=args.encoder, threads=args.threads)
    options = dict(n_clicks=args.clicks, classes=args.classes, protocol=args.protocol,
                   nsd_tolerance_mm=args.nsd_tolerance, seed=args.seed, model=args.model)
    bar = _Bar(args.quiet)
    try:
        if _is_dataset(image):
            labels = Path(args.labels) if args.labels and Path(args.labels).is_dir() else None
            cases = runner.find_cases(image, labels)
            rows = runner.evaluate_cases(engine, cases, progress=bar, **options)
        else:
            if not args.labels:
                raise SystemExit("openmedlab eval: a single image needs its LABELS file")
            labels_path = Path(args.labels)
            if not labels_path.exists():
                raise FileNotFoundError(f"No such file or folder: {labels_path}")
            name = runner._strip_suffix(image.name) if image.is_file() else image.name
            rows = runner.evaluate_case(
                engine, read_volume(image), read_volume(labels_path), case=name,
                class_names=runner.load_class_names(labels_path), progress=bar, **options,
            )
            bar(1.0, "done")
    finally:
        bar.close()
    scored = [r for r in rows if r.positive is not None]
    if not scored:  # an empty label map, labels off the image, or only absent classes
        print("openmedlab eval: error: no object to evaluate: the labels hold none of the requested "
              "classes on this image (check LABELS, its grid, and --classes)", file=sys.stderr)
        return 1
    absent = sorted({(r.case, r.class_id) for r in rows} - {(r.case, r.class_id) for r in scored})
    for case, class_id in absent:
        print(f"openmedlab eval: warning: class {class_id} is absent from {case}; its rows are empty",
              file=sys.stderr)
    out = runner.write_csv(rows, args.out)
    if args.plot:
        runner.plot_dice(rows, args.plot)
    curve = runner.mean_dice_by_click(rows, key="protocol").get(args.protocol, np.zeros(0))
    objects = len({(r.case, r.class_id) for r in rows})
    seconds = [r.seconds for r in rows if r.positive is not None]
    print(f"{out}: {objects} objects x {args.clicks} clicks with {args.model} ({args.protocol})")
    print("mean Dice by click: " + " ".join(f"{k + 1}:{v:.3f}" for k, v in enumerate(curve)))
    if seconds:
        print(f"predict time per click: mean {np.mean(seconds):.3f} s, max {np.max(seconds):.3f} s")
    if args.plot:
        print(f"plot: {args.plot}")
    return 0
