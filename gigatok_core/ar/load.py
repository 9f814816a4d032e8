"""Building GPTs from presets and loading official checkpoints (docs/ar.md#architecture, #checkpoints).

``load_gpt("gpt-xxl")`` resolves the paper pairing (``xl-xxl``), finds the released file in the
cache, reads it with ``weights_only=True`` and loads its ``model`` entry strictly (the official
GPT loaders ignore ``ema``). Explicit pairs that were never released need ``checkpoint=``.
``gpt-tiny`` (tests, smoke runs) gets seeded random weights when no checkpoint is given.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gigatok_core.ar.gpt import GPT
from gigatok_core.checkpoints.files import GPT_ENTRIES, extract_state_dict, load_strict, read_checkpoint
from gigatok_core.config import GPTConfig, TokenizerConfig
from gigatok_core.config.source import describe_checkpoint, weights_file
from gigatok_core.errors import GigatokError
from gigatok_core.registry import (
    GPTRelease,
    gpt_preset,
    release_names,
    resolve_pair,
    tokenizer_names,
    tokenizer_preset,
)

RANDOM_WEIGHT_PRESETS = ("gpt-tiny",)  # built with seeded random weights when no checkpoint is given


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------
def build_gpt(cfg: GPTConfig, device: torch.device | str | None = None) -> GPT:
    """A GPT with the official initializer (``device="meta"`` builds it without memory)."""
    with torch.device(device or "cpu"):
        model = GPT(cfg)
    if str(device) != "meta":
        model.reset_parameters()
    return model


def seeded_random_weights(model: GPT, seed: int = 0) -> GPT:
    """Fill ``model`` with N(0, 0.02) matrices (output head included) and unit norms, seeded.

    Unlike the training initializer (zero head), logits are not all equal, so samples vary.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
            else:
                p.fill_(1.0)
    return model


# ---------------------------------------------------------------------------------------------
# Compatibility checks
# ---------------------------------------------------------------------------------------------
def check_fits_tokenizer(cfg: GPTConfig, tok: TokenizerConfig, *, gpt_name: str, tok_name: str) -> None:
    """Refuse a GPT whose vocabulary or token count does not match the tokenizer."""
    if cfg.vocab_size != tok.codebook_size:
        raise GigatokError(
            f"{gpt_name} predicts {cfg.vocab_size} token ids but tokenizer {tok_name} has a codebook of "
            f"{tok.codebook_size}",
            hint="pick the tokenizer the GPT was trained with (omit --tokenizer for the paper pairing)",
        )
    if cfg.block_size != tok.num_latent_tokens:
        raise GigatokError(
            f"{gpt_name} generates {cfg.block_size} tokens per image but tokenizer {tok_name} decodes "
            f"{tok.num_latent_tokens}",
            hint="pick the tokenizer the GPT was trained with (omit --tokenizer for the paper pairing)",
        )


def _check_state_dict_fits(sd: dict[str, torch.Tensor], cfg: GPTConfig, *, source: str) -> None:
    """Clear messages for the two common mismatches before the strict load names every key."""
    emb = sd.get("tok_embeddings.weight")
    if emb is not None and emb.shape[0] != cfg.vocab_size:
        raise GigatokError(
            f"{source} has a vocabulary of {emb.shape[0]} tokens, but the tokenizer/preset needs {cfg.vocab_size}",
            hint="the checkpoint was trained with another tokenizer: pass the matching --tokenizer",
        )
    pos = sd.get("positional_embedding")
    if pos is not None and pos.shape[0] != cfg.block_size + 1:
        raise GigatokError(
            f"{source} generates {pos.shape[0] - 1} tokens per image, but the tokenizer/preset needs {cfg.block_size}",
            hint="the checkpoint was trained with another tokenizer: pass the matching --tokenizer",
        )


def load_gpt_state(model: GPT, checkpoint: str | Path, *, expected: str) -> str:
    """Load an official-format file (``model`` entry, optional prefixes) strictly into ``model``.

    Returns the checkpoint entry used.
    """
    ckpt = read_checkpoint(checkpoint)
    sd, entry = extract_state_dict(ckpt, prefer=GPT_ENTRIES, source=str(checkpoint))
    _check_state_dict_fits(sd, model.config, source=str(checkpoint))
    load_strict(model, sd, source=str(checkpoint), expected=expected)
    return entry


