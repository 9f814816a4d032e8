"""The GPT's token loss (docs/recipes.md#gpt): cross-entropy over all positions of the class-conditional model.

Input = [class, tokens[0:N-1]], targets = tokens[0:N]: the class slot predicts token 0 and token
j-1 predicts token j. Class dropout (the null class for CFG) lives in the model's class embedding
in train mode, not here.

The logits are flattened to (B·N, V) with the vocabulary last, as the official ``gpt_1d.py``
``Transformer.forward`` does: cross-entropy over a (B, V, N) view (vocabulary in the middle) reads
memory with a stride of N and costs about 2.5x as much, forward and backward, on CPU.

For a :class:`~gigatok_core.ar.gpt.GPT` the loss is computed inside the model by
:func:`linear_cross_entropy` (output head and cross-entropy fused, chunk by chunk of tokens), so
the (B·N, V) float32 logits and their gradient never exist whole; the loss and the gradients are
the plain ones up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from gigatok_core.ar.cpu_kernels import onednn_linear, onednn_linear_available

CHUNK_ELEMENTS = 1 << 24  # logits per chunk of tokens in linear_cross_entropy (64 MiB in float32)


SOFTMAX_BLOCK_ELEMENTS = 1 << 20  # logits per block of rows in _softmax_ (4 MiB: the block stays in cache)


def _softmax_(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax over the last dimension of ``logits`` (c, V) in place, and the log-sum-exp (c,).

    A few rows at a time, so that the block's five passes (max, subtract, exp, sum, divide) run in
    cache; ``torch.logsumexp`` followed by ``exp(logits - lse)`` would stream the whole chunk through
    memory seven times and allocate a second chunk-sized tensor."""
    rows = max(1, SOFTMAX_BLOCK_ELEMENTS // logits.shape[1])
    lse = torch.empty(logits.shape[0], 1, dtype=logits.dtype, device=logits.device)
    for start in range(0, logits.shape[0], rows):
        block = logits[start : start + rows]
        peak = block.amax(1, keepdim=True)  # (r, 1)
        total = block.sub_(peak).exp_().sum(1, keepdim=True)  # (r, 1)
        block.div_(total)
        torch.add(total.log_(), peak, out=lse[start : start + rows])
    return logits, lse.squeeze(1)


class _LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``h @ weight.T`` (N, V) against ``targets`` (N,), chunk by chunk.

    The gradient of a mean cross-entropy with respect to the logits is ``(softmax - onehot) / N``,
    known as soon as the logits are: each chunk's logits are turned into it in place (:func:`_softmax_`)
    and multiplied straight into the gradients of ``h`` and ``weight``, so the forward pass does the head's three
    matrix products and one pass of ``exp``; backward only scales by the incoming gradient. Against
    ``F.cross_entropy(h @ weight.T, targets)`` this skips the log-softmax output, the NLL gradient's
    zero-filled (N, V) tensor and the log-softmax backward pass over it.
    """

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, targets: Tensor, chunk: int) -> Tensor:
        n = h.shape[0]
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(h) if want_h else None
        grad_w = torch.empty_like(weight) if want_w else None
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        onednn = h.device.type == "cpu" and onednn_linear_available()  # faster logits (cpu_kernels.py)
        for start in range(0, n, chunk):
            hc, tc = h[start : start + chunk], targets[start : start + chunk]  # (c, C), (c,)
            logits = onednn_linear(hc, weight) if onednn else hc @ weight.t()  # (c, V)
            picked = logits.gather(1, tc[:, None]).squeeze(1)  # (c,) the targets' logits
            if not (want_h or want_w):
                total += (torch.logsumexp(logits, dim=1) - picked).sum()
                continue
            probs, lse = _softmax_(logits)
            total += (lse - picked).sum()
            probs[torch.arange(tc.shape[0], device=tc.device), tc] -= 1.0  # d CE / d logits (times N)
            if want_h:
                torch.mm(probs, weight, out=grad_h[start : start + chunk])
            if want_w:
                if start == 0:
                    torch.mm(probs.t(), hc, out=grad_w)
                else:
                    grad_w.addmm_(probs.t(), hc)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.n = n
        return total / n

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out / ctx.n
        return (
            None if grad_h is None else grad_h.mul_(scale),
            None if grad_w is None else grad_w.mul_(scale),
            None,
            None,
        )


def linear_cross_entropy(h: Tensor, weight: Tensor, targets: Tensor, *, chunk: int | None = None) -> Tensor:
    """``F.cross_entropy(h @ weight.T, targets)`` (the mean over the N rows) for float32 ``h`` (N, C),
    ``weight`` (V, C) and ``targets`` (N,), without materialising the (N, V) logits or their
    gradient: ``chunk`` rows at a time (default: about :data:`CHUNK_ELEMENTS` logits per chunk).

    The gradients are computed during the forward pass (as the fused linear cross-entropy of Liger
    Kernel, Hsu et al. 2024, https://arxiv.org/abs/2410.10989), so call it only for a loss you
    backpropagate through once; under ``torch.no_grad`` no gradient is computed.
    """
    if chunk is None:
        chunk = max(1, CHUNK_ELEMENTS // weight.shape[0])
    return _LinearCrossEntropy.apply(h, weight, targets, chunk)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module under DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


def _logits_and_targets(
    model: torch.nn.Module, labels: torch.Tensor, codes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(labels, codes[:, :-1])  # (B, N, V); row j predicts token j
    return logits.float().flatten(0, 1), codes.flatten()  # (B·N, V) float32 (no copy if it is), (B·N,)


def token_losses(model: torch.nn.Module, labels: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Per-token cross-entropy (B, N): input = [class, codes[:, :-1]], targets = codes."""
    logits, targets = _logits_and_targets(model, labels, codes)
    return F.cross_entropy(logits, targets, reduction="none").view(codes.shape)


def token_loss(model: torch.nn.Module, labels: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over every token of the batch (the official training loss), a scalar.

    A GPT computes it in its forward pass (``targets=``: the fused head and cross-entropy of
    :func:`linear_cross_entropy` where it applies); any other model's logits go through
    ``F.cross_entropy``."""
    # A GPT is known by its fused loss path (``loss_from_hidden``), not by isinstance: gpt.py
    # imports this module, so importing the class here would tie the two in a circle.
    if hasattr(_unwrap(model), "loss_from_hidden"):
        return model(labels, codes[:, :-1], targets=codes)
    logits, targets = _logits_and_targets(model, labels, codes)
    return F.cross_entropy(logits, targets)  # the mean over B·N tokens, as the official loss
