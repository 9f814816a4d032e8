"""The VQ training loss: generator side and discriminator side (official ``VQLoss``).

See docs/tokenizer.md#semantic-regularization, docs/recipes.md#generator-loss, #discriminators, #details-pinned-by-the-training-fixture. At global step g (= loop counter + 1):

    total = rec_w (rec + rec_direct) + perc_w (p + p_direct) + disc_w (gen_adv + gen_adv_direct)
          + (vq + commit + entropy) + fea_w * fea_rec + proj_w * proj
    d_loss = disc_w * hinge(D(x), D(x_hat)) [+ disc_w * hinge(D(x), D(x_hat_direct))]

The ``*_direct`` terms live only while the aux window is open (g < aux_loss_end, and
``use_direct_rec_loss``); the adversarial terms from g >= disc_start. The real images go
through D once per D step and count in both hinge terms; real and fake go through D in
separate calls (BatchNorm statistics per call).

With the samples' keys (``keys``: one per image, from the dataset), a discriminator that draws
(the DINO one: DiffAug and crop) gets per image ``fold(key, g, call)``, ``call`` naming which of
the step's discriminator calls it is (:class:`DiscCall`): its draws are a function of (sample,
step, call), whatever the number of processes or micro-batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gigatok_core.data.draws import fold
from gigatok_core.tokenizer.model import TokenizerOutput


class DiscCall(IntEnum):
    """Which discriminator call of a training step (folded into the images' keys)."""

    GEN_FAKE = 0  # generator side, on x_hat
    GEN_DIRECT = 1  # generator side, on x_hat_direct
    REAL = 2  # D step, on x
    FAKE = 3  # D step, on x_hat
    DIRECT = 4  # D step, on x_hat_direct


def call_disc(
    disc: nn.Module, x: torch.Tensor, keys: Sequence[int] | None, g: int, call: DiscCall
) -> torch.Tensor:
    """``disc(x)``, with per-image keys for (g, call) when there are keys and ``disc`` (or the
    module a DDP wrapper holds) takes them."""
    module = getattr(disc, "module", disc)
    if keys is None or not getattr(module, "takes_keys", False):
        return disc(x)
    return disc(x, keys=fold(keys, g, int(call)))


@dataclass(frozen=True)
class LossSettings:
    """The loss part of a tokenizer recipe (names and defaults of the official VQLoss)."""

    disc_start: int = 20000
    aux_loss_end: int = 15000
    use_direct_rec_loss: bool = True
    disc_weight: float = 0.5
    perceptual_weight: float = 1.0
    reconstruction_weight: float = 1.0
    reconstruction_loss: str = "l2"
    fea_rec_loss_weight: float = 1.0  # the model's feature-reconstruction MSE (aux window only)
    proj_weight: float = 0.5  # semantic regularization (0 switches the teacher off)

    @classmethod
    def from_recipe(cls, recipe: Any) -> LossSettings:
        """Read the fields this loss needs from a recipe object; absent ones keep the defaults."""
        names = cls.__dataclass_fields__
        values = {n: getattr(recipe, n) for n in names if hasattr(recipe, n)}
        if getattr(recipe, "distill_loss", True) is False:
            values["proj_weight"] = 0.0
        return cls(**values)

    def aux_open(self, g: int) -> bool:
        return g < self.aux_loss_end

    def adversarial(self, g: int) -> bool:
        return g >= self.disc_start


@dataclass
class GeneratorLoss:
    total: torch.Tensor
    terms: dict[str, torch.Tensor]  # unweighted terms (gen_adv without disc_weight)
    logits_fake: torch.Tensor | None = None  # D(x_hat) in the generator branch


@dataclass
class DiscriminatorLoss:
    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    logits: dict[str, torch.Tensor] = field(default_factory=dict)  # real, fake, direct_fake


def hinge_d(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def proj_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over images and tokens of -cos(student, teacher); (B, N, C) each (docs/tokenizer.md#semantic-regularization)."""
    s = F.normalize(student.float(), dim=-1)
    t = F.normalize(teacher.float(), dim=-1)
    return -(s * t).sum(-1).mean()


class VQLoss(nn.Module):
    """``lpips``: LPIPS-VGG module (None when perceptual_weight is 0); ``discriminator``: a
    PatchGAN or DINO discriminator (None when disc_start is never reached)."""

    def __init__(
        self, settings: LossSettings, *, lpips: nn.Module | None, discriminator: nn.Module | None
    ) -> None:
        super().__init__()
        self.settings = settings
        self.lpips = lpips
        self.discriminator = discriminator

    def _rec(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fn = F.mse_loss if self.settings.reconstruction_loss == "l2" else F.l1_loss
        return fn(y.float(), x.float())

    def _perceptual(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.lpips is None or self.settings.perceptual_weight == 0:
            return x.new_zeros((), dtype=torch.float32)
        return self.lpips(x.float().contiguous(), y.float().contiguous()).mean()

    def generator(
        self,
        x: torch.Tensor,
        out: TokenizerOutput,
        g: int,
        teacher_feat: torch.Tensor | None = None,
        keys: Sequence[int] | None = None,
    ) -> GeneratorLoss:
        """``keys``: the images' sample keys (None: the discriminator draws globally)."""
        s = self.settings
        zero = x.new_zeros((), dtype=torch.float32)
        direct = out.direct_recon if (s.use_direct_rec_loss and s.aux_open(g)) else None
        t: dict[str, torch.Tensor] = {
            "rec": self._rec(x, out.recon),
            "rec_direct": self._rec(x, direct) if direct is not None else zero,
            "perceptual": self._perceptual(x, out.recon),
            "perceptual_direct": self._perceptual(x, direct) if direct is not None else zero,
            "gen_adv": zero,
            "gen_adv_direct": zero,
        }
        logits_fake = None
        disc_w = s.disc_weight if (s.adversarial(g) and self.discriminator is not None) else 0.0
        if disc_w:
            logits_fake = call_disc(self.discriminator, out.recon.float(), keys, g, DiscCall.GEN_FAKE)
            t["gen_adv"] = -logits_fake.float().mean()
            if direct is not None:
                d_direct = call_disc(self.discriminator, direct.float(), keys, g, DiscCall.GEN_DIRECT)
                t["gen_adv_direct"] = -d_direct.float().mean()
        t["vq"], t["commit"], t["entropy"] = out.vq_loss, out.commit_loss, out.entropy_loss
        fea = out.fea_rec_loss if (out.fea_rec_loss is not None and s.aux_open(g)) else zero
        t["fea_rec"] = fea
        use_proj = s.proj_weight != 0 and teacher_feat is not None and out.distill_feat is not None
        t["proj"] = proj_loss(out.distill_feat, teacher_feat) if use_proj else zero
        total = (
            s.reconstruction_weight * (t["rec"] + t["rec_direct"])
            + s.perceptual_weight * (t["perceptual"] + t["perceptual_direct"])
            + disc_w * (t["gen_adv"] + t["gen_adv_direct"])
            # codebook_weight is never applied (docs/recipes.md#generator-loss)
            + (t["vq"] + t["commit"] + t["entropy"])
            + s.fea_rec_loss_weight * t["fea_rec"]
            + s.proj_weight * t["proj"]
        )
        return GeneratorLoss(total=total, terms=t, logits_fake=logits_fake)

    def discriminator_step_loss(
        self,
        x: torch.Tensor,
        recon: torch.Tensor,
        direct: torch.Tensor | None,
        g: int,
        *,
        disc: nn.Module | None = None,
        keys: Sequence[int] | None = None,
    ) -> DiscriminatorLoss:
        """The D loss on detached reconstructions; ``direct`` only while the aux window is open.
        ``disc``: the (DDP-wrapped) discriminator to call, default the unwrapped one; ``keys``: the
        images' sample keys."""
        s = self.settings
        d = disc if disc is not None else self.discriminator
        direct = direct if (direct is not None and s.use_direct_rec_loss and s.aux_open(g)) else None
        real = call_disc(d, x.detach().float(), keys, g, DiscCall.REAL)
        fake = call_disc(d, recon.detach().float(), keys, g, DiscCall.FAKE)
        logits = {"real": real, "fake": fake}
        terms = {"d_adv": s.disc_weight * hinge_d(real.float(), fake.float())}
        if direct is not None:
            logits["direct_fake"] = call_disc(d, direct.detach().float(), keys, g, DiscCall.DIRECT)
            terms["d_adv_direct"] = s.disc_weight * hinge_d(real.float(), logits["direct_fake"].float())
        else:
            terms["d_adv_direct"] = terms["d_adv"].new_zeros(())
        total = terms["d_adv"] + terms["d_adv_direct"]
        terms.update(
            {f"logits_{k}_mean": v.detach().float().mean() for k, v in logits.items()},
        )
        return DiscriminatorLoss(total=total, terms=terms, logits=logits)
