"""Single process, or many under torchrun: one small helper, detected from the environment.

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK; without them we are a world of one and no process
group is created. Work is sharded by striding (rank r takes items r, r+W, ...), so any world size
covers every item exactly once and results do not depend on it.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as torch_dist

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """Rank information from the torchrun environment (a world of one without it)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init_distributed(device: torch.device | str | None = None) -> DistInfo:
    """Create the default process group when running under torchrun (NCCL on CUDA, else gloo)."""
    info = dist_info()
    if info.distributed and not torch_dist.is_initialized():
        backend = "nccl" if device is not None and torch.device(device).type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        torch_dist.init_process_group(backend=backend)
        # Tear the group down before interpreter shutdown: letting it be garbage-collected then can
        # abort the process ("terminate called without an active exception") after the work is done.
        atexit.register(destroy_distributed)
    return info


def destroy_distributed() -> None:
    """Destroy the default process group if one exists (idempotent)."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def shard(items: Sequence[T], info: DistInfo | None = None) -> list[T]:
    """The items this rank handles: every ``world_size``-th one, starting at ``rank``."""
    info = info or dist_info()
    return list(items[info.rank :: info.world_size])


def barrier() -> None:
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()


def all_gather_objects(obj: object) -> list[object]:
    """Gather one picklable object per rank (a list of one without a process group)."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return [obj]
    out: list[object] = [None] * torch_dist.get_world_size()
    torch_dist.all_gather_object(out, obj)
    return out


def resolve_device(device: str | None) -> torch.device:
    """``None``/"auto" -> this rank's CUDA device when there is one, else CPU; validates names."""
    from gigatok_core.errors import GigatokError

    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", dist_info().local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise GigatokError(f"unknown device {device!r}", hint="use cpu, cuda, cuda:N or auto") from None
    if dev.type not in ("cpu", "cuda"):
        raise GigatokError(f"device {device!r} is not supported", hint="use cpu, cuda, cuda:N or auto")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GigatokError(
            f"device {device!r} asked for, but CUDA is not available here", hint="use --device cpu"
        )
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", dist_info().local_rank % torch.cuda.device_count())
    return dev


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX); elsewhere bf16 is emulated
    and slower than fp32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without the query
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """Map fp32/bf16/fp16 to a dtype. fp16 needs CUDA; bf16 needs CUDA or a CPU with native bf16
    (measured on a 2-core AMX Xeon: GPT-B decode 1.6x faster than fp32)."""
    from gigatok_core.errors import GigatokError

    if precision not in PRECISIONS:
        raise GigatokError(f"unknown precision {precision!r}", hint=f"use one of {', '.join(PRECISIONS)}")
    if precision == "fp32" or device.type == "cuda":
        return PRECISIONS[precision]
    if precision == "bf16" and device.type == "cpu":
        if cpu_has_native_bf16():
            return PRECISIONS[precision]
        raise GigatokError(
            "--precision bf16 on CPU needs native bf16 support (AVX512-BF16 or AMX), which this CPU lacks",
            hint="use --precision fp32 here (bf16 would be emulated and slower)",
        )
    raise GigatokError(
        f"--precision {precision} needs a CUDA device; this run is on {device}",
        hint="use --precision fp32, or bf16 on a CPU with AVX512-BF16/AMX",
    )
