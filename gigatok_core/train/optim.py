"""AdamW on the fastest kernel the parameters allow, and the step's other per-tensor loops.

The official trainers build AdamW with ``fused=True`` whenever torch accepts the argument
(``autoregressive/train/train_c2i.py``, ``creat_optimizer()``). torch has fused AdamW on CUDA and,
since 2.4, on CPU; the per-tensor ("for-loop") path it falls back to otherwise is several times
slower there. :func:`adamw` asks for the fused kernel and, where torch refuses it (parameters on a
device without the kernel, FSDP2 DTensor shards on a torch without a DTensor rule for it), falls
back to the multi-tensor ("foreach") kernel where the device has one, logging why. The update is
the same AdamW up to float rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger("gigatok")

KERNEL_FLAGS = ("fused", "foreach")  # the param-group keys naming the implementation


def _params(groups: Iterable[Any]) -> list[Tensor]:
    out: list[Tensor] = []
    for g in groups:
        out.extend(g["params"] if isinstance(g, dict) else [g])
    return out


def _dtensor_refuses_fused(params: list[Tensor]) -> str | None:
    """Why fused AdamW cannot step these DTensor parameters, or None when it can."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:
        return None
    if not any(isinstance(p, DTensor) for p in params):
        return None
    try:
        propagator = DTensor._op_dispatcher.sharding_propagator
        rules = {**propagator.op_strategy_funcs, **propagator.op_to_rules}
    except AttributeError:  # another torch layout: trust the kernel
        return None
    if torch.ops.aten._fused_adamw_.default in rules:
        return None
    return f"torch {torch.__version__} has no DTensor rule for the fused AdamW kernel (FSDP2 shards)"


def _foreach_supported(params: list[Tensor]) -> bool:
    try:
        from torch.utils._foreach_utils import _get_foreach_kernels_supported_devices
    except ImportError:
        return False
    return bool(params) and all(p.device.type in _get_foreach_kernels_supported_devices() for p in params)


def adamw(groups: Iterable[dict[str, Any]] | Iterable[Tensor], **kwargs: Any) -> torch.optim.AdamW:
    """``torch.optim.AdamW(groups, **kwargs)`` on the fused kernel, else foreach (see the module)."""
    groups = list(groups)
    params = _params(groups)
    reason = _dtensor_refuses_fused(params)
    if reason is None:
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (RuntimeError, ValueError, TypeError) as err:  # e.g. a device without the kernel
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    foreach = _foreach_supported(params)
    log.info("AdamW: not fused (%s); using the %s kernel", reason, "foreach" if foreach else "for-loop")
    return torch.optim.AdamW(groups, foreach=foreach, **kwargs)


def kernel(optimizer: torch.optim.Optimizer) -> str:
    """ "fused", "foreach" or "for-loop": the implementation the optimizer's first group runs."""
    group = optimizer.param_groups[0]
    return "fused" if group.get("fused") else "foreach" if group.get("foreach") else "for-loop"


def keep_kernel(optimizer: torch.optim.Optimizer, flags: list[dict[str, Any]]) -> None:
    """After ``load_state_dict``, run on the kernel chosen when the optimizer was built.

    A state dict carries its param groups' ``fused``/``foreach`` flags (a checkpoint written
    before AdamW was fused on CPU, or on another device), and loading it would switch the
    implementation back. ``flags``: the groups' flags captured before loading. A fused optimizer
    keeps its step counts as float32 tensors on the parameters' device.
    """
    for group, saved in zip(optimizer.param_groups, flags, strict=True):
        group.update(saved)
        if not group.get("fused"):
            continue
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            step = state.get("step")
            if isinstance(step, Tensor) and (step.device != p.device or step.dtype != torch.float32):
                state["step"] = step.to(device=p.device, dtype=torch.float32)


