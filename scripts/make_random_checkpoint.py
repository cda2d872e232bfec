"""Write a random-initialised checkpoint in a model's official file format (for demos and tests).

    python scripts/make_random_checkpoint.py sam-med3d-turbo /tmp/sam_med3d_turbo.pth
    python scripts/make_random_checkpoint.py sam-med2d /tmp/sam-med2d_b.pth

SAM-Med3D: ``{"model_state_dict": ...}``; SAM-Med2D: ``{"model": ..., "optimizer": <pickled Adam>}``
exactly as the official training code saves them; SAM ViT-B / MedSAM: a bare state dict.
"""

from __future__ import annotations

import sys

import torch


def make(name: str, path: str, seed: int = 0) -> None:
    torch.manual_seed(seed)
    if name == "sam-med3d-turbo":
        from napari_openmedlab.models.sam_med3d import build_sam_med3d

        torch.save({"model_state_dict": build_sam_med3d().state_dict()}, path)
        return
    from napari_openmedlab.models.sam_med2d.model import CONFIGS, build_sam2d

    network = build_sam2d(CONFIGS[name])
    if name == "sam-med2d":
        optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
        torch.save({"model": network.state_dict(), "optimizer": optimizer, "epoch": 0}, path)
    else:
        torch.save(network.state_dict(), path)


if __name__ == "__main__":
    make(sys.argv[1], sys.argv[2])
    print(f"wrote {sys.argv[2]}")
