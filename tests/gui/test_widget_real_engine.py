"""The real SAM-Med3D engine (with a tiny stand-in network, no weights) driven by the widget."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def _fake_sam3d():
    """A network with SAM-Med3D's call signatures: thresholds the pooled normalised crop."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Encoder(nn.Module):
        def forward(self, x):
            return F.max_pool3d(x, 4)

    class PromptEncoder(nn.Module):
        def forward(self, points, boxes, masks):
            coords, _ = points
            return coords.new_zeros(1, coords.shape[1] + 1, 4), masks

        def get_dense_pe(self):
            return torch.zeros(1, 1, 32, 32, 32)

    class Decoder(nn.Module):
        def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings):
            return 10 * (image_embeddings - 1.0), torch.ones(1, 1)

    class FakeSam3D(nn.Module):
        def __init__(self):
            super().__init__()
            self.image_encoder = Encoder()
            self.prompt_encoder = PromptEncoder()
            self.mask_decoder = Decoder()

    return FakeSam3D()


def test_sam_med3d_engine_through_the_widget(make_widget, tmp_path):
    from napari_openmedlab._widgets.worker import guard_triton

    guard_triton()  # torch after an OpenGL context (see guard_triton); the loader does it too
    pytest.importorskip("torch")
    from napari_openmedlab.engines.sam_med3d import SamMed3DEngine

    viewer, w = make_widget()
    (tmp_path / "cache" / "sam_med3d_turbo.pth").write_bytes(b"stand-in")
    w.engine_factory = lambda name, checkpoint=None, device="auto": SamMed3DEngine(_fake_sam3d(), "cpu")
    assert w.set_model("sam-med3d-turbo", device="cpu")
    assert w.wait_for_prediction(60) and isinstance(w.runner.engine, SamMed3DEngine)
    assert not w.box_button.isEnabled()
    w.add_point_voxel((12, 32, 34))  # the bright ball
    assert w.wait_for_prediction(60)
    assert "encoder" in w.status_text and "decoder" in w.status_text
    preview = w.session.preview_layer.data
    ball = w.session.volume.array == 400
    assert preview[12, 32, 34] == 1
    assert (preview.astype(bool) & ball).sum() / ball.sum() > 0.5
    w.add_point_voxel((12, 16, 16), positive=False)  # a second click reuses the crop's embedding
    assert w.wait_for_prediction(60) and w.runner.engine.encoder_calls <= 2
    record = w.commit()
    assert record["model"] == "sam-med3d-turbo" and record["device"] == "cpu"
    assert (w.session.labels_layer.data == 1).sum() == record["voxels_changed"] > 0
    np.testing.assert_array_equal(w.session.points_layer.data.shape, (0, 3))
