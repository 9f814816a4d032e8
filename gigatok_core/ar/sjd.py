"""Speculative Jacobi decoding (SJD): several image tokens per forward pass, same distribution.

Teng et al., "Accelerating Auto-regressive Text-to-Image Generation with Training-free Speculative
Jacobi Decoding", https://arxiv.org/abs/2410.01699 (Section 3, Algorithm 1). Each row keeps a window
of ``L`` draft tokens after its accepted prefix, every draft ``x_i`` drawn from a recorded proposal
``q_i``. One forward pass over ``[last accepted token, drafts]`` (KV cache at absolute positions)
gives the model's conditionals ``p_i`` at every window position: the guided, temperature-scaled,
top-k/top-p filtered distribution the standard sampler (:func:`gigatok_core.ar.generate.generate`)
uses at that position. Then, left to right:

- draft ``i`` is accepted with probability ``min(1, p_i(x_i) / q_i(x_i))``;
- at the first rejection the token is drawn from ``normalize(max(0, p_i - q_i))`` (speculative
  sampling, Leviathan et al. https://arxiv.org/abs/2211.17192, Chen et al.
  https://arxiv.org/abs/2302.01318); if every draft is accepted, the next token is drawn from the
  exact ``p_{i+1}`` the pass computed (a bonus token);
- every later window position is refreshed (the Jacobi iteration): redrawn from this pass's ``p``
  there (conditioned on drafts that may now be stale), which becomes its new ``q``; positions past
  this pass's outputs start from a uniform draw (``q`` uniform), as in the paper's random
  initialisation. The window then slides to the new prefix.

**Why it is exact.** A draft at position ``j`` is drawn from a ``q_j`` fixed before the draw (stale
or not, it is only a proposal). Until ``j`` is verified, the draft influences only positions
``> j`` (causal attention), so the accept/reject events of earlier positions are independent of it.
When ``j`` is verified every earlier draft was accepted, so the pass's ``p_j`` is the model's
conditional given the real prefix, and accept-with-``min(1, p/q)``-else-residual returns a token
distributed exactly as ``p_j`` (the speculative sampling lemma holds for any proposal). A draft that
is not verified is discarded and redrawn, never reused. By induction every sequence has the
standard sampler's probability (``tests/test_sjd.py`` checks this by enumeration and chi-square).

**Batches.** Rows advance independently: each has its own accepted length, its window at its own
positions (``GPT.forward_rows``: per-row positions, keys/values scattered to those cache slots,
rejected drafts' slots overwritten by the next pass, padding past the end sent to one spare slot no
real query reads) and its own uniforms, a fixed number per pass from its own seeded generator. A
row's tokens therefore depend only on its own generator, not on batch mates or the process count.
The batch runs until its slowest row is done (finished rows ride along as padding). The SJD image
for a seed differs from the standard sampler's image for that seed (other draws, same distribution).

**Cost.** A pass processes ``L + 1`` positions per row instead of one; on a GPU at small batches the
decode step is memory-bound and the extra positions come almost free, so fewer passes mean lower
latency. At large batches the step is compute-bound and SJD's extra positions cost real time.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from gigatok_core.ar.decode import compile_mode
from gigatok_core.ar.generate import SamplingParams, checked_request, filter_logits
from gigatok_core.ar.gpt import GPT, KVCache
from gigatok_core.ar.guidance import CFGSchedule
from gigatok_core.errors import GigatokError

DEFAULT_WINDOW = 16  # the paper's default Jacobi window length
PASSES_PER_BLOCK = 8  # uniforms are drawn per row for this many passes at a time

_COMPILED: dict[str, Callable[..., Tensor]] = {}  # compile mode -> torch.compile(GPT.forward_rows)
_STATIC_CACHES: weakref.WeakKeyDictionary[GPT, KVCache] = weakref.WeakKeyDictionary()


@dataclass
class SJDStats:
    """What a generation cost: ``passes`` forward passes for the batch (the standard sampler needs
    ``num_tokens``), ``row_passes[b]`` the pass after which row b was complete, and the drafts
    verified / accepted over the whole batch."""

    passes: int = 0
    num_tokens: int = 0
    row_passes: list[int] = field(default_factory=list)
    drafts_verified: int = 0
    drafts_accepted: int = 0

    @property
    def acceptance(self) -> float:
        return self.drafts_accepted / max(self.drafts_verified, 1)

    @property
    def mean_row_passes(self) -> float:
        return sum(self.row_passes) / max(len(self.row_passes), 1)


# ---------------------------------------------------------------------------------------------
# Pieces shared with the standard sampler's maths
# ---------------------------------------------------------------------------------------------
def guidance_tables(cfg: CFGSchedule, n: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """(scale (n,) float32, mixed (n,) bool) per token index, as in ``generate``: token 0 (prefill)
    uses the raw scale, token j >= 1 the schedule of decode step j - 1; ``mixed`` is False where the
    conditional logits are used alone (``cfg.interval``)."""
    scales = torch.tensor(cfg.per_token(n), dtype=torch.float32, device=device)
    mixed = [cfg.enabled and (j == 0 or cfg.uses_uncond(j - 1)) for j in range(n)]
    return scales, torch.tensor(mixed, dtype=torch.bool, device=device)


def conditionals(
    logits: Tensor,
    token_idx: Tensor,
    cfg: CFGSchedule,
    tables: tuple[Tensor, Tensor],
    sampling: SamplingParams,
) -> Tensor:
    """The standard sampler's distributions (B, T, V) float32 from model logits (R, T, V).

    ``token_idx`` (B, T): the image token each output predicts (its CFG schedule value). R = 2B
    with guidance (``[cond ; uncond]`` rows), else B.
    """
    if cfg.enabled:
        b = logits.shape[0] // 2
        cond, uncond = logits[:b], logits[b:]  # (B, T, V) each
        scales, mixed = tables
        s, m = scales[token_idx][..., None], mixed[token_idx][..., None]  # (B, T, 1)
        logits = torch.where(m, uncond + (cond - uncond) * s, cond)
    guided = logits / max(sampling.temperature, 1e-5)
    return filter_logits(guided, sampling.top_k, sampling.top_p).softmax(dim=-1)


def inverse_cdf(probs: Tensor, u: Tensor) -> Tensor:
    """Categorical draws (...,) from probabilities (..., V) at uniforms ``u`` (...,) in [0, 1).

    The first index whose float64 cumulative mass exceeds ``u`` times the total (the rule of the
    standard sampler's per-sample draws): never a zero-probability token.
    """
    cdf = probs.double().cumsum(dim=-1)  # (..., V)
    target = (u.double() * cdf[..., -1]).unsqueeze(-1)  # (..., 1)
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


class RowUniforms:
    """``width`` float64 uniforms per row per pass, each row from its own generator (on the device
    once per :data:`PASSES_PER_BLOCK` passes). A row's stream never depends on its batch mates."""

    def __init__(self, generators: Sequence[torch.Generator], width: int, device: torch.device) -> None:
        self.generators, self.width, self.device = list(generators), width, device
        self._block = torch.empty(len(self.generators), 0, width)
        self._used = 0

    def next(self) -> Tensor:
        """(B, width) uniforms for the next pass."""
        if self._used == self._block.shape[1]:
            n = PASSES_PER_BLOCK * self.width
            rows = [torch.rand(n, generator=g, dtype=torch.float64) for g in self.generators]
            self._block = torch.stack(rows).view(len(rows), PASSES_PER_BLOCK, self.width).to(self.device)
            self._used = 0
        self._used += 1
        return self._block[:, self._used - 1]


# ---------------------------------------------------------------------------------------------
# The window forward pass, eager or compiled
# ---------------------------------------------------------------------------------------------
class WindowForward:
    """``fwd(labels (R,), tokens (R, T), pos (R, T)) -> logits (R, T, V)`` with the generation's cache.

    Compiled (``torch.compile(GPT.forward_rows)``, CUDA graphs on CUDA) the shapes are fixed per
    (rows, window length), so a batch compiles once per window length and reuses that graph for
    every pass; like the standard compiled step, the cache is allocated once per model and zeroed.
    """

    def __init__(self, model: GPT, rows: int, max_len: int, *, compile: bool) -> None:
        self.model = model
        device = model.tok_embeddings.weight.device
        self.mode = compile_mode(device) if compile else "eager"
        if not compile:
            self.cache = model.new_cache(rows, max_len)
            self._fn: Callable[..., Tensor] = model.forward_rows
            return
        if self.mode not in _COMPILED:
            _COMPILED[self.mode] = torch.compile(
                GPT.forward_rows, mode=self.mode, fullgraph=True, dynamic=False
            )
        compiled = _COMPILED[self.mode]
        self._fn = lambda *args: compiled(model, *args)
        cache = _STATIC_CACHES.get(model)
        ref = model.tok_embeddings.weight
        if cache is None or (cache.k[0].shape[0], cache.max_len, cache.k[0].dtype) != (
            rows,
            max_len,
            ref.dtype,
        ):
            _STATIC_CACHES.pop(model, None)
            cache = model.new_cache(rows, max_len)
            for t in (*cache.k, *cache.v):
                torch._dynamo.mark_static_address(t)  # CUDA graphs mutate it in place
            _STATIC_CACHES[model] = cache
        for t in (*cache.k, *cache.v):
            t.zero_()
        self.cache = cache

    def __call__(self, labels: Tensor, tokens: Tensor, pos: Tensor) -> Tensor:
        if self.mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
            return self._fn(labels, tokens, pos, self.cache).clone()  # the next replay overwrites it
        return self._fn(labels, tokens, pos, self.cache)


def release_static_cache(model: GPT) -> None:
    """Free the KV cache a compiled SJD generation keeps for ``model``."""
    _STATIC_CACHES.pop(model, None)


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------
@torch.inference_mode()
def generate_sjd(
    model: GPT,
    labels: Tensor,
    generators: Sequence[torch.Generator],
    *,
    cfg: CFGSchedule | None = None,
    sampling: SamplingParams | None = None,
    num_tokens: int | None = None,
    window: int = DEFAULT_WINDOW,
    compile: bool = False,
    stats: SJDStats | None = None,
) -> Tensor:
    """Generate (B, num_tokens) int64 token ids for class ``labels`` (B,) by speculative Jacobi decoding.

    Same distribution as :func:`~gigatok_core.ar.generate.generate` with the same ``cfg`` and
    ``sampling``; ``generators`` holds one seeded CPU generator per row (see
    :func:`~gigatok_core.ar.generate.sample_generators`). ``window`` is the number of draft tokens
    per row (capped at ``num_tokens``). ``stats``, if given, is filled with the passes used.
    """
    cfg = cfg or CFGSchedule()
    sampling = sampling or SamplingParams()
    n = checked_request(model, labels, num_tokens)
    if window < 1:
        raise GigatokError(f"the SJD window must be at least 1 token, got {window}", hint="the default is 16")
    if len(generators) != labels.shape[0]:
        raise ValueError("SJD needs one generator per row (see sample_generators)")
    device = model.tok_embeddings.weight.device
    labels = labels.to(device=device, dtype=torch.long)
    b, v = labels.shape[0], model.config.vocab_size
    rows = torch.cat([labels, torch.full_like(labels, model.null_class)]) if cfg.enabled else labels
    win = min(window, n)  # L: drafts per row
    t_in = min(win + 1, n)  # T: inputs per pass, the last accepted token (or class) + drafts
    # cache slots 0..n-1 hold inputs (class, tokens 0..n-2); slot n takes the padding past the end
    fwd = WindowForward(model, rows.shape[0], n + 1, compile=compile)
    tables = guidance_tables(cfg, n, device)
    uniforms = RowUniforms(generators, 2 * win + 1, device)  # per pass: accept L, extra 1, refresh L
    steps_t = torch.arange(t_in, device=device)  # (T,)
    steps_l = torch.arange(win, device=device)  # (L,)
    arange_b = torch.arange(b, device=device)

    # tokens[b, j]: image token j (accepted for j < acc[b], drafts after); room for a window past n
    tokens = torch.zeros(b, n + win + 1, dtype=torch.long, device=device)
    acc = torch.zeros(b, dtype=torch.long, device=device)  # (B,) accepted tokens per row
    q = torch.full((b, win, v), 1.0 / v, device=device)  # (B, L, V) proposal of each draft
    tokens[:, :win] = inverse_cdf(q, uniforms.next()[:, :win])  # uniform first drafts
    stats = stats if stats is not None else SJDStats()
    stats.num_tokens = n
    done_at = torch.zeros(b, dtype=torch.long, device=device)
    verified = torch.zeros(b, dtype=torch.long, device=device)  # drafts verified / accepted per row
    accepted = torch.zeros(b, dtype=torch.long, device=device)

    while True:
        # ---- one forward pass over [last accepted, drafts] at each row's positions -----------
        pos = acc[:, None] + steps_t  # (B, T) absolute positions = index of the token predicted
        inputs = tokens.gather(1, (pos - 1).clamp(min=0))  # (B, T) token pos-1 (class at pos 0)
        slot = pos.clamp(max=n)  # past the end -> the spare slot n
        if cfg.enabled:
            logits = fwd(rows, torch.cat([inputs, inputs]), torch.cat([slot, slot]))  # (2B, T, V)
        else:
            logits = fwd(rows, inputs, slot)
        p = conditionals(logits, pos.clamp(max=n - 1), cfg, tables, sampling)  # (B, T, V)
        stats.passes += 1

        # ---- verify the drafts left to right -------------------------------------------------
        u = uniforms.next()  # (B, 2L+1)
        drafts = tokens.gather(1, acc[:, None] + steps_l)  # (B, L)
        width = (n - acc).clamp(max=win)  # (B,) drafts inside the image
        p_d = p[:, :win].gather(2, drafts[..., None])[..., 0].double()  # (B, L)
        q_d = q.gather(2, drafts[..., None])[..., 0].double()  # (B, L), > 0: drafts come from q
        ok = (u[:, :win] * q_d < p_d) & (steps_l[None] < width[:, None])  # u < p/q
        k = ok.long().cumprod(dim=1).sum(dim=1)  # (B,) leading accepted drafts
        rejected = k < width
        bonus = (k == width) & (acc + width < n)  # all accepted and room left: draw from p exactly
        p_k = p[arange_b, k.clamp(max=t_in - 1)].double()  # (B, V)
        residual = (p_k - q[arange_b, k.clamp(max=win - 1)].double()).clamp(min=0)
        residual = torch.where(residual.sum(-1, keepdim=True) > 0, residual, p_k)  # p == q: never rejected
        extra = inverse_cdf(torch.where(rejected[:, None], residual, p_k), u[:, win])  # (B,)
        has_extra = rejected | bonus
        at = (acc + k)[:, None]
        tokens.scatter_(1, at, torch.where(has_extra[:, None], extra[:, None], tokens.gather(1, at)))
        verified += k + rejected.long()
        accepted += k
        new_acc = acc + k + has_extra.long()

        # ---- refresh the window from this pass's p (its new q), uniform past its outputs --------
        rel = (new_acc - acc)[:, None] + steps_l  # (B, L) index into this pass's outputs
        from_p = (rel < t_in)[..., None]  # (B, L, 1)
        p_rel = p.gather(1, rel.clamp(max=t_in - 1)[..., None].expand(b, win, v))  # (B, L, V)
        q = torch.where(from_p, p_rel, torch.full_like(p_rel, 1.0 / v))
        tokens.scatter_(1, new_acc[:, None] + steps_l, inverse_cdf(q, u[:, win + 1 :]))
        done_at = torch.where((new_acc >= n) & (acc < n), stats.passes, done_at)
        acc = new_acc
        if bool((acc >= n).all()):  # the one host sync per pass
            break
    stats.row_passes = done_at.tolist()
    stats.drafts_verified, stats.drafts_accepted = int(verified.sum()), int(accepted.sum())
    return tokens[:, :n].clone()
