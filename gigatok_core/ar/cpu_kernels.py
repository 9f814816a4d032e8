"""CPU training kernels of the GPT: drop-in subclasses of ``nn.Dropout`` and ``nn.Linear``.

Both keep their parent's parameters and state-dict names and fall back to it wherever their fast
path does not apply, so checkpoints, FSDP/DDP wrapping, ``torch.compile`` and CUDA are unchanged:

- :class:`Dropout` draws its keep mask as ``uniform >= p`` with ``torch.rand`` (about half the time
  of the ``bernoulli_`` call ``F.dropout`` makes on the CPU): the same distribution and scaling,
  from the same generator.
- :class:`Linear` runs its output and input-gradient products through oneDNN
  (``torch.ops.mkldnn._linear_pointwise``, the kernel inductor uses for CPU linears) instead of the
  BLAS ``mm`` behind ``F.linear``: the same float32 products, measured 5-15% faster at the GPT-B
  training shapes on an AVX-512 AMD EPYC (docs/benchmarks.md). The weight gradient stays on ``mm``
  (as fast there, and oneDNN would first copy the transposed gradient). It applies in float32 on
  the CPU, with gradients enabled, outside autocast and ``torch.compile``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_LINEAR = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def onednn_linear_available() -> bool:
    """Whether this torch build has the oneDNN linear kernel and oneDNN is enabled."""
    return _LINEAR is not None and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled


def onednn_linear(x: Tensor, w: Tensor) -> Tensor:
    """``x @ w.T`` for 2-D float32 ``x`` (N, I) and ``w`` (O, I) on oneDNN (strided views accepted)."""
    return _LINEAR(x, w, None, "none", [], "")


class _CPUDropout(torch.autograd.Function):
    """Inverted dropout with the keep mask drawn as ``uniform >= p`` (keep probability 1 - p)."""

    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:
        noise = torch.rand_like(x).ge_(p).div_(1.0 - p)  # 0 or 1/(1-p), as nn.Dropout's mask
        ctx.save_for_backward(noise)
        return x * noise

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (noise,) = ctx.saved_tensors
        return grad * noise, None


class _OneDNNLinear(torch.autograd.Function):
    """``x @ weight.T`` and the input gradient on oneDNN, the weight gradient on ``mm``; ``x`` (..., I), ``weight`` (O, I)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor) -> Tensor:
        x2 = x.reshape(-1, x.shape[-1])  # (N, I)
        ctx.save_for_backward(x2, weight)
        ctx.lead = x.shape[:-1]
        return onednn_linear(x2, weight).view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x2, weight = ctx.saved_tensors
        g2 = grad.reshape(-1, weight.shape[0])  # (N, O)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = onednn_linear(g2, weight.t()).view(*ctx.lead, weight.shape[1])  # (N, O) @ (O, I)
        if ctx.needs_input_grad[1]:
            grad_w = torch.mm(g2.t(), x2)  # (O, N) @ (N, I): BLAS reads the transpose in place
        return grad_x, grad_w


class Dropout(nn.Dropout):
    """``nn.Dropout`` with a cheaper mask draw in float32 CPU training (see the module docstring)."""

    def forward(self, x: Tensor) -> Tensor:
        if (
            self.training
            and 0.0 < self.p < 1.0
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and not torch.compiler.is_compiling()
        ):
            return _CPUDropout.apply(x, self.p)
        return super().forward(x)


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
