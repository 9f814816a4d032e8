"""The official ``cosine_v2`` learning-rate schedule and when each optimizer sees which value.

See docs/recipes.md#loop-and-data, #details-pinned-by-the-training-fixture. The official loop builds AdamW with the base LR, and calls
``scheduler(t)`` *after* the update at loop counter t (global step g = t + 1). So the update at
t = 0 uses the base LR, and the update at t >= 1 uses ``cosine_v2(t - 1)``. The discriminator's
scheduler is called only after a discriminator update, so its *first* update (at g = disc_start)
also uses the base LR. Both are pure functions of t here, which keeps resume exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def cosine_v2(step: int, *, base_lr: float, end_lr: float, warmup: int, total: int) -> float:
    """Linear ramp from base/100 over ``warmup`` steps, cosine to ``end_lr`` at ``total``, then flat."""
    if step < warmup:
        frac = step / warmup
        return base_lr * (frac + (1.0 - frac) / 100.0)
    if step < total:
        progress = (step - warmup) / (total - warmup)
        return end_lr + 0.5 * (base_lr - end_lr) * (1.0 + math.cos(math.pi * progress))
    return end_lr


@dataclass(frozen=True)
class OfficialLR:
    """The LR each optimizer uses at loop counter ``t`` (docs/recipes.md#details-pinned-by-the-training-fixture)."""

    base_lr: float
    end_lr: float
    warmup: int
    total: int
    disc_start: int  # global step of the first discriminator update

    def schedule(self, step: int) -> float:
        return cosine_v2(step, base_lr=self.base_lr, end_lr=self.end_lr, warmup=self.warmup, total=self.total)

    def generator(self, t: int) -> float:
        return self.base_lr if t == 0 else self.schedule(t - 1)

    def discriminator(self, t: int) -> float:
        first = max(self.disc_start - 1, 0)  # loop counter of the first D update
        return self.base_lr if t <= first else self.schedule(t - 1)
