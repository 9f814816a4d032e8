"""Helpers for the tokenizer-training tests: frozen networks as random weight files, image folders."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

VGG_FEATURES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
VGG_CHANNELS = (3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)


def dinov2_entries(width: int = 768, depth: int = 12, patch: int = 14, side: int = 37) -> list:
    """Keys and shapes of a hub-format DINOv2 state_dict (``dinov2_vitb14``: 175 keys)."""
    out = [
        ("cls_token", (1, 1, width)),
        ("pos_embed", (1, 1 + side * side, width)),
        ("mask_token", (1, width)),
        ("patch_embed.proj.weight", (width, 3, patch, patch)),
        ("patch_embed.proj.bias", (width,)),
    ]
    for i in range(depth):
        b = f"blocks.{i}."
        out += [
            (b + "norm1.weight", (width,)),
            (b + "norm1.bias", (width,)),
            (b + "attn.qkv.weight", (3 * width, width)),
            (b + "attn.qkv.bias", (3 * width,)),
            (b + "attn.proj.weight", (width, width)),
            (b + "attn.proj.bias", (width,)),
            (b + "ls1.gamma", (width,)),
            (b + "norm2.weight", (width,)),
            (b + "norm2.bias", (width,)),
            (b + "mlp.fc1.weight", (4 * width, width)),
            (b + "mlp.fc1.bias", (4 * width,)),
            (b + "mlp.fc2.weight", (width, 4 * width)),
            (b + "mlp.fc2.bias", (width,)),
            (b + "ls2.gamma", (width,)),
        ]
    return [*out, ("norm.weight", (width,)), ("norm.bias", (width,))]


def dino_v1_entries(width: int = 384, depth: int = 12, patch: int = 16, side: int = 14) -> list:
    """Keys and shapes of ``dino_deitsmall16_pretrain.pth`` (no LayerScale, no mask token)."""
    return [
        (k, s)
        for k, s in dinov2_entries(width, depth, patch, side)
        if k != "mask_token" and not k.endswith(".gamma")
    ]


def vgg_entries() -> list:
    out = []
    for j, i in enumerate(VGG_FEATURES):
        cin, cout = VGG_CHANNELS[j], VGG_CHANNELS[j + 1]
        out += [(f"features.{i}.weight", (cout, cin, 3, 3)), (f"features.{i}.bias", (cout,))]
    return out


def random_weights(entries: list, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fan-in scaled normal weights, unit norm scales, small biases (a healthy random network)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in entries:
        n = torch.randn(shape, generator=gen)
        if len(shape) >= 2 and name not in ("cls_token", "pos_embed", "mask_token"):
            n = n * math.sqrt(2.0 / math.prod(shape[1:]))
        elif name.endswith("weight") or name.endswith("gamma"):
            n = 1.0 + 0.1 * n
        elif name.endswith("bias"):
            n = 0.01 * n
        out[name] = n
    return out


def write_frozen(folder: Path, *, teacher_width: int = 64) -> dict[str, Path]:
    """Small random teacher (DINOv2 format, 1 block), DINO ViT-S/16-format (2 blocks) and VGG16 files."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "teacher": folder / "dinov2_small.pth",
        "dino": folder / "dino_small.pth",
        "vgg": folder / "vgg16.pth",
    }
    torch.save(random_weights(dinov2_entries(teacher_width, 1), 1), files["teacher"])
    torch.save(random_weights(dino_v1_entries(64, 3), 2), files["dino"])
    torch.save(random_weights(vgg_entries(), 3), files["vgg"])
    return files


def write_images(folder: Path, n: int = 6, size: int = 160, seed: int = 0) -> Path:
    """A flat folder of smooth random RGB images (gradients plus blobs): easy to learn."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        img = np.zeros((size, size, 3))
        for c in range(3):
            a, b, ph = rng.uniform(-3, 3, size=3)
            img[..., c] = 0.5 + 0.4 * np.sin(a * xx * math.pi + b * yy * math.pi + ph)
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"img{i:02d}.png")
    return folder
