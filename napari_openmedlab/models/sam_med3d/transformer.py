"""Shared layers and the two-way transformer of the SAM-Med3D mask decoder.

Contents
--------
* :class:`LayerNorm3d` - channel-first layer norm for ``(B, C, D, H, W)`` tensors.
* :class:`MLPBlock` - two-layer perceptron (``lin1`` -> act -> ``lin2``).
* :class:`DownscaleAttention` - multi-head attention whose q/k/v projections
  may shrink the channel dimension (``downsample_rate``).
* :class:`TwoWayAttentionBlock` and :class:`TwoWayTransformer` - the
  token <-> image transformer used by :class:`~.mask_decoder.MaskDecoder3D`.

Parameter names (``lin1``, ``q_proj``, ``norm_final_attn`` ...) follow the
official SAM-Med3D state dict so that checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "LayerNorm3d",
    "MLPBlock",
    "DownscaleAttention",
    "TwoWayAttentionBlock",
    "TwoWayTransformer",
]


class LayerNorm3d(nn.Module):
    """Layer norm over the channel axis of a ``(B, C, D, H, W)`` tensor.

    Uses the biased variance and ``eps`` inside the square root, like the
    official implementation. Parameters: ``weight`` and ``bias`` of shape ``(C,)``.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        centred = x - mean
        var = centred.pow(2).mean(dim=1, keepdim=True)
        normed = centred / torch.sqrt(var + self.eps)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return normed * self.weight.view(shape) + self.bias.view(shape)


class MLPBlock(nn.Module):
    """``lin2(act(lin1(x)))`` acting on the last axis: ``(..., dim) -> (..., dim)``."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class DownscaleAttention(nn.Module):
    """Multi-head attention with an optional reduced internal width.

    ``q``: ``(B, Nq, E)``, ``k`` and ``v``: ``(B, Nk, E)`` -> ``(B, Nq, E)``.
    The projections map ``E -> E // downsample_rate`` which is split over
    ``num_heads`` heads; the softmax scale is ``1 / sqrt(head_dim)``.
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError("num_heads must divide embedding_dim // downsample_rate")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        qh = self._heads(self.q_proj(q))
        kh = self._heads(self.k_proj(k))
        vh = self._heads(self.v_proj(v))
        head_dim = qh.shape[-1]
        logits = (qh @ kh.transpose(-1, -2)) / math.sqrt(head_dim)
        out = torch.softmax(logits, dim=-1) @ vh  # (B, heads, Nq, head_dim)
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, self.internal_dim))


class TwoWayAttentionBlock(nn.Module):
    """One layer of the two-way transformer.

    Four steps: (1) self-attention of the sparse tokens, (2) tokens attend to
    the image, (3) MLP on tokens, (4) image attends to the tokens. Every step is
    followed by a residual add and a LayerNorm (``norm1`` .. ``norm4``).
    Positional encodings are added to queries/keys (not to values); the first
    layer skips the PE in its self-attention and *replaces* the tokens by the
    attention output (no residual) - an official quirk kept as is.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = DownscaleAttention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = DownscaleAttention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = DownscaleAttention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``queries``/``query_pe``: ``(B, Nt, E)``; ``keys``/``key_pe``: ``(B, Ni, E)``."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        q = queries + query_pe
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))

        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        k = keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Transformer that lets prompt tokens and image tokens attend to each other.

    Parameters live under ``layers.{i}``, ``final_attn_token_to_image`` and
    ``norm_final_attn`` (official key names).
    """

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = DownscaleAttention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self,
        image_embedding: torch.Tensor,
        image_pe: torch.Tensor,
        point_embedding: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the transformer.

        Args:
            image_embedding: ``(B, E, X, Y, Z)`` image tokens (dense prompt added).
            image_pe: ``(B, E, X, Y, Z)`` positional encoding of the image tokens.
            point_embedding: ``(B, Nt, E)`` output tokens + sparse prompt tokens.

        Returns:
            ``(queries, keys)``: processed tokens ``(B, Nt, E)`` and processed
            image tokens ``(B, X*Y*Z, E)`` flattened in C order over ``(X, Y, Z)``.
        """
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        q = queries + point_embedding
        k = keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys
