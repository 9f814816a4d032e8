"""The transformer halves of the tokenizer.

1D (``VQVitModelPlus``, docs/tokenizer.md#encoder, #decoder): the encoder turns the 16x16 CNN map into
N latent tokens read out by multi-level pooled queries; the decoder turns N latent tokens back
into a 16x16 map with queries that are copies of latent token 0.
2D (``VQVitModel2DPlus``, docs/tokenizer.md#the-2d-variants): the 256 spatial tokens themselves are transformed.

Tokens are batch-first (B, L, C) here; the official (L, 1, C) positional embeddings are kept
as parameters (for checkpoint compatibility) and broadcast as (1, L, C).
Semantic regularization head (``distill_mlp``): GigaTok, https://arxiv.org/abs/2504.08736 §3.2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from gigatok_core.tokenizer.transformer import DecoderLayer, PlainLayer, layer_norm


def _pos(param: nn.Parameter) -> torch.Tensor:
    return param.transpose(0, 1)  # (L, 1, C) -> (1, L, C)


def _pointwise(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv applied to tokens x (B, L, C_in) -> (B, L, C_out)."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


def distill_head(width: int, out_dim: int) -> nn.Sequential:
    """W -> 4W -> 4W -> out_dim MLP with SiLU (keys ``distill_mlp.{0,2,4}``)."""
    return nn.Sequential(
        nn.Linear(width, 4 * width),
        nn.SiLU(),
        nn.Linear(4 * width, 4 * width),
        nn.SiLU(),
        nn.Linear(4 * width, out_dim),
    )


def multi_level_queries(memory: torch.Tensor, grid: int, num_tokens: int) -> torch.Tensor:
    """Average-pool the (grid x grid) memory map at log2(N)+1 levels of detail (docs/tokenizer.md#encoder).

    Group g uses level l = max(g-1, 0) with a 2^(l//2) x 2^((l+1)//2) (rows x cols) grid, so
    groups 0 and 1 are both the global mean; tokens are row-major within a group.
    memory (B, grid*grid, C) -> queries (B, N, C).
    """
    fmap = rearrange(memory, "b (h w) c -> b c h w", h=grid)
    groups = []
    for g in range(int(math.log2(num_tokens)) + 1):
        level = max(g - 1, 0)
        rows, cols = 2 ** (level // 2), 2 ** ((level + 1) // 2)
        pooled = F.avg_pool2d(fmap, kernel_size=(grid // rows, grid // cols))  # (B, C, rows, cols)
        groups.append(rearrange(pooled, "b c h w -> b (h w) c"))
    out = torch.cat(groups, dim=1)
    assert out.shape[1] == num_tokens, (out.shape, num_tokens)
    return out


# ---------------------------------------------------------------------------------------------
# 1D: 2D map -> N latent tokens -> 2D map
# ---------------------------------------------------------------------------------------------
class ViTEncoder1D(nn.Module):
    """``s2to1encoder``: (B, Z, g, g) CNN map -> (B, Z, 1, N) latent tokens."""

    def __init__(
        self, width: int, depth: int, heads: int, z_channels: int, grid: int, num_tokens: int
    ) -> None:
        super().__init__()
        self.grid, self.num_tokens = grid, num_tokens
        self.positional_embedding = nn.Parameter(width**-0.5 * torch.randn(grid * grid, 1, width))
        self.latent_token_positional_embedding = nn.Parameter(width**-0.5 * torch.randn(num_tokens, 1, width))
        self.encoder_embed = nn.Linear(z_channels, width)
        self.ln_pre = layer_norm(z_channels)
        self.global_proj = nn.Linear(width, width)
        self.transformer = nn.ModuleList([DecoderLayer(width, heads) for _ in range(depth)])
        self.ln_post = layer_norm(width)
        self.conv_out = nn.Conv2d(width, z_channels, 1)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        memory = self.encoder_embed(self.ln_pre(rearrange(s, "b c h w -> b (h w) c")))  # (B, g*g, W)
        t = self.global_proj(multi_level_queries(memory, self.grid, self.num_tokens))  # (B, N, W)
        pos, query_pos = _pos(self.positional_embedding), _pos(self.latent_token_positional_embedding)
        for layer in self.transformer:
            t = layer(t, memory, pos=pos, query_pos=query_pos)
        t = _pointwise(self.conv_out, self.ln_post(t))  # (B, N, Z)
        return rearrange(t, "b n c -> b c 1 n")


class ViTDecoder1D(nn.Module):
    """``s1to2decoder``: (B, Z, 1, N) latent tokens -> (B, Z, g, g) map (+ distill features)."""

    def __init__(
        self,
        width: int,
        depth: int,
        heads: int,
        z_channels: int,
        grid: int,
        num_tokens: int,
        distill_depth: int,
        distill_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.grid, self.distill_depth = grid, distill_depth
        self.positional_embedding = nn.Parameter(width**-0.5 * torch.randn(grid * grid, 1, width))
        self.latent_token_positional_embedding = nn.Parameter(width**-0.5 * torch.randn(num_tokens, 1, width))
        self.decoder_embed = nn.Linear(z_channels, width)
        self.ln_pre = layer_norm(z_channels)
        self.transformer = nn.ModuleList([DecoderLayer(width, heads) for _ in range(depth)])
        self.ln_post = layer_norm(width)
        self.conv_out = nn.Conv2d(width, z_channels, 3, padding=1)
        if distill_dim is not None:
            self.distill_mlp = distill_head(width, distill_dim)

    def forward(self, z: torch.Tensor, *, distill: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        memory = self.decoder_embed(self.ln_pre(rearrange(z, "b c 1 n -> b n c")))  # (B, N, W)
        # Queries: latent token 0 repeated; only the positional embeddings tell them apart (docs/tokenizer.md#pitfalls).
        t = memory[:, :1].expand(-1, self.grid * self.grid, -1)  # (B, g*g, W)
        pos, query_pos = _pos(self.latent_token_positional_embedding), _pos(self.positional_embedding)
        feat = None
        for i, layer in enumerate(self.transformer):
            t = layer(t, memory, pos=pos, query_pos=query_pos)
            if distill and i + 1 == self.distill_depth:
                feat = self.distill_mlp(t)  # (B, g*g, distill_dim), not layer-normed
        t = rearrange(self.ln_post(t), "b (h w) c -> b c h w", h=self.grid)
        return self.conv_out(t), feat


# ---------------------------------------------------------------------------------------------
# 2D: the 256 spatial tokens are transformed in place
# ---------------------------------------------------------------------------------------------
class _ViT2D(nn.Module):
    def _run(self, t: torch.Tensor, distill: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        pos = _pos(self.positional_embedding)
        plain = isinstance(self.transformer[0], PlainLayer)
        if plain:
            t = t + pos  # added once, before the first layer
        feat = None
        for i, layer in enumerate(self.transformer):
            t = layer(t) if plain else layer(t, t, pos=pos, query_pos=pos)  # memory = the layer's input
            if distill and i + 1 == self.distill_depth:
                feat = self.distill_mlp(t)
        return self.ln_post(t), feat


def _layers(kind: str, width: int, heads: int, depth: int) -> nn.ModuleList:
    cls = PlainLayer if kind == "plain" else DecoderLayer
    return nn.ModuleList([cls(width, heads) for _ in range(depth)])


class ViTEncoder2D(_ViT2D):
    """``s2dencoder``: (B, Z, g, g) -> (B, Z, g, g)."""

    def __init__(
        self, width: int, depth: int, heads: int, z_channels: int, grid: int, layer_type: str
    ) -> None:
        super().__init__()
        self.grid, self.distill_depth = grid, 0
        self.positional_embedding = nn.Parameter(width**-0.5 * torch.randn(grid * grid, 1, width))
        self.encoder_embed = nn.Linear(z_channels, width)
        self.ln_pre = layer_norm(z_channels)
        self.transformer = _layers(layer_type, width, heads, depth)
        self.ln_post = layer_norm(width)
        self.conv_out = nn.Conv2d(width, z_channels, 1)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        t = self.encoder_embed(self.ln_pre(rearrange(s, "b c h w -> b (h w) c")))
        t, _ = self._run(t, distill=False)
        return rearrange(_pointwise(self.conv_out, t), "b (h w) c -> b c h w", h=self.grid)


class ViTDecoder2D(_ViT2D):
    """``s2ddecoder``: (B, Z, g, g) -> (B, Z, g, g) (+ distill features)."""

    def __init__(
        self,
        width: int,
        depth: int,
        heads: int,
        z_channels: int,
        grid: int,
        layer_type: str,
        distill_depth: int,
        distill_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.grid, self.distill_depth = grid, distill_depth
        self.positional_embedding = nn.Parameter(width**-0.5 * torch.randn(grid * grid, 1, width))
        self.decoder_embed = nn.Linear(z_channels, width)
        self.ln_pre = layer_norm(z_channels)
        self.transformer = _layers(layer_type, width, heads, depth)
        self.ln_post = layer_norm(width)
        self.conv_out = nn.Conv2d(width, z_channels, 3, padding=1)
        if distill_dim is not None:
            self.distill_mlp = distill_head(width, distill_dim)

    def forward(self, z: torch.Tensor, *, distill: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        t = self.decoder_embed(self.ln_pre(rearrange(z, "b c h w -> b (h w) c")))
        t, feat = self._run(t, distill)
        return self.conv_out(rearrange(t, "b (h w) c -> b c h w", h=self.grid)), feat
