"""Fixtures shared by the engine tests."""

from __future__ import annotations

import pytest

from napari_openmedlab.io import Volume, read_volume


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: on tiny tensors, thread start-up and contention with other
    processes dominate otherwise. Use with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ct(shared_data) -> Volume:
    """The shared NIfTI CT (122 x 101 x 30, 3 mm)."""
    return read_volume(shared_data / "totalseg-ct" / "ct.nii.gz")
