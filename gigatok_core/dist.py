"""Single process, or many under torchrun: one small helper, detected from the environment.

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK; without them we are a world of one and no process
group is created. Work is sharded by striding (rank r takes items r, r+W, ...), so any world size
covers every item exactly once and results do not depend on it.

Every entry point (training, reconstruct, sample, extract-codes, the evaluations) holds one
:class:`DistContext` from :func:`get_context`: rank facts plus the few collectives it needs, all
no-ops in a world of one. A :class:`HandSplit` runs one rank of a split by hand (ranks one after
another, no process group; the caller hands the shards over). Training also uses
:class:`EpochSampler` (a shuffled, epoch-seeded order over the dataset, strided over ranks and
resumable from a global sample position).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

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
        # At least tear the group down before interpreter shutdown; that alone still lets a finished
        # gloo worker abort now and then, so entry points end through exit_process.
        atexit.register(destroy_distributed)
    return info


def _group_ready() -> bool:
    """Whether this process has joined a process group."""
    return torch_dist.is_available() and torch_dist.is_initialized()


def destroy_distributed() -> None:
    """Destroy the default process group if one exists (idempotent)."""
    if _group_ready():
        torch_dist.destroy_process_group()


def exit_process(code: int | str | None = 0) -> None:
    """End a process that joined a process group (a worker under torchrun) with exit ``code``.

    After a success the group is destroyed while every object is still alive, the exit handlers run
    (logging, multiprocessing) and the process leaves with ``os._exit``: letting the interpreter
    finalize after the group is gone aborts about one finished gloo worker in thirty ("terminate
    called without an active exception", torch 2.14), which turns a finished run into a failed one.
    After a failure the group is left alone: destroying it waits for peers that may be stuck in a
    collective. Outside a process group this returns and the caller exits as usual.
    """
    if not _group_ready():
        return
    if isinstance(code, str):  # SystemExit("message"): print it and exit 1, as Python does
        print(code, file=sys.stderr)
        code = 1
    code = code or 0
    if code == 0:
        destroy_distributed()
    atexit.unregister(destroy_distributed)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


# ---------------------------------------------------------------------------------------------
# The context a trainer holds: rank facts + collectives (no-ops without a process group)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistContext(DistInfo):
    """Rank facts and the collectives an entry point needs; every method works in a world of one.

    The ranks run at the same time (under torchrun), so every rank must reach each collective.
    """

    @property
    def concurrent(self) -> bool:
        """Whether the ranks run at the same time, so that a collective reaches all of them."""
        return True

    def shard(self, items: Sequence[T]) -> list[T]:
        """The items this rank handles: every ``world_size``-th one, starting at ``rank``."""
        return list(items[self.rank :: self.world_size])

    def barrier(self) -> None:
        if _group_ready():
            torch_dist.barrier()

    def all_reduce(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Reduce ``t`` in place over ranks (``op``: sum | mean | max | min) and return it."""
        ops = {"sum": "SUM", "mean": "SUM", "max": "MAX", "min": "MIN"}
        if op not in ops:
            raise ValueError(f"all_reduce op must be one of {sorted(ops)}, got {op!r}")
        if self.distributed and _group_ready():
            torch_dist.all_reduce(t, op=getattr(torch_dist.ReduceOp, ops[op]))
            if op == "mean":
                t.div_(self.world_size)
        return t

    def gather_objects(self, obj: T) -> list[T]:
        """One picklable object per rank, in rank order, on every rank (``[obj]`` without a group)."""
        if not _group_ready():
            return [obj]
        out: list[Any] = [None] * torch_dist.get_world_size()
        torch_dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: T, src: int = 0) -> T:
        """Rank ``src``'s ``obj`` on every rank (``obj`` is ignored elsewhere)."""
        if not (self.distributed and _group_ready()):
            return obj
        box: list[Any] = [obj]
        torch_dist.broadcast_object_list(box, src=src)
        return box[0]


Gather = Callable[[Any], list[Any]]  # one object per rank -> every rank's object, in rank order


@dataclass(frozen=True)
class HandSplit(DistContext):
    """Rank ``rank`` of ``world_size`` of a run split by hand: the ranks run one after another (or on
    machines without a process group), each alone.

    No collective reaches another rank: ``barrier`` does nothing, ``broadcast_object`` and
    ``all_reduce`` return this rank's value, and ``gather_objects(obj)`` returns ``gather(obj)``
    (``[obj]`` without one). Run the main rank last, with a ``gather`` that returns every rank's
    object in rank order, as it merges the shards and writes the summaries.
    """

    gather: Gather | None = field(default=None, compare=False)

    @property
    def concurrent(self) -> bool:
        return False

    def barrier(self) -> None:
        pass

    def all_reduce(self, t: torch.Tensor, op: str = "sum") -> torch.Tensor:
        return t

    def gather_objects(self, obj: T) -> list[T]:
        return self.gather(obj) if self.gather is not None else [obj]

    def broadcast_object(self, obj: T, src: int = 0) -> T:
        return obj


def get_context(device: torch.device | str | None = None, *, init: bool = True) -> DistContext:
    """This process's :class:`DistContext`; with ``init`` the process group is created under
    torchrun (NCCL for a CUDA ``device``, else gloo) if it does not exist yet."""
    info = init_distributed(device) if init else dist_info()
    return DistContext(rank=info.rank, world_size=info.world_size, local_rank=info.local_rank)


# ---------------------------------------------------------------------------------------------
# The data order: one global permutation per epoch, strided over ranks, resumable mid-epoch
# ---------------------------------------------------------------------------------------------
class EpochSampler(torch.utils.data.Sampler[int]):
    """Dataset indices for one rank, in a global order that does not depend on the world size.

    Epoch ``e``'s global order is ``randperm(n)`` seeded by ``(seed, e)`` (or ``0..n-1`` without
    ``shuffle``). Global positions ``start, start+1, ...`` are dealt round-robin: rank ``r`` gets
    positions ``start + r, start + r + W, ...``. A trainer consuming global batches of ``B``
    samples (``B`` a multiple of ``W``) therefore sees the same set of samples at every step on any
    world size, and resumes mid-epoch with ``set_epoch(e, start=position)``. Every rank yields the
    same count, ``(n - start) // W`` (a tail shorter than the world is left out).
    (The official trainers restart an interrupted epoch from its beginning, docs/recipes.md#gpt.)
    """

    def __init__(self, n: int, *, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        if n < 0 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler arguments n={n} rank={rank} world_size={world_size}")
        self.n, self.seed, self.rank, self.world_size, self.shuffle = n, seed, rank, world_size, shuffle
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Use epoch ``epoch``'s order from global position ``start`` on (0 <= start <= n)."""
        if not 0 <= start <= self.n:
            raise ValueError(f"start position {start} outside an epoch of {self.n} samples")
        self.epoch, self.start = epoch, start

    def global_order(self, epoch: int | None = None) -> torch.Tensor:
        """The whole epoch's order (n,), identical on every rank and world size."""
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return torch.arange(self.n)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)  # 1_000_003: a prime stride
        return torch.randperm(self.n, generator=g)

    def __len__(self) -> int:
        return (self.n - self.start) // self.world_size

    def __iter__(self) -> Iterator[int]:
        order = self.global_order()[self.start :]
        order = order[: len(self) * self.world_size]  # (len * W,): equal counts on every rank
        return iter(order[self.rank :: self.world_size].tolist())


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
