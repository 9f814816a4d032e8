"""Frozen networks of the recipe, built with timm and loaded strictly from plain weight files.

- DINOv2 ViT-B/14 (``dinov2_vitb14_pretrain.pth``): the semantic-regularization teacher
  (docs/tokenizer.md#semantic-regularization). Oquab et al., https://arxiv.org/abs/2304.07193.
- DINO ViT-S/16 (``dino_deitsmall16_pretrain.pth``): the backbone of the DINO discriminator
  (docs/recipes.md#discriminators). Caron et al., https://arxiv.org/abs/2104.14294.

Both files come through the download cache (:func:`gigatok_core.hub.fetch_weights`), never
torch.hub (which runs code fetched from the network). timm builds the ViTs: it is what the
official code already uses to resample the position embedding, and its blocks carry the same
key names as both releases (``blocks.{i}.attn.qkv``, ``ls1.gamma``, ...). The architecture
(width, depth, patch) is read from the file's shapes, so tests can pass small random files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from gigatok_core.errors import GigatokError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HEAD_DIM = 64  # every DINO/DINOv2 ViT uses 64-wide heads
TEACHER_FILE = "dinov2_vitb14_pretrain.pth"
DINO_DISC_FILE = "dino_deitsmall16_pretrain.pth"


def _read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    from gigatok_core.checkpoints.files import read_checkpoint

    ckpt = read_checkpoint(path)
    for key in ("model", "state_dict", "teacher"):  # plain files are the state_dict itself
        if isinstance(ckpt.get(key), dict) and "pos_embed" not in ckpt:
            ckpt = ckpt[key]
    sd = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in ckpt.items()}
    if "pos_embed" not in sd or "patch_embed.proj.weight" not in sd:
        raise GigatokError(f"{path} is not a {what} checkpoint (no pos_embed/patch_embed)")
    return sd


def _vit_for(sd: Mapping[str, torch.Tensor], grid: int, what: str) -> VisionTransformer:
    """An empty timm ViT with the file's width/depth/patch, position table for a grid x grid input."""
    width, _, patch, _ = sd["patch_embed.proj.weight"].shape
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    if width % HEAD_DIM and width > HEAD_DIM:
        raise GigatokError(f"the {what} width {width} is not a multiple of {HEAD_DIM}")
    with torch.device("meta"):
        vit = VisionTransformer(
            img_size=grid * patch,
            patch_size=patch,
            embed_dim=width,
            depth=depth,
            num_heads=max(width // HEAD_DIM, 1),
            init_values=1.0 if any(k.endswith("ls1.gamma") for k in sd) else None,
            num_classes=0,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            weight_init="skip",
        )
    return vit


def _load(vit: VisionTransformer, sd: Mapping[str, torch.Tensor], path: str | Path, what: str) -> None:
    want = vit.state_dict()
    missing, extra = sorted(set(want) - set(sd)), sorted(set(sd) - set(want))
    bad = [k for k in want if k in sd and tuple(sd[k].shape) != tuple(want[k].shape)]
    if missing or extra or bad:
        raise GigatokError(
            f"{path} does not match the {what} architecture "
            f"(missing {missing[:3]}, unexpected {extra[:3]}, wrong shape {bad[:3]})",
            hint=f"pass the official {what} weights file",
        )
    vit.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True, assign=True)


