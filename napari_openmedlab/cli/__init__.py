"""The ``openmedlab`` command line: a thin layer over the headless API.

Each subcommand lives in its own module with ``add_parser(subparsers)`` and ``run(args) -> int``;
heavy imports (torch, napari) happen inside ``run`` so ``openmedlab --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__

SUBCOMMANDS = ("info", "view", "segment", "evaluate", "download", "annotate", "autoseg")


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


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``openmedlab``; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
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
