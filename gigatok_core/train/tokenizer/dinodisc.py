"""DINO discriminator (``dinodisc`` of the b-l-dino recipe; docs/recipes.md#discriminators).

A frozen DINO ViT-S/16 (:class:`~gigatok_core.train.tokenizer.frozen.DinoTaps`) feeds five
trainable heads, one per token map, as in StyleGAN-T's projected discriminator (Sauer et al.,
https://arxiv.org/abs/2301.09515). Each head: spectral-norm Conv1d k1 + BatchNormLocal + LeakyReLU,
a residual block of spectral-norm Conv1d k9 (circular) + BatchNormLocal + LeakyReLU scaled by
1/sqrt(2), and a spectral-norm Conv1d to one logit per token. Only the heads are parameters
(the official ``discriminator`` state holds only them).

    x (B,3,H,W) in [-1,1] -> DiffAug -> ImageNet norm -> 224 crop/resize -> 5 x (B,384,196)
    -> heads -> logits (B, 5*196)

DiffAug and the crop draw per image from the image's key (see :class:`DinoDiscriminator`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from gigatok_core.data.draws import uniforms
from gigatok_core.train.tokenizer.diffaug import DRAWS, diff_augment
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
    """``forward(x, keys)``: ``keys`` one integer per image (the sample's key folded with the step
    and the call, :func:`gigatok_core.data.draws.fold`); each image's DiffAug and 224 crop are drawn
    from its key alone, so they do not depend on the batch it is in. Without keys, each image gets
    a key from the global torch generator."""

    takes_keys = True
    CROP_DRAWS = 3  # uniforms per image after DiffAug's: crop or resize, crop row, crop column

    def __init__(self, backbone: DinoTaps, *, diffaug: bool = True, crop_prob: float = 0.5) -> None:
        super().__init__()
        self.backbone = [backbone]  # frozen; kept out of parameters() and state_dict()
        self.diffaug, self.crop_prob = diffaug, crop_prob
        self.heads = nn.ModuleList([DiscHead(backbone.embed_dim) for _ in range(backbone.num_taps)])

    def _to_input(self, x: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """ImageNet norm, then 224x224: larger images are cropped at random (probability
        ``crop_prob``) or area-resized, smaller ones resized (bicubic). ``draws``: (B, 3) CPU uniforms.

        The official ``DinoDiscriminator`` makes the crop-or-resize choice and the crop offsets once
        per call, i.e. per per-GPU micro-batch: an accident of the process count and the gradient
        accumulation. Here they are made per image, from the image's own draws: the same marginal
        distribution for every image, and a result that does not depend on the batch composition.
        """
        size = self.backbone[0].input_size
        x = imagenet_normalize(x)
        b, _, h, w = x.shape
        if w <= size:
            return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
        crop = (draws[:, 0] < self.crop_prob).tolist()  # CPU numbers: no device sync
        tops = (draws[:, 1] * (h - size + 1)).floor().clamp(max=h - size).long().tolist()
        lefts = (draws[:, 2] * (w - size + 1)).floor().clamp(max=w - size).long().tolist()
        rows: list[torch.Tensor | None] = [None] * b
        resized = [r for r in range(b) if not crop[r]]
        if resized:
            area = F.interpolate(x[resized], size=(size, size), mode="area")
            for n, r in enumerate(resized):
                rows[r] = area[n]
        for r in range(b):
            if crop[r]:
                rows[r] = x[r, :, tops[r] : tops[r] + size, lefts[r] : lefts[r] + size]
        return torch.stack(rows)

    def augment(self, x: torch.Tensor, keys: Sequence[int] | None = None) -> torch.Tensor:
        """The backbone's input (B, 3, 224, 224): DiffAug (in training mode), norm, crop/resize."""
        if keys is None:
            keys = torch.randint(0, 2**62, (x.shape[0],)).tolist()
        if len(keys) != x.shape[0]:
            raise ValueError(f"{len(keys)} keys for a batch of {x.shape[0]} images")
        draws = uniforms(keys, DRAWS + self.CROP_DRAWS)  # (B, 10) float64, CPU
        if self.diffaug and self.training:
            x = diff_augment(x, draws[:, :DRAWS])
        return self._to_input(x, draws[:, DRAWS:])

    def forward(self, x: torch.Tensor, keys: Sequence[int] | None = None) -> torch.Tensor:
        backbone = self.backbone[0].to(x.device)
        feats = backbone(self.augment(x, keys))
        return torch.cat([head(f).flatten(1) for head, f in zip(self.heads, feats, strict=True)], dim=1)
