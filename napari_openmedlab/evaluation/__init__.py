"""Evaluation: metrics, simulated clicks, the SAM-Med3D protocol and a runner (no napari, no Qt).

Submodules are imported lazily by their users; this package itself only re-exports the small,
dependency-free pieces.
"""

from .clicks import Click, ClickSimulator
from .metrics import dice, hausdorff, nsd, surface_distances

__all__ = ["Click", "ClickSimulator", "dice", "hausdorff", "nsd", "surface_distances"]
