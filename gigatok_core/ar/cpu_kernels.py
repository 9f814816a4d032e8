"""CPU training kernels of the GPT: drop-in subclasses of ``nn.Dropout`` and ``nn.Linear``, and
autograd Functions for the element-wise parts of a block.

The subclasses keep their parent's parameters and state-dict names and fall back to it wherever
their fast path does not apply, so checkpoints, FSDP/DDP wrapping, ``torch.compile`` and CUDA are
unchanged. The functions compute the same formulas as the plain operations while allocating fewer
new tensors: the operating system maps and zeroes fresh memory on first touch, which costs about as
much as the element-wise arithmetic itself (docs/benchmarks.md).

- :class:`Dropout` draws its keep mask as ``uniform >= p`` (:func:`uniform_like`: numpy's PCG64,
  seeded for each draw from torch's global generator; a third of the time of the ``bernoulli_``
  call ``F.dropout`` makes on the CPU): the same distribution and scaling; with ``inplace=True``
  it writes over its input there.
- :class:`Linear` runs its output and input-gradient products through oneDNN
  (``torch.ops.mkldnn._linear_pointwise``, the kernel inductor uses for CPU linears) instead of the
  BLAS ``mm`` behind ``F.linear``: the same float32 products, measured 5-15% faster at the GPT-B
  training shapes on an AVX-512 AMD EPYC (docs/benchmarks.md). The weight gradient stays on ``mm``
  (as fast there, and oneDNN would first copy the transposed gradient). It applies in float32 on
  the CPU, with gradients enabled, outside autocast and ``torch.compile``.
- :func:`rms_norm` is RMSNorm with a hand-derived backward (``F.rms_norm`` is a chain of element-wise
  operations on the CPU, forward and backward): the same formula, one new tensor each way.
- :func:`swiglu` (``silu(a) * b``) keeps only its inputs for backward; given inputs nothing else
  reads (``consume=True``, the FFN's projections) it writes its gradients over them. Dropout's
  gradient is written over its mask.
- :func:`residual_add` writes a block's residual sum over the branch's fresh output.
- :func:`causal_attention` runs training's causal attention in two query blocks with batched
  matrix products (:class:`_CausalAttention`): 3/4 of full attention's products, where the CPU
  flash-attention kernel spends more than that going back (it recomputes the probabilities); the
  q/k/v split and the gradient's return to the fused layout are part of it.

The functions apply under the same conditions as :class:`Linear` and fall back to the plain
operations elsewhere.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

_LINEAR = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def onednn_linear_available() -> bool:
    """Whether this torch build has the oneDNN linear kernel and oneDNN is enabled."""
    return _LINEAR is not None and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled


def onednn_linear(x: Tensor, w: Tensor) -> Tensor:
    """``x @ w.T`` for 2-D float32 ``x`` (N, I) and ``w`` (O, I) on oneDNN (strided views accepted)."""
    return _LINEAR(x, w, None, "none", [], "")


def _fast_training(x: Tensor) -> bool:
    """Whether the float32 CPU training kernels apply to ``x``: gradients on, no autocast, no compile."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    )


