"""Classifier-free guidance schedules (docs/ar.md#cfg-schedules; official ``autoregressive/models/generate.py``).

CFG (Ho & Salimans, https://arxiv.org/abs/2207.12598): ``guided = uncond + (cond - uncond) * s``.
GigaTok varies ``s`` over the decode steps. Token 0 (the prefill) always uses the raw scale; token
``i+1`` (decode step ``i``) uses the schedule at ratio ``r = (i+1) / (N-1)`` (N = 256 tokens, so
``r = (i+1)/255``). "Off" inside a schedule is ``1 + 1e-4``, as in the official code.

``cosine`` and ``sigmoid`` crash in the official code; here:

- ``cosine``: ``1 + (s-1) * 0.5 * (1 + cos(pi r))`` (the official formula; decays from s to 1).
- ``sigmoid``: a smooth version of ``step``: ``1 + (s-1) * g(r)`` with
  ``g(r) = (σ(k(r-c)) - σ(-kc)) / (σ(k(1-c)) - σ(-kc))``, centre ``c = window_start`` (default 0.18,
  the step schedule's start) and steepness ``k = 20``; g rises from exactly 0 at r = 0 to exactly 1
  at r = 1, so guidance grows from 1 to ``s`` around the step schedule's switch point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gigatok_core.choices import SCHEDULES  # the one list (torch-free, for --help and completion)
from gigatok_core.errors import GigatokError

OFF = 1.0 + 1e-4  # keeps the scheduled value > 1 (docs/ar.md#cfg-schedules: "off" is 1.0001)
SIGMOID_STEEPNESS = 20.0
WINDOWED = ("step", "rectangular", "sigmoid")  # the schedules that read window_start


@dataclass(frozen=True)
class CFGSchedule:
    """A guidance scale and how it varies over the tokens.

    ``window_start``/``window_end``: the rectangular window (defaults 0.05 / 1.0), the step start
    (default 0.18) and the sigmoid centre (default 0.18). ``None`` picks the schedule's default.
    ``interval``: decode steps after this index use the conditional logits only (-1 = never).
    """

    scale: float = 4.0
    name: str = "constant"
    window_start: float | None = None
    window_end: float | None = None
    interval: int = -1

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise GigatokError(
                f"unknown CFG schedule {self.name!r}", hint=f"use one of {', '.join(SCHEDULES)}"
            )
        if not math.isfinite(self.scale) or self.scale < 0:
            raise GigatokError(
                f"CFG scale must be a finite number >= 0, got {self.scale}",
                hint="1.0 (or less) turns guidance off; the paper uses 1.75-4.0",
            )
        for v in (self.window_start, self.window_end):
            if v is not None and not 0.0 <= v <= 1.0:
                raise GigatokError(f"CFG window ratios must lie in [0, 1], got {v}")
        if self.window_start is not None and self.name not in WINDOWED:
            raise GigatokError(
                f"--cfg-start-ratio has no effect with the {self.name} schedule",
                hint=f"it applies to {', '.join(WINDOWED)}; leave it out",
            )
        if self.window_end is not None and self.name != "rectangular":
            raise GigatokError(
                f"--cfg-end-ratio has no effect with the {self.name} schedule",
                hint="it applies to rectangular; leave it out",
            )
        if self.name == "rectangular" and self.start > self.end:
            raise GigatokError(
                f"the rectangular window starts after it ends ({self.start} > {self.end}): guidance would be off",
                hint="pass --cfg-start-ratio <= --cfg-end-ratio",
            )

    @property
    def enabled(self) -> bool:
        """Whether the batch is doubled with null-class rows (official: ``cfg_scale > 1``)."""
        return self.scale > 1.0

    @property
    def start(self) -> float:
        if self.window_start is not None:
            return self.window_start
        return 0.05 if self.name == "rectangular" else 0.18

    @property
    def end(self) -> float:
        return 1.0 if self.window_end is None else self.window_end

    def value(self, ratio: float) -> float:
        """The scheduled scale at decode ratio ``r`` in [0, 1] (not used for token 0)."""
        s, r = self.scale, ratio
        if self.name == "constant":
            return s
        if self.name == "linear":
            return 1 + (s - 1) * r + 1e-4
        if self.name == "linear_re":
            return 1 + (s - 1) * (1 - r) + 1e-4
        if self.name == "triangular":  # peak at r = 0.5
            return 1 + (s - 1) * (r if r < 0.5 else 1 - r) / 0.5 + 1e-4
        if self.name == "rectangular":
            return s if self.start <= r <= self.end else OFF
        if self.name == "step":
            return s if (r >= self.start or s == 1.0) else OFF
        if self.name == "cosine":
            return 1 + (s - 1) * 0.5 * (1 + math.cos(math.pi * r))
        # sigmoid (see module docstring)
        k, c = SIGMOID_STEEPNESS, self.start

        def sig(x: float) -> float:
            return 1.0 / (1.0 + math.exp(-x))

        lo, hi = sig(-k * c), sig(k * (1 - c))
        return 1 + (s - 1) * (sig(k * (r - c)) - lo) / (hi - lo)

    def per_token(self, num_tokens: int) -> list[float]:
        """The scale used for each of ``num_tokens`` tokens (index 0 = prefill = raw scale)."""
        denom = max(num_tokens - 1, 1)
        return [self.scale] + [self.value((i + 1) / denom) for i in range(num_tokens - 1)]

    def uses_uncond(self, step: int) -> bool:
        """Whether decode step ``step`` (token ``step+1``) combines with the unconditional logits."""
        return self.enabled and not (self.interval > -1 and step > self.interval)
