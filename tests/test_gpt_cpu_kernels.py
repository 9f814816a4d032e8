"""The GPT's CPU training kernels: fused head + cross-entropy, oneDNN linears, the cheaper dropout mask,
the fused RMSNorm, the blocked causal attention. Each equals the plain computation (loss and
gradients to float32 tolerance, or to float64 rounding where the kernel runs in float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

import gigatok_core.ar.cpu_kernels as kernels
import gigatok_core.ar.gpt as gpt
import gigatok_core.ar.loss as loss_module
from gigatok_core.ar import build_gpt
from gigatok_core.ar.cpu_kernels import (
    Dropout,
    Linear,
    causal_attention,
    onednn_linear_available,
    residual_add,
    rms_norm,
    swiglu,
)
from gigatok_core.ar.gpt import RMSNorm
from gigatok_core.ar.load import seeded_random_weights
from gigatok_core.ar.loss import linear_cross_entropy, token_loss
from gigatok_core.config import GPTConfig

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = {"rtol": 1e-5, "atol": 1e-6}


def _head_inputs(n: int = 13, c: int = 8, v: int = 37) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(n, c, generator=g, requires_grad=True)
    w = torch.randn(v, c, generator=g).requires_grad_()
    return h, w, torch.randint(0, v, (n,), generator=g)


@pytest.mark.parametrize("chunk", [1, 4, 13, None])
def test_linear_cross_entropy_equals_the_plain_loss_and_gradients(chunk: int | None) -> None:
    h, w, t = _head_inputs()
    ref = F.cross_entropy(h @ w.t(), t)
    ref_h, ref_w = torch.autograd.grad(ref * 3.0, (h, w))  # an upstream gradient other than 1
    loss = linear_cross_entropy(h, w, t, chunk=chunk)
    torch.testing.assert_close(loss, ref, **TOL)
    grad_h, grad_w = torch.autograd.grad(loss * 3.0, (h, w))
    torch.testing.assert_close(grad_h, ref_h, **TOL)
    torch.testing.assert_close(grad_w, ref_w, **TOL)


def test_linear_cross_entropy_without_gradients() -> None:
    h, w, t = _head_inputs()
    with torch.no_grad():
        loss = linear_cross_entropy(h, w, t, chunk=5)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, F.cross_entropy(h.detach() @ w.detach().t(), t), **TOL)
    only_h = linear_cross_entropy(h, w.detach(), t)  # a frozen head: only the input's gradient
    (grad_h,) = torch.autograd.grad(only_h, h)
    torch.testing.assert_close(
        grad_h, torch.autograd.grad(F.cross_entropy(h @ w.detach().t(), t), h)[0], **TOL
    )


def _tiny_gpt(dropout: float = 0.0) -> nn.Module:
    cfg = GPTConfig(
        size="gpt-b",
        dim=32,
        n_layer=2,
        n_head=2,
        vocab_size=64,
        block_size=16,
        num_classes=10,
        class_dropout_prob=0.0,
        token_dropout_p=dropout,
        resid_dropout_p=dropout,
        ffn_dropout_p=dropout,
    )
    return seeded_random_weights(build_gpt(cfg), seed=1).train()


def _loss_and_grads(model: nn.Module, labels: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    loss = token_loss(model, labels, codes)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_gpt_training_loss_and_gradients_equal_the_plain_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fused head + CE, oneDNN linears, RMSNorm, SwiGLU and blocked attention kernels against logits ->
    ``F.cross_entropy`` with ``F.linear`` (the oneDNN path switched off), the explicit RMSNorm
    formula and autograd's own SwiGLU, and SDPA attention on a head split."""
    model = _tiny_gpt()
    g = torch.Generator().manual_seed(2)
    codes, labels = torch.randint(0, 64, (3, 16), generator=g), torch.randint(0, 10, (3,), generator=g)
    loss, grads = _loss_and_grads(model, labels, codes)

    def rms_formula(self: RMSNorm, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight

    monkeypatch.setattr(kernels, "onednn_linear_available", lambda: False)
    monkeypatch.setattr(RMSNorm, "forward", rms_formula)
    monkeypatch.setattr(gpt, "swiglu", lambda a, b, consume=False: F.silu(a) * b)
    monkeypatch.setattr(gpt, "residual_add", lambda h, branch: h + branch)
    monkeypatch.setattr(gpt, "causal_attention", _sdpa_attention)
    model.zero_grad(set_to_none=True)
    logits = model(labels, codes[:, :-1])  # (B, T, V): no targets, the plain head
    ref = F.cross_entropy(logits.flatten(0, 1), codes.flatten())
    ref.backward()
    torch.testing.assert_close(loss, ref.detach(), **TOL)
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, **TOL, msg=lambda m, n=name: f"{n}: {m}")