def imagenet_normalize(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> [0, 1] -> ImageNet mean/std."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x + 1.0) / 2.0 - mean) / std


# ---------------------------------------------------------------------------------------------
# Semantic-regularization teacher (docs/tokenizer.md#semantic-regularization)
# ---------------------------------------------------------------------------------------------
class SemanticTeacher(nn.Module):
    """Frozen DINOv2: images (B,3,H,W) in [-1,1] -> normed patch tokens (B, grid*grid, width)."""

    def __init__(self, vit: VisionTransformer, grid: int) -> None:
        super().__init__()
        self.vit, self.grid = vit, grid
        self.input_size = grid * vit.patch_embed.patch_size[0]
        self.embed_dim = vit.embed_dim
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> SemanticTeacher:  # always eval
        return super().train(False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """[-1,1] -> ImageNet-normalised, bicubic (no antialias) to the teacher's input size."""
        x = imagenet_normalize(x.float())
        return F.interpolate(x, size=(self.input_size, self.input_size), mode="bicubic", align_corners=False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.vit.forward_features(self.preprocess(x))  # (B, 1 + grid^2, width), final norm
        return tokens[:, self.vit.num_prefix_tokens :]  # x_norm_patchtokens, row-major patches


def load_teacher(path: str | Path, *, grid: int = 16, device: str | torch.device = "cpu") -> SemanticTeacher:
    """The DINOv2 teacher from a hub-format file; ``mask_token`` is dropped (it is only used for
    masked pretraining) and ``pos_embed`` resampled to grid x grid with timm's defaults, keeping
    the cls row (docs/fidelity.md#weight-fill-rules)."""
    sd = _read_state_dict(path, "DINOv2")
    sd.pop("mask_token", None)
    vit = _vit_for(sd, grid, "DINOv2")
    sd["pos_embed"] = resample_abs_pos_embed(sd["pos_embed"].float(), [grid, grid], num_prefix_tokens=1)
    _load(vit, sd, path, "DINOv2")
    return SemanticTeacher(vit, grid).to(device)


def _random_vit(width: int, depth: int, patch: int, grid: int, seed: int) -> VisionTransformer:
    """A small seeded random ViT (timm's init): the stand-in of a frozen network in smoke runs."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VisionTransformer(
            img_size=grid * patch,
            patch_size=patch,
            embed_dim=width,
            depth=depth,
            num_heads=max(width // HEAD_DIM, 1),
            num_classes=0,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
        )


def random_teacher(width: int, *, grid: int = 16, device: str | torch.device = "cpu") -> SemanticTeacher:
    """A seeded random 2-block ViT teacher of ``width`` (the ``tiny`` preset's smoke runs: offline,
    no DINOv2 download; its targets mean nothing)."""
    return SemanticTeacher(_random_vit(width, 2, 14, grid, seed=1), grid).to(device)


def teacher_width(path: str | Path) -> int:
    """The token width of a DINOv2 file (768 for ViT-B/14), read from its patch embedding."""
    return int(_read_state_dict(path, "DINOv2")["patch_embed.proj.weight"].shape[0])


# ---------------------------------------------------------------------------------------------
# DINO ViT-S/16 backbone of the DINO discriminator (docs/recipes.md#discriminators)
# ---------------------------------------------------------------------------------------------
class DinoTaps(nn.Module):
    """Frozen DINO: normalised 224x224 images -> the token maps after the embedding and after
    blocks ``taps``, each as patch tokens plus the cls token, (B, width, patches)."""

    def __init__(self, vit: VisionTransformer, taps: tuple[int, ...] = (2, 5, 8, 11)) -> None:
        super().__init__()
        self.vit, self.taps = vit, tuple(t for t in taps if t < len(vit.blocks))
        self.input_size = vit.patch_embed.img_size[0]
        self.embed_dim = vit.embed_dim
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> DinoTaps:  # always eval
        return super().train(False)

    @property
    def num_taps(self) -> int:
        return 1 + len(self.taps)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        def readout(t: torch.Tensor) -> torch.Tensor:
            return (t[:, 1:] + t[:, :1]).transpose(1, 2)  # (B, width, patches)

        t = self.vit._pos_embed(self.vit.patch_embed(x))  # (B, 1 + patches, width)
        out = [readout(t)]
        for i, block in enumerate(self.vit.blocks):
            t = block(t)
            if i in self.taps:
                out.append(readout(t))
        return out


def random_dino_backbone(*, device: str | torch.device = "cpu") -> DinoTaps:
    """A seeded random 3-block ViT at 224x224 (the ``tiny`` preset's smoke runs with dinodisc)."""
    return DinoTaps(_random_vit(64, 3, 16, 14, seed=2)).to(device)


def load_dino_backbone(path: str | Path, *, device: str | torch.device = "cpu") -> DinoTaps:
    """DINO ViT-S/16 at 224x224; the key bias of every qkv is zeroed on load (docs/recipes.md#discriminators)."""
    sd = _read_state_dict(path, "DINO ViT-S/16")
    side = round((sd["pos_embed"].shape[1] - 1) ** 0.5)
    vit = _vit_for(sd, side, "DINO ViT-S/16")
    for key in [k for k in sd if k.endswith("attn.qkv.bias")]:
        bias = sd[key].clone()
        width = bias.shape[0] // 3
        bias[width : 2 * width] = 0.0  # q, k, v order: the k third
        sd[key] = bias
    _load(vit, sd, path, "DINO ViT-S/16")
    return DinoTaps(vit).to(device)
