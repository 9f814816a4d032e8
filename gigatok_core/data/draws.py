"""Random draws of the data pipeline as a function of (seed, epoch, sample index).

A sample's augmentation must not depend on which DataLoader worker decodes it, on how many workers
or processes there are, or on where a resumed run restarts: each sample gets its own generator,
seeded from a hash of the three numbers (a counter-based scheme, as JAX's ``fold_in``).

The key of a sample, ``mix64(seed, epoch, index)``, travels with it in the collated batch, so the
training step's own draws for it (the discriminator's DiffAug and crop) are functions of the key
too: :func:`fold` derives one key per use, :func:`uniforms` a row of numbers from each.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

__all__ = ["fold", "mix64", "sample_key", "sample_rng", "uniforms"]

_MASK = (1 << 64) - 1


def mix64(*values: int) -> int:
    """A splitmix64-style hash of a few integers (deterministic across processes and platforms)."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v & _MASK)) * 0xBF58476D1CE4E5B9 & _MASK
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & _MASK
        h ^= h >> 29
    return h


def sample_key(seed: int, epoch: int, index: int) -> int:
    """The key of sample ``index`` in ``epoch`` of a run seeded with ``seed`` (64 bits)."""
    return mix64(seed, epoch, index)


def sample_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The generator of sample ``index`` in ``epoch`` of a run seeded with ``seed``."""
    return random.Random(sample_key(seed, epoch, index))


def fold(keys: Sequence[int], *values: int) -> list[int]:
    """Each key combined with ``values`` (e.g. the step and which call of it): one new key per row."""
    return [mix64(k, *values) for k in keys]


def uniforms(keys: Sequence[int], n: int) -> torch.Tensor:
    """(len(keys), n) float64 numbers uniform in [0, 1): number ``j`` of row ``r`` is a hash of
    (keys[r], j), so a row depends on its key only (not on the other rows or their count)."""
    rows = [[(mix64(k, j) >> 11) * 2.0**-53 for j in range(n)] for k in keys]
    return torch.tensor(rows, dtype=torch.float64).view(len(keys), n)
