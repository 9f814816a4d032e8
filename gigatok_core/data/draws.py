"""Random draws of the data pipeline as a function of (seed, epoch, sample index).

A sample's augmentation must not depend on which DataLoader worker decodes it, on how many workers
or processes there are, or on where a resumed run restarts: each sample gets its own generator,
seeded from a hash of the three numbers (a counter-based scheme, as JAX's ``fold_in``).
"""

from __future__ import annotations

import random

__all__ = ["mix64", "sample_rng"]

_MASK = (1 << 64) - 1


def mix64(*values: int) -> int:
    """A splitmix64-style hash of a few integers (deterministic across processes and platforms)."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (v & _MASK)) * 0xBF58476D1CE4E5B9 & _MASK
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & _MASK
        h ^= h >> 29
    return h


def sample_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The generator of sample ``index`` in ``epoch`` of a run seeded with ``seed``."""
    return random.Random(mix64(seed, epoch, index))