class _RMSNorm(torch.autograd.Function):
    """``x * rsqrt(mean(x**2) + eps) * weight`` over the last dimension, with a hand-derived backward.

    With ``r = rsqrt(mean(x**2) + eps)`` and ``t = grad * x``: ``grad_weight = t^T r`` (a sum over
    the rows) and ``grad_x = r * grad * weight - x * r**3 * (t @ weight) / C``. The row sums are
    matrix-vector products, so each direction allocates one (rows, C) tensor, its result (fresh
    memory, mapped and zeroed on first touch, costs about as much as the arithmetic here).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, eps: float) -> Tensor:
        c = x.shape[-1]
        r = torch.linalg.vector_norm(x, dim=-1, keepdim=True).square_().div_(c).add_(eps).rsqrt_()  # (..., 1)
        ctx.save_for_backward(x, weight, r)
        return (x * r).mul_(weight)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        x, weight, r = ctx.saved_tensors
        c = x.shape[-1]
        t = grad * x  # (..., C)
        t2, r1 = t.view(-1, c), r.view(-1)  # (N, C), (N,)
        grad_w = t2.t() @ r1 if ctx.needs_input_grad[1] else None  # (C,)
        grad_x = None
        if ctx.needs_input_grad[0]:
            coef = (t2 @ weight).view_as(r).mul_(r.pow(3)).div_(-c)  # (..., 1): -r**3 (grad*weight . x) / C
            grad_x = torch.mul(grad, weight, out=t).mul_(r).addcmul_(x, coef)  # t's memory, reused
        return grad_x, grad_w, None


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """RMSNorm of float32 ``x`` over its last dimension, scaled by ``weight`` (``F.rms_norm``'s result)."""
    if _fast_training(x) and weight.dtype == torch.float32 and (x.requires_grad or weight.requires_grad):
        return _RMSNorm.apply(x, weight, eps)
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


class _CausalAttention(torch.autograd.Function):
    """Causal softmax attention of a fused q/k/v projection (B, T, 3·H·D) -> (B, T, H·D), computed
    in two query blocks so that the upper-right quarter of the score matrix (keys after every query
    of the first half) is never formed: 3/4 of the products of full attention.

    With ``s = scale · q k^T`` masked above the diagonal and ``p = softmax(s)``: ``out = p v``;
    going back ``dv = p^T dout``, ``dp = dout v^T``, ``ds = p * (dp - rowsum(dp * p))`` (the softmax
    backward) and ``dq = scale · ds k``, ``dk = scale · ds^T q``. The probabilities ``p`` are kept
    for backward (3/4 of B·H·T² floats; flash attention recomputes them instead). The products are
    batched (B·H) ``bmm``/``baddbmm`` on contiguous q, k, v, with the scale folded into them; the
    softmax and its backward run in place; the gradient goes straight into the (B, T, 3, H, D) layout.
    """

    @staticmethod
    def forward(ctx, qkv: Tensor, n_head: int) -> Tensor:
        b, t, c3 = qkv.shape
        d, m = c3 // (3 * n_head), t // 2  # head size; queries [0, m) form the first block
        scale = d**-0.5
        heads = qkv.view(b, t, 3, n_head, d).permute(2, 0, 3, 1, 4)  # (3, B, H, T, D) views
        q, k, v = (heads[i].reshape(b * n_head, t, d) for i in range(3))  # contiguous copies
        zero = q.new_zeros(())
        later = torch.ones(t - m, t - m, dtype=torch.bool, device=qkv.device).triu_(1)  # key after query
        top = torch.baddbmm(zero, q[:, :m], k[:, :m].mT, beta=0, alpha=scale)  # (BH, m, m)
        top.masked_fill_(later[:m, :m], float("-inf"))
        bottom = torch.baddbmm(zero, q[:, m:], k.mT, beta=0, alpha=scale)  # (BH, T-m, T)
        bottom[:, :, m:].masked_fill_(later, float("-inf"))
        for s in (top, bottom):
            torch.ops.aten._softmax.out(s, -1, False, out=s)  # row by row: safe in place
        out = qkv.new_empty(b, t, n_head, d)
        out[:, :m] = torch.bmm(top, v[:, :m]).view(b, n_head, m, d).transpose(1, 2)
        out[:, m:] = torch.bmm(bottom, v).view(b, n_head, t - m, d).transpose(1, 2)
        ctx.save_for_backward(q, k, v, top, bottom)
        ctx.n_head = n_head
        return out.view(b, t, n_head * d)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        q, k, v, top, bottom = ctx.saved_tensors
        bh, t, d = q.shape
        h, m, scale = ctx.n_head, top.shape[-1], d**-0.5
        b = bh // h
        go = grad.reshape(b, t, h, d).transpose(1, 2).reshape(bh, t, d)  # (BH, T, D) copy
        gqkv = grad.new_empty(b, t, 3, h, d)

        def put(part: int, rows: slice, x: Tensor) -> None:  # x (BH, rows, D) -> gqkv[:, rows, part]
            gqkv[:, rows, part] = x.view(b, h, -1, d).transpose(1, 2)

        first, second = slice(0, m), slice(m, t)
        zero = q.new_zeros(())
        gv = torch.bmm(bottom.mT, go[:, m:])  # (BH, T, D): the second block's queries reach every key
        put(2, second, gv[:, m:])
        put(2, first, torch.baddbmm(gv[:, :m], top.mT, go[:, :m]))
        g_top, g_bottom = torch.bmm(go[:, :m], v[:, :m].mT), torch.bmm(go[:, m:], v.mT)  # d/dp
        for g, p in ((g_top, top), (g_bottom, bottom)):
            torch.ops.aten._softmax_backward_data.out(g, p, -1, torch.float32, grad_input=g)  # d/ds
        put(0, first, torch.baddbmm(zero, g_top, k[:, :m], beta=0, alpha=scale))
        put(0, second, torch.baddbmm(zero, g_bottom, k, beta=0, alpha=scale))
        gk = torch.baddbmm(zero, g_bottom.mT, q[:, m:], beta=0, alpha=scale)  # (BH, T, D)
        put(1, second, gk[:, m:])
        put(1, first, torch.baddbmm(gk[:, :m], g_top.mT, q[:, :m], alpha=scale))
        return gqkv.view(b, t, 3 * h * d), None


#: The longest sequence :func:`causal_attention` runs blocked: its kept probabilities grow with T².
BLOCKED_ATTENTION_MAX_LEN = 1024


def causal_attention(qkv: Tensor, n_head: int) -> Tensor:
    """Causal self-attention (B, T, H·D) of a fused projection (B, T, 3·H·D) whose rows are
    ordered q, k, v: ``F.scaled_dot_product_attention(q, k, v, is_causal=True)`` with the heads
    merged. In float32 CPU training (2 <= T <= ``BLOCKED_ATTENTION_MAX_LEN``) it runs blocked
    (:class:`_CausalAttention`), elsewhere through SDPA."""
    t = qkv.shape[1]
    if _fast_training(qkv) and qkv.requires_grad and 2 <= t <= BLOCKED_ATTENTION_MAX_LEN:
        return _CausalAttention.apply(qkv, n_head)
    return sdpa_causal_attention(qkv, n_head)


def sdpa_causal_attention(qkv: Tensor, n_head: int) -> Tensor:
    """:func:`causal_attention` through ``F.scaled_dot_product_attention`` on every device."""
    q, k, v = rearrange(qkv, "b t (three h d) -> three b h t d", three=3, h=n_head).unbind(0)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=qkv.shape[1] > 1)
    return rearrange(out, "b h t d -> b t (h d)")


