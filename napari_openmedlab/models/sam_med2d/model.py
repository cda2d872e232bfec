"""The 2D SAM family as one network class: SAM-Med2D, SAM ViT-B and MedSAM.

``Sam2DModel`` holds ``image_encoder`` (ours, :mod:`.image_encoder`), ``prompt_encoder`` and
``mask_decoder`` (segment_anything's, loaded without torchvision by :mod:`.sam_modules`); its
state-dict keys are exactly those of the official checkpoints. Two levels of use:

* model frame: :meth:`Sam2DModel.embed` on a prepared ``(1, 3, S, S)`` tensor, then
  :meth:`Sam2DModel.decode` with prompts already in model-input coordinates;
* slice frame: :meth:`Sam2DModel.embed_slice` on a 0..255 slice (see
  :mod:`.preprocess`), then :meth:`Sam2DModel.predict_slice` with prompts in slice pixels; it
  returns logits on the slice grid, IoU scores and the low-res logits to feed back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from .checkpoint import load_weights
from .image_encoder import ImageEncoderViT, ViTConfig
from .preprocess import PREPROCESS_KINDS, SliceTransform, prepare_slice
from .sam_modules import MaskDecoder, PromptEncoder, TwoWayTransformer


@dataclass(frozen=True)
class Sam2DConfig:
    """Everything that fixes the network's shape, plus which preprocessing it expects."""

    name: str
    encoder: ViTConfig
    preprocess: str
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256

    def __post_init__(self) -> None:
        if self.preprocess not in PREPROCESS_KINDS:
            raise ValueError(f"preprocess must be one of {PREPROCESS_KINDS}, got {self.preprocess!r}")

    @property
    def img_size(self) -> int:
        return self.encoder.img_size

    @property
    def embedding_size(self) -> int:
        """Edge of the image embedding grid (16 for SAM-Med2D, 64 for SAM/MedSAM)."""
        return self.encoder.img_size // self.encoder.patch_size

    @property
    def low_res_size(self) -> int:
        """Edge of the decoder's logits and of a mask prompt (64 / 256)."""
        return 4 * self.embedding_size


_VIT_B = ViTConfig(
    img_size=1024,
    patch_size=16,
    embed_dim=768,
    depth=12,
    num_heads=12,
    mlp_ratio=4.0,
    out_chans=256,
    qkv_bias=True,
    use_rel_pos=True,
    window_size=14,
    global_attn_indexes=(2, 5, 8, 11),
)

SAM_MED2D = Sam2DConfig("sam-med2d", replace(_VIT_B, img_size=256, adapter=True), "sam-med2d")
"""Official SAM-Med2D (``sam-med2d_b.pth``): ViT-B at 256x256, adapters, window 14 (padded)."""
SAM_VIT_B = Sam2DConfig("sam-vit-b", _VIT_B, "sam")
"""Meta's SAM ViT-B (``sam_vit_b_01ec64.pth``)."""
MEDSAM = Sam2DConfig("medsam", _VIT_B, "medsam")
"""MedSAM (``medsam_vit_b.pth``): SAM ViT-B weights fine-tuned, MedSAM preprocessing."""

CONFIGS: dict[str, Sam2DConfig] = {c.name: c for c in (SAM_MED2D, SAM_VIT_B, MEDSAM)}


def small_config(
    name: str = "sam-med2d",
    *,
    embed_dim: int = 64,
    depth: int = 2,
    num_heads: int = 4,
    img_size: int | None = None,
    window_size: int | None = None,
    prompt_embed_dim: int = 32,
) -> Sam2DConfig:
    """A tiny variant of a known config (same structure, fewer/narrower layers) for tests.

    ``img_size`` defaults to 256 for SAM-Med2D and 128 for the others; block ``depth - 1`` is the
    global-attention one.
    """
    base = CONFIGS[name]
    size = img_size or (256 if name == "sam-med2d" else 128)
    enc = replace(
        base.encoder,
        img_size=size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        window_size=window_size if window_size is not None else base.encoder.window_size,
        global_attn_indexes=(depth - 1,),
    )
    return replace(
        base,
        encoder=enc,
        prompt_embed_dim=prompt_embed_dim,
        decoder_mlp_dim=4 * prompt_embed_dim,
        decoder_heads=4,
        iou_head_hidden_dim=prompt_embed_dim,
    )


