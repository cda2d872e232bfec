"""The ``openmedlab`` command line: a thin layer over the headless API.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``;
heavy imports (torch, napari) happen inside ``run`` so ``openmedlab --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

from .. import __version__

SUBCOMMANDS = ("info", "view", "segment", "evaluate", "download", "replay", "annotate", "contour", "export",
               "import_", "autoseg", "serve", "batch", "dataset")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openmedlab",
        description="Interactive 3D medical segmentation with OpenMEDLab foundation models.",
    )
    parser.add_argument("--version", action="version", version=f"napari-openmedlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        module.add_parser(subparsers)
    return parser


_NEGATIVE_LIST = re.compile(r"^-(\d|\.\d)[\d.eE+-]*(,[^,]*)+$")


def attach_negative_values(argv: list[str]) -> list[str]:
    """``--point -5,10,10`` -> ``--point=-5,10,10``.

    argparse takes a value that starts with ``-`` for an option unless it is a single number, so a
    point or box whose first coordinate is negative would be refused. A comma-separated list of
    numbers after an option that has no ``=`` yet is its value, never an option.
    """
    out: list[str] = []
    for token in argv:
        if out and _NEGATIVE_LIST.match(token) and out[-1].startswith("--") and "=" not in out[-1]:
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``openmedlab``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(attach_negative_values(sys.argv[1:] if argv is None else list(argv)))
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    from ..cleanup import remove_stale_temporaries

    remove_stale_temporaries()  # left by a killed earlier run
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a clear one-line message, not a traceback, for expected failures
        from ._errors import EXPECTED_ERRORS

        if isinstance(err, EXPECTED_ERRORS()):
            print(f"openmedlab: error: {err}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
