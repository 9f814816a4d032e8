"""The class-conditional GPT of GigaTok (official ``gpt_1d.Transformer`` with ``rope=False``).

LlamaGen-style decoder (https://arxiv.org/abs/2406.06525) as used by GigaTok
(https://arxiv.org/abs/2504.08736): pre-norm RMSNorm blocks, fused ``wqkv`` attention, SwiGLU FFN,
a learned absolute positional embedding over ``[class, image tokens]`` and a class embedding whose
last row (index ``num_classes`` = 1000) is the null class used for classifier-free guidance.
Parameter names equal the official state dict (docs/ar.md#checkpoints), so released files load strictly.

The KV cache is a plain object passed to ``forward`` (never registered as buffers), so the model's
``state_dict`` stays checkpoint-shaped after generating (the official model grows cache buffers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from gigatok_core.ar.cpu_kernels import Dropout, Linear, causal_attention, residual_add, rms_norm, swiglu
from gigatok_core.ar.loss import linear_cross_entropy
from gigatok_core.config import GPTConfig


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    """RMSNorm computed in float32, cast back, then scaled (https://arxiv.org/abs/1910.07467)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            return rms_norm(x, self.weight, self.eps)  # the same formula in fewer passes (cpu_kernels.py)
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight


@dataclass
class KVCache:
    """Static per-layer key/value storage: ``k[layer]`` is (rows, heads, max_len, head_dim).

    Slots are written at the positions being computed. With an int ``start`` attention reads only
    slots ``< end`` (no padding mask; the official cache pads to a multiple of 8 and masks: same
    result); with a tensor of positions (:meth:`GPT.decode_step`) it reads the first ``length``
    slots (a static int, by default every slot) under a mask.
    """

    k: list[Tensor]
    v: list[Tensor]

    @classmethod
    def empty(
        cls, cfg: GPTConfig, rows: int, max_len: int, *, dtype: torch.dtype, device: torch.device
    ) -> KVCache:
        shape = (rows, cfg.n_head, max_len, cfg.head_dim)
        return cls(
            k=[torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layer)],
            v=[torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layer)],
        )

    @property
    def max_len(self) -> int:
        return self.k[0].shape[2]