@dataclass
class SliceEmbedding:
    """One slice's image embedding and the transform that put the slice in the model frame."""

    embedding: torch.Tensor  # (1, C, E, E) on the model's device
    transform: SliceTransform


@dataclass
class SlicePrediction:
    """Decoder output for one slice.

    Attributes:
        logits: ``(C, H, W)`` float32 logits on the slice grid (mask = logits > 0).
        iou: ``(C,)`` predicted IoU of each mask.
        low_res_logits: ``(1, C, L, L)`` tensor; ``low_res_logits[:, [i]]`` is the mask prompt
            for the next click (see :meth:`mask_prompt`).
    """

    logits: np.ndarray
    iou: np.ndarray
    low_res_logits: torch.Tensor

    def best_index(self) -> int:
        """The mask with the highest predicted IoU (SAM-Med2D's predictor keeps this one)."""
        return int(np.argmax(self.iou))

    def mask(self, index: int | None = None) -> np.ndarray:
        """Boolean ``(H, W)`` mask number ``index`` (default: the best one)."""
        return self.logits[self.best_index() if index is None else index] > 0.0

    def mask_prompt(self, index: int | None = None) -> torch.Tensor:
        """``(1, 1, L, L)`` low-res logits of one mask, to pass as ``mask_input`` next time."""
        i = self.best_index() if index is None else index
        return self.low_res_logits[:, i : i + 1]


def _as_tensor(x, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    t = x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))
    return t.to(device=device, dtype=dtype)


