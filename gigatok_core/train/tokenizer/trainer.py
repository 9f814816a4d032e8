"""One official tokenizer training step, in the order of ``vq_train.py`` (docs/fidelity.md#tokenizer-training).

    for each micro-batch: teacher(x) -> model(x) (train) -> generator loss -> backward
    unscale, clip to max_grad_norm, AdamW step (LR of docs/recipes.md#details-pinned-by-the-training-fixture), EMA
    (clipping rides in the fused step)
    if g >= disc_start: for each micro-batch: D loss on the SAME (detached) reconstructions
    -> backward; clip; AdamW step

Each stage is its own method, so the golden test can look at gradients between them; ``step``
runs them all. The LR is a pure function of the loop counter t (no scheduler state to resume).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from gigatok_core.tokenizer.model import VQTokenizer
from gigatok_core.train.optim import clip_and_step
from gigatok_core.train.tokenizer.loss import VQLoss
from gigatok_core.train.tokenizer.optim import EMA, adamw, param_groups, set_lr
from gigatok_core.train.tokenizer.schedule import OfficialLR

AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class OptimSettings:
    lr: float = 1e-4
    end_lr: float = 1e-5
    warmup: int = 0
    total_steps: int = 1
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 1e-4
    max_grad_norm: float = 10.0
    disc_max_grad_norm: float = 10.0
    split_norm_decay: bool = False  # the FSDP recipe's groups
    ema_decay: float | None = None  # None: no EMA
    precision: str = "fp32"


@dataclass
class _Cache:
    """What the D step needs from the generator step: per micro-batch (x, recon, direct)."""

    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = field(default_factory=list)
    keys: list[Sequence[int] | None] = field(default_factory=list)  # per micro-batch: the samples' keys


def _accumulate(metrics: dict[str, float], terms: dict[str, torch.Tensor], n: int) -> None:
    for k, v in terms.items():
        metrics[k] = metrics.get(k, 0.0) + float(v.detach()) / n


class TokenizerTrainer:
    """Holds the model, loss (LPIPS + discriminator), teacher, both optimizers, scalers and EMA.

    Under the engine, ``forward_model``/``disc_forward`` are the DDP/FSDP-wrapped modules,
    ``scaler`` the engine's GradScaler, ``autocast``/``accumulating`` its contexts. The generator
    side calls the unwrapped discriminator (its gradients there are discarded by the D step).
    Build it after sharding (the optimizers hold the sharded parameters); pass an ``ema`` made
    before sharding.
    """

    def __init__(
        self,
        model: VQTokenizer,
        loss: VQLoss,
        teacher: nn.Module | None,
        optim: OptimSettings,
        *,
        lpips_dropout: bool = True,
        forward_model: nn.Module | None = None,
        disc_forward: nn.Module | None = None,
        scaler: torch.amp.GradScaler | None = None,
        autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
        accumulating: Callable[[nn.Module, bool], contextlib.AbstractContextManager] | None = None,
        ema: EMA | None = None,
    ) -> None:
        self.model, self.loss, self.teacher, self.settings = model, loss, teacher, optim
        self.forward_model = forward_model or model
        self.disc_forward = disc_forward or loss.discriminator
        s = loss.settings
        self.schedule = OfficialLR(optim.lr, optim.end_lr, optim.warmup, optim.total_steps, s.disc_start)
        groups = param_groups(model, optim.weight_decay, split_norm=optim.split_norm_decay)
        self.opt = adamw(groups, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)
        disc = loss.discriminator
        d_params = [p for p in disc.parameters() if p.requires_grad] if disc is not None else []
        self.opt_d = (
            adamw(d_params, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)
            if d_params
            else None
        )
        self.amp_dtype = AMP_DTYPES[optim.precision]
        fp16 = optim.precision == "fp16"
        self.scaler = scaler or torch.amp.GradScaler(model.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(model.device.type, enabled=fp16)
        self._autocast_fn = autocast
        self._accumulating = accumulating or (lambda _m, _last: contextlib.nullcontext())
        self.ema = ema or (EMA(model, optim.ema_decay) if optim.ema_decay else None)
        model.train()
        if disc is not None:
            disc.train()  # BatchNorm on batch statistics, always (docs/recipes.md#details-pinned-by-the-training-fixture)
        if loss.lpips is not None:
            # the official NetLinLayer dropouts are active (docs/recipes.md#generator-loss)
            loss.lpips.train(lpips_dropout)

    # -----------------------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self._autocast_fn is not None:
            return self._autocast_fn()
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.model.device.type, dtype=self.amp_dtype)

    def _requires_distill(self) -> bool:
        return self.teacher is not None and self.loss.settings.proj_weight != 0

    def generator_backward(
        self,
        t: int,
        micro_batches: list[torch.Tensor],
        keys: Sequence[Sequence[int] | None] | None = None,
    ) -> tuple[dict[str, float], _Cache]:
        """Zero grads, forward and backward every micro-batch (loss / n). Returns mean terms.
        ``keys``: per micro-batch, its samples' keys (the discriminator's draws follow them)."""
        g, s = t + 1, self.loss.settings
        self.opt.zero_grad(set_to_none=True)
        disc = self.loss.discriminator
        if disc is not None:
            disc.requires_grad_(False)  # gradients reach x_hat only; the D step zeroes D's anyway
        metrics: dict[str, float] = {}
        cache, n = _Cache(), len(micro_batches)
        try:
            for i, x in enumerate(micro_batches):
                distill = self._requires_distill()
                last = i == n - 1
                with self._accumulating(self.forward_model, last), self._autocast():
                    feat = self.teacher(x) if distill else None
                    out = self.forward_model(
                        x, rec_loss=s.aux_open(g), distill=distill, direct=s.use_direct_rec_loss
                    )
                    k = keys[i] if keys is not None else None
                    res = self.loss.generator(x, out, g, feat, keys=k)
                    self.scaler.scale(res.total / n).backward()
                _accumulate(metrics, {"loss": res.total, **res.terms}, n)
                metrics["codebook_usage"] = float(out.usage)
                direct = out.direct_recon.detach() if out.direct_recon is not None else None
                cache.batches.append((x, out.recon.detach(), direct))
                cache.keys.append(k)
                self.last_codes, self.last_logits_fake = out.codes, res.logits_fake
        finally:
            if disc is not None:
                disc.requires_grad_(True)
        return metrics, cache

    def generator_update(self, t: int) -> dict[str, float]:
        """Unscale, clip (pre-clip norm returned), AdamW at the official LR, EMA."""
        lr = self.schedule.generator(t)
        set_lr(self.opt, lr)
        norm = clip_and_step(self.opt, self.model.parameters(), self.settings.max_grad_norm, self.scaler)
        if self.ema is not None:
            self.ema.update(self.model)
        return {"grad_norm": float(norm), "lr": lr}

    def discriminator_backward(self, t: int, cache: _Cache) -> dict[str, float]:
        g = t + 1
        self.opt_d.zero_grad(set_to_none=True)
        metrics: dict[str, float] = {}
        n = len(cache.batches)
        for i, (x, recon, direct) in enumerate(cache.batches):
            with self._accumulating(self.disc_forward, i == n - 1), self._autocast():
                keys = cache.keys[i] if i < len(cache.keys) else None
                res = self.loss.discriminator_step_loss(
                    x, recon, direct, g, disc=self.disc_forward, keys=keys
                )
                self.scaler_d.scale(res.total / n).backward()
            _accumulate(metrics, {"d_loss": res.total, **res.terms}, n)
            self.last_d_logits = res.logits
        return metrics

    def discriminator_update(self, t: int) -> dict[str, float]:
        lr = self.schedule.discriminator(t)
        set_lr(self.opt_d, lr)
        params = [p for group in self.opt_d.param_groups for p in group["params"]]
        norm = clip_and_step(self.opt_d, params, self.settings.disc_max_grad_norm, self.scaler_d)
        return {"d_grad_norm": float(norm), "d_lr": lr}

    def discriminator_active(self, t: int) -> bool:
        return self.opt_d is not None and self.loss.settings.adversarial(t + 1)

    def step(
        self,
        t: int,
        micro_batches: list[torch.Tensor],
        keys: Sequence[Sequence[int] | None] | None = None,
    ) -> dict[str, float]:
        """One full training step at loop counter t; returns the logged metrics."""
        metrics, cache = self.generator_backward(t, micro_batches, keys)
        metrics.update(self.generator_update(t))
        if self.discriminator_active(t):
            metrics.update(self.discriminator_backward(t, cache))
            metrics.update(self.discriminator_update(t))
        return metrics


def first_nonfinite(metrics: dict[str, float]) -> str | None:
    """The name of the first NaN/inf entry, or None."""
    return next((k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)), None)
