"""Prompt encoder of SAM-Med3D: points and low-res masks -> token / dense embeddings.

Coordinate convention (IMPORTANT for callers)
---------------------------------------------
A point is ``(c0, c1, c2)`` in voxel units of the 128^3 model input, where
``c0``, ``c1``, ``c2`` index axes 2, 3, 4 of the ``(B, 1, 128, 128, 128)`` image
tensor given to the image encoder (i.e. axes 0, 1, 2 of the crop), exactly the
order ``torch.argwhere(crop)`` returns. This is how the official training
(``utils/click_method.py``: ``argwhere`` on ``(B, 1, D, H, W)`` masks, then
``point[1:]``) and inference (``random_sample_next_click``) build clicks.
Integer voxel indices are expected; ``+0.5`` (voxel centre) is added internally.
Labels: ``1`` positive, ``0`` negative, ``-1`` "not a point" (padding).

Official quirks kept on purpose
-------------------------------
* The Fourier features are ``[sin, cos, sin]`` of ``2 pi (2 p - 1) G`` with a
  ``(3, embed_dim // 3)`` Gaussian matrix ``G`` (``sin`` appears twice).
* :meth:`PromptEncoder3D.get_dense_pe` feeds grid cell ``(i, j, k)`` as the
  normalised point ``((j + .5) / X, (i + .5) / Y, (k + .5) / Z)`` - the first two
  axes are swapped relative to the point encoding (``(X, Y, Z)`` = embedding
  size, all 8 here). Points are NOT swapped; the model was trained this way.
* Without boxes, one padding point (label -1) is appended, so ``N`` points give
  ``N + 1`` sparse tokens. Boxes are not supported by SAM-Med3D (the official
  code would index missing embeddings) and raise ``NotImplementedError``.
* ``masks=None`` yields the learned ``no_mask_embed``. Official inference and
  training, however, never pass ``None``: before the first click they pass an
  all-zero ``(B, 1, 32, 32, 32)`` logit volume through ``mask_downscaling``.
  :meth:`.model.Sam3D.decode` mirrors that.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .transformer import LayerNorm3d

__all__ = ["PositionEmbeddingRandom3D", "PromptEncoder3D"]


class PositionEmbeddingRandom3D(nn.Module):
    """Random Fourier features; buffer ``positional_encoding_gaussian_matrix`` ``(3, F)``.

    Output width is ``3 * F`` (``[sin, cos, sin]``).
    """

    def __init__(self, num_pos_feats: int = 128, scale: float | None = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer(
            "positional_encoding_gaussian_matrix", scale * torch.randn((3, num_pos_feats))
        )

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """``(..., 3)`` coordinates in ``[0, 1]`` -> ``(..., 3F)`` features."""
        proj = (2 * coords - 1) @ self.positional_encoding_gaussian_matrix
        proj = 2 * math.pi * proj
        sin = torch.sin(proj)
        return torch.cat([sin, torch.cos(proj), sin], dim=-1)

    def forward(self, size: tuple[int, int, int]) -> torch.Tensor:
        """Dense encoding of a ``(X, Y, Z)`` grid -> ``(3F, X, Y, Z)`` (axis quirk, see module)."""
        x, y, z = size
        gm = self.positional_encoding_gaussian_matrix
        ones = torch.ones((x, y, z), device=gm.device, dtype=torch.float32)
        along0 = (ones.cumsum(dim=0) - 0.5) / y
        along1 = (ones.cumsum(dim=1) - 0.5) / x
        along2 = (ones.cumsum(dim=2) - 0.5) / z
        pe = self._pe_encoding(torch.stack([along1, along0, along2], dim=-1))
        return pe.permute(3, 0, 1, 2)

    def forward_with_coords(
        self, coords: torch.Tensor, image_size: tuple[int, int, int]
    ) -> torch.Tensor:
        """``(B, N, 3)`` voxel coordinates -> ``(B, N, 3F)``; column ``i`` is divided by ``image_size[i]``."""
        scale = torch.tensor(image_size, dtype=torch.float32, device=coords.device)
        return self._pe_encoding(coords.to(torch.float32) / scale)


class PromptEncoder3D(nn.Module):
    """Encodes point and mask prompts (official key names and shapes).

    Args:
        embed_dim: token width (384).
        image_embedding_size: ``(8, 8, 8)`` grid of the image embedding.
        input_image_size: ``(128, 128, 128)`` model input size (point units).
        mask_in_chans: hidden channels of ``mask_downscaling`` (16).
    """

    def __init__(
        self,
        embed_dim: int = 384,
        image_embedding_size: tuple[int, int, int] = (8, 8, 8),
        input_image_size: tuple[int, int, int] = (128, 128, 128),
        mask_in_chans: int = 16,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = tuple(input_image_size)
        self.image_embedding_size = tuple(image_embedding_size)
        self.pe_layer = PositionEmbeddingRandom3D(embed_dim // 3)
        self.num_point_embeddings = 2  # negative (0) / positive (1)
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings)
        )
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = tuple(4 * s for s in image_embedding_size)
        self.mask_downscaling = nn.Sequential(
            nn.Conv3d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm3d(mask_in_chans // 4),
            activation(),
            nn.Conv3d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm3d(mask_in_chans),
            activation(),
            nn.Conv3d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image tokens: ``(1, embed_dim, 8, 8, 8)``."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """``(B, N, 3)`` voxel coords + ``(B, N)`` labels -> ``(B, N + pad, E)``."""
        coords = coords.to(torch.float32) + 0.5
        if pad:
            bsz = coords.shape[0]
            coords = torch.cat([coords, coords.new_zeros((bsz, 1, 3))], dim=1)
            labels = torch.cat([labels, -torch.ones_like(labels[:, :1])], dim=1)
        emb = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        lab = labels[..., None]
        emb = torch.where(lab == -1, self.not_a_point_embed.weight.to(emb.dtype), emb)
        emb = emb + (lab == 0).to(emb.dtype) * self.point_embeddings[0].weight
        emb = emb + (lab == 1).to(emb.dtype) * self.point_embeddings[1].weight
        return emb

    def _batch_size(self, points, masks) -> int:
        if points is not None:
            return points[0].shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed prompts.

        Args:
            points: ``(coords (B, N, 3), labels (B, N))`` or ``None``; coordinate
                order as in the module docstring.
            boxes: must be ``None`` (unsupported by SAM-Med3D).
            masks: ``(B, 1, 32, 32, 32)`` previous low-res *logits*, or ``None``
                to use ``no_mask_embed``.

        Returns:
            ``sparse``: ``(B, N + 1, E)`` (``(B, 0, E)`` without points) and
            ``dense``: ``(B, E, 8, 8, 8)``.
        """
        if boxes is not None:
            raise NotImplementedError("SAM-Med3D has no box prompt embeddings")
        bsz = self._batch_size(points, masks)
        device = self.no_mask_embed.weight.device
        if points is not None:
            coords, labels = points
            sparse = self._embed_points(coords, labels, pad=True)
        else:
            sparse = torch.empty((bsz, 0, self.embed_dim), device=device)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1, 1).expand(
                bsz, -1, *self.image_embedding_size
            )
        return sparse, dense
