"""Choosing the torch device: ``auto`` takes CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def available_devices() -> list[str]:
    """Devices torch can use here, best first; always ends with ``cpu``."""
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return [*found, "cpu"]


def resolve_device(choice: str = "auto"):
    """A ``torch.device`` for ``choice``; asking for one that is not there is an error."""
    import torch

    if choice not in DEVICE_CHOICES and not choice.startswith("cuda:"):
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}; got {choice!r}")
    available = available_devices()
    if choice == "auto":
        return torch.device(available[0])
    if choice.split(":")[0] not in available:
        raise ValueError(f"device {choice!r} is not available here (available: {', '.join(available)})")
    return torch.device(choice)
