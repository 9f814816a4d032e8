"""Autoregressive generation with a static KV cache and classifier-free guidance (docs/ar.md#generation).

Rows are ``[cond ; uncond]`` (null class = ``num_classes``) when guidance is on. Token 0 comes from
the prefill (class token only) with the raw CFG scale; decode step ``i`` feeds token ``i`` and
produces token ``i+1`` with the scheduled scale. Sampling: temperature, top-k (ties survive), top-p
(HF nucleus rule), then one categorical draw per row.

Randomness, two modes:

- ``"per-sample"`` (default, beyond the official code): every row owns a CPU ``torch.Generator``
  seeded from ``sample_seed(seed, class, index)`` and draws one uniform ``u`` per token from it
  (in blocks of 256); the token is the inverse CDF at ``u`` (float64 cumulative sum of the
  probabilities), which is a categorical draw. A sample therefore depends neither on batch size, batch
  mates, rank count nor device, and costs one random number per token instead of one per vocabulary
  entry.
- ``"official"``: one generator seeded with ``seed`` and one ``torch.multinomial(probs, 1)`` per
  token on the whole (B, V) matrix, the official call sequence: on CPU this reproduces the official
  sampler given the same batch (``torch.manual_seed(seed)`` before ``generate()``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from gigatok_core.ar.decode import DecodeStep
from gigatok_core.ar.gpt import GPT
from gigatok_core.ar.guidance import CFGSchedule
from gigatok_core.choices import RNG_MODES
from gigatok_core.errors import GigatokError

StepHook = Callable[[int, Tensor, Tensor], None]  # (token index j, guided logits (B, V), token j (B,))


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SamplingParams:
    """Temperature / top-k / top-p (official defaults: 1.0, 0 = off, 1.0 = off)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise GigatokError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise GigatokError(f"top-k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise GigatokError(f"top-p must lie in (0, 1] (1 = off), got {self.top_p}")


def sample_seed(seed: int, class_idx: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` of class ``class_idx`` in a run seeded with ``seed``."""
    digest = hashlib.sha256(f"gigatok:{seed}:{class_idx}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def sample_generators(seed: int, labels: Sequence[int], indices: Sequence[int]) -> list[torch.Generator]:
    """One seeded CPU generator per row (see :func:`sample_seed`)."""
    return [
        torch.Generator().manual_seed(sample_seed(seed, int(c), int(k)))
        for c, k in zip(labels, indices, strict=True)
    ]


# ---------------------------------------------------------------------------------------------
# Filtering and drawing
# ---------------------------------------------------------------------------------------------
def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Top-k then top-p filtering of (B, V) logits; removed entries become -inf (input untouched).

    Top-k drops logits strictly below the k-th largest (ties survive). Top-p is the HF nucleus rule
    (Holtzman et al., https://arxiv.org/abs/1904.09751): sort descending, drop entries whose
    cumulative probability exceeds p, shifted right by one so the crossing token stays; the top
    token always stays.
    """
    if top_k <= 0 and top_p >= 1.0:
        return logits
    logits = logits.clone()
    if top_k > 0:
        k = min(top_k, logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
        logits.masked_fill_(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cum > top_p
        drop_sorted[..., 1:] = drop_sorted[..., :-1].clone()
        drop_sorted[..., 0] = False
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits.masked_fill_(drop, float("-inf"))
    return logits


class Drawer:
    """Turns (B, V) probabilities into (B,) token ids with the chosen randomness mode."""

    BLOCK = 256  # uniforms drawn per row at a time (fixed, so a row's stream never depends on n)

    def __init__(
        self,
        mode: str,
        *,
        seed: int = 0,
        generators: Sequence[torch.Generator] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if mode not in RNG_MODES:
            raise GigatokError(f"unknown rng mode {mode!r}", hint=f"use one of {', '.join(RNG_MODES)}")
        self.mode = mode
        self.generators = list(generators or [])
        if mode == "per-sample" and not self.generators:
            raise ValueError("per-sample mode needs one generator per row (see sample_generators)")
        self.official = None
        if mode == "official":
            self.official = torch.Generator(device=device or "cpu").manual_seed(seed)
        self._uniforms = torch.empty(len(self.generators), 0, dtype=torch.float64)
        self._used = 0

    def _next_uniforms(self, device: torch.device) -> Tensor:
        """(B,) float64 uniforms in [0, 1) on ``device``, one per row, each from that row's own stream.

        The CPU generators fill a (B, BLOCK) block, copied to the device once per block: the
        decode loop makes no host-to-device copy (a host sync from pageable memory) per step.
        """
        if self._used == self._uniforms.shape[1] or self._uniforms.device != device:
            if self._used < self._uniforms.shape[1]:  # a device change mid-block keeps the stream
                block = self._uniforms[:, self._used :].cpu()
            else:
                block = torch.stack(
                    [torch.rand(self.BLOCK, generator=g, dtype=torch.float64) for g in self.generators]
                )  # (B, BLOCK)
            self._uniforms = block.to(device)
            self._used = 0
        self._used += 1
        return self._uniforms[:, self._used - 1]

    def __call__(self, probs: Tensor) -> Tensor:
        if self.official is not None:
            return torch.multinomial(probs, 1, generator=self.official)[:, 0]
        assert len(self.generators) == probs.shape[0], "one generator per row"
        cdf = probs.double().cumsum(dim=-1)  # (B, V)
        target = (self._next_uniforms(probs.device) * cdf[:, -1]).unsqueeze(-1)  # (B, 1)
        # first index whose cumulative mass exceeds the target: never a zero-probability token
        idx = torch.searchsorted(cdf, target, right=True)[:, 0]
        return idx.clamp_(max=probs.shape[-1] - 1)


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


def checked_request(model: GPT, labels: Tensor, num_tokens: int | None) -> int:
    """The number of tokens to draw (``num_tokens`` or the model's block size), after checking it
    and the class ``labels`` (B,) against the model; shared by both samplers."""
    n = num_tokens or model.config.block_size
    if not 1 <= n <= model.config.block_size:
        raise GigatokError(f"num_tokens must be in 1..{model.config.block_size}, got {n}")
    if labels.ndim != 1 or int(labels.min()) < 0 or int(labels.max()) >= model.config.num_classes:
        raise GigatokError(f"class labels must be a 1-D tensor of ints in 0..{model.config.num_classes - 1}")
    return n


@torch.inference_mode()
def generate(
    model: GPT,
    labels: Tensor,
    drawer: Drawer,
    *,
    cfg: CFGSchedule | None = None,
    sampling: SamplingParams | None = None,
    num_tokens: int | None = None,
    use_cache: bool = True,
    on_step: StepHook | None = None,
    compile: bool = False,
) -> Tensor:
    """Generate (B, num_tokens) int64 token ids for class ``labels`` (B,).

    ``use_cache=False`` recomputes the full prefix every step (slow; a reference for tests).
    ``compile=True`` runs the decode steps as the static-shape :meth:`GPT.decode_step` through
    ``torch.compile`` (CUDA graphs on CUDA, see ``ar/decode.py``; the first call compiles).
    ``on_step(j, guided, chosen)`` sees the guided, temperature-scaled logits (before filtering)
    and the token drawn for position j.
    """
    cfg = cfg or CFGSchedule()
    sampling = sampling or SamplingParams()
    n = checked_request(model, labels, num_tokens)
    if compile and not use_cache:
        raise GigatokError("compile=True needs the KV cache (use_cache=True)")
    device = model.tok_embeddings.weight.device
    labels = labels.to(device=device, dtype=torch.long)
    b = labels.shape[0]
    rows = torch.cat([labels, torch.full_like(labels, model.null_class)]) if cfg.enabled else labels
    scales = cfg.per_token(n)
    step = DecodeStep(model, compile=compile)
    cache = step.new_cache(rows.shape[0], n) if use_cache else None  # input positions 0..n-1
    tokens = torch.zeros(b, n, dtype=torch.long, device=device)
    temperature = max(sampling.temperature, 1e-5)

    for j in range(n):
        # ---- logits for token j: prefill (class token) or one decode step --------------------
        if j == 0:
            logits = model(rows, None, cache=cache, start=0, last_only=True)[:, -1]
        else:
            prev = tokens[:, j - 1 : j]  # (B, 1)
            prev = torch.cat([prev, prev]) if cfg.enabled else prev
            if cache is not None:
                logits = step(prev, j, cache)  # (rows, V)
            else:
                seq = torch.cat([tokens[:, :j]] * 2) if cfg.enabled else tokens[:, :j]
                logits = model(rows, seq, last_only=True)[:, -1]
        # ---- guidance: [cond ; uncond] rows -> (B, V) --------------------------------------
        if cfg.enabled:
            cond, uncond = logits[:b], logits[b:]
            use_uncond = j == 0 or cfg.uses_uncond(j - 1)
            logits = uncond + (cond - uncond) * scales[j] if use_uncond else cond
        guided = logits / temperature
        # ---- sample --------------------------------------------------------------------------
        filtered = filter_logits(guided, sampling.top_k, sampling.top_p)
        tokens[:, j] = drawer(filtered.softmax(dim=-1))
        if on_step is not None:
            on_step(j, guided, tokens[:, j])
    return tokens