def test_gpt_state_dict_keeps_plain_linear_and_dropout_names() -> None:
    model = _tiny_gpt()
    block = model.layers[0]
    assert isinstance(block.attention.wqkv, nn.Linear) and isinstance(block.feed_forward.w1, Linear)
    assert isinstance(block.attention.resid_dropout, nn.Dropout)
    plain = {k: v.shape for k, v in model.state_dict().items()}
    assert "layers.0.feed_forward.w1.weight" in plain and "layers.0.feed_forward.w3.weight" in plain
    assert not any("noise" in k or "mask" in k for k in plain)


@pytest.mark.skipif(not onednn_linear_available(), reason="this torch build has no oneDNN linear kernel")
def test_onednn_linear_equals_f_linear() -> None:
    g = torch.Generator().manual_seed(3)
    lin = Linear(12, 20, bias=False)
    x = torch.randn(2, 5, 12, generator=g, requires_grad=True)
    out = lin(x)
    assert out.grad_fn is not None and "OneDNN" in type(out.grad_fn).__name__  # the fast path ran
    up = torch.randn(2, 5, 20, generator=g)
    gx, gw = torch.autograd.grad(out, (x, lin.weight), up)
    ref = F.linear(x, lin.weight)
    rx, rw = torch.autograd.grad(ref, (x, lin.weight), up)
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(gx, rx, **TOL)
    torch.testing.assert_close(gw, rw, **TOL)
    with torch.no_grad():  # inference keeps F.linear
        assert lin(x).grad_fn is None


def test_dropout_mask_is_bernoulli_and_scaled() -> None:
    drop = Dropout(0.25).train()
    x = torch.ones(200_000, requires_grad=True)
    torch.manual_seed(0)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.005  # keep probability 1 - p (sd ~ 0.001)
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.75))
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, y.detach())  # the same mask and scale going back
    torch.manual_seed(0)
    torch.testing.assert_close(drop(x), y)  # seeded from the global generator: a seed repeats it
    state = torch.get_rng_state()
    again = drop(x)
    assert not torch.equal(again, y)  # each draw moves torch's global generator on
    torch.set_rng_state(state)  # a resumed run's restored state draws the same mask
    torch.testing.assert_close(drop(x), again)
    torch.manual_seed(1)
    assert not torch.equal(drop(x), y)
    assert torch.equal(drop.eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)


def test_rms_norm_equals_the_formula() -> None:
    norm = RMSNorm(16)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 4, 16)
    ref = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps) * norm.weight
    torch.testing.assert_close(norm(x), ref, **TOL)
    xb = x.bfloat16()  # other dtypes: float32 statistics, cast back, then scaled
    ref_b = (
        xb.float() * torch.rsqrt(xb.float().pow(2).mean(-1, keepdim=True) + norm.eps)
    ).bfloat16() * norm.weight
    torch.testing.assert_close(norm(xb), ref_b)


