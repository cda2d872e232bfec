"""Options shared by the commands that run a model (``segment``, ``eval``, ``replay``)."""

from __future__ import annotations

import argparse

ENCODER_CHOICES = ("fast", "reference")  # engines.sam_med3d.ENCODERS, without importing engines


def _threads(text: str) -> int:
    try:
        n = int(text)
        if n < 0:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"threads is 0 (automatic) or a positive count; got {text!r}") from None
    return n


def add_speed_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--encoder", choices=ENCODER_CHOICES, default="fast",
        help="SAM-Med3D image encoder: fast (default; equal to the official one to ~1e-6, masks "
             "may differ by a voxel) or reference (the official computation: every mask equal "
             "to the official pipeline's, ~30x slower on a CPU)",
    )
    parser.add_argument(
        "--threads", type=_threads, default=0, metavar="N",
        help="torch threads on the CPU (default 0: the cores other processes leave free)",
    )
