"""Helpers for the eval tests: a random-weights FID Inception file and tiny image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def random_inception(path: Path) -> Path:
    """Save a FIDInception with variance-preserving random weights (features do not vanish)."""
    from gigatok_core.evaluation import FIDInception

    gen = torch.Generator().manual_seed(0)
    model = FIDInception()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            if isinstance(m, torch.nn.BatchNorm2d):
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) - 0.5)
        model.fc.weight.copy_(torch.randn(model.fc.weight.shape, generator=gen) * 0.1)
    torch.save(model.state_dict(), path)
    return path


def write_images(folder: Path, n: int, seed: int, size: int = 40, prefix: str = "img") -> list[Path]:
    """``n`` random RGB PNGs (smooth-ish, so the tokenizer and Inception see structure)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        low = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
        img = Image.fromarray(low).resize((size, size), Image.Resampling.BILINEAR)
        noise = rng.integers(-20, 21, size=(size, size, 3))
        arr = np.clip(np.asarray(img).astype(int) + noise, 0, 255).astype(np.uint8)
        paths.append(folder / f"{prefix}{i}.png")
        Image.fromarray(arr).save(paths[-1])
    return paths


class TinyInception(torch.nn.Module):
    """A cheap stand-in for FIDInception with the same output contract (pool, spatial, logits).

    Features are fixed random projections of 8x8-pooled pixels: each image's features depend on
    its pixels only, which is all the sharding/merging tests need (the real network costs seconds
    per image on a shared CPU).
    """

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("w_pool", torch.randn(192, 12, generator=gen))
        self.register_buffer("w_spatial", torch.randn(192, 6, generator=gen))
        self.register_buffer("w_logits", torch.randn(12, 7, generator=gen))

    def forward(self, pixels: torch.Tensor):
        from gigatok_core.evaluation.inception import InceptionOutputs

        x = torch.nn.functional.adaptive_avg_pool2d(pixels.float() / 255.0, 8).flatten(1)  # (B, 192)
        pool = torch.tanh(x @ self.w_pool)
        return InceptionOutputs(pool=pool, spatial=torch.sin(x @ self.w_spatial), logits=pool @ self.w_logits)


def tiny_evaluator(**kw):
    """An :class:`Evaluator` holding a :class:`TinyInception` (nothing is loaded from disk)."""
    from gigatok_core.evaluation import Evaluator

    return Evaluator(device="cpu", _model=TinyInception(), **kw)
