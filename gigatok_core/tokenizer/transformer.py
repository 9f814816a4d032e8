"""Attention and the two transformer layer types of the tokenizer ViTs.

See docs/tokenizer.md#encoder, #the-2d-variants. Parameter names are those of ``torch.nn.MultiheadAttention``
(``in_proj_weight`` packing q, k, v; ``out_proj``) and of the official layers
(``self_attn``, ``multihead_attn``, ``linear1/2``, ``norm1/2/3``), so checkpoints load unchanged.
The computation is ours: batch-first tensors (B, L, C) and ``scaled_dot_product_attention``.
Positional embeddings are added to queries and keys, never to values (DETR,
https://arxiv.org/abs/2005.12872).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

LN_EPS = 1e-5


def layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=LN_EPS)


class Attention(nn.Module):
    """Multi-head attention with ``nn.MultiheadAttention``'s parameters, computed with SDPA."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def _proj(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Rows [start*C, stop*C) of the packed projection applied to x (B, L, C)."""
        c = self.in_proj_weight.shape[1]
        return F.linear(x, self.in_proj_weight[start * c : stop * c], self.in_proj_bias[start * c : stop * c])

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = (rearrange(t, "b l (h d) -> b h l d", h=self.heads) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        return self.out_proj(rearrange(out, "b h l d -> b l (h d)"))

    def self_attention(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        """q = k = x + pos, v = x.  x (B, L, C), pos broadcastable to it."""
        if pos is None:
            q, k, v = self._proj(x, 0, 3).chunk(3, dim=-1)
        else:
            q, k = self._proj(x + pos, 0, 2).chunk(2, dim=-1)
            v = self._proj(x, 2, 3)
        return self._attend(q, k, v)

    def cross_attention(
        self, x: torch.Tensor, query_pos: torch.Tensor | None, memory: torch.Tensor, pos: torch.Tensor | None
    ) -> torch.Tensor:
        """q = x + query_pos, k = memory + pos, v = memory.  x (B, Lq, C), memory (B, Lk, C)."""
        q = self._proj(x if query_pos is None else x + query_pos, 0, 1)
        k = self._proj(memory if pos is None else memory + pos, 1, 2)
        v = self._proj(memory, 2, 3)
        return self._attend(q, k, v)


class DecoderLayer(nn.Module):
    """Pre-norm DETR decoder layer: self-attention, cross-attention to memory, GELU MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.self_attn = Attention(dim, heads)
        self.multihead_attn = Attention(dim, heads)
        self.linear1 = nn.Linear(dim, mlp_ratio * dim)
        self.linear2 = nn.Linear(mlp_ratio * dim, dim)
        self.norm1 = layer_norm(dim)
        self.norm2 = layer_norm(dim)
        self.norm3 = layer_norm(dim)

    def forward(
        self,
        t: torch.Tensor,
        memory: torch.Tensor,
        pos: torch.Tensor | None = None,
        query_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # t (B, Lq, C) queries; memory (B, Lk, C) is never layer-normed here
        t = t + self.self_attn.self_attention(self.norm1(t), query_pos)
        t = t + self.multihead_attn.cross_attention(self.norm2(t), query_pos, memory, pos)
        return t + self.linear2(F.gelu(self.linear1(self.norm3(t))))  # exact (erf) GELU


class PlainLayer(nn.Module):
    """Pre-norm ViT layer (the official ``TransformerLayer``): self-attention, GELU MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.self_attn = Attention(dim, heads)
        self.linear1 = nn.Linear(dim, mlp_ratio * dim)
        self.linear2 = nn.Linear(mlp_ratio * dim, dim)
        self.norm1 = layer_norm(dim)
        self.norm2 = layer_norm(dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:  # (B, L, C)
        t = t + self.self_attn.self_attention(self.norm1(t))
        return t + self.linear2(F.gelu(self.linear1(self.norm2(t))))
