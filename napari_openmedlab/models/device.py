"""Choosing the torch device: ``auto`` takes CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


class DeviceError(ValueError):
    """The requested device is not a device name, or not available on this machine."""


def check_device(choice: str) -> str:
    """Refuse a device name that is not one, or one not here; ``auto``/``cpu`` need no torch import."""
    if not isinstance(choice, str) or (choice not in DEVICE_CHOICES and not _is_cuda_index(choice)):
        raise DeviceError(f"device must be one of {', '.join(DEVICE_CHOICES)} or cuda:N; got {choice!r}")
    if choice not in ("auto", "cpu"):
        resolve_device(choice)
    return choice


def _is_cuda_index(choice: str) -> bool:
    return choice.startswith("cuda:") and choice[5:].isdigit()


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

    if choice not in DEVICE_CHOICES and not _is_cuda_index(choice):
        raise DeviceError(f"device must be one of {', '.join(DEVICE_CHOICES)} or cuda:N; got {choice!r}")
    available = available_devices()
    if choice == "auto":
        return torch.device(available[0])
    if choice.split(":")[0] not in available:
        raise DeviceError(f"device {choice!r} is not available here (available: {', '.join(available)})")
    if _is_cuda_index(choice) and int(choice[5:]) >= torch.cuda.device_count():
        raise DeviceError(f"device {choice!r} is not available here ({torch.cuda.device_count()} CUDA devices)")
    return torch.device(choice)
