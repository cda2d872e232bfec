"""Under --protocol sam-med3d the SAM-Med3D engine sees exactly the official ROI as its one crop."""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from napari_openmedlab.engines import Prompts
from napari_openmedlab.engines.sam_med3d import SamMed3DEngine, zscore_positive
from napari_openmedlab.evaluation.protocol_sam_med3d import prepare_roi
from napari_openmedlab.io import read_volume


class _Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return F.avg_pool3d(x, 4)


class _Prompt(nn.Module):
    def forward(self, points, boxes, masks):
        return points[0].new_zeros(1, points[0].shape[1] + 1, 4), masks

    def get_dense_pe(self):
        return torch.zeros(1, 1, 32, 32, 32)


class _Decoder(nn.Module):
    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings):
        return image_embeddings - 0.5, torch.ones(1, 1)


class _Fake(nn.Module):
    def __init__(self):
        super().__init__()
        self.image_encoder, self.prompt_encoder, self.mask_decoder = _Recorder(), _Prompt(), _Decoder()


def test_roi_is_the_single_crop(shared_data):
    ct = read_volume(shared_data / "totalseg-ct" / "ct.nii.gz")
    seg = read_volume(shared_data / "totalseg-ct" / "seg.nii.gz")
    roi = prepare_roi(ct, seg, 5)  # liver
    assert roi.image.shape == (128, 128, 128)
    engine = SamMed3DEngine(_Fake(), "cpu", max_extra_crops=0)
    engine.set_volume(roi.image)
    engine.first_crop_box = ((0, 0, 0), roi.image.shape)
    click = np.argwhere(roi.label > 0)[0]
    prediction = engine.predict(Prompts([click], [1]))
    assert prediction.shape == roi.image.shape
    (seen,) = engine.model.image_encoder.inputs
    # the crop tensor is (x, y, z) like TorchIO's; our ROI volume is (z, y, x)
    expected = zscore_positive(torch.from_numpy(roi.image.array.transpose(2, 1, 0).astype(np.float32))[None, None])
    np.testing.assert_allclose(seen.numpy(), expected.numpy(), atol=1e-4)
