"""Distribution strategies behind one interface: nothing (one process), DDP, or FSDP2.

FSDP uses ``torch.distributed.fsdp.fully_shard`` (FSDP2): each unit (a transformer block) is sharded
on its own, then the root; mixed precision keeps params and reductions in the training dtype as the
official FSDP trainers (docs/recipes.md#fsdp; official ``train_c2i_fsdp.py``, ``vq_train_fsdp.py``). Checkpoints always hold
full (unsharded) state dicts, so a run resumes on any world size.
Activation checkpointing replaces a unit's ``forward`` in place, so parameter names do not change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from gigatok_core.dist import DistContext
from gigatok_core.errors import GigatokError
from gigatok_core.train.optim import keep_kernel, kernel_flags

log = logging.getLogger("gigatok")


def _has_fsdp2() -> bool:
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_compile(settings: Any, ctx: DistContext, device: torch.device) -> Any:
    """``settings`` with ``compile`` decided: an explicit True/False stands; None (the recipe's
    default) compiles where the official recipe does and it pays off: CUDA under DDP or on one
    process. Not under FSDP (the official FSDP trainer refuses it) nor on CPU (compiling a GPT-B step
    takes minutes there; ``--compile`` still asks for it), with a note in the log."""
    if settings.compile is not None:
        return settings
    if settings.strategy == "fsdp":
        on, why = False, "off: the official FSDP trainers do not compile"
    elif device.type != "cuda":
        on, why = False, f"off on {device.type}: the recipe compiles on CUDA only; --compile asks for it here"
    else:
        on, why = True, "on: the recipe's default on CUDA; --no-compile runs eagerly"
    if ctx.is_main:
        log.info("torch.compile %s", why)
    return dataclasses.replace(settings, compile=on)


def check_strategy(settings: Any, ctx: DistContext, device: torch.device) -> None:
    """Refuse combinations that cannot run, before anything is built."""
    if settings.strategy != "fsdp":
        return
    if not _has_fsdp2():
        raise GigatokError(
            f"--strategy fsdp needs torch.distributed.fsdp.fully_shard (FSDP2), missing in torch {torch.__version__}",
            hint="upgrade torch to 2.6 or later, or use --strategy ddp",
        )
    if settings.compile:
        raise GigatokError(
            "--compile is not supported with --strategy fsdp (the official FSDP trainers refuse it too)",
            hint="drop --compile, or use --strategy ddp",
        )
    if settings.precision == "fp16":
        raise GigatokError(
            "--precision fp16 is not supported with --strategy fsdp", hint="use --precision bf16"
        )


def _checkpointed(forward: Any, *args: Any, **kwargs: Any) -> Any:
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def wrap(
    module: nn.Module,
    settings: Any,
    ctx: DistContext,
    device: torch.device,
    dtype: torch.dtype,
    *,
    units: Any = (),
) -> nn.Module:
    """The module to call in training; parameters stay owned by ``module`` (see module docstring)."""
    units = list(units)
    if settings.activation_checkpointing:
        for unit in units:
            unit.forward = functools.partial(_checkpointed, unit.forward)
    wrapped: nn.Module = module
    if settings.strategy == "fsdp" and ctx.distributed:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=dtype) if dtype != torch.float32 else None
        kwargs = {"mp_policy": mp} if mp is not None else {}
        for unit in units:
            fully_shard(unit, **kwargs)
        fully_shard(module, **kwargs)
    elif ctx.distributed and any(p.requires_grad for p in module.parameters()):
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        wrapped = DistributedDataParallel(module, device_ids=ids)
    if settings.compile:
        wrapped = torch.compile(wrapped)  # type: ignore[assignment]
    return wrapped


def _unwrap(wrapped: nn.Module) -> nn.Module:
    return getattr(wrapped, "_orig_mod", wrapped)


def accumulating(wrapped: nn.Module, last: bool) -> contextlib.AbstractContextManager:
    """DDP ``no_sync`` / FSDP2 gradient-sync off for all but the last micro-batch of a step."""
    inner = _unwrap(wrapped)
    if hasattr(inner, "no_sync") and not last:
        return inner.no_sync()
    if hasattr(inner, "set_requires_gradient_sync"):  # an FSDP2 module
        inner.set_requires_gradient_sync(last)
    return contextlib.nullcontext()


def _is_sharded(module: nn.Module) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in module.parameters())


def full_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """The unsharded state dict (a collective under FSDP: every rank calls it)."""
    if _is_sharded(module):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach() for k, v in module.state_dict().items()}


def load_full_state_dict(module: nn.Module, sd: dict[str, Tensor]) -> None:
    if _is_sharded(module):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(module, sd, options=StateDictOptions(full_state_dict=True))
        return
    module.load_state_dict(sd, strict=True)


def optim_state_dict(opt: torch.optim.Optimizer, module: nn.Module) -> dict[str, Any]:
    """The full optimizer state keyed by parameter name (a collective under FSDP), the same layout
    for every strategy, so a run resumes under another one (FSDP on one process is plain)."""
    if _is_sharded(module):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return {"format": "fqn", "state": get_optimizer_state_dict(module, opt, options=opts)}
    names = {id(p): n for n, p in module.named_parameters()}
    sd = opt.state_dict()  # parameters numbered in param_groups order
    order = [names[id(p)] for g in opt.param_groups for p in g["params"]]
    return {
        "format": "fqn",
        "state": {
            "state": {order[i]: v for i, v in sd["state"].items()},
            "param_groups": [{**g, "params": [order[i] for i in g["params"]]} for g in sd["param_groups"]],
        },
    }


def load_optim_state_dict(opt: torch.optim.Optimizer, module: nn.Module, saved: dict[str, Any]) -> None:
    if saved.get("format") != "fqn":
        raise GigatokError(
            "the checkpoint's optimizer state has an unknown layout", hint="start the run again"
        )
    state = saved["state"]
    flags = kernel_flags(opt)  # the saved groups' fused/foreach flags must not switch the kernel
    if _is_sharded(module):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(module, opt, state, options=StateDictOptions(full_state_dict=True))
    else:
        names = {id(p): n for n, p in module.named_parameters()}
        index = {names[id(p)]: i for i, p in enumerate(p for g in opt.param_groups for p in g["params"])}
        groups = state["param_groups"]
        opt.load_state_dict(
            {
                "state": {index[k]: v for k, v in state["state"].items()},
                "param_groups": [
                    {**g, **f, "params": [index[k] for k in g["params"]]}
                    for g, f in zip(groups, flags, strict=True)
                ],
            }
        )
    keep_kernel(opt, flags)