# ---------------------------------------------------------------------------------------------
# The one entry point
# ---------------------------------------------------------------------------------------------
def split_gpt_name(name: str, tokenizer: str | None = None) -> tuple[str, str | None]:
    """``"gpt-b@xl-xxl"`` (a release name, as ``gigatok cache list`` shows) -> ``("gpt-b", "xl-xxl")``.

    A plain preset name passes through with ``tokenizer``; a release name given together with a
    different ``tokenizer`` is refused (the two disagree).
    """
    if "@" not in name:
        return name, tokenizer
    gpt, _, paired = name.partition("@")
    if tokenizer is not None and tokenizer != paired:
        raise GigatokError(
            f"--gpt {name} names tokenizer {paired}, but --tokenizer says {tokenizer}",
            hint=f"pass --gpt {gpt} --tokenizer {tokenizer}, or drop --tokenizer",
        )
    return gpt, paired


def resolve_gpt(
    name: str,
    tokenizer: str | None = None,
    checkpoint: str | Path | None = None,
) -> tuple[GPTConfig, str, GPTRelease | None]:
    """Check a (GPT, tokenizer) request without loading anything: (config, tokenizer name, release).

    ``name`` is a preset (``gpt-b``) or a release (``gpt-b@xl-xxl``, see :func:`split_gpt_name`).
    Refuses unknown presets, a tokenizer whose codebook or token count does not fit, and a pair that
    was never released when no ``checkpoint`` is given (``gpt-tiny`` uses random weights instead).
    """
    from gigatok_core.weights import local_weights

    name, tokenizer = split_gpt_name(name, tokenizer)
    cfg = gpt_preset(name).config
    if checkpoint is not None:
        checkpoint = local_weights(checkpoint, "GPT checkpoint")  # a hub id: its local copy
        weights_file(
            checkpoint, "GPT checkpoint", kind="gpt"
        )  # a missing, empty or empty-folder path, named now
        own, paired = _described(checkpoint, name)
        if own is not None:  # a file gigatok wrote: its config (vocab, tokens) is the truth
            cfg = own
            if tokenizer is None and paired in tokenizer_names():
                tokenizer = paired
    tok_name, release = resolve_pair(name, tokenizer)
    check_fits_tokenizer(cfg, tokenizer_preset(tok_name).config, gpt_name=name, tok_name=tok_name)
    if checkpoint is None and release is None and name not in RANDOM_WEIGHT_PRESETS:
        released = ", ".join(r for r in release_names() if r.startswith(f"{name}@")) or "none"
        raise GigatokError(
            f"no {name} checkpoint was released for tokenizer {tok_name}",
            hint=f"released {name} pairs: {released}; or pass --gpt-checkpoint FILE with your own weights",
        )
    return cfg, tok_name, release


def _described(checkpoint: str | Path, name: str) -> tuple[GPTConfig | None, str | None]:
    """(config, paired tokenizer preset) a self-describing GPT checkpoint states; (None, None) for
    an official file. Its config is used as is (a run may have overridden the preset's sizes); a
    file saved as another preset than ``name`` is refused, naming that preset."""
    meta = describe_checkpoint(checkpoint, kind="gpt")
    if meta is None:
        return None, None
    saved = meta.get("preset")
    if saved is not None and saved != name:
        raise GigatokError(
            f"{checkpoint} holds a {saved} GPT, not {name}",
            hint=f"use --gpt {saved}",
        )
    pairing = meta.get("tokenizer")
    paired = pairing.get("preset") if isinstance(pairing, dict) else pairing
    return GPTConfig.from_checkpoint(checkpoint), paired if isinstance(paired, str) else None


def load_gpt(
    name: str,
    *,
    tokenizer: str | None = None,
    checkpoint: str | Path | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[GPT, str]:
    """Build preset ``name`` and load its weights; returns (model in eval mode, tokenizer name).

    Weights: ``checkpoint`` when given; else the released file for the (GPT, tokenizer) pair from
    the cache (``gigatok download``); else seeded random weights for ``gpt-tiny``. A pair that was
    never released is refused unless ``checkpoint`` is given. ``checkpoint`` may be a Hugging Face
    Hub reference, ``hf://OWNER/REPO[@REVISION]`` (:func:`gigatok_core.hub.resolve_hub_ref`).
    """
    from gigatok_core.weights import fetch_weights, local_weights

    name, tokenizer = split_gpt_name(name, tokenizer)
    if checkpoint is not None:
        checkpoint = local_weights(checkpoint, "GPT checkpoint")  # a hub id: its local copy
    cfg, tok_name, release = resolve_gpt(name, tokenizer, checkpoint)
    model = build_gpt(cfg, device="meta")
    model = model.to_empty(device=device)  # weights are written straight onto the target device
    if checkpoint is None and release is None:
        seeded_random_weights(model)
    else:
        path = (
            weights_file(checkpoint, kind="gpt") if checkpoint is not None else fetch_weights(release.weights)
        )  # type: ignore[union-attr]
        load_gpt_state(model, path, expected=f"the {name} preset")
    model = model.to(device=device, dtype=dtype).eval()
    return model, tok_name
