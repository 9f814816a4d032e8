"""The GPT decode step, eager or compiled with ``torch.compile`` (docs/ar.md#precision-and-compilation).

:meth:`GPT.decode_step` has static shapes: the position is a (1,) int64 tensor, the new keys/values
go to that cache slot with ``index_copy_`` and attention masks the first ``length`` slots. The
length comes from a few buckets (:func:`length_buckets`: 4 by default, 64/128/192/256 slots for a
256-token generation): step ``j`` reads the smallest bucket above ``j``, so a step reads about the
filled part of the cache (on average 5/8 of it instead of all of it, where the memory floor
assumes 1/2), and a generation compiles one graph per bucket (no recompilation per step).

The eager step keeps the sliced cache path (``GPT.forward(start=j)``: attention over the written
slots only, about half the attention work on average, results bitwise as before); the static step
is used where it pays, under ``torch.compile``. Both agree to float rounding
(``tests/test_gpt_decode.py``).

- On CUDA the step compiles with ``mode="reduce-overhead"`` (CUDA graphs: one replay per step
  instead of ~10 kernel launches per layer), elsewhere with the default mode. ``fullgraph=True``
  (a graph break is a bug) and ``dynamic=False`` (each batch size gets its own specialised graph;
  a new batch size compiles once per length bucket).
- ``torch.compile`` keeps its graphs on the function's code object, guarded on the model's
  parameter shapes/dtypes and the input shapes, so the compiled step is built once per process and
  reused by every batch of the same size (also across model instances of one config).
- CUDA graphs need the tensors they mutate at fixed addresses: with ``compile=True`` the KV cache
  is allocated once per model (and rows/length/dtype), marked static and zeroed for each
  generation instead of reallocated. It stays alive with the model (release it with
  :func:`release_static_cache`). The eager step allocates a fresh cache per generation.

The official ``--compile`` wraps the whole model (prefill and decode) in
``torch.compile(mode="reduce-overhead", fullgraph=True)``; here only the decode step is compiled,
the one prefill call per generation runs eager.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import Tensor

from gigatok_core.ar.gpt import GPT, KVCache

_COMPILED: dict[str, Callable[..., Tensor]] = {}  # compile mode -> torch.compile(GPT.decode_step)
_STATIC_CACHES: weakref.WeakKeyDictionary[GPT, KVCache] = weakref.WeakKeyDictionary()
LENGTH_BUCKETS = 4  # cache lengths a compiled step is specialised for (one graph each)
_BUCKET_MULTIPLE = 16  # bucket ends are multiples of this (or the cache length)


def length_buckets(max_len: int, buckets: int = LENGTH_BUCKETS) -> list[int]:
    """The cache lengths compiled steps read: ``buckets`` ends evenly spread up to ``max_len``.

    >>> length_buckets(256)
    [64, 128, 192, 256]
    """
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    ends = []
    for i in range(1, buckets + 1):
        end = -(-max_len * i // buckets)  # ceil
        end = min(max_len, -(-end // _BUCKET_MULTIPLE) * _BUCKET_MULTIPLE)
        if not ends or end > ends[-1]:
            ends.append(end)
    return ends


def bucket_length(j: int, ends: list[int]) -> int:
    """The smallest bucket end above position ``j`` (the slots a step at ``j`` reads)."""
    for end in ends:
        if end > j:
            return end
    raise ValueError(f"position {j} is outside a cache of {ends[-1]} slots")


def compile_mode(device: torch.device) -> str:
    """``reduce-overhead`` (CUDA graphs) on CUDA, ``default`` elsewhere."""
    return "reduce-overhead" if device.type == "cuda" else "default"


def _compiled_step(mode: str) -> Callable[..., Tensor]:
    if mode not in _COMPILED:
        # one graph per (batch size, length bucket): room for several batch sizes in one process
        limit = max(torch._dynamo.config.recompile_limit, 8 * LENGTH_BUCKETS)
        torch._dynamo.config.recompile_limit = limit
        _COMPILED[mode] = torch.compile(GPT.decode_step, mode=mode, fullgraph=True, dynamic=False)
    return _COMPILED[mode]


def release_static_cache(model: GPT) -> None:
    """Free the KV cache a compiled generation keeps for ``model`` (it is rebuilt when needed)."""
    _STATIC_CACHES.pop(model, None)


class DecodeStep:
    """``step(tokens (B, 1), j, cache) -> logits (B, V)`` for image tokens at position ``j``."""

    def __init__(self, model: GPT, *, compile: bool = False, buckets: int = LENGTH_BUCKETS) -> None:
        self.model = model
        self.buckets = buckets
        self.compiled = compile
        self.device = model.tok_embeddings.weight.device
        self.mode = compile_mode(self.device) if compile else "eager"
        self._fn = _compiled_step(self.mode) if compile else None
        self._pos = torch.zeros(1, dtype=torch.long, device=self.device)  # j as data, not a Python int

    @property
    def cudagraphs(self) -> bool:
        return self.mode == "reduce-overhead"

    def new_cache(self, rows: int, max_len: int) -> KVCache:
        """A zeroed cache; compiled steps reuse one fixed-address cache per model (call under
        ``torch.inference_mode``, as :func:`~gigatok_core.ar.generate.generate` does)."""
        if not self.compiled:
            return self.model.new_cache(rows, max_len)
        cache = _STATIC_CACHES.get(self.model)
        ref = self.model.tok_embeddings.weight
        if cache is not None and cache.k[0].shape[0] == rows and cache.max_len == max_len:
            if cache.k[0].dtype == ref.dtype and cache.k[0].device == ref.device:
                for t in (*cache.k, *cache.v):
                    t.zero_()
                return cache
        _STATIC_CACHES.pop(self.model, None)  # free the old one before allocating
        cache = self.model.new_cache(rows, max_len)
        for t in (*cache.k, *cache.v):
            torch._dynamo.mark_static_address(t)  # CUDA graphs may mutate it in place
        _STATIC_CACHES[self.model] = cache
        return cache

    def __call__(self, tokens: Tensor, j: int, cache: KVCache) -> Tensor:
        if self._fn is None:
            return self.model(None, tokens, cache=cache, start=j, last_only=True)[:, -1]
        pos = self._pos.fill_(j)  # a device-side fill: no host sync
        length = bucket_length(j, length_buckets(cache.max_len, self.buckets))
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
            # the output buffer is overwritten by the next replay: hand out a copy
            return self._fn(self.model, tokens, pos, cache, length).clone()
        return self._fn(self.model, tokens, pos, cache, length)
