"""Differentiable augmentation for the DINO discriminator (color, translation, cutout).

Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training",
https://arxiv.org/abs/2006.10738, as used by StyleGAN-T's projected discriminator (official
``DiffAugment``; docs/recipes.md#discriminators): every op is applied with probability 1,
translation up to 1/8 of the side, cutout of a square 0.2 of the side. Images (B,3,H,W).

Each op takes its per-row numbers as a small tensor (drawn where the caller likes; without them,
from the global torch generator of x's device). :func:`diff_augment` takes one row of
:data:`DRAWS` uniforms per image (:func:`gigatok_core.data.draws.uniforms` of the image's key), so
an image's augmentation does not depend on the other images of its batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DRAWS = 7  # uniforms per image: brightness, saturation, contrast, shift y/x, cutout centre y/x


def color(x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
    """Brightness, saturation, contrast; ``u`` (B, 3) uniforms in [0, 1) (default: drawn here)."""
    b = x.shape[0]
    u = torch.rand(b, 3, device=x.device, dtype=x.dtype) if u is None else u.to(x.dtype)
    u = u[:, :, None, None, None]  # (B, 3, 1, 1, 1)
    x = x + (u[:, 0] - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (u[:, 1] * 2) + mean  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (u[:, 2] + 0.5) + mean  # contrast


def translation(x: torch.Tensor, ratio: float = 0.125, shift: torch.Tensor | None = None) -> torch.Tensor:
    """Shift each image by up to ratio * side pixels, filling with zeros; ``shift`` (B, 2) integer
    (dy, dx) in [-s, s], s = round(ratio * side) (default: drawn here)."""
    b, _, h, w = x.shape
    if shift is None:
        sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
        dy = torch.randint(-sy, sy + 1, (b, 1, 1), device=x.device)
        dx = torch.randint(-sx, sx + 1, (b, 1, 1), device=x.device)
    else:
        dy, dx = shift[:, 0].long().view(b, 1, 1), shift[:, 1].long().view(b, 1, 1)
    gy, gx = torch.meshgrid(
        torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij"
    )  # (H, W)
    gy = (gy[None] + dy + 1).clamp(0, h + 1)  # (B, H, W) rows in the 1-pixel zero-padded image
    gx = (gx[None] + dx + 1).clamp(0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1))  # (B, C, H+2, W+2)
    flat = padded.flatten(2)  # (B, C, (H+2)(W+2))
    index = (gy * (w + 2) + gx).flatten(1)[:, None].expand(-1, x.shape[1], -1)
    return flat.gather(2, index).view_as(x)


def cutout(x: torch.Tensor, ratio: float = 0.2, centre: torch.Tensor | None = None) -> torch.Tensor:
    """Zero one square of side ratio * side per image; ``centre`` (B, 2) integer (y, x) in
    [0, side + 1 - cut % 2) (default: drawn here)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    if centre is None:
        oy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
        ox = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    else:
        oy, ox = centre[:, 0].long().view(b, 1, 1), centre[:, 1].long().view(b, 1, 1)
    gy = torch.arange(h, device=x.device).view(1, h, 1)
    gx = torch.arange(w, device=x.device).view(1, 1, w)
    top, left = oy - ch // 2, ox - cw // 2  # the square may hang over the border
    inside = (gy >= top) & (gy < top + ch) & (gx >= left) & (gx < left + cw)  # (B, H, W)
    return x * (~inside)[:, None].to(x.dtype)


def _scaled(u: torch.Tensor, low: int, count: int) -> torch.Tensor:
    """Integers low .. low + count - 1 from uniforms in [0, 1) (float64, exact)."""
    return (u * count).floor().clamp(max=count - 1) + low


def diff_augment(
    x: torch.Tensor, draws: torch.Tensor | None = None, *, translate: float = 0.125, cut: float = 0.2
) -> torch.Tensor:
    """Color, translation, cutout. ``draws``: (B, :data:`DRAWS`) float64 uniforms on the CPU, one
    row per image; they become the ops' numbers here and reach the device in one copy. Without
    them every op draws from the global generator of x's device."""
    if draws is None:
        return cutout(translation(color(x), translate), cut)
    b, _, h, w = x.shape
    if draws.shape != (b, DRAWS):
        raise ValueError(f"diff_augment needs ({b}, {DRAWS}) draws, got {tuple(draws.shape)}")
    sy, sx = int(h * translate + 0.5), int(w * translate + 0.5)
    ch, cw = int(h * cut + 0.5), int(w * cut + 0.5)
    numbers = torch.stack(
        [
            draws[:, 0],
            draws[:, 1],
            draws[:, 2],
            _scaled(draws[:, 3], -sy, 2 * sy + 1),
            _scaled(draws[:, 4], -sx, 2 * sx + 1),
            _scaled(draws[:, 5], 0, h + 1 - ch % 2),
            _scaled(draws[:, 6], 0, w + 1 - cw % 2),
        ],
        dim=1,
    ).to(torch.float32)  # small integers are exact in float32
    numbers = numbers.to(x.device, non_blocking=True)  # (B, 7): the one host-to-device copy
    x = color(x, numbers[:, 0:3])
    x = translation(x, translate, shift=numbers[:, 3:5])
    return cutout(x, cut, centre=numbers[:, 5:7])
