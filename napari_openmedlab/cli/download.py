"""``openmedlab download MODEL``: fetch a model's weights into the cache, checking the SHA-256."""

from __future__ import annotations

import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("download", help="download a model's weights into the cache")
    p.add_argument("model", help="registry name, e.g. sam-med3d-turbo")
    p.add_argument("--url", help="download from this address instead of the registry's")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..models.registry import get_spec
    from ..models.weights import download_weights

    spec = get_spec(args.model)
    if not spec.needs_weights:
        print(f"{spec.name} needs no weights")
        return 0

    def progress(received: int, total: int | None) -> None:
        done = f"{received / 1e6:.0f} MB" + (f" of {total / 1e6:.0f} MB" if total else "")
        print(f"\r{spec.name}: {done}", end="", file=sys.stderr, flush=True)

    path = download_weights(spec, url=args.url, progress=progress)
    print(f"\n{spec.name}: saved to {path}")
    return 0
