"""Frozen features for linear probing, taken exactly where the official probes take them (docs/recipes.md#linear-probing).

- GPT (``autoregressive/lin_probe/lin_probe.py``): images -> tokenizer codes -> the GPT fed
  ``[null class, codes[:, :-1]]`` (the null class, index ``num_classes``, for every image) -> the
  residual stream after block ``n_layer // 2`` (1-based), before any later block or the final
  norm -> mean over all positions, the class slot included. (B, 3, S, S) -> (B, D).
- Tokenizer (``tokenizer/lin_probe/lin_probe.py``): the 1-D encoder's latent tokens after its
  final LayerNorm (``ln_post``), before ``conv_out`` -> mean over tokens (the encoder width);
  ``fix_dim``: after ``conv_out`` (z channels, still before ``quant_conv``); ``from_decoder``:
  the ViT decoder's tokens after its ``ln_post`` (before its ``conv_out``), fed the quantized
  latent, mean over tokens.

An extractor is an ``nn.Module`` whose ``forward`` runs under ``torch.no_grad`` (the backbone is
frozen: only the head trains). Its ``train()``/``eval()`` reach the backbone, so the GPT's dropouts
are active while the head trains, as in the official probe.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from gigatok_core.ar.gpt import GPT
from gigatok_core.errors import GigatokError
from gigatok_core.tokenizer.model import VQTokenizer

TOKENIZER_MODES = ("encoder", "fix_dim", "decoder")


@contextmanager
def _captured(module: nn.Module) -> Iterator[list[Tensor]]:
    """Collect ``module``'s outputs while the block runs (a forward hook, removed afterwards)."""
    box: list[Tensor] = []
    handle = module.register_forward_hook(lambda _m, _inp, out: box.append(out))
    try:
        yield box
    finally:
        handle.remove()


def _tokens_last(x: Tensor) -> Tensor:
    """ViT outputs (B, C, 1, N) or (B, C, g, g) -> (B, L, C)."""
    return x.flatten(2).transpose(1, 2)


class GPTFeatures(nn.Module):
    """Mean-pooled residual stream of block ``layer`` of a GPT fed a tokenizer's codes (docs/recipes.md#linear-probing)."""

    def __init__(self, gpt: GPT, tokenizer: VQTokenizer, layer: int | None = None) -> None:
        super().__init__()
        depth = len(gpt.layers)
        layer = depth // 2 if layer is None else layer
        if not 1 <= layer <= depth:
            raise GigatokError(
                f"feature layer {layer} does not exist: the GPT has {depth} blocks",
                hint=f"pass a layer between 1 and {depth} (default: {depth // 2}, the official n_layer // 2)",
            )
        vocab, n_pos = gpt.tok_embeddings.weight.shape[0], gpt.positional_embedding.shape[0]
        tok_cfg = tokenizer.config
        if vocab != tok_cfg.codebook_size or n_pos != tok_cfg.num_latent_tokens + 1:
            raise GigatokError(
                f"the GPT (vocabulary {vocab}, {n_pos - 1} tokens per image) does not fit the tokenizer "
                f"(codebook {tok_cfg.codebook_size}, {tok_cfg.num_latent_tokens} tokens)",
                hint="probe the GPT with the tokenizer it was trained with",
            )
        self.gpt = gpt
        self.tokenizer = tokenizer.eval()
        self.layer = layer
        self.dim = gpt.tok_embeddings.weight.shape[1]
        self.image_size = tok_cfg.image_size

    def train(self, mode: bool = True) -> GPTFeatures:
        super().train(mode)
        self.tokenizer.eval()  # the tokenizer only encodes; dropout 0 in every preset anyway
        return self

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        with torch.autocast(images.device.type, enabled=False):  # codes always from fp32 (as val-loss)
            codes = self.tokenizer.encode(images.float())  # (B, N) int64
        null = torch.full((codes.shape[0],), self.gpt.null_class, dtype=torch.long, device=codes.device)
        h = self.gpt(null, codes[:, :-1], hidden_at=self.layer)  # (B, N, D): [null, t_0 .. t_{N-2}]
        return h.float().mean(dim=1)  # (B, D), class slot included


class TokenizerFeatures(nn.Module):
    """Mean-pooled tokenizer features: ``encoder`` (default), ``fix_dim`` or ``decoder`` (docs/recipes.md#linear-probing)."""

    def __init__(self, tokenizer: VQTokenizer, mode: str = "encoder") -> None:
        super().__init__()
        if mode not in TOKENIZER_MODES:
            raise GigatokError(f"unknown tokenizer feature {mode!r}", hint=f"use one of {TOKENIZER_MODES}")
        self.tokenizer = tokenizer.eval()
        self.mode = mode
        enc, dec = tokenizer.vit_encoder, tokenizer.vit_decoder
        self.dim = {
            "encoder": enc.ln_post.normalized_shape[0],
            "fix_dim": enc.conv_out.out_channels,
            "decoder": dec.ln_post.normalized_shape[0],
        }[mode]
        self.image_size = tokenizer.config.image_size

    def train(self, mode: bool = True) -> TokenizerFeatures:
        super().train(mode)
        self.tokenizer.eval()  # no dropout in the tokenizer; eval keeps the quantizer's bookkeeping off
        return self

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        tok = self.tokenizer
        x = tok._check_images(images)
        s = tok.encoder(x)  # (B, Z, g, g)
        if self.mode == "decoder":
            z_q = tok.quantize(tok.quant_conv(tok.vit_encoder(s))).z_q  # (B, D_code, 1, N)
            with _captured(tok.vit_decoder.ln_post) as box:
                tok.decode_spatial(z_q)
            return box[0].float().mean(dim=1)  # (B, g*g, W) -> (B, W)
        if self.mode == "fix_dim":
            return _tokens_last(tok.vit_encoder(s)).float().mean(dim=1)  # (B, Z)
        with _captured(tok.vit_encoder.ln_post) as box:
            tok.vit_encoder(s)
        return box[0].float().mean(dim=1)  # (B, N, W) -> (B, W)


def feature_spec(extractor: nn.Module) -> dict[str, object]:
    """What and where: the part of a cache fingerprint and of results.json describing the features."""
    if isinstance(extractor, GPTFeatures):
        return {"kind": "gpt", "layer": extractor.layer, "dim": extractor.dim}
    if isinstance(extractor, TokenizerFeatures):
        return {"kind": "tokenizer", "mode": extractor.mode, "dim": extractor.dim}
    return {"kind": type(extractor).__name__, "dim": int(getattr(extractor, "dim", 0))}
