"""The lean training step: AdamW kernel choice and fallback, the kernel kept across a resume, the
(B·N, V) loss layout, the multi-tensor EMA, the compile setting, the official run length."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gigatok_core.ar.loss import token_loss, token_losses
from gigatok_core.config import GPTTrainConfig, TokenizerTrainConfig, epochs_to_steps
from gigatok_core.dist import get_context
from gigatok_core.train import parallel
from gigatok_core.train.gpt import update_ema
from gigatok_core.train.optim import adamw, clip_and_step, ema_update, kernel
from gigatok_core.train.state import LoopSettings

pytestmark = pytest.mark.usefixtures("one_thread")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))


def _train(model: nn.Module, opt: torch.optim.Optimizer, steps: int) -> None:
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def test_adamw_is_fused_on_cpu_and_matches_the_for_loop_update() -> None:
    fused_model, loop_model = _model(), _model()
    fused = adamw(fused_model.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.05)
    loop = torch.optim.AdamW(
        loop_model.parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=0.05, foreach=False
    )
    assert kernel(fused) == "fused" and kernel(loop) == "for-loop"
    _train(fused_model, fused, 3)
    _train(loop_model, loop, 3)
    for a, b in zip(fused_model.parameters(), loop_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_adamw_falls_back_with_the_reason_when_fused_is_refused(monkeypatch, caplog) -> None:
    real = torch.optim.AdamW

    def no_fused(params, *, fused=None, **kw):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be on supported devices")
        return real(params, **kw)

    monkeypatch.setattr(torch.optim, "AdamW", no_fused)
    with caplog.at_level(logging.INFO, logger="gigatok"):
        opt = adamw(_model().parameters(), lr=1e-3)
    assert kernel(opt) in ("foreach", "for-loop")  # foreach where the device has it (not CPU today)
    assert "not fused" in caplog.text and "supported devices" in caplog.text


def test_a_resumed_optimizer_keeps_its_fused_kernel() -> None:
    """A checkpoint written by a for-loop AdamW (before AdamW was fused on CPU) resumes fused, with
    the same states, and steps on exactly as the uninterrupted fused optimizer."""
    old_model = _model()
    old = torch.optim.AdamW(old_model.parameters(), lr=1e-2, foreach=False)
    _train(old_model, old, 2)
    saved = copy.deepcopy(parallel.optim_state_dict(old, old_model))  # as read back from a file
    new_model = _model()
    new_model.load_state_dict(old_model.state_dict())
    new = adamw(new_model.parameters(), lr=1e-2)
    parallel.load_optim_state_dict(new, new_model, saved)
    assert kernel(new) == "fused"
    steps = [new.state[p]["step"] for p in new_model.parameters()]
    assert all(s.dtype == torch.float32 and float(s) == 2.0 for s in steps)
    _train(new_model, new, 1)
    _train(old_model, old, 1)
    for a, b in zip(new_model.parameters(), old_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


class _Logits(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, labels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return self.logits


def test_token_loss_layout_keeps_the_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g, requires_grad=True)
    codes = torch.randint(0, 11, (3, 5), generator=g)
    model = _Logits(logits)
    per_token = token_losses(model, torch.zeros(3, dtype=torch.long), codes)
    reference = F.cross_entropy(logits.transpose(1, 2), codes, reduction="none")  # (B, V, N) layout
    assert per_token.shape == (3, 5)
    torch.testing.assert_close(per_token, reference, rtol=1e-6, atol=1e-6)
    loss = token_loss(model, torch.zeros(3, dtype=torch.long), codes)
    torch.testing.assert_close(loss, reference.mean(), rtol=1e-6, atol=1e-6)
    (grad,) = torch.autograd.grad(loss, logits)
    (ref_grad,) = torch.autograd.grad(reference.mean(), logits)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-6, atol=1e-7)


def test_ema_update_is_the_official_formula_tensor_for_tensor() -> None:
    model, ema = _model(), _model()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    expected = [
        e.detach().clone().mul_(0.99).add_(p.detach(), alpha=0.01)
        for e, p in zip(ema.parameters(), model.parameters(), strict=True)
    ]
    update_ema(ema, model, 0.99)
    for got, want in zip(ema.parameters(), expected, strict=True):
        assert torch.equal(got, want)
    a, b = [torch.zeros(3), torch.zeros(2, dtype=torch.float64)], [torch.ones(3), torch.ones(2)]
    ema_update(a, b, 0.75, lerp=True)
    assert torch.equal(a[0], torch.full((3,), 0.25)) and torch.equal(
        a[1], torch.full((2,), 0.25, dtype=torch.float64)
    )


def test_compile_default_follows_the_recipe_where_it_helps(caplog) -> None:
    gpt = GPTTrainConfig.from_name("gpt-b")
    assert gpt.compile is None  # the recipe compiles: decided on the device
    assert GPTTrainConfig.from_name("gpt-b", overrides=["run.compile=false"]).compile is False
    assert GPTTrainConfig.from_name("gpt-tiny").compile is False  # its recipe does not compile
    assert TokenizerTrainConfig.from_name("s-s").compile is False  # the official vq_train.py default
    assert LoopSettings.from_train_config(gpt).compile is None
    ctx = get_context(torch.device("cpu"))
    settings = LoopSettings(max_steps=1, batch_size=1, compile=None)
    with caplog.at_level(logging.INFO, logger="gigatok"):
        assert parallel.resolve_compile(settings, ctx, torch.device("cpu")).compile is False
    assert "recipe compiles on CUDA only" in caplog.text
    assert parallel.resolve_compile(settings, ctx, torch.device("cuda")).compile is True
    fsdp = LoopSettings(max_steps=1, batch_size=1, compile=None, strategy="fsdp")
    assert parallel.resolve_compile(fsdp, ctx, torch.device("cuda")).compile is False
    explicit = LoopSettings(max_steps=1, batch_size=1, compile=True)
    assert parallel.resolve_compile(explicit, ctx, torch.device("cpu")).compile is True


def test_run_length_divides_the_epoch_first_as_the_official_scripts() -> None:
    assert epochs_to_steps(300, 256) == 1_500_000
    assert epochs_to_steps(300, 384) == 999_900  # 300 * (1,280,000 // 384), not 1,000,000
    assert epochs_to_steps(300, 768) == 499_800
    assert GPTTrainConfig.from_name("gpt-b", overrides=["run.batch_size=384"]).total_steps == 999_900
    assert (
        TokenizerTrainConfig.from_name("b-l", overrides=["run.batch_size=384"]).total_steps == 200 * 3333
    )  # b-l: 200 epochs


@pytest.mark.parametrize("max_norm", [1e-3, 1e3])  # clipping active / inactive
def test_clipping_inside_the_fused_step_is_clip_grad_norm(max_norm: float) -> None:
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(1))
    models = [_model(), _model()]
    fused = adamw(models[0].parameters(), lr=1e-2, weight_decay=0.05)
    plain = torch.optim.AdamW(models[1].parameters(), lr=1e-2, weight_decay=0.05, fused=True)
    for _ in range(3):
        for m in models:
            m(x).square().mean().backward()
        norm = clip_and_step(fused, models[0].parameters(), max_norm)
        want = torch.nn.utils.clip_grad_norm_(models[1].parameters(), max_norm)
        plain.step()
        for opt in (fused, plain):
            opt.zero_grad(set_to_none=True)
        assert norm.shape == () and float(norm) == float(want)
    for a, b in zip(*(m.parameters() for m in models), strict=True):
        if max_norm > 1:
            assert torch.equal(a, b)  # no clipping: the fold divides by exactly 1
        else:
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
