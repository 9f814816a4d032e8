"""A Dataset of pre-extracted tokenizer codes (CODES_DIR), and a deterministic held-out split.

The folder's format (shards, manifest, writing and reading them) is
:mod:`gigatok_core.data.codes_format`.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from gigatok_core.data.codes_format import read_manifest
from gigatok_core.data.draws import mix64
from gigatok_core.errors import GigatokError


# ---------------------------------------------------------------------------- dataset
class CodesDataset(Dataset):
    """Items ``(codes: LongTensor (T,), label: int)`` from a codes folder.

    ``crop="random"`` draws one stored crop per sample per epoch (the official training picks one of
    the ten crops uniformly, docs/recipes.md#gpt), deterministically from (seed, epoch, index): call
    :meth:`set_epoch` before each epoch (DataLoader workers see it when they are created, so do not
    combine with ``persistent_workers``). An int picks that crop always. ``indices`` restricts the
    dataset to those image indices (e.g. a held-out split), in that order.
    Shard files are memory-mapped lazily, in each worker, never pickled.
    """

    def __init__(
        self,
        codes_dir: str | Path,
        *,
        indices: Sequence[int] | np.ndarray | None = None,
        crop: Literal["random"] | int = "random",
        seed: int = 0,
    ) -> None:
        self.manifest = read_manifest(codes_dir)
        m = self.manifest
        if crop != "random" and not (isinstance(crop, int) and 0 <= crop < m.crops):
            raise GigatokError(
                f"crop must be 'random' or an index in [0, {m.crops}), got {crop!r}",
                hint=f"{m.root} stores {m.crops} crops per image",
            )
        self.crop = crop
        self.seed = int(seed)
        self.epoch = 0
        self._starts = np.cumsum(
            [0] + [s.count for s in m.shards]
        ).tolist()  # shard k = [starts[k], starts[k+1])
        if indices is None:
            self.indices = None
        else:
            idx = np.asarray(indices, dtype=np.int64).reshape(-1)
            if idx.size and (idx.min() < 0 or idx.max() >= m.num_images):
                raise GigatokError(
                    f"indices must lie in [0, {m.num_images}), got [{idx.min()}, {idx.max()}]",
                    hint=f"{m.root} holds {m.num_images} images",
                )
            self.indices = idx
        self._arrays: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(m.shards)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_arrays"] = [None] * len(self.manifest.shards)  # re-mapped in the worker
        return state

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.manifest.num_images if self.indices is None else int(self.indices.size)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.manifest.classes

    @property
    def num_tokens(self) -> int:
        return self.manifest.num_tokens

    def _shard(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        arrays = self._arrays[k]
        if arrays is None:
            s = self.manifest.shards[k]
            root = self.manifest.root
            arrays = (
                np.load(root / s.codes, mmap_mode="r", allow_pickle=False),  # (N, crops, T)
                np.load(root / s.labels, mmap_mode="r", allow_pickle=False),  # (N,)
            )
            self._arrays[k] = arrays
        return arrays

    def crop_for(self, index: int) -> int:
        """The stored crop used for image ``index`` in the current epoch."""
        if self.crop != "random":
            return int(self.crop)
        return mix64(self.seed, self.epoch, index) % self.manifest.crops

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i = i % len(self)
        index = int(self.indices[i]) if self.indices is not None else i
        k = bisect.bisect_right(self._starts, index) - 1
        codes, labels = self._shard(k)
        row = index - self._starts[k]
        tokens = torch.from_numpy(np.asarray(codes[row, self.crop_for(index)], dtype=np.int64))  # (T,)
        return tokens, int(labels[row])


def holdout_split(num_images: int, fraction: float, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split image indices into (train, held-out) with ``round(fraction * num_images)`` held out (>= 1).

    Deterministic in ``seed``; both parts are sorted. Used for the validation loss when no
    separate ``--val-codes`` folder is given.
    """
    if not 0.0 < fraction < 1.0:
        raise GigatokError(f"held-out fraction must be in (0, 1), got {fraction}", hint="e.g. 0.01")
    n_val = max(1, round(fraction * num_images))
    if n_val >= num_images:
        raise GigatokError(
            f"a held-out fraction of {fraction} leaves no training images out of {num_images}",
            hint="extract more images or pass a separate --val-codes folder",
        )
    perm = np.random.default_rng(seed).permutation(num_images)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
