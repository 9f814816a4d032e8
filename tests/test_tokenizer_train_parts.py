"""Small pieces of the tokenizer recipe: parameter groups, DiffAug, the DINO discriminator, EMA."""

from __future__ import annotations

from pathlib import Path

import torch
from toktrain_kit import dino_v1_entries, random_weights

from gigatok_core.data.draws import fold, sample_key, uniforms
from gigatok_core.registry import tokenizer_preset
from gigatok_core.tokenizer import build_tokenizer
from gigatok_core.train.tokenizer.diffaug import DRAWS, cutout, diff_augment, translation
from gigatok_core.train.tokenizer.dinodisc import DinoDiscriminator
from gigatok_core.train.tokenizer.frozen import load_dino_backbone
from gigatok_core.train.tokenizer.loss import DiscCall, LossSettings, VQLoss
from gigatok_core.train.tokenizer.optim import EMA, param_groups


def test_param_groups_official_split() -> None:
    """DDP recipe: one decayed group of everything; FSDP recipe: no decay for names with "norm"
    (ln_pre/ln_post do not contain it and decay, docs/recipes.md#loop-and-data)."""
    model = build_tokenizer(tokenizer_preset("tiny").config, with_distill=True, device="meta")
    names = {id(p): n for n, p in model.named_parameters()}
    (one,) = param_groups(model, 1e-4)
    assert len(one["params"]) == len(names) and one["weight_decay"] == 1e-4
    decay, no_decay = param_groups(model, 1e-4, split_norm=True)
    assert no_decay["weight_decay"] == 0.0 and no_decay["params"]
    assert all("norm" in names[id(p)] for p in no_decay["params"])
    decayed = {names[id(p)] for p in decay["params"]}
    assert "s2to1encoder.ln_pre.weight" in decayed and not any("norm" in n for n in decayed)


def test_diffaug_translation_and_cutout() -> None:
    torch.manual_seed(0)
    x = torch.ones(4, 3, 40, 40)
    cut = cutout(x)
    zeros = (cut[:, 0] == 0).flatten(1).sum(1)
    assert (zeros > 0).all() and (zeros <= 8 * 8).all()  # one square of side 0.2 x 40, maybe clipped
    moved = translation(torch.arange(40.0).view(1, 1, 1, 40).expand(4, 3, 40, 40).contiguous())
    assert moved.shape == (4, 3, 40, 40)
    shifts = moved[:, 0, 20, 10] - 10  # a pure shift of the column index (zero fill at the border)
    assert (shifts.abs() <= 5).all()
    assert diff_augment(x).shape == x.shape


def _dino(tmp_path: Path):
    path = tmp_path / "dino.pth"
    torch.save(random_weights(dino_v1_entries(64, 3), 0), path)
    return load_dino_backbone(path)


def test_dino_discriminator(tmp_path: Path) -> None:
    """Frozen backbone out of the parameters and state_dict; one logit per token and tap; the
    key third of each qkv bias is zeroed on load (docs/recipes.md#discriminators)."""
    path = tmp_path / "dino.pth"
    sd = random_weights(dino_v1_entries(64, 3), 0)
    torch.save(sd, path)
    backbone = load_dino_backbone(path)
    qkv = backbone.vit.blocks[0].attn.qkv.bias
    assert torch.equal(qkv[64:128], torch.zeros(64)) and torch.equal(
        qkv[:64], sd["blocks.0.attn.qkv.bias"][:64]
    )
    disc = DinoDiscriminator(backbone)
    assert all(k.startswith("heads.") for k in disc.state_dict())
    assert not any(p is q for p in disc.parameters() for q in backbone.parameters())
    logits = disc(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert logits.shape == (2, backbone.num_taps * 196)
    logits.mean().backward()
    assert all(p.grad is not None for p in disc.parameters())


def test_dino_discriminator_draws_follow_the_keys_not_the_batch(tmp_path: Path) -> None:
    """DiffAug and the 224 crop-or-resize of an image are functions of its key: the same whether
    it goes through D with the whole batch, in one of two micro-batches (or ranks), or in another
    order; another step or call of the step (folded into the key) draws others (issue 17)."""
    disc = DinoDiscriminator(_dino(tmp_path)).train()
    x = torch.rand(4, 3, 232, 232, generator=torch.Generator().manual_seed(0)) * 2 - 1  # cropped or resized
    sample_keys = [sample_key(0, 1, i) for i in range(4)]  # run seed 0, epoch 1, samples 0-3
    keys = fold(sample_keys, 7, int(DiscCall.REAL))
    crop = uniforms(keys, DRAWS + DinoDiscriminator.CROP_DRAWS)[:, DRAWS] < disc.crop_prob
    assert crop.tolist() == [False, True, True, False]  # both branches in one batch
    whole = disc.augment(x, keys)
    assert whole.shape == (4, 3, 224, 224)
    halves = torch.cat([disc.augment(x[:2], keys[:2]), disc.augment(x[2:], keys[2:])])
    order = [3, 1, 0, 2]
    shuffled = disc.augment(x[order], [keys[i] for i in order])
    torch.testing.assert_close(halves, whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(shuffled, whole[order], rtol=0, atol=1e-6)
    other_call = disc.augment(x, fold(sample_keys, 7, int(DiscCall.FAKE)))
    other_step = disc.augment(x, fold(sample_keys, 8, int(DiscCall.REAL)))
    for other in (other_call, other_step):
        assert all(not torch.allclose(other[i], whole[i]) for i in range(4))


def test_the_loss_gives_each_discriminator_call_its_own_keys() -> None:
    """VQLoss folds (step, call) into the samples' keys for a discriminator that takes keys, and
    calls one that does not (PatchGAN) without them."""
    seen: list[tuple[int, ...] | None] = []

    class Keyed(torch.nn.Module):
        takes_keys = True

        def forward(self, x: torch.Tensor, keys=None) -> torch.Tensor:
            seen.append(None if keys is None else tuple(keys))
            return x.mean(dim=(1, 2, 3))

    loss = VQLoss(LossSettings(disc_start=0, aux_loss_end=10), lpips=None, discriminator=Keyed())
    x = torch.zeros(2, 3, 8, 8)
    loss.discriminator_step_loss(x, x, x, 3, keys=(11, 12))
    assert seen == [tuple(fold((11, 12), 3, int(c))) for c in (DiscCall.REAL, DiscCall.FAKE, DiscCall.DIRECT)]
    assert len(set(seen)) == 3
    seen.clear()
    loss.discriminator_step_loss(x, x, None, 3)
    assert seen == [None, None]  # no keys: the discriminator draws by itself


def test_ema_update() -> None:
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    before = ema.model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.model.weight, 0.9 * before + 0.1 * model.weight.detach())
