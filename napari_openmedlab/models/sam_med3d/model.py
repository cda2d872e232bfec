"""The SAM-Med3D network container (:class:`Sam3D`) and its builder.

Typical interactive use (what official inference does per click)::

    model = load_sam_med3d("sam_med3d_turbo.pth", "cpu")
    with torch.inference_mode():
        emb = model.encode(crop)               # crop: (1, 1, 128, 128, 128), z-normalised
        logits = model.decode(emb, coords, labels)          # first click: no mask
        logits = model.decode(emb, coords2, labels2, logits)  # later clicks: previous logits

``coords`` ``(B, N, 3)`` hold ALL clicks so far (official inference accumulates
them) as voxel indices along axes 2, 3, 4 of ``crop``; ``labels`` ``(B, N)`` are
1 (positive) / 0 (negative). ``logits`` are ``(B, 1, 32, 32, 32)``; upsample
them trilinearly (``align_corners=False``) to 128^3 and take ``torch.sigmoid(x) > 0.5`` in
float32 to obtain the mask, as the official code does (not ``x > 0``: for 0 < x <= ~6e-8 the
sigmoid rounds to 0.5; see ``engines.sam_med3d.official_threshold``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .image_encoder import ImageEncoderViT3D
from .mask_decoder import MaskDecoder3D
from .prompt_encoder import PromptEncoder3D

__all__ = ["SamMed3DConfig", "Sam3D", "build_sam_med3d"]


@dataclass(frozen=True)
class SamMed3DConfig:
    """Hyper-parameters; the defaults are the official ``vit_b_ori`` variant
    (``sam_med3d_turbo.pth``). Smaller values are only meant for fast tests."""

    img_size: int = 128
    patch_size: int = 16
    in_chans: int = 1
    encoder_embed_dim: int = 768
    encoder_depth: int = 12
    encoder_num_heads: int = 12
    encoder_global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    mlp_ratio: float = 4.0
    prompt_embed_dim: int = 384
    mask_in_chans: int = 16
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048

    @property
    def embedding_size(self) -> int:
        """Side of the image-embedding grid (8)."""
        return self.img_size // self.patch_size


class Sam3D(nn.Module):
    """SAM-Med3D: ``image_encoder``, ``prompt_encoder`` and ``mask_decoder``.

    The submodules keep the official interfaces and state-dict names, so the
    official checkpoint loads with ``strict=True``. The official model also
    holds unused, non-persistent ``pixel_mean``/``pixel_std`` buffers; they are
    omitted (inputs are z-normalised by the caller).
    """

    mask_threshold: float = 0.0

    def __init__(self, config: SamMed3DConfig = SamMed3DConfig(), fast_encoder: bool = True) -> None:
        super().__init__()
        cfg = config
        self.config = cfg
        grid = cfg.embedding_size
        self.image_encoder = ImageEncoderViT3D(
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            in_chans=cfg.in_chans,
            embed_dim=cfg.encoder_embed_dim,
            depth=cfg.encoder_depth,
            num_heads=cfg.encoder_num_heads,
            mlp_ratio=cfg.mlp_ratio,
            out_chans=cfg.prompt_embed_dim,
            window_size=cfg.window_size,
            global_attn_indexes=cfg.encoder_global_attn_indexes,
            fast=fast_encoder,
        )
        self.prompt_encoder = PromptEncoder3D(
            embed_dim=cfg.prompt_embed_dim,
            image_embedding_size=(grid, grid, grid),
            input_image_size=(cfg.img_size,) * 3,
            mask_in_chans=cfg.mask_in_chans,
        )
        self.mask_decoder = MaskDecoder3D(
            transformer_dim=cfg.prompt_embed_dim,
            num_multimask_outputs=cfg.num_multimask_outputs,
            iou_head_depth=cfg.iou_head_depth,
            iou_head_hidden_dim=cfg.iou_head_hidden_dim,
            transformer_depth=cfg.decoder_depth,
            transformer_num_heads=cfg.decoder_num_heads,
            transformer_mlp_dim=cfg.decoder_mlp_dim,
        )

    @property
    def fast_encoder(self) -> bool:
        """Whether :meth:`encode` uses the exact padding-free attention (default True)."""
        return self.image_encoder.fast

    @fast_encoder.setter
    def fast_encoder(self, value: bool) -> None:
        self.image_encoder.fast = bool(value)

    @property
    def img_size(self) -> int:
        """Side of the cubic model input (128)."""
        return self.config.img_size

    @property
    def low_res_size(self) -> int:
        """Side of the low-res logit volume (32)."""
        return 4 * self.config.embedding_size

    @property
    def device(self) -> torch.device:
        return self.mask_decoder.iou_token.weight.device

    def encode(self, image: torch.Tensor, fast: bool | None = None) -> torch.Tensor:
        """``(B, 1, 128, 128, 128)`` normalised crop -> ``(B, 384, 8, 8, 8)`` embedding."""
        return self.image_encoder(image, fast=fast)

    def decode(
        self,
        image_embedding: torch.Tensor,
        coords: torch.Tensor | None,
        labels: torch.Tensor | None,
        mask_logits: torch.Tensor | None = None,
        multimask_output: bool = False,
        return_iou: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """One official inference step: prompt encoder + mask decoder.

        Args:
            image_embedding: ``(B or 1, 384, 8, 8, 8)`` from :meth:`encode`.
            coords: ``(B, N, 3)`` voxel coordinates of all clicks so far, in the
                order of axes 2, 3, 4 of the encoded crop; ``None`` for no points.
            labels: ``(B, N)``: 1 positive, 0 negative.
            mask_logits: ``(B, 1, 32, 32, 32)`` low-res logits of the previous
                step, or ``None`` before the first click. ``None`` is replaced by
                an all-zero logit volume fed through ``mask_downscaling`` - this is
                what official SAM-Med3D inference (``sam_model_infer``) and
                training do; the ``no_mask_embed`` path is never used there.
            multimask_output: return 3 masks instead of 1.
            return_iou: also return the IoU predictions.

        Returns:
            ``low_res_logits`` ``(B, 1, 32, 32, 32)`` (and ``iou_pred`` ``(B, 1)``).
        """
        points = None
        if coords is not None:
            if labels is None:
                raise ValueError("labels are required with coords")
            coords = torch.as_tensor(coords, device=image_embedding.device)
            labels = torch.as_tensor(labels, device=image_embedding.device)
            if coords.dim() == 2:
                coords, labels = coords.unsqueeze(0), labels.reshape(1, -1)
            points = (coords, labels)
            bsz = coords.shape[0]
        else:
            bsz = image_embedding.shape[0]
        if mask_logits is None:
            side = self.low_res_size
            mask_logits = image_embedding.new_zeros((bsz, 1, side, side, side))
        sparse, dense = self.prompt_encoder(points=points, boxes=None, masks=mask_logits)
        logits, iou = self.mask_decoder(
            image_embeddings=image_embedding,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )
        return (logits, iou) if return_iou else logits


def build_sam_med3d(
    config: SamMed3DConfig | None = None,
    *,
    fast_encoder: bool = True,
    device: str | torch.device | None = None,
) -> Sam3D:
    """Build a randomly initialised :class:`Sam3D` (default: official ``vit_b_ori``) in eval mode."""
    model = Sam3D(config or SamMed3DConfig(), fast_encoder=fast_encoder)
    if device is not None:
        model = model.to(device)
    return model.eval()
