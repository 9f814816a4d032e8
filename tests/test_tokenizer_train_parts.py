"""Small pieces of the tokenizer recipe: parameter groups, DiffAug, the DINO discriminator, EMA."""

from __future__ import annotations

from pathlib import Path

import torch
from toktrain_kit import dino_v1_entries, random_weights

from gigatok_core.registry import tokenizer_preset
from gigatok_core.tokenizer import build_tokenizer
from gigatok_core.train.tokenizer.diffaug import cutout, diff_augment, translation
from gigatok_core.train.tokenizer.dinodisc import DinoDiscriminator
from gigatok_core.train.tokenizer.frozen import load_dino_backbone
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


def test_ema_update() -> None:
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    before = ema.model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.model.weight, 0.9 * before + 0.1 * model.weight.detach())
