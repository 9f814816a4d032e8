"""DINO discriminator (``dinodisc`` of the b-l-dino recipe; docs/recipes.md#discriminators).

A frozen DINO ViT-S/16 (:class:`~gigatok_core.train.tokenizer.frozen.DinoTaps`) feeds five
trainable heads, one per token map, as in StyleGAN-T's projected discriminator (Sauer et al.,
https://arxiv.org/abs/2301.09515). Each head: spectral-norm Conv1d k1 + BatchNormLocal + LeakyReLU,
a residual block of spectral-norm Conv1d k9 (circular) + BatchNormLocal + LeakyReLU scaled by
1/sqrt(2), and a spectral-norm Conv1d to one logit per token. Only the heads are parameters
(the official ``discriminator`` state holds only them).

    x (B,3,H,W) in [-1,1] -> DiffAug -> ImageNet norm -> 224 crop/resize -> 5 x (B,384,196)
    -> heads -> logits (B, 5*196)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from gigatok_core.train.tokenizer.diffaug import diff_augment
from gigatok_core.train.tokenizer.frozen import DinoTaps, imagenet_normalize


class BatchNormLocal(nn.Module):
    """BatchNorm over virtual batches of ``virtual_bs`` samples, batch statistics always."""

    def __init__(self, channels: int, virtual_bs: int = 8, eps: float = 1e-6) -> None:
        super().__init__()
        self.virtual_bs, self.eps = virtual_bs, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape  # (B, C, L)
        groups = math.ceil(b / self.virtual_bs)
        v = x.view(groups, -1, c, n)
        mean = v.mean(dim=(1, 3), keepdim=True)
        var = v.var(dim=(1, 3), keepdim=True, unbiased=False)
        v = (v - mean) / torch.sqrt(var + self.eps)
        return v.view(b, c, n) * self.weight[None, :, None] + self.bias[None, :, None]


def _block(channels: int, kernel: int) -> nn.Sequential:
    conv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2, padding_mode="circular")
    return nn.Sequential(spectral_norm(conv), BatchNormLocal(channels), nn.LeakyReLU(0.2, True))


class _Residual(nn.Module):
    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.fn(x) + x) / math.sqrt(2)


class DiscHead(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.main = nn.Sequential(_block(channels, 1), _Residual(_block(channels, 9)))
        self.cls = spectral_norm(nn.Conv1d(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls(self.main(x))  # (B, 1, L)


class DinoDiscriminator(nn.Module):
    def __init__(self, backbone: DinoTaps, *, diffaug: bool = True, crop_prob: float = 0.5) -> None:
        super().__init__()
        self.backbone = [backbone]  # frozen; kept out of parameters() and state_dict()
        self.diffaug, self.crop_prob = diffaug, crop_prob
        self.heads = nn.ModuleList([DiscHead(backbone.embed_dim) for _ in range(backbone.num_taps)])

    def _to_input(self, x: torch.Tensor) -> torch.Tensor:
        size = self.backbone[0].input_size
        x = imagenet_normalize(x)
        if x.shape[-1] > size:
            if float(torch.rand(())) < self.crop_prob:  # official: a random crop half of the time
                i = int(torch.randint(0, x.shape[-2] - size + 1, ()))
                j = int(torch.randint(0, x.shape[-1] - size + 1, ()))
                return x[..., i : i + size, j : j + size]
            return F.interpolate(x, size=(size, size), mode="area")
        return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.diffaug and self.training:
            x = diff_augment(x)
        backbone = self.backbone[0].to(x.device)
        feats = backbone(self._to_input(x))
        return torch.cat([head(f).flatten(1) for head, f in zip(self.heads, feats, strict=True)], dim=1)
