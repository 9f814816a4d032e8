"""Optimizers of the tokenizer recipe: AdamW parameter groups, clipping helpers, EMA.

See docs/recipes.md#loop-and-data. The DDP trainer decays every parameter (one group: norms, biases,
positional embeddings and the codebook included); the FSDP trainer exempts the parameters whose
name contains "norm" (``ln_pre``/``ln_post`` do not, so they decay).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from gigatok_core.train.optim import adamw as fast_adamw
from gigatok_core.train.optim import ema_update


def param_groups(model: nn.Module, weight_decay: float, *, split_norm: bool = False) -> list[dict]:
    """One decayed group (DDP recipe), or decay / no-decay by "norm" in the name (FSDP recipe)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not split_norm:
        return [{"params": [p for _, p in params], "weight_decay": weight_decay}]
    decay = [p for n, p in params if "norm" not in n]
    no_decay = [p for n, p in params if "norm" in n]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw(
    groups: list[dict] | list[nn.Parameter],
    *,
    lr: float,
    betas: tuple[float, float],
    weight_decay: float,
) -> torch.optim.AdamW:
    """torch AdamW, fused wherever torch has the kernel (CUDA, CPU), else foreach (see
    :func:`gigatok_core.train.optim.adamw`); the same update up to rounding."""
    return fast_adamw(groups, lr=lr, betas=tuple(betas), weight_decay=weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class EMA:
    """Exponential moving average of the parameters (buffers are not averaged), decay 0.9999,
    initialised as a copy of the model and updated after each generator step (docs/recipes.md#loop-and-data).
    Build it before the model is sharded (it copies the whole model)."""

    def __init__(self, model: nn.Module, decay: float = 0.9999) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        live = dict(model.named_parameters())
        names = [name for name, _ in self.model.named_parameters()]
        srcs = [live[name].detach() for name in names]
        srcs = [s.full_tensor() if hasattr(s, "full_tensor") else s for s in srcs]  # FSDP2: whole tensors
        ema_update([p for _, p in self.model.named_parameters()], srcs, self.decay, lerp=True)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state, strict=True)
