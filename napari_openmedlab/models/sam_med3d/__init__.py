"""Our implementation of the SAM-Med3D network (variant ``vit_b_ori``, as used by
``sam_med3d_turbo.pth``), with an exact padding-free image encoder.

Public API::

    from napari_openmedlab.models.sam_med3d import load_sam_med3d, build_sam_med3d
    model = load_sam_med3d("sam_med3d_turbo.pth", "cpu")   # -> Sam3D, eval mode
    emb = model.encode(crop)                               # (1, 1, 128^3) -> (1, 384, 8, 8, 8)
    logits = model.decode(emb, coords, labels, prev_logits_or_None)  # -> (1, 1, 32, 32, 32)

Point coordinates index axes 2, 3, 4 of the crop (see :mod:`.prompt_encoder`).
"""

from .checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    CheckpointReadError,
    check_state_dict,
    extract_state_dict,
    load_sam_med3d,
    read_state_dict,
)
from .image_encoder import ImageEncoderViT3D
from .mask_decoder import MaskDecoder3D
from .model import Sam3D, SamMed3DConfig, build_sam_med3d
from .prompt_encoder import PromptEncoder3D

__all__ = [
    "Sam3D",
    "SamMed3DConfig",
    "build_sam_med3d",
    "load_sam_med3d",
    "read_state_dict",
    "extract_state_dict",
    "check_state_dict",
    "CheckpointError",
    "CheckpointReadError",
    "CheckpointMismatchError",
    "ImageEncoderViT3D",
    "PromptEncoder3D",
    "MaskDecoder3D",
]
