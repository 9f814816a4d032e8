"""Per-rank random state and the loop settings: what a checkpoint needs to continue a run exactly."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from gigatok_core.errors import GigatokError

STRATEGIES = ("ddp", "fsdp")


@dataclass(frozen=True)
class LoopSettings:
    """The resolved settings the engine runs with (no "use the recipe's value" left)."""

    max_steps: int
    batch_size: int  # global: all ranks x all accumulation steps
    grad_accum: int = 1
    seed: int = 0
    save_every: int = 5000
    keep: int | None = None
    log_every: int = 100
    sample_every: int | None = None
    val_every: int | None = None
    precision: str = "fp32"
    strategy: str = "ddp"
    compile: bool | None = False  # None: on where it helps (CUDA, not FSDP), see resolve_compile
    activation_checkpointing: bool = False
    on_nan: str = "stop"
    device: str = "auto"

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str, hint: str | None = None) -> None:
            if not cond:
                raise GigatokError(msg, hint=hint)

        need(self.max_steps > 0, f"max_steps must be positive, got {self.max_steps}")
        need(self.batch_size > 0, f"batch size must be positive, got {self.batch_size}")
        need(self.grad_accum > 0, f"grad_accum must be positive, got {self.grad_accum}")
        need(self.save_every > 0 and self.log_every > 0, "save_every and log_every must be positive")
        need(self.keep is None or self.keep > 0, "keep must be positive")
        need(self.strategy in STRATEGIES, f"strategy must be ddp or fsdp, got {self.strategy!r}")
        need(self.on_nan in ("stop", "skip"), f"on_nan must be stop or skip, got {self.on_nan!r}")

    @classmethod
    def from_train_config(cls, cfg: Any) -> LoopSettings:
        """From a resolved training config (``GPTTrainConfig``/``TokenizerTrainConfig``)."""
        run = cfg.run
        return cls(
            max_steps=cfg.total_steps,
            batch_size=cfg.batch_size,
            grad_accum=run.grad_accum,
            seed=run.seed,
            save_every=run.save_every,
            keep=run.keep,
            log_every=run.log_every,
            sample_every=run.sample_every,
            val_every=run.val_every,
            precision=cfg.precision,
            strategy=cfg.strategy,
            compile=cfg.compile,
            activation_checkpointing=run.activation_checkpointing,
            on_nan=run.on_nan,
            device=run.device,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def micro_batch(self, world_size: int) -> int:
        """Samples per rank per forward pass; the global batch must divide evenly."""
        parts = world_size * self.grad_accum
        if self.batch_size % parts:
            raise GigatokError(
                f"the global batch size {self.batch_size} does not divide over {world_size} process(es) x "
                f"{self.grad_accum} accumulation step(s)",
                hint=f"use a --batch-size that is a multiple of {parts}, or change --grad-accum",
            )
        return self.batch_size // parts


def seed_everything(seed: int, rank: int, world_size: int) -> None:
    """Per-rank seeds as the official trainers: ``seed * world_size + rank`` (docs/recipes.md#gpt)."""
    s = seed * world_size + rank
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


def capture_rng() -> dict[str, Any]:
    """This process's random states as plain data (weights_only-loadable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
