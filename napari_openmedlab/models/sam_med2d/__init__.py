"""2D SAM family (SAM-Med2D, SAM ViT-B, MedSAM): network, safe checkpoint reading, preprocessing.

Typical use for one slice::

    from napari_openmedlab.models.sam_med2d import build_sam2d, intensity_bounds, to_uint8

    model = build_sam2d("sam-med2d", "sam-med2d_b.pth", cache_dir=cache)   # eval, CPU
    bounds = intensity_bounds(volume, "CT", "soft_tissue")                  # once per volume
    emb = model.embed_slice(to_uint8(volume[z], bounds))                    # slow step
    pred = model.predict_slice(emb, points_xy=[[x, y]], point_labels=[1], multimask_output=True)
    mask = pred.mask()                                                       # best by IoU
    pred = model.predict_slice(emb, points_xy=..., point_labels=..., mask_input=pred.mask_prompt())
"""

from ..errors import CheckpointError, CheckpointMismatchError, UnsafeCheckpointError
from .checkpoint import (
    check_state_dict,
    convert_to_safetensors,
    converted_paths,
    load_state_dict,
    load_weights,
    read_checkpoint_globals,
    read_state_dict,
    sha256_file,
)
from .image_encoder import ImageEncoderViT, ViTConfig
from .model import (
    CONFIGS,
    MEDSAM,
    SAM_MED2D,
    SAM_VIT_B,
    Sam2DConfig,
    Sam2DModel,
    SliceEmbedding,
    SlicePrediction,
    build_medsam,
    build_sam2d,
    build_sam_med2d,
    build_sam_vit_b,
    small_config,
)
from .preprocess import (
    CT_WINDOWS,
    MRI_PERCENTILES,
    SAM_PIXEL_MEAN,
    SAM_PIXEL_STD,
    SliceTransform,
    ct_window_bounds,
    intensity_bounds,
    percentile_bounds,
    prepare_slice,
    preprocess_shape,
    to_uint8,
)

__all__ = [
    "CONFIGS",
    "CT_WINDOWS",
    "MEDSAM",
    "MRI_PERCENTILES",
    "SAM_MED2D",
    "SAM_PIXEL_MEAN",
    "SAM_PIXEL_STD",
    "SAM_VIT_B",
    "CheckpointError",
    "CheckpointMismatchError",
    "ImageEncoderViT",
    "Sam2DConfig",
    "Sam2DModel",
    "SliceEmbedding",
    "SlicePrediction",
    "SliceTransform",
    "UnsafeCheckpointError",
    "ViTConfig",
    "build_medsam",
    "build_sam2d",
    "build_sam_med2d",
    "build_sam_vit_b",
    "check_state_dict",
    "convert_to_safetensors",
    "converted_paths",
    "ct_window_bounds",
    "intensity_bounds",
    "load_state_dict",
    "load_weights",
    "percentile_bounds",
    "prepare_slice",
    "preprocess_shape",
    "read_checkpoint_globals",
    "read_state_dict",
    "sha256_file",
    "small_config",
    "to_uint8",
]
