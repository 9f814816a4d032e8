"""The probe head, its optimiser and schedule: the official recipe (docs/recipes.md#linear-probing).

GigaTok's probes follow MAE's linear-probing protocol (He et al. 2021, https://arxiv.org/abs/2111.06377,
appendix A.2): BatchNorm without affine parameters in front of the linear classifier, LARS
(You et al. 2017, https://arxiv.org/abs/1708.03888) with momentum 0.9, trust coefficient 0.001 and
no trust scaling or decay for 1-D parameters, lr = blr * global batch / 256, a linear warm-up
from 0 then a half-cosine to 0, evaluated every iteration at the fractional epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn


class ProbeHead(nn.Module):
    """BatchNorm1d(D, affine=False, eps=1e-6) -> Linear(D, classes); weight trunc-normal std 0.01.

    The truncation is at +-2 in absolute value (torch/timm defaults), so in effect N(0, 0.01).

    The bias keeps PyTorch's default init, as in the official code. (B, D) -> (B, classes).
    """

    def __init__(self, dim: int, num_classes: int, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.linear.weight, std=0.01, generator=generator)
        if generator is not None:  # the default bias init, drawn from the same seeded generator
            bound = 1 / math.sqrt(dim)
            with torch.no_grad():
                self.linear.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, feats: Tensor) -> Tensor:
        return self.linear(self.norm(feats))


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling with heavy-ball momentum (no Nesterov, no dampening).

    For a parameter p with gradient g (only when ``p.ndim > 1``):
        d = g + weight_decay * p
        d = d * (trust_coefficient * ||p|| / ||d||)   when ||p|| > 0 and ||d|| > 0, else unchanged
    1-D parameters (biases, norms) use d = g. Then ``mu = momentum * mu + d`` and ``p -= lr * mu``.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 0.0,
        *,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        trust_coefficient: float = 0.001,
    ) -> None:
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "momentum": momentum,
            "trust_coefficient": trust_coefficient,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if p.ndim > 1:
                    d = d.add(p, alpha=group["weight_decay"])
                    p_norm, d_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                    trust = group["trust_coefficient"] * p_norm / d_norm
                    ratio = torch.where((p_norm > 0) & (d_norm > 0), trust, torch.ones_like(p_norm))
                    d = d * ratio
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(group["momentum"]).add_(d)
                p.add_(mu, alpha=-group["lr"])
        return loss


def scaled_lr(blr: float, global_batch: int) -> float:
    """The linear scaling rule: lr = blr * (batch per process * processes) / 256."""
    return blr * global_batch / 256


def lr_at(epoch: float, *, lr: float, epochs: float, warmup_epochs: float, min_lr: float = 0.0) -> float:
    """Learning rate at fractional ``epoch`` (iteration i of epoch e: e + i / iterations per epoch).

    Linear warm-up from 0 over ``warmup_epochs``, then a half-cosine from ``lr`` to ``min_lr``.
    """
    if epoch < warmup_epochs:
        return lr * epoch / warmup_epochs
    span = max(epochs - warmup_epochs, 1e-12)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / span))


def topk_correct(logits: Tensor, target: Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """How many rows have their target among the top-k logits, per k (k capped at the class count)."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # (B, kmax)
    hit = top == target[:, None]  # (B, kmax)
    return [int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks]
