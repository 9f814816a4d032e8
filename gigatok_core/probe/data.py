"""The two probe splits (ImageFolder trees) and their augmentation (docs/recipes.md#linear-probing).

Train: ADM ``random_crop_arr`` (short side drawn in [S, S/0.8], BOX halving, BICUBIC, random S crop)
then a horizontal flip with p = 0.5; val: ADM centre crop (docs/tokenizer.md#pre-and-post-processing, docs/recipes.md#loop-and-data). Labels are the
index of the class folder in sorted order (torchvision ``ImageFolder``); both splits must hold the
same class folders. Every random draw comes from ``(seed, epoch, image index)``, so an epoch's
crops do not depend on the worker count, the rank or a resume.
"""

from __future__ import annotations

import functools
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from gigatok_core.data.images import MAX_ASPECT, ImageReadError, center_crop_arr, read_image
from gigatok_core.data.transforms import random_crop_arr
from gigatok_core.errors import GigatokError

log = logging.getLogger("gigatok")
_named: set[Path] = set()  # unreadable files already reported by this process


@dataclass(frozen=True)
class Split:
    """One ImageFolder split: files, their labels and the sorted class folder names."""

    root: Path
    files: tuple[Path, ...]
    labels: tuple[int, ...]
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.files)

    @functools.cached_property
    def digest(self) -> str:
        """sha256 of (relative path, size, label) per file: what a feature cache depends on."""
        import hashlib
        import json

        rows = [
            [str(f.relative_to(self.root)), f.stat().st_size, y]
            for f, y in zip(self.files, self.labels, strict=True)
        ]
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def read_split(root: str | Path, *, what: str, subset: int | None = None) -> Split:
    """List an ImageFolder tree (sorted class folders -> labels 0, 1, ...); ``subset``: first N per class."""
    from gigatok_core.data.folder import image_folder

    root = Path(root)
    if not root.is_dir():
        raise GigatokError(
            f"{what} {root} is not a folder",
            hint="pass an ImageFolder tree: one sub-folder of images per class",
        )
    files, labels, classes = image_folder(root, purpose="linear probing")
    if subset:
        count: dict[int, int] = {}
        keep = []
        for i, y in enumerate(labels):
            count[y] = count.get(y, 0) + 1
            if count[y] <= subset:
                keep.append(i)
        files, labels = [files[i] for i in keep], [labels[i] for i in keep]
    return Split(root, tuple(files), tuple(labels), tuple(classes))


def check_same_classes(train: Split, val: Split) -> None:
    """Refuse splits whose class folders differ (labels would not mean the same class)."""
    if train.classes == val.classes:
        return
    only_train = sorted(set(train.classes) - set(val.classes))
    only_val = sorted(set(val.classes) - set(train.classes))
    parts = []
    if only_train:
        parts.append(f"{len(only_train)} only in the train split (first: {only_train[0]})")
    if only_val:
        parts.append(f"{len(only_val)} only in the val split (first: {only_val[0]})")
    raise GigatokError(
        f"the train and val splits have different class folders: {'; '.join(parts)}",
        hint="both splits need the same class sub-folders (labels come from the sorted folder names)",
    )


# ---------------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------------
def probe_pixels(path: Path, size: int, *, augment: bool, rng: random.Random | None) -> np.ndarray:
    """One image as (size, size, 3) uint8: random crop + flip when ``augment``, else the centre crop."""
    img = read_image(path)
    if max(img.size) > MAX_ASPECT * min(img.size):
        raise ImageReadError(f"{path} is {img.size[0]}x{img.size[1]}: too elongated to crop")
    if not augment:
        return center_crop_arr(img, size)
    assert rng is not None
    arr = random_crop_arr(img, size, rng=rng)
    return np.ascontiguousarray(arr[:, ::-1]) if rng.random() < 0.5 else arr


def to_input(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (3, H, W) in [-1, 1] (ToTensor then Normalize(0.5, 0.5))."""
    return (torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255.0 - 0.5) / 0.5


class ProbeImages(Dataset):
    """Items ``(image (3,S,S) in [-1,1], label, index)``; ``None`` for an unreadable file (named once).

    ``draw``: which augmentation draw (the epoch online, the cache draw offline) seeds the crop.
    """

    def __init__(self, split: Split, size: int, *, augment: bool, seed: int = 0) -> None:
        self.split, self.size, self.augment, self.seed = split, size, augment, seed
        self.draw = 0

    def set_draw(self, draw: int) -> None:
        self.draw = draw

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int] | None:
        rng = random.Random(f"{self.seed}-{self.draw}-{i}") if self.augment else None
        try:
            pixels = probe_pixels(self.split.files[i], self.size, augment=self.augment, rng=rng)
        except ImageReadError as err:
            if self.split.files[i] not in _named:
                _named.add(self.split.files[i])
                log.warning("skipped: %s", err.message)
            return None
        return to_input(pixels), self.split.labels[i], i


def collate(items: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Stack the readable items: (images (B,3,S,S), labels (B,), indices (B,)); None when none is."""
    items = [it for it in items if it is not None]
    if not items:
        return None
    images, labels, idx = zip(*items, strict=True)
    return torch.stack(images), torch.tensor(labels), torch.tensor(idx)
