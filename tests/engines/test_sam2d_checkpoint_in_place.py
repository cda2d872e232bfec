"""A local SAM-Med2D checkpoint is read in place: no silent converted copy in the cache."""

from __future__ import annotations

import logging

import pytest

torch = pytest.importorskip("torch")

from napari_openmedlab.engines.sam2d import CONVERT_ENV, Sam2DEngine  # noqa: E402
from napari_openmedlab.models.registry import get_spec  # noqa: E402


@pytest.fixture(scope="module")
def official_style_checkpoint(tmp_path_factory):
    """A random small SAM-Med2D saved like the official file: {"model": ..., "optimizer": Adam}."""
    from napari_openmedlab.models.sam_med2d import build_sam2d, small_config

    torch.manual_seed(0)
    config = small_config("sam-med2d")
    network = build_sam2d(config)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    path = tmp_path_factory.mktemp("weights") / "sam-med2d_b.pth"
    torch.save({"model": network.state_dict(), "optimizer": optimizer, "epoch": 3}, path)
    return path, config, network


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_loading_writes_nothing_by_default(official_style_checkpoint, tmp_path, monkeypatch):
    path, config, network = official_style_checkpoint
    cache = tmp_path / "cache"
    monkeypatch.setenv("OPENMEDLAB_CACHE_DIR", str(cache))
    monkeypatch.delenv(CONVERT_ENV, raising=False)
    before = sorted(path.parent.iterdir())
    engine = Sam2DEngine.from_checkpoint(get_spec("sam-med2d"), path, device="cpu", config=config)
    assert _files(cache) == [] and sorted(path.parent.iterdir()) == before
    loaded = engine.network.state_dict()
    for key, value in network.state_dict().items():
        torch.testing.assert_close(loaded[key], value)


def test_a_copy_only_on_request_and_never_silently(official_style_checkpoint, tmp_path, monkeypatch, caplog):
    path, config, _ = official_style_checkpoint
    cache = tmp_path / "cache"
    monkeypatch.setenv("OPENMEDLAB_CACHE_DIR", str(cache))
    monkeypatch.setenv(CONVERT_ENV, "1")
    with caplog.at_level(logging.WARNING, logger="napari_openmedlab.engines.sam2d"):
        Sam2DEngine.from_checkpoint(get_spec("sam-med2d"), path, device="cpu", config=config)
    copy = cache / "safetensors" / "sam-med2d_b.pth.safetensors"
    assert copy.is_file()
    message = caplog.text
    assert str(copy) in message and "MB" in message and CONVERT_ENV in message