def residual_add(h: Tensor, branch: Tensor) -> Tensor:
    """``h + branch`` for a residual stream ``h``; in float32 CPU training the sum is written over
    ``branch`` (a block's fresh output that nothing else needs), saving one (rows, C) tensor."""
    if _fast_training(branch) and branch.requires_grad and branch.shape == h.shape:
        return branch.add_(h)  # the same sum: float addition is commutative
    return h + branch


class _SwiGLU(torch.autograd.Function):
    """``silu(a) * b`` saving only ``a`` and ``b``: ``silu(a)`` is recomputed going back. With
    ``consume`` (``a`` and ``b`` are projections' fresh outputs that nothing else reads) the two
    gradients are written over ``a`` and ``b``, so backward makes no new tensor; otherwise three
    new (rows, hidden) tensors in all, where autograd's graph makes five (``silu(a)`` is kept for
    backward there). A second backward through the same graph then fails loudly (the saved
    tensors changed), as it does for any in-place kernel."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, consume: bool) -> Tensor:
        ctx.save_for_backward(a, b)
        ctx.consume = consume
        return F.silu(a).mul_(b)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        a, b = ctx.saved_tensors
        want_a, want_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        silu_backward = torch.ops.aten.silu_backward.grad_input  # (grad, x) -> grad * silu'(x)
        if ctx.consume and want_a and want_b:
            grad_a = silu_backward(b.mul_(grad), a, grad_input=b)  # b's memory: grad * b * silu'(a)
            return grad_a, F.silu(a, inplace=True).mul_(grad), None  # a's memory: grad * silu(a)
        grad_a = grad_b = None
        if want_b:
            grad_b = F.silu(a).mul_(grad)
        if want_a:
            grad_a = grad * b
            silu_backward(grad_a, a, grad_input=grad_a)  # times silu'(a)
        return grad_a, grad_b, None


def swiglu(a: Tensor, b: Tensor, *, consume: bool = False) -> Tensor:
    """``F.silu(a) * b``: the SwiGLU gate of two float32 projections. ``consume=True`` says that
    nothing else reads ``a`` or ``b``: in float32 CPU training backward then writes the gradients
    over them (see :class:`_SwiGLU`)."""
    if _fast_training(a) and b.dtype == torch.float32 and (a.requires_grad or b.requires_grad):
        return _SwiGLU.apply(a, b, consume)
    return F.silu(a) * b


def uniform_like(x: Tensor) -> Tensor:
    """Float32 numbers uniform on [0, 1) shaped like ``x`` (on the CPU), for dropout masks.

    torch's CPU generator (MT19937) draws them one at a time; numpy's PCG64 fills the same 24-bit
    floats about 1.6x as fast (1.4 against 2.3 ms for a GPT-B batch's (4, 256, 768) mask, on the
    AMD EPYC of docs/benchmarks.md). The PCG64 stream is seeded for each draw from one number of
    torch's global generator, so the masks depend only on torch's random state, as ``torch.rand``'s
    do: ``torch.manual_seed`` repeats them and a run resumed from its checkpointed random state
    draws what the uninterrupted run drew.
    """
    seed = int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))  # from torch's global generator
    numbers = np.random.Generator(np.random.PCG64(seed)).random(x.numel(), dtype=np.float32)
    return torch.from_numpy(numbers).view(x.shape)


class _CPUDropout(torch.autograd.Function):
    """Inverted dropout with the keep mask drawn as ``uniform >= p`` (keep probability 1 - p); with
    ``inplace`` the input's memory takes the result."""

    @staticmethod
    def forward(ctx, x: Tensor, p: float, inplace: bool) -> Tensor:
        noise = uniform_like(x).ge_(p).div_(1.0 - p)  # 0 or 1/(1-p), as nn.Dropout's mask
        ctx.save_for_backward(noise)
        if inplace:
            ctx.mark_dirty(x)
            return x.mul_(noise)
        return x * noise

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (noise,) = ctx.saved_tensors  # the mask dies with this step: its memory takes the gradient
        return noise.mul_(grad), None, None


