"""Deterministic weight fills used by the golden fixtures (no official code needed).

Two rules, both keyed only on the official state_dict name ``K`` and shape ``S``:

- ``"tokenizer-v1"``: docs/fidelity.md#weight-fill-rules (the fixture's ``fill_rule`` string).
- ``"gpt"``: docs/fidelity.md#gpt (normal * 0.02 for ndim >= 2, zero biases, unit norm scales).
- ``"aux-v1"``: docs/fidelity.md#weight-fill-rules (PatchGAN, LPIPS's VGG16 features and the DINOv2 teacher of
  the training fixture; ``K`` is the key in that network's own plain state_dict).

Every tensor draws from ``numpy.random.default_rng(zlib.crc32(K))`` so the order of the entries
does not matter. Arithmetic is float64, cast once to float32.

    entries = [(name, tuple(shape)) for name, shape, _ in keys_json["presets"]["VQ_SS256"]["keys"]]
    sd = fill_state_dict(entries, "tokenizer-v1")
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable

import numpy as np
import torch

RULES = ("tokenizer-v1", "gpt", "aux-v1")


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode("utf-8")))


def _tokenizer_v1(name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name.endswith("codebook_used"):
        return np.zeros(shape, dtype=np.float64)
    n = _rng(name).standard_normal(size=shape)  # exactly one draw of the full shape, C order
    if name.endswith("quantize.embedding.weight") or name.endswith("positional_embedding"):
        return n
    if name.endswith("in_proj_weight"):
        return 2.0 * n / math.sqrt(shape[1])
    if len(shape) >= 2:
        return n / math.sqrt(math.prod(shape[1:]))
    if len(shape) == 1 and name.endswith("bias"):
        return 0.1 * n
    if len(shape) == 1 and name.endswith("weight"):
        return 1.0 + 0.1 * n
    raise ValueError(f"tokenizer-v1 fill rule has no case for {name} {shape}")


def _gpt(name: str, shape: tuple[int, ...]) -> np.ndarray:
    if len(shape) >= 2:
        return _rng(name).standard_normal(size=shape) * 0.02
    if name.endswith(".bias"):
        return np.zeros(shape, dtype=np.float64)
    return np.ones(shape, dtype=np.float64)


def _aux_v1(name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name.endswith("running_mean") or name.endswith("num_batches_tracked"):
        return np.zeros(shape, dtype=np.float64)
    if name.endswith("running_var"):
        return np.ones(shape, dtype=np.float64)
    n = _rng(name).standard_normal(size=shape)
    if name in ("cls_token", "pos_embed", "mask_token"):
        return n
    if name.endswith(".gamma"):
        return 1.0 + 0.1 * n
    if name.endswith("attn.qkv.weight"):
        return 2.0 * n / math.sqrt(shape[1])
    if re.fullmatch(r"features\.\d+\.weight", name):
        return math.sqrt(2.0) * n / math.sqrt(math.prod(shape[1:]))
    if len(shape) >= 2:
        return n / math.sqrt(math.prod(shape[1:]))
    if len(shape) == 1 and name.endswith("bias"):
        return 0.1 * n
    if len(shape) == 1 and name.endswith("weight"):
        return 1.0 + 0.1 * n
    raise ValueError(f"aux-v1 fill rule has no case for {name} {shape}")


_FILLS = {"tokenizer-v1": _tokenizer_v1, "gpt": _gpt, "aux-v1": _aux_v1}


def fill_state_dict(entries: Iterable[tuple[str, tuple[int, ...]]], rule: str) -> dict[str, torch.Tensor]:
    """State dict of float32 tensors for ``(name, shape)`` entries, filled with ``rule``."""
    if rule not in RULES:
        raise ValueError(f"unknown fill rule {rule!r}; known: {RULES}")
    fn = _FILLS[rule]
    out: dict[str, torch.Tensor] = {}
    for name, shape in entries:
        shape = tuple(int(s) for s in shape)
        if rule == "aux-v1" and name.endswith("num_batches_tracked"):
            out[name] = torch.zeros(shape, dtype=torch.int64)
            continue
        out[name] = torch.from_numpy(np.ascontiguousarray(fn(name, shape).astype(np.float32)))
    return out


def fill_tokenizer(entries: Iterable[tuple[str, tuple[int, ...]]]) -> dict[str, torch.Tensor]:
    return fill_state_dict(entries, "tokenizer-v1")


def fill_gpt(entries: Iterable[tuple[str, tuple[int, ...]]]) -> dict[str, torch.Tensor]:
    return fill_state_dict(entries, "gpt")


def entries_of(module: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every state_dict entry of ``module`` (works on the meta device)."""
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]