def test_rms_norm_kernel_gradients_equal_the_formula() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 5, 16, generator=g, requires_grad=True)
    w = torch.empty(16).uniform_(0.5, 1.5, generator=g).requires_grad_()
    up = torch.randn(3, 5, 16, generator=g)
    out = rms_norm(x, w, 1e-5)
    assert type(out.grad_fn).__name__ == "_RMSNormBackward"  # the kernel ran
    ref = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(
        torch.autograd.grad(out, (x, w), up), torch.autograd.grad(ref, (x, w), up), **TOL
    )
    (only_x,) = torch.autograd.grad(rms_norm(x, w.detach(), 1e-5), (x,), up)  # a frozen weight
    (ref_x,) = torch.autograd.grad(
        x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w.detach(), (x,), up
    )
    torch.testing.assert_close(only_x, ref_x, **TOL)
    (only_w,) = torch.autograd.grad(rms_norm(x.detach(), w, 1e-5), (w,), up)  # a frozen input
    torch.testing.assert_close(only_w, (up * ref.detach() / w.detach()).sum((0, 1)), **TOL)
    with torch.no_grad():  # inference keeps F.rms_norm
        torch.testing.assert_close(rms_norm(x, w, 1e-5), ref.detach(), **TOL)


def test_swiglu_kernel_gradients_equal_silu_times_gate() -> None:
    g = torch.Generator().manual_seed(5)
    a, b = (torch.randn(4, 7, 12, generator=g, requires_grad=True) for _ in range(2))
    up = torch.randn(4, 7, 12, generator=g)
    out = swiglu(a, b)
    assert type(out.grad_fn).__name__ == "_SwiGLUBackward"
    ref = F.silu(a) * b
    torch.testing.assert_close(out, ref, **TOL)
    torch.testing.assert_close(
        torch.autograd.grad(out, (a, b), up), torch.autograd.grad(ref, (a, b), up), **TOL
    )
    (only_b,) = torch.autograd.grad(swiglu(a.detach(), b), (b,), up)  # a frozen gate input
    torch.testing.assert_close(only_b, F.silu(a.detach()) * up, **TOL)


