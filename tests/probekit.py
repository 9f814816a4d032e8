"""Helpers for the probe tests: colour-per-class image folders and tiny 64-pixel backbones."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gigatok_core.ar.gpt import GPT
from gigatok_core.ar.load import build_gpt, seeded_random_weights
from gigatok_core.registry import gpt_preset, tokenizer_preset
from gigatok_core.tokenizer import VQTokenizer, build_tokenizer, init_weights

COLOURS = ((220, 40, 40), (40, 200, 60), (50, 60, 220))


def colour_folder(
    root: Path,
    per_class: int,
    *,
    seed: int,
    noise: int = 2,
    size: tuple[int, int] = (72, 64),
    classes=COLOURS,
) -> Path:
    """An ImageFolder tree whose classes are solid colours plus a little noise (separable by construction)."""
    rng = np.random.default_rng(seed)
    for c, rgb in enumerate(classes):
        folder = root / f"class{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            jitter = rng.integers(-noise, noise + 1, size=(size[1], size[0], 3))
            arr = np.clip(np.array(rgb)[None, None] + jitter, 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(folder / f"img{i:03d}.png")
    return root


def small_tokenizer() -> VQTokenizer:
    """The ``tiny`` preset at 64 pixels (16 latent tokens): fast enough for CPU probes."""
    cfg = dataclasses.replace(tokenizer_preset("tiny").config, image_size=64, num_latent_tokens=16)
    tok = build_tokenizer(cfg)
    init_weights(tok, generator=torch.Generator().manual_seed(0))
    return tok.eval()


def small_gpt(**overrides) -> GPT:
    """``gpt-tiny`` for 16-token images (fits :func:`small_tokenizer`), seeded random weights."""
    cfg = dataclasses.replace(gpt_preset("gpt-tiny").config, **{"block_size": 16, **overrides})
    return seeded_random_weights(build_gpt(cfg), seed=1)