def kernel_flags(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    return [{k: g[k] for k in KERNEL_FLAGS if k in g} for g in optimizer.param_groups]


@torch.no_grad()
def ema_update(ema: list[Tensor], live: list[Tensor], decay: float, *, lerp: bool = False) -> None:
    """Move every ``ema`` tensor towards its ``live`` one, in multi-tensor kernels where the device
    has them (one launch per dtype and device instead of one per tensor), else tensor by tensor.

    ``lerp=False``: ``ema = decay * ema + (1 - decay) * live`` (``mul_`` then ``add_``, the official
    GPT trainers' ``update_ema``); ``lerp=True``: ``ema += (1 - decay) * (live - ema)`` (``lerp_``).
    """
    if not ema:
        return
    live = [src if src.dtype == dst.dtype else src.to(dst.dtype) for dst, src in zip(ema, live, strict=True)]
    if _foreach_supported(ema):
        if lerp:
            torch._foreach_lerp_(ema, live, 1.0 - decay)
        else:
            torch._foreach_mul_(ema, decay)
            torch._foreach_add_(ema, live, alpha=1.0 - decay)
        return
    for dst, src in zip(ema, live, strict=True):
        if lerp:
            dst.lerp_(src, 1.0 - decay)
        else:
            dst.mul_(decay).add_(src, alpha=1.0 - decay)


def clip_grad_norm(params: list[Tensor], max_norm: float | None) -> Tensor:
    """Total gradient norm before clipping, as a 0-d tensor on the gradients' device (no host
    sync); the gradients are clipped to ``max_norm`` when given. Multi-tensor kernels where the
    device has them (torch's default); works on FSDP2 DTensor gradients (the norm made whole)."""
    if not params:
        return torch.zeros(())
    if max_norm:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    elif hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6: no pass scaling by 1.0
        norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    else:
        norm = torch.nn.utils.clip_grad_norm_(params, float("inf"))
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return norm


def _folds_clipping(optimizer: torch.optim.Optimizer, grads: list[Tensor], scaler: Any) -> bool:
    """Whether clipping can ride in the fused AdamW kernel: every group fused, no fp16 scaler
    (it owns the kernel's scale argument then), plain tensors, torch >= 2.6 (``get_total_norm``)."""
    if scaler is not None and scaler.is_enabled():
        return False
    if not hasattr(torch.nn.utils, "get_total_norm") or not getattr(
        optimizer, "_step_supports_amp_scaling", False
    ):
        return False
    if not all(g.get("fused") for g in optimizer.param_groups):
        return False
    return bool(grads) and all(type(g) is Tensor for g in grads)


def clip_and_step(
    optimizer: torch.optim.Optimizer, params: Iterable[Tensor], max_norm: float | None, scaler: Any = None
) -> Tensor:
    """Unscale (fp16 ``scaler``), clip the gradients to ``max_norm``, step; returns the pre-clip
    total norm as a 0-d tensor on the device (no host sync). ``clip_grad_norm_`` semantics: the
    gradients are scaled by ``min(1, max_norm / (norm + 1e-6))``.

    With a fused AdamW and no fp16 scaler the scaling is not a separate pass over every gradient:
    the kernel's gradient-scale argument (the one GradScaler uses to unscale) divides by
    ``max(1, (norm + 1e-6) / max_norm)`` as it reads each gradient. The update is the same up to
    float rounding; with the norm under ``max_norm`` it is bit-identical. The gradients are left
    unclipped in ``.grad`` (the step zeroes them next).
    """
    params = [p for p in params if p.grad is not None]
    grads = [p.grad for p in params]
    if scaler is not None:
        scaler.unscale_(optimizer)
    if max_norm and _folds_clipping(optimizer, grads, scaler):
        norm = torch.nn.utils.get_total_norm(grads)
        divisor = torch.clamp((norm.float() + 1e-6) / max_norm, min=1.0)
        optimizer.grad_scale = divisor  # type: ignore[attr-defined]
        optimizer.found_inf = torch.zeros((), dtype=torch.float32, device=divisor.device)  # type: ignore[attr-defined]
        try:
            optimizer.step()
        finally:
            del optimizer.grad_scale, optimizer.found_inf  # type: ignore[attr-defined]
        if scaler is not None:
            scaler.update()
        return norm
    norm = clip_grad_norm(params, max_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return norm