class Sam2DModel(nn.Module):
    """Image encoder + prompt encoder + mask decoder of one 2D SAM-family model."""

    mask_threshold = 0.0

    def __init__(self, config: Sam2DConfig) -> None:
        super().__init__()
        self.config = config
        e = config.embedding_size
        self.image_encoder = ImageEncoderViT(replace(config.encoder, out_chans=config.prompt_embed_dim))
        self.prompt_encoder = PromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(e, e),
            input_image_size=(config.img_size, config.img_size),
            mask_in_chans=config.mask_in_chans,
        )
        self.mask_decoder = MaskDecoder(
            num_multimask_outputs=config.num_multimask_outputs,
            transformer=TwoWayTransformer(
                depth=config.decoder_depth,
                embedding_dim=config.prompt_embed_dim,
                mlp_dim=config.decoder_mlp_dim,
                num_heads=config.decoder_heads,
            ),
            transformer_dim=config.prompt_embed_dim,
            iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        )

    @property
    def device(self) -> torch.device:
        return self.image_encoder.pos_embed.device

    @property
    def dtype(self) -> torch.dtype:
        return self.image_encoder.pos_embed.dtype

    # -------------------------------------------------------------- model frame

    @torch.inference_mode()
    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` prepared input -> ``(B, C, E, E)`` image embedding."""
        return self.image_encoder(image.to(self.device, self.dtype))

    @torch.inference_mode()
    def decode(
        self,
        embedding: torch.Tensor,
        *,
        point_coords=None,
        point_labels=None,
        boxes=None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts in model-input coordinates -> ``(low_res_logits (1, C, L, L), iou (1, C))``.

        Args:
            embedding: ``(1, C, E, E)`` from :meth:`embed`.
            point_coords: ``(N, 2)`` or ``(1, N, 2)`` ``(x, y)`` in the ``S x S`` input frame.
            point_labels: ``(N,)`` or ``(1, N)``: 1 positive, 0 negative (-1: padding point).
            boxes: ``(4,)`` or ``(1, 4)`` ``(x0, y0, x1, y1)`` in the input frame (one box).
            mask_input: ``(1, 1, L, L)`` low-res logits from an earlier call.
            multimask_output: three candidate masks (C=3) instead of one (C=1).
        """
        dev = self.device
        points = None
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_labels must come with point_coords")
            coords = _as_tensor(point_coords, torch.float32, dev).reshape(1, -1, 2)
            labels = _as_tensor(point_labels, torch.int64, dev).reshape(1, -1)
            if coords.shape[1] != labels.shape[1]:
                raise ValueError(f"{coords.shape[1]} points but {labels.shape[1]} labels")
            if coords.shape[1]:
                points = (coords, labels)
        box = None
        if boxes is not None:
            box = _as_tensor(boxes, torch.float32, dev).reshape(-1, 4)
            if box.shape[0] != 1:
                raise ValueError(f"one box per call; got {box.shape[0]}")
        mask = None
        if mask_input is not None:
            mask = _as_tensor(mask_input, self.dtype, dev)
            size = self.config.low_res_size
            if mask.shape != (1, 1, size, size):
                raise ValueError(f"mask_input must be (1, 1, {size}, {size}); got {tuple(mask.shape)}")
        sparse, dense = self.prompt_encoder(points=points, boxes=box, masks=mask)
        low_res, iou = self.mask_decoder(
            image_embeddings=embedding.to(dev),
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
        return low_res, iou

    # -------------------------------------------------------------- slice frame

    def embed_slice(self, slice2d: np.ndarray) -> SliceEmbedding:
        """A 0..255 slice (``(H, W)`` or ``(H, W, 3)``, see :mod:`.preprocess`) -> its embedding."""
        image, transform = prepare_slice(slice2d, self.config.preprocess, self.config.img_size)
        return SliceEmbedding(self.embed(image), transform)

    def predict_slice(
        self,
        emb: SliceEmbedding,
        *,
        points_xy=None,
        point_labels=None,
        box_xyxy=None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = False,
    ) -> SlicePrediction:
        """Prompts in slice pixels -> logits on the slice grid.

        ``points_xy`` is ``(N, 2)`` as ``(x, y) = (column, row)``; ``box_xyxy`` is
        ``(x0, y0, x1, y1)``; ``mask_input`` is a previous prediction's :meth:`~SlicePrediction.mask_prompt`.
        """
        tf = emb.transform
        coords = (
            tf.coords_to_input(np.asarray(points_xy, dtype=float).reshape(-1, 2))
            if points_xy is not None
            else None
        )
        box = tf.boxes_to_input(box_xyxy) if box_xyxy is not None else None
        low_res, iou = self.decode(
            emb.embedding,
            point_coords=coords,
            point_labels=point_labels,
            boxes=box,
            mask_input=mask_input,
            multimask_output=multimask_output,
        )
        with torch.inference_mode():
            logits = tf.logits_to_slice(low_res)[0]
        return SlicePrediction(logits.cpu().numpy(), iou[0].float().cpu().numpy(), low_res)


# ------------------------------------------------------------------ builders


def build_sam2d(
    config: Sam2DConfig | str,
    checkpoint: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    expected_sha256: str | None = None,
    device: str | torch.device = "cpu",
) -> Sam2DModel:
    """Build a model by name (``"sam-med2d"``, ``"sam-vit-b"``, ``"medsam"``) or config.

    With ``checkpoint`` its weights are read safely (see :mod:`.checkpoint`; through the
    safetensors cache in ``cache_dir`` when given) and must match exactly; without, the weights
    are random (tests, benchmarks). The model is returned in eval mode on ``device``.
    """
    cfg = CONFIGS[config] if isinstance(config, str) else config
    model = Sam2DModel(cfg)
    if checkpoint is not None:
        load_weights(model, checkpoint, cache_dir, expected_sha256=expected_sha256)
    return model.to(device).eval()


def build_sam_med2d(checkpoint=None, **kwargs) -> Sam2DModel:
    return build_sam2d(SAM_MED2D, checkpoint, **kwargs)


def build_sam_vit_b(checkpoint=None, **kwargs) -> Sam2DModel:
    return build_sam2d(SAM_VIT_B, checkpoint, **kwargs)


def build_medsam(checkpoint=None, **kwargs) -> Sam2DModel:
    return build_sam2d(MEDSAM, checkpoint, **kwargs)