def test_consuming_swiglu_writes_its_gradients_over_its_inputs() -> None:
    """``consume=True`` (the FFN's fresh projections): the same gradients, in the inputs' memory;
    a second backward through the graph fails loudly instead of reading overwritten tensors."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(4, 7, 12, generator=g, requires_grad=True)
    up = torch.randn(4, 7, 12, generator=g)
    a, b = x * 2.0, x - 1.0  # fresh tensors, as a projection's outputs
    a_ptr, b_ptr = a.data_ptr(), b.data_ptr()
    out = swiglu(a, b, consume=True)
    ref = F.silu(x * 2.0) * (x - 1.0)
    torch.testing.assert_close(out, ref, **TOL)
    grads = {}
    a.register_hook(lambda grad: grads.setdefault("a", grad))
    b.register_hook(lambda grad: grads.setdefault("b", grad))
    (gx,) = torch.autograd.grad(out, x, up, retain_graph=True)
    torch.testing.assert_close(gx, torch.autograd.grad(ref, x, up)[0], **TOL)
    assert grads["a"].data_ptr() == b_ptr and grads["b"].data_ptr() == a_ptr  # no new tensors
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(out, x, up)


def test_dropout_gradient_takes_the_mask_memory() -> None:
    x = torch.randn(1000, requires_grad=True)
    y = Dropout(0.5).train()(x)
    torch.testing.assert_close(
        torch.autograd.grad(y, x, torch.ones_like(y), retain_graph=True)[0], y.detach() / x.detach()
    )
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(y, x, torch.ones_like(y))


def _sdpa_attention(qkv: torch.Tensor, n_head: int) -> torch.Tensor:
    q, k, v = rearrange(qkv, "b t (three h d) -> three b h t d", three=3, h=n_head).unbind(0)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return rearrange(out, "b h t d -> b t (h d)")


@pytest.mark.parametrize("t", [2, 3, 8, 17])
def test_blocked_causal_attention_equals_sdpa_and_its_gradient(t: int) -> None:
    """In float64 (the blocked kernel's arithmetic, run through ``_CausalAttention`` directly) the
    output and the q/k/v gradient equal SDPA's to rounding, for even and odd lengths (the two
    query blocks differ in size) and the shortest one."""
    g = torch.Generator().manual_seed(t)
    qkv = torch.randn(2, t, 3 * 4 * 5, generator=g, dtype=torch.float64, requires_grad=True)  # 4 heads of 5
    up = torch.randn(2, t, 4 * 5, generator=g, dtype=torch.float64)
    out = kernels._CausalAttention.apply(qkv, 4)
    ref = _sdpa_attention(qkv, 4)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(out, qkv, up)
    (ref_grad,) = torch.autograd.grad(ref, qkv, up)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12)
    assert grad.is_contiguous() and grad.shape == qkv.shape


def test_causal_attention_runs_blocked_only_in_float32_cpu_training() -> None:
    g = torch.Generator().manual_seed(7)
    qkv = torch.randn(2, 9, 3 * 2 * 4, generator=g, requires_grad=True)
    out = causal_attention(qkv, 2)
    assert type(out.grad_fn).__name__ == "_CausalAttentionBackward"
    ref = _sdpa_attention(qkv, 2)
    torch.testing.assert_close(out, ref, **TOL)
    up = torch.randn(out.shape, generator=g)
    torch.testing.assert_close(
        torch.autograd.grad(out, qkv, up)[0], torch.autograd.grad(ref, qkv, up)[0], **TOL
    )
    with torch.no_grad():  # inference: SDPA
        torch.testing.assert_close(causal_attention(qkv, 2), ref.detach(), **TOL)
    assert type(causal_attention(qkv.detach().double().requires_grad_(), 2).grad_fn).__name__ != (
        "_CausalAttentionBackward"
    )
    long = torch.randn(1, kernels.BLOCKED_ATTENTION_MAX_LEN + 1, 3 * 2 * 4, requires_grad=True)
    assert type(causal_attention(long, 2).grad_fn).__name__ != "_CausalAttentionBackward"
    one = torch.randn(2, 1, 3 * 2 * 4, requires_grad=True)  # one position: attends to itself
    torch.testing.assert_close(causal_attention(one, 2), one[..., 2 * 2 * 4 :])


def test_inplace_dropout_writes_over_its_input_with_the_same_mask() -> None:
    x = torch.randn(50_000, requires_grad=True)
    torch.manual_seed(0)
    ref = Dropout(0.3).train()(x * 1.0)
    torch.manual_seed(0)
    inner = x * 1.0  # a non-leaf nothing else needs, as a projection's output
    out = Dropout(0.3, inplace=True).train()(inner)
    assert out.data_ptr() == inner.data_ptr()  # no new tensor
    assert torch.equal(out, ref)
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, torch.autograd.grad(ref.sum(), x)[0])


def test_softmax_in_blocks_equals_softmax_and_logsumexp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loss_module, "SOFTMAX_BLOCK_ELEMENTS", 3 * 37)  # blocks of 3 rows, the last of 1
    logits = torch.randn(13, 37, generator=torch.Generator().manual_seed(7)) * 10
    probs, lse = loss_module._softmax_(logits.clone())
    torch.testing.assert_close(probs, torch.softmax(logits, dim=1), **TOL)
    torch.testing.assert_close(lse, torch.logsumexp(logits, dim=1), **TOL)


def test_residual_add_writes_the_sum_over_the_branch() -> None:
    g = torch.Generator().manual_seed(8)
    h, x = (torch.randn(2, 3, 4, generator=g, requires_grad=True) for _ in range(2))
    branch = x * 2.0  # a fresh block output
    out = residual_add(h, branch)
    assert out.data_ptr() == branch.data_ptr() and torch.equal(out, h + x * 2.0)
    up = torch.randn(2, 3, 4, generator=g)
    grad_h, grad_x = torch.autograd.grad(out, (h, x), up)
    assert torch.equal(grad_h, up) and torch.equal(grad_x, up * 2.0)
    with torch.no_grad():  # elsewhere the plain sum, a new tensor
        assert residual_add(h, branch).data_ptr() != branch.data_ptr()
