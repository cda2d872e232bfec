"""Mask decoder of SAM-Med3D: image + prompt embeddings -> 32^3 low-res logits.

Shapes for the official configuration (``E = 384``): image embedding
``(B or 1, 384, 8, 8, 8)``, dense PE ``(1, 384, 8, 8, 8)``, sparse prompt tokens
``(B, Nt, 384)``, dense prompt embedding ``(B, 384, 8, 8, 8)``; output logits
``(B, 1, 32, 32, 32)`` (or ``(B, 3, ...)`` with ``multimask_output``) whose
axes 2, 3, 4 are the 128^3 input axes 2, 3, 4 downsampled by 4, and IoU
predictions ``(B, 1)`` (or ``(B, 3)``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .transformer import LayerNorm3d, TwoWayTransformer

__all__ = ["MLP", "MaskDecoder3D"]


class MLP(nn.Module):
    """``num_layers`` Linear layers (``layers.{i}``) with ReLU between them."""

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims[:-1], dims[1:]))
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return torch.sigmoid(x) if self.sigmoid_output else x


class MaskDecoder3D(nn.Module):
    """SAM-style mask decoder with a 2-layer :class:`TwoWayTransformer`.

    Parameters (official names): ``transformer``, ``iou_token`` ``(1, E)``,
    ``mask_tokens`` ``(num_multimask_outputs + 1, E)``, ``output_upscaling``
    (two stride-2 ``ConvTranspose3d``: ``E -> E/4 -> E/8``),
    ``output_hypernetworks_mlps`` (one 3-layer MLP ``E -> E/8`` per mask token)
    and ``iou_prediction_head``.
    """

    def __init__(
        self,
        transformer_dim: int = 384,
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        transformer_depth: int = 2,
        transformer_num_heads: int = 8,
        transformer_mlp_dim: int = 2048,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = TwoWayTransformer(
            depth=transformer_depth,
            embedding_dim=transformer_dim,
            num_heads=transformer_num_heads,
            mlp_dim=transformer_mlp_dim,
        )
        self.num_multimask_outputs = num_multimask_outputs
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose3d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm3d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose3d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predict masks.

        Args:
            image_embeddings: ``(B or 1, E, X, Y, Z)`` from the image encoder; a
                batch of 1 is repeated to the prompt batch size.
            image_pe: ``(1 or B, E, X, Y, Z)`` from ``prompt_encoder.get_dense_pe()``.
            sparse_prompt_embeddings: ``(B, Nt, E)``.
            dense_prompt_embeddings: ``(B, E, X, Y, Z)``.
            multimask_output: return the 3 ambiguity masks instead of the single one.

        Returns:
            ``(low_res_logits (B, 1 or 3, 4X, 4Y, 4Z), iou_pred (B, 1 or 3))``.
        """
        masks, iou_pred = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl], iou_pred[:, sl]

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All ``num_mask_tokens`` masks ``(B, 4, 4X, 4Y, 4Z)`` and IoUs ``(B, 4)``."""
        bsz = sparse_prompt_embeddings.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        out_tokens = out_tokens.unsqueeze(0).expand(bsz, -1, -1)
        tokens = torch.cat((out_tokens, sparse_prompt_embeddings), dim=1)

        src = image_embeddings
        if src.shape[0] != bsz:
            src = torch.repeat_interleave(src, bsz, dim=0)
        src = src + dense_prompt_embeddings
        pos = image_pe
        if pos.shape[0] != bsz:
            pos = torch.repeat_interleave(pos, bsz, dim=0)
        b, c, x, y, z = src.shape

        hs, keys = self.transformer(src, pos, tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]

        grid = keys.transpose(1, 2).reshape(b, c, x, y, z)
        upscaled = self.output_upscaling(grid)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )  # (B, num_mask_tokens, E/8)
        b, c2, ux, uy, uz = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c2, ux * uy * uz)).reshape(b, -1, ux, uy, uz)
        iou_pred = self.iou_prediction_head(iou_token_out)
        return masks, iou_pred
