"""``openmedlab info``: version, torch and its devices, the models and whether weights are here."""

from __future__ import annotations

import platform


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("info", help="show version, devices and the models' weights status")
    p.set_defaults(run=run)


def run(args) -> int:
    from .. import __version__
    from ..models.registry import MODELS
    from ..models.weights import cache_dir, find_weights

    print(f"napari-openmedlab {__version__} (Python {platform.python_version()})")
    try:
        import torch

        from ..models.device import available_devices

        print(f"torch {torch.__version__}; devices: {', '.join(available_devices())}")
    except ImportError:
        print("torch: not installed")
    print(f"weights cache: {cache_dir()}")
    print("models:")
    for spec in MODELS.values():
        if not spec.needs_weights:
            status = "no weights needed"
        else:
            path = find_weights(spec)
            status = f"weights present ({path})" if path else "weights missing"
        print(f"  {spec.name:<16} {spec.family:<8} {status}")
    return 0
