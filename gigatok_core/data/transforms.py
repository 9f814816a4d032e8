"""Image augmentation as the official training and code extraction do it.

- Train (docs/recipes.md#loop-and-data, #gpt): ADM ``random_crop_arr(S, 0.8, 1.0)`` (a random short side in
  [ceil(S/1.0), ceil(S/0.8)] = [256, 320] for S = 256, BOX halving while the image is at least twice
  that, BICUBIC to it, a random S crop), then a horizontal flip with p = 0.5, ToTensor,
  Normalize(0.5, 0.5).
- Evaluation / validation: the ADM centre crop (one implementation,
  :func:`gigatok_core.data.images.center_crop_arr`).
- Code extraction (docs/recipes.md#gpt, ``extract_codes_c2i.py``): ``--ten-crop``: the ADM centre crop to
  int(S · crop_range) (281 for 1.1) and torchvision ``TenCrop(S)`` = the five crops (top-left,
  top-right, bottom-left, bottom-right, centre) of the image then of its mirror; without it the
  centre crop S and its mirror (2 crops).

Transforms take a decoded RGB PIL image and return a float tensor in [-1, 1]: (3, S, S) or
(crops, 3, S, S). :class:`TrainAugment` draws from the generator it is given (the training dataset
gives each sample its own, from (seed, epoch, index): :mod:`gigatok_core.data.draws`), else from
Python's ``random`` module (as the official ``random.randrange`` calls do).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from PIL import Image

from gigatok_core.data.images import center_crop_arr, to_tensor

__all__ = [
    "CenterCrop",
    "CenterFlip",
    "TenCrop",
    "TrainAugment",
    "center_crop_arr",
    "five_crop_arr",
    "random_crop_arr",
    "ten_crop_arr",
]

Transform = Callable[[Image.Image], torch.Tensor]


def random_crop_arr(
    img: Image.Image,
    size: int,
    min_crop_frac: float = 0.8,
    max_crop_frac: float = 1.0,
    *,
    rng: random.Random | None = None,
) -> np.ndarray:
    """ADM random crop (docs/recipes.md#loop-and-data): (size, size, 3) uint8.

    The short side is drawn uniformly from the integers [ceil(size/max_frac), ceil(size/min_frac)];
    the image is halved with BOX while its short side is at least twice that, BICUBIC-resized so the
    short side has that length (each side rounded), and a crop position is drawn uniformly.
    """
    rng = rng or random  # type: ignore[assignment]
    lo, hi = math.ceil(size / max_crop_frac), math.ceil(size / min_crop_frac)
    short = rng.randrange(lo, hi + 1)
    while min(img.size) >= 2 * short:  # BOX halving first, as ADM does by hand
        img = img.resize(tuple(s // 2 for s in img.size), resample=Image.Resampling.BOX)
    scale = short / min(img.size)
    img = img.resize(tuple(round(s * scale) for s in img.size), resample=Image.Resampling.BICUBIC)
    arr = np.asarray(img)  # (H, W, 3)
    top = rng.randrange(arr.shape[0] - size + 1)
    left = rng.randrange(arr.shape[1] - size + 1)
    return np.ascontiguousarray(arr[top : top + size, left : left + size])


def five_crop_arr(arr: np.ndarray, size: int) -> list[np.ndarray]:
    """torchvision ``five_crop``: top-left, top-right, bottom-left, bottom-right, centre (H, W, 3)."""
    h, w = arr.shape[:2]
    if size > h or size > w:
        raise ValueError(f"crop {size} larger than the image {h}x{w}")
    top, left = round((h - size) / 2.0), round((w - size) / 2.0)  # torchvision center_crop (half to even)
    corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size), (top, left)]
    return [np.ascontiguousarray(arr[y : y + size, x : x + size]) for y, x in corners]


def ten_crop_arr(arr: np.ndarray, size: int) -> np.ndarray:
    """torchvision ``TenCrop(size)``: five crops of ``arr`` then of its mirror: (10, size, size, 3)."""
    return np.stack(five_crop_arr(arr, size) + five_crop_arr(arr[:, ::-1], size))


# ---------------------------------------------------------------------------- transforms
@dataclass(frozen=True)
class TrainAugment:
    """Official train augmentation: random_crop_arr + horizontal flip (p = 0.5) -> (3, S, S)."""

    size: int = 256
    min_crop_frac: float = 0.8
    max_crop_frac: float = 1.0
    flip: bool = True
    takes_rng: ClassVar[bool] = True  # datasets pass each sample's generator (``rng=``)

    def __call__(self, img: Image.Image, *, rng: random.Random | None = None) -> torch.Tensor:
        rng = rng or random  # type: ignore[assignment]
        arr = random_crop_arr(img, self.size, self.min_crop_frac, self.max_crop_frac, rng=rng)
        if self.flip and rng.random() < 0.5:
            arr = arr[:, ::-1]
        return to_tensor(arr[None])[0]


@dataclass(frozen=True)
class CenterCrop:
    """ADM centre crop (evaluation, validation) -> (3, S, S)."""

    size: int = 256

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return to_tensor(center_crop_arr(img, self.size)[None])[0]


@dataclass(frozen=True)
class CenterFlip:
    """Code extraction without ten-crop: the centre crop and its mirror -> (2, 3, S, S)."""

    size: int = 256

    def __call__(self, img: Image.Image) -> torch.Tensor:
        arr = center_crop_arr(img, self.size)
        return to_tensor(np.stack([arr, arr[:, ::-1]]))


@dataclass(frozen=True)
class TenCrop:
    """Code extraction with ten-crop: ADM centre crop to int(S · crop_range), TenCrop(S) -> (10, 3, S, S)."""

    size: int = 256
    crop_range: float = 1.1

    def __post_init__(self) -> None:
        if self.crop_range < 1.0:
            raise ValueError(f"crop_range must be >= 1, got {self.crop_range}")

    def __call__(self, img: Image.Image) -> torch.Tensor:
        big = center_crop_arr(img, int(self.size * self.crop_range))  # 281 for 256 · 1.1
        return to_tensor(ten_crop_arr(big, self.size))
