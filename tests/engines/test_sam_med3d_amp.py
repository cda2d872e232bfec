"""Mixed precision (fp16 autocast) on CUDA stays off unless the masks agree with fp32 (Dice >= 0.99).

This test runs only where CUDA is available (skipped on CPU machines and in CI): it is the check
that justified offering ``amp=True`` as an option.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_openmedlab.engines import Prompts
from napari_openmedlab.engines.sam_med3d import SamMed3DEngine
from napari_openmedlab.io import read_volume
from napari_openmedlab.models.sam_med3d import build_sam_med3d

CT = Path(__file__).resolve().parents[2] / "napari_openmedlab" / "sample_data" / "ct.nii.gz"
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


def test_amp_masks_agree_with_fp32():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    volume = read_volume(CT)
    clicks = [((15, 50, 40), 1), ((15, 60, 60), 0), ((12, 45, 35), 1)]
    dices = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        model = build_sam_med3d()
        state = {k: v.clone() for k, v in model.state_dict().items()}
        masks = {}
        for amp in (False, True):
            model.load_state_dict(state)
            engine = SamMed3DEngine(model, "cuda", amp=amp)
            engine.set_volume(volume)
            prompts = Prompts()
            out = []
            for zyx, positive in clicks:
                prompts = prompts.add_point(zyx, bool(positive))
                out.append(engine.predict(prompts).to_mask())
            masks[amp] = out
        for fp32, half in zip(masks[False], masks[True]):
            dices.append(_dice(fp32, half) if (fp32.any() or half.any()) else 1.0)
    print("fp16 vs fp32 Dice per click:", np.round(dices, 5))
    assert min(dices) >= 0.99