class Attention(nn.Module):
    """Multi-head causal self-attention with one fused q/k/v projection (rows ordered q, k, v)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.wqkv = Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.wo = Linear(cfg.dim, cfg.dim, bias=False)
        self.resid_dropout = Dropout(cfg.resid_dropout_p, inplace=True)

    def forward(
        self,
        x: Tensor,
        cache: tuple[Tensor, Tensor] | None = None,
        start: int | Tensor = 0,
        length: int | None = None,
    ) -> Tensor:
        """``start``: first absolute position (int); the (T,) int64 positions of a static-shape
        step, which then reads the first ``length`` cache slots (None: all); or (B, T) per-row
        positions (:meth:`GPT.forward_rows`, which reads the whole cache)."""
        t = x.shape[1]
        qkv = self.wqkv(x)  # (B, T, 3·H·D)
        if cache is None:
            return self.resid_dropout(self.wo(causal_attention(qkv, self.n_head)))
        q, k, v = rearrange(qkv, "b t (three h d) -> three b h t d", three=3, h=self.n_head).unbind(0)
        if isinstance(start, Tensor) and start.ndim == 2:
            out = _rowwise_cached_attention(q, k, v, cache, start)
        elif isinstance(start, Tensor):
            out = _static_cached_attention(q, k, v, cache, start, length)
        else:
            k_cache, v_cache = cache
            end = start + t
            k_cache[:, :, start:end] = k
            v_cache[:, :, start:end] = v
            k, v = k_cache[:, :, :end], v_cache[:, :, :end]  # (B, H, end, D)
            if t == 1:
                mask = None  # one query sees every written slot
            else:  # query i (absolute position start+i) sees slots <= start+i
                mask = torch.ones(t, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = rearrange(out, "b h t d -> b t (h d)")
        return self.resid_dropout(self.wo(out))


def _static_cached_attention(
    q: Tensor, k: Tensor, v: Tensor, cache: tuple[Tensor, Tensor], pos: Tensor, length: int | None = None
) -> Tensor:
    """Attention over the first ``length`` cache slots at positions ``pos`` (T,) int64: every shape
    is fixed by ``length`` (a Python int; None = the whole cache), never by the position.

    The new keys/values go to slots ``pos`` with ``index_copy_`` and query i sees slots <= pos[i]
    through a boolean mask, so one traced graph (``torch.compile`` / CUDA graphs) per ``length``
    serves every decode step with ``pos < length``; the position is data, not a Python int. Same
    result as the sliced path: masked slots get zero weight (their contents must be finite, as in
    a zero-initialised cache). Reading only the first ``length`` slots keeps the traffic near the
    filled part of the cache (see ``ar/decode.py``, length buckets).
    """
    k_cache, v_cache = cache  # (B, H, L, D)
    k_cache.index_copy_(2, pos, k)
    v_cache.index_copy_(2, pos, v)
    if length is not None:
        k_cache, v_cache = k_cache[:, :, :length], v_cache[:, :, :length]  # (B, H, length, D) views
    slots = torch.arange(k_cache.shape[2], device=pos.device)  # (L,)
    mask = slots[None, :] <= pos[:, None]  # (T, L)
    return F.scaled_dot_product_attention(q, k_cache, v_cache, attn_mask=mask)


def _rowwise_cached_attention(
    q: Tensor, k: Tensor, v: Tensor, cache: tuple[Tensor, Tensor], pos: Tensor
) -> Tensor:
    """Attention over the whole cache with per-row positions ``pos`` (B, T) int64 (a window per row).

    Row b's keys/values go to slots ``pos[b]`` (``scatter_``) and its query t sees slots
    ``<= pos[b, t]``; every shape is fixed, as in :func:`_static_cached_attention`. Used by
    :meth:`GPT.forward_rows` (speculative Jacobi decoding, ``ar/sjd.py``).
    """
    k_cache, v_cache = cache  # (B, H, L, D)
    b, h, t, d = k.shape
    index = pos[:, None, :, None].expand(b, h, t, d)  # (B, H, T, D)
    k_cache.scatter_(2, index, k)
    v_cache.scatter_(2, index, v)
    slots = torch.arange(k_cache.shape[2], device=pos.device)  # (L,)
    mask = slots[None, None, :] <= pos[:, :, None]  # (B, T, L)
    return F.scaled_dot_product_attention(q, k_cache, v_cache, attn_mask=mask[:, None])


class FeedForward(nn.Module):
    """SwiGLU FFN: ``w2(silu(w1 x) * w3 x)`` (https://arxiv.org/abs/2002.05202)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        hidden = cfg.ffn_hidden
        self.w1 = Linear(cfg.dim, hidden, bias=False)
        self.w3 = Linear(cfg.dim, hidden, bias=False)
        self.w2 = Linear(hidden, cfg.dim, bias=False)
        self.ffn_dropout = Dropout(cfg.ffn_dropout_p, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.ffn_dropout(self.w2(swiglu(self.w1(x), self.w3(x), consume=True)))  # fresh projections


class Block(nn.Module):
    """Pre-norm transformer block (registration order matches the official state dict)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.attention = Attention(cfg)
        self.feed_forward = FeedForward(cfg)
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)

    def forward(
        self,
        h: Tensor,
        cache: tuple[Tensor, Tensor] | None = None,
        start: int | Tensor = 0,
        length: int | None = None,
    ) -> Tensor:
        h = residual_add(h, self.attention(self.attention_norm(h), cache, start, length))
        return residual_add(h, self.feed_forward(self.ffn_norm(h)))


class LabelEmbedding(nn.Module):
    """Class embedding with an extra null row; in training, labels drop to null with prob p."""

    def __init__(self, num_classes: int, dim: int, dropout_prob: float) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), dim)

    def forward(self, labels: Tensor) -> Tensor:
        if self.training and self.dropout_prob > 0:  # class dropout trains the unconditional model
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        return self.embedding_table(labels)


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
class GPT(nn.Module):
    """Class-conditional GPT over ``[class token, image tokens]`` (docs/ar.md#architecture).

    ``forward(labels, tokens)`` gives logits (B, n+1, vocab) in float32; row j predicts image token j.
    With a :class:`KVCache`, ``start`` is the absolute position of the first input: at ``start == 0``
    the class token is prepended, later calls feed image tokens only.
    """

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        d = cfg.dim
        # Registration order = official state-dict order (positional embedding first).
        self.positional_embedding = nn.Parameter(torch.randn(cfg.block_size + 1, d) * d**-0.5)
        self.cls_embedding = LabelEmbedding(cfg.num_classes, d, cfg.class_dropout_prob)
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, d)
        self.tok_dropout = Dropout(cfg.token_dropout_p, inplace=True)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(d, cfg.norm_eps)
        self.output = nn.Linear(d, cfg.vocab_size, bias=False)

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def reset_parameters(self) -> None:
        """The official initializer (docs/ar.md#architecture): N(0, 0.02) linears/embeddings, zero head."""
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
            elif isinstance(m, RMSNorm):
                nn.init.ones_(m.weight)
        nn.init.zeros_(self.output.weight)
        with torch.no_grad():
            d = self.config.dim
            self.positional_embedding.copy_(torch.randn_like(self.positional_embedding) * d**-0.5)

    def new_cache(self, rows: int, max_len: int | None = None) -> KVCache:
        """A zeroed cache for ``rows`` sequences of up to ``1 + block_size`` positions."""
        p = self.tok_embeddings.weight
        return KVCache.empty(
            self.config, rows, max_len or self.config.block_size + 1, dtype=p.dtype, device=p.device
        )

    def embed(self, labels: Tensor | None, tokens: Tensor | None, start: int = 0) -> Tensor:
        """Input embeddings (B, T, C) for positions ``start .. start+T-1``."""
        parts = []
        if start == 0:
            assert labels is not None, "position 0 is the class token: labels are required"
            parts.append(self.cls_embedding(labels)[:, None])  # (B, 1, C)
        if tokens is not None and tokens.shape[1] > 0:
            parts.append(self.tok_embeddings(tokens))  # (B, n, C)
        h = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        assert start + h.shape[1] <= self.positional_embedding.shape[0], "sequence longer than block_size + 1"
        return h + self.positional_embedding[start : start + h.shape[1]]

    def forward(
        self,
        labels: Tensor | None,
        tokens: Tensor | None = None,
        *,
        cache: KVCache | None = None,
        start: int = 0,
        last_only: bool = False,
        hidden_at: int | None = None,
        targets: Tensor | None = None,
    ) -> Tensor:
        """Logits (B, T, vocab) float32, or (B, 1, vocab) with ``last_only``.

        ``targets`` (B, T) token ids: returns instead the mean cross-entropy of the logits against
        them (the training loss, as the official ``Transformer.forward(targets=...)``), computed by
        :meth:`loss_from_hidden`.

        ``hidden_at=k`` returns instead the residual stream after block k (1-based), before any later
        block or the final norm (linear probing, docs/recipes.md#linear-probing).
        """
        assert cache is not None or start == 0, "start > 0 needs a KV cache"
        h = self.tok_dropout(self.embed(labels, tokens, start))  # (B, T, C)
        for i, layer in enumerate(self.layers):
            h = layer(h, None if cache is None else (cache.k[i], cache.v[i]), start)
            if hidden_at is not None and i + 1 == hidden_at:
                return h
        if last_only:
            h = h[:, -1:]
        if targets is not None:
            return self.loss_from_hidden(self.norm(h), targets)
        return self.output(self.norm(h)).float()

    def loss_from_hidden(self, h: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy of ``output(h)`` (B, T, vocab) against ``targets`` (B, T).

        In float32 outside autocast and ``torch.compile`` (CPU training, fp32 runs) the head and the
        loss are fused chunk by chunk (:func:`~gigatok_core.ar.loss.linear_cross_entropy`: no whole
        (B·T, vocab) logits); otherwise ``F.cross_entropy`` over the float32 logits, the plain path.
        """
        assert h.shape[:2] == targets.shape, f"targets {tuple(targets.shape)} for hidden {tuple(h.shape)}"
        weight = self.output.weight
        fused = (
            h.dtype == weight.dtype == torch.float32
            and not torch.is_autocast_enabled(h.device.type)
            and not torch.compiler.is_compiling()
        )
        flat, flat_targets = h.flatten(0, 1), targets.flatten()  # (B·T, C), (B·T,)
        if fused:
            return linear_cross_entropy(flat, weight, flat_targets)
        return F.cross_entropy(self.output(flat).float(), flat_targets)

    def decode_step(self, tokens: Tensor, pos: Tensor, cache: KVCache, length: int | None = None) -> Tensor:
        """One static-shape decode step: logits (B, vocab) float32 for image tokens (B, 1) at ``pos``.

        ``pos`` is a (1,) int64 tensor holding the absolute position (>= 1) of ``tokens``; the keys
        and values go to that cache slot and attention reads the first ``length`` slots (an int
        > ``pos``; None = the whole cache) under a mask, so no shape depends on the position and
        one compiled graph per ``length`` serves every step below it (see ``ar/decode.py``).
        """
        h = self.tok_embeddings(tokens) + self.positional_embedding.index_select(0, pos)  # (B, 1, C)
        h = self.tok_dropout(h)
        for layer, k, v in zip(self.layers, cache.k, cache.v, strict=True):
            h = layer(h, (k, v), pos, length)
        return self.output(self.norm(h[:, -1])).float()  # (B, V)

    def forward_rows(self, labels: Tensor, tokens: Tensor, pos: Tensor, cache: KVCache) -> Tensor:
        """Logits (B, T, vocab) float32 for inputs ``tokens`` (B, T) at per-row positions ``pos`` (B, T).

        Position 0 is the class token (its ``tokens`` entry is ignored, ``labels`` (B,) gives the
        class); position p >= 1 holds image token p - 1. Keys/values are written at slot ``pos``
        (several rows may point padding at one spare slot no real query reads), and query t of row b
        attends to slots ``<= pos[b, t]``. Static shapes, so one compiled graph serves every call.
        """
        emb = self.tok_embeddings(tokens)  # (B, T, C)
        cls = self.cls_embedding(labels)[:, None].to(emb.dtype)  # (B, 1, C)
        h = torch.where((pos == 0)[..., None], cls, emb)
        h = h + self.positional_embedding[pos.clamp(max=self.positional_embedding.shape[0] - 1)]
        h = self.tok_dropout(h)
        for layer, k, v in zip(self.layers, cache.k, cache.v, strict=True):
            h = layer(h, (k, v), pos)
        return self.output(self.norm(h)).float()

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