class _OneDNNLinear(torch.autograd.Function):
    """``x @ weight.T`` and the input gradient on oneDNN, the weight gradient on ``mm``; ``x`` (..., I), ``weight`` (O, I)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor) -> Tensor:
        x2 = x.reshape(-1, x.shape[-1])  # (N, I)
        ctx.save_for_backward(x2, weight)
        ctx.lead = x.shape[:-1]
        out = onednn_linear(x2, weight)  # (N, O)
        # Shaped without becoming a view (a Dropout(inplace=True) may write over it).
        return torch.ops.aten._unsafe_view(out, (*x.shape[:-1], weight.shape[0]))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x2, weight = ctx.saved_tensors
        g2 = grad.reshape(-1, weight.shape[0])  # (N, O)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = onednn_linear(g2, weight.t())  # (N, O) @ (O, I)
            # Not a view: autograd can then add another branch's gradient into it in place.
            grad_x = torch.ops.aten._unsafe_view(grad_x, (*ctx.lead, weight.shape[1]))
        if ctx.needs_input_grad[1]:
            grad_w = torch.mm(g2.t(), x2)  # (O, N) @ (N, I): BLAS reads the transpose in place
        return grad_x, grad_w


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper mask draw in float32 CPU training (see the module docstring).

    ``inplace=True`` writes the result over the input there (for inputs nothing else needs, such
    as a projection's output): one (rows, C) tensor less per dropout. Elsewhere (CUDA, autocast,
    ``torch.compile``, other dtypes) it is the plain out-of-place ``F.dropout`` either way.
    """

    def forward(self, x: Tensor) -> Tensor:
        if (
            self.training
            and 0.0 < self.p < 1.0
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and not torch.compiler.is_compiling()
        ):
            return _CPUDropout.apply(x, self.p, self.inplace)
        return F.dropout(x, self.p, self.training)


class Linear(nn.Linear):
    """``nn.Linear`` (no bias) whose float32 CPU training products run on oneDNN (see the module docstring)."""

    def forward(self, x: Tensor) -> Tensor:
        if (
            self.bias is None
            and x.device.type == "cpu"
            and x.dtype == self.weight.dtype == torch.float32
            and torch.is_grad_enabled()
            and self.weight.requires_grad
            and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling()
            and onednn_linear_available()
        ):
            return _OneDNNLinear.apply(x, self.weight)
        return F.linear(x, self.weight, self.bias)
